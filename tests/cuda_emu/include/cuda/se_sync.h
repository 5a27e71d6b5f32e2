// The emulator's stand-in for csrc/cuda/se_sync.h, found first on the
// include path (-Itests/cuda_emu/include before -Icsrc): the same names,
// implemented by emu.h on CPU threads. Everything else in csrc/cuda/ compiles
// unchanged as C++ (emu.h defines the CUDA keywords and intrinsics it uses).
#pragma once

#include "../../emu.h"

#include <cstdint>

namespace se_fused {
namespace cuda_kernels {

#define SE_SHARED(Type, name) Type& name = emu::shared<Type>()

inline void se_grid_sync() { emu::grid_sync(); }

template <typename Args>
cudaError_t se_launch(void (*kernel)(Args), int64_t grid, int threads, cudaStream_t, const Args& args) {
  return emu::launch(grid, threads, [&] { kernel(args); });
}

template <typename Args>
cudaError_t se_launch_cooperative(void (*kernel)(Args), int64_t grid, int threads, cudaStream_t,
                                  const Args& args) {
  return emu::launch_cooperative(grid, threads, [&] { kernel(args); });
}

// The whole emulated device: g_resident blocks.
template <typename Args>
cudaError_t se_resident_blocks(void (*)(Args), int, int* out) {
  *out = emu::g_resident;
  return cudaSuccess;
}

}  // namespace cuda_kernels
}  // namespace se_fused

inline cudaError_t emu_cudaGetLastError() { return cudaSuccess; }
#define cudaGetLastError emu_cudaGetLastError
