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
// The launch's dynamic shared memory: a heap block of exactly the launch's
// bytes per block slot (AddressSanitizer catches accesses past it).
#define SE_DYNAMIC_SHARED(name) unsigned char* name = emu::dynamic_shared()

inline void se_grid_sync() { emu::grid_sync(); }

template <typename Args>
cudaError_t se_launch(void (*kernel)(Args), int64_t grid, int threads, cudaStream_t, const Args& args) {
  return emu::launch(grid, threads, [&] { kernel(args); });
}

template <typename Args>
cudaError_t se_launch_cooperative(void (*kernel)(Args), int64_t grid, int threads, cudaStream_t,
                                  const Args& args, size_t smem = 0) {
  return emu::launch_cooperative(grid, threads, [&] { kernel(args); }, smem);
}

// The opt-in above 48 KB: accepted up to the emulated per-block limit.
template <auto Kernel>
cudaError_t se_allow_dynamic_smem(size_t bytes) {
  return bytes <= emu::kMaxDynamicSmem ? cudaSuccess : cudaErrorInvalidValue;
}

// The whole emulated device: g_resident blocks (whatever their shared memory).
template <auto Kernel>
cudaError_t se_resident_blocks(int, int* out, size_t = 0) {
  *out = emu::g_resident;
  return cudaSuccess;
}

}  // namespace cuda_kernels
}  // namespace se_fused

inline cudaError_t emu_cudaGetLastError() { return cudaSuccess; }
#define cudaGetLastError emu_cudaGetLastError
