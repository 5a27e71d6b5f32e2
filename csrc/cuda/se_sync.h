// Everything by which a thread waits for, or starts, other threads: the one
// header the CPU emulator (tests/cuda_emu/include/cuda/se_sync.h) replaces,
// by being found first on the include path (kernels include it as
// <cuda/se_sync.h>; setup.py puts csrc/ on the path, the emulator puts its own
// directory before it). Nothing else in csrc/cuda/ uses __shared__, <<<...>>>,
// a cooperative launch or a grid barrier directly.
//
// Progress: the only inter-block wait in csrc/cuda/ is se_grid_sync(), and it
// is called only from kernels started by se_launch_cooperative(). A
// cooperative launch either makes every block of the grid co-resident (the
// driver checks the grid against the device's occupancy and waits for the
// room) or fails with an error and runs nothing (cudaErrorCooperativeLaunchTooLarge,
// cudaErrorNotSupported, ...); it never starts a grid that could wait on a
// block that is not running. The launch code falls back to the two-pass
// kernels (no waiting at all) on any such error.
#pragma once

#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

namespace se_fused {
namespace cuda_kernels {

// Block-shared storage: one variable per kernel (a struct or union).
#define SE_SHARED(Type, name) __shared__ Type name

// Grid-wide barrier (memory ordered: writes before it are visible to every
// block after it). Only in kernels launched with se_launch_cooperative.
__device__ __forceinline__ void se_grid_sync() { cooperative_groups::this_grid().sync(); }

// An ordinary launch on `stream`; returns the launch error, if any.
template <typename Args>
cudaError_t se_launch(void (*kernel)(Args), int64_t grid, int threads, cudaStream_t stream,
                      const Args& args) {
  kernel<<<static_cast<unsigned>(grid), static_cast<unsigned>(threads), 0, stream>>>(args);
  return cudaGetLastError();
}

// A cooperative launch (every block co-resident, or an error and nothing
// runs). cudaLaunchKernelEx with cudaLaunchAttributeCooperative: CUDA 12+.
template <typename Args>
cudaError_t se_launch_cooperative(void (*kernel)(Args), int64_t grid, int threads,
                                  cudaStream_t stream, const Args& args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(grid), 1, 1);
  cfg.blockDim = dim3(static_cast<unsigned>(threads), 1, 1);
  cfg.dynamicSmemBytes = 0;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeCooperative;
  attr[0].val.cooperative = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  const cudaError_t err = cudaLaunchKernelEx(&cfg, kernel, args);
  if (err != cudaSuccess) (void)cudaGetLastError();  // not sticky: clear it for the fallback
  return err;
}

// Blocks of `kernel` (with `threads` threads) the current device can hold at
// once (occupancy x SMs), cached per device: what a cooperative grid may use.
template <typename Args>
cudaError_t se_resident_blocks(void (*kernel)(Args), int threads, int* out) {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cache[kMaxDevices];
  int dev = 0;
  cudaError_t err = cudaGetDevice(&dev);
  if (err != cudaSuccess) return err;
  if (dev >= 0 && dev < kMaxDevices) {
    const int cached = cache[dev].load(std::memory_order_relaxed);
    if (cached > 0) {
      *out = cached;
      return cudaSuccess;
    }
  }
  int sms = 0, per_sm = 0;
  err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  if (err != cudaSuccess) return err;
  err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, 0);
  if (err != cudaSuccess) return err;
  *out = per_sm * sms;
  if (dev >= 0 && dev < kMaxDevices && *out > 0) cache[dev].store(*out, std::memory_order_relaxed);
  return cudaSuccess;
}

}  // namespace cuda_kernels
}  // namespace se_fused
