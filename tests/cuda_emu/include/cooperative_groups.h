// The emulated cooperative groups: what csrc/cuda/se_sync.h uses, the grid
// group's barrier (emu.h grid_sync: aborts outside a cooperative launch, as a
// grid sync there is undefined on a GPU) and the cluster group's (emu_cluster.h
// cluster_sync: aborts outside a cluster launch). Outside a cluster launch a
// block is a cluster of one, as on a GPU (rank 0 of 1). Distributed shared
// memory only through se_sync.h's se_cluster_store (SE_CLUSTER_STORE:
// emu_cluster.h cluster_store); map_shared_rank itself does not compile here.
#pragma once

#include "../emu.h"

namespace cooperative_groups {
class grid_group {
 public:
  void sync() const { emu::grid_sync(); }
  bool is_valid() const { return emu::tl_slot && emu::tl_slot->grid_bar; }
  unsigned long long num_blocks() const { return ::gridDim.x; }
  unsigned long long block_rank() const { return emu::tl_bid.x; }
};
inline grid_group this_grid() { return grid_group(); }
class cluster_group {
 public:
  void sync() const { emu::cluster_sync(); }
  unsigned block_rank() const { return emu::tl_slot->cluster ? (unsigned)emu::tl_slot->cluster_rank : 0u; }
  unsigned num_blocks() const { return emu::tl_slot->cluster ? (unsigned)emu::tl_slot->cluster->size : 1u; }
  dim3 dim_blocks() const { return dim3(num_blocks(), 1, 1); }
  dim3 block_index() const { return dim3(block_rank(), 0, 0); }
  unsigned num_threads() const { return num_blocks() * ::blockDim.x; }
  unsigned thread_rank() const { return block_rank() * ::blockDim.x + emu::tl_tid.x; }
};
inline cluster_group this_cluster() { return cluster_group(); }
}  // namespace cooperative_groups
