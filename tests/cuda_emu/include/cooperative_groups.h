// The emulated cooperative groups: what csrc/cuda/se_sync.h uses, the grid
// group's barrier (emu.h grid_sync: aborts outside a cooperative launch, as a
// grid sync there is undefined on a GPU).
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
}  // namespace cooperative_groups
