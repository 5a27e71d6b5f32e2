// The emulator's <cuda/se_sync.h>, found first on the include path
// (-Itests/cuda_emu/include before -Icsrc): it compiles the real
// csrc/cuda/se_sync.h (its launches, occupancy, shared-memory opt-in, grid and
// cluster barriers, cp.async) against the emulated runtime (include/cuda_runtime.h,
// include/cooperative_groups.h, emu.h, emu_cluster.h), with hooks defined first
// and the two shared-memory declarations replaced after:
//   SE_LAUNCH_CHEVRON  kernel<<<grid, block, smem, stream>>> (not C++): emu::chevron
//   SE_CHECK_ALIGNED16 (se_load.cuh ld16 / st16): every plain 16-byte access checked
//   SE_CP_ASYNC16 / SE_CP_ASYNC_COMMIT / SE_CP_ASYNC_WAIT  cp.async (PTX asm):
//                      emu::cp_async16 / cp_async_commit / cp_async_wait (a copy
//                      lands at the wait that completes its group)
//   SE_CLUSTER_STORE   a distributed shared-memory store: emu::cluster_store (checked,
//                      it lands at the cluster's next barrier)
//   SE_SHARED          a reference to the block slot's arena (0xff at every block start)
//   SE_DYNAMIC_SHARED  a heap block of exactly the launch's dynamic bytes per block
//                      slot, 0xff at every block start (ASan sees an access past it,
//                      an unstaged byte reads as NaN)
#pragma once

#include <cuda_runtime.h>  // the emulated runtime (this directory)

#define SE_LAUNCH_CHEVRON(kernel, grid, block, smem, stream) ::emu::chevron(kernel, grid, block, smem, stream)
#define SE_CHECK_ALIGNED16(p) ::emu::check_align16(p)
#define SE_CP_ASYNC16(dst, src) ::emu::cp_async16(dst, src)
#define SE_CP_ASYNC_COMMIT() ::emu::cp_async_commit()
#define SE_CP_ASYNC_WAIT(n) ::emu::cp_async_wait(n)
#define SE_CLUSTER_STORE(local, rank, v) ::emu::cluster_store(local, rank, v)

#include_next <cuda/se_sync.h>

#undef SE_SHARED
#define SE_SHARED(Type, name) Type& name = ::emu::shared<Type>()
#undef SE_DYNAMIC_SHARED
#define SE_DYNAMIC_SHARED(name) unsigned char* name = ::emu::dynamic_shared()
