// Everything by which a thread waits for, or starts, other threads. The CPU
// emulator compiles this file against its emulated runtime: its own
// tests/cuda_emu/include/cuda/se_sync.h, found first on the include path
// (kernels include <cuda/se_sync.h>; setup.py puts csrc/ on the path), defines
// the hooks below and includes this one. Nothing else in csrc/cuda/ uses __shared__, <<<...>>>,
// a cooperative launch or a grid barrier directly.
//
// Progress: the only inter-block waits in csrc/cuda/ are se_grid_sync(),
// called only from kernels started by se_launch_cooperative(), and
// se_cluster_sync(), called only from kernels started by se_launch_cluster()
// (a cluster's blocks are co-scheduled by the hardware, or the launch fails).
// There are no traps (a trap is a sticky error that ends the process's CUDA
// context): what must not run on a device is never launched there. A
// cooperative launch either makes every block of the grid co-resident (the
// driver checks the grid against the device's occupancy and waits for the
// room) or fails with an error and runs nothing (cudaErrorCooperativeLaunchTooLarge,
// cudaErrorNotSupported, ...); it never starts a grid that could wait on a
// block that is not running. The launch code falls back to the two-pass
// kernels (no waiting at all) on any such error.
//
// Errors: the runtime keeps one "last error" per host thread, and a refused
// launch leaves its error there. Every function below first peeks at it: an
// error already pending (from earlier work, not ours) is returned as it is,
// with nothing launched and nothing cleared, so the caller reports it; the
// error of our own refused call is cleared (none of them is sticky) and
// returned, so that the fallback starts clean. Nothing here clears an error it
// did not cause.
#pragma once

#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <mutex>

namespace se_fused {
namespace cuda_kernels {

// Block-shared storage: one variable per kernel (a struct or union).
#define SE_SHARED(Type, name) __shared__ Type name
// The block's dynamic shared memory (bytes set by the launch), 16-byte aligned:
// declares `unsigned char* name`-like storage (the one-pass tiles, se_onepass.cuh).
#define SE_DYNAMIC_SHARED(name) extern __shared__ __align__(16) unsigned char name[]

constexpr int kMaxDevices = 64;  // per-device caches below

// kernel<<<grid, block, smem, stream>>>, a macro only because the CPU emulator
// (tests/cuda_emu) compiles this file as C++, where <<<>>> does not parse.
#ifndef SE_LAUNCH_CHEVRON
#define SE_LAUNCH_CHEVRON(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, stream>>>
#endif

// Grid-wide barrier (memory ordered: writes before it are visible to every
// block after it). Only in kernels launched with se_launch_cooperative.
__device__ __forceinline__ void se_grid_sync() { cooperative_groups::this_grid().sync(); }

// Cluster barrier (sm_90+): the blocks of the calling block's thread-block
// cluster meet; release/acquire at cluster scope, so global and shared writes
// before it are visible to the cluster's threads after it. Only in kernels
// launched by se_launch_cluster (the hardware co-schedules a cluster's blocks,
// so the wait cannot depend on a block that is not running). The host launches
// cluster kernels only where their image is sm_90+ (se_cluster_capacity:
// cudaFuncGetAttributes' binaryVersion), so the pre-sm_90 images, which have
// no cluster barrier, never reach it (their cluster kernels are empty).
__device__ __forceinline__ void se_cluster_sync() {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
  cooperative_groups::this_cluster().sync();
#endif
}

// A store into distributed shared memory (sm_90+, cluster launches only):
// v at the address that `local` (in this block's shared memory) has in the
// shared memory of block `rank` of the calling block's cluster. Visible to
// that block after the next se_cluster_sync (its release / acquire), not
// before; that block is resident until then (it meets the barrier too). The
// emulator defines SE_CLUSTER_STORE first (the store lands at the barrier, so
// a read before it sees the bytes there before).
#ifndef SE_CLUSTER_STORE
#define SE_CLUSTER_STORE(local, rank, v) \
  (*cooperative_groups::this_cluster().map_shared_rank((local), (rank)) = (v))
#endif
template <typename A>
__device__ __forceinline__ void se_cluster_store(A* local, unsigned rank, A v) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
  SE_CLUSTER_STORE(local, rank, v);
#endif
}

// Asynchronous 16-byte copies global -> shared (cp.async.cg, sm_80+: L2 only,
// no registers held, so a block keeps its whole tile in flight). A thread's
// copies are grouped by se_cp_async_commit(); se_cp_async_wait(n) returns when
// at most n of the thread's newest groups are still in flight (n is clamped
// to 7: waiting for more than asked is safe). The copies are the thread's
// own: other threads see them after its wait and a __syncthreads. dst and src
// 16-byte aligned. The emulator defines SE_CP_ASYNC16 / SE_CP_ASYNC_COMMIT /
// SE_CP_ASYNC_WAIT first (a copy lands at the wait, so a read before it sees
// the unstaged 0xff bytes).
#ifndef SE_CP_ASYNC16
#define SE_CP_ASYNC16(dst, src)                                                        \
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(                    \
                   static_cast<unsigned>(__cvta_generic_to_shared(dst))),              \
               "l"(src)                                                                \
               : "memory")
#define SE_CP_ASYNC_COMMIT() asm volatile("cp.async.commit_group;\n" ::: "memory")
#define SE_CP_ASYNC_WAIT(n) asm volatile("cp.async.wait_group %0;\n" ::"n"(n) : "memory")
#endif
__device__ __forceinline__ void se_cp_async16(void* dst, const void* src) { SE_CP_ASYNC16(dst, src); }
__device__ __forceinline__ void se_cp_async_commit() { SE_CP_ASYNC_COMMIT(); }
__device__ __forceinline__ void se_cp_async_wait(int n) {
  switch (n < 0 ? 0 : n) {  // wait_group takes an immediate
    case 0: SE_CP_ASYNC_WAIT(0); break;
    case 1: SE_CP_ASYNC_WAIT(1); break;
    case 2: SE_CP_ASYNC_WAIT(2); break;
    case 3: SE_CP_ASYNC_WAIT(3); break;
    case 4: SE_CP_ASYNC_WAIT(4); break;
    case 5: SE_CP_ASYNC_WAIT(5); break;
    case 6: SE_CP_ASYNC_WAIT(6); break;
    default: SE_CP_ASYNC_WAIT(7); break;
  }
}

// An ordinary launch on `stream`; returns the launch error, if any (an error
// pending from earlier work is returned instead, and nothing launched).
template <typename Args>
cudaError_t se_launch(void (*kernel)(Args), int64_t grid, int threads, cudaStream_t stream,
                      const Args& args) {
  const cudaError_t pending = cudaPeekAtLastError();
  if (pending != cudaSuccess) return pending;
  SE_LAUNCH_CHEVRON(kernel, static_cast<unsigned>(grid), static_cast<unsigned>(threads), 0, stream)(args);
  return cudaGetLastError();  // this launch's error, the one it raised
}

// A launch configuration of `grid` blocks of `threads` threads with `smem`
// bytes of dynamic shared memory on `stream`, and one launch attribute.
inline cudaLaunchConfig_t se_launch_config(int64_t grid, int threads, size_t smem, cudaStream_t stream,
                                           cudaLaunchAttribute* attr) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(grid), 1, 1);
  cfg.blockDim = dim3(static_cast<unsigned>(threads), 1, 1);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  return cfg;
}
// The cluster attribute: clusters of `cluster` consecutive blocks.
inline cudaLaunchAttribute se_cluster_attribute(int cluster) {
  cudaLaunchAttribute attr = {};
  attr.id = cudaLaunchAttributeClusterDimension;
  attr.val.clusterDim.x = static_cast<unsigned>(cluster);
  attr.val.clusterDim.y = 1;
  attr.val.clusterDim.z = 1;
  return attr;
}
// cudaLaunchKernelEx of cfg; an error pending from earlier work is returned
// instead (nothing launched, nothing cleared), our own refusal is cleared.
template <typename Args>
cudaError_t se_launch_ex(const cudaLaunchConfig_t& cfg, void (*kernel)(Args), const Args& args) {
  const cudaError_t pending = cudaPeekAtLastError();
  if (pending != cudaSuccess) return pending;  // not ours: reported, not cleared
  const cudaError_t err = cudaLaunchKernelEx(&cfg, kernel, args);
  if (err != cudaSuccess) (void)cudaGetLastError();  // our refused launch's (not sticky): cleared
  return err;
}

// A cooperative launch (every block co-resident, or an error and nothing
// runs). cudaLaunchKernelEx with cudaLaunchAttributeCooperative: CUDA 12+.
// smem: dynamic shared memory per block (se_allow_dynamic_smem first when the
// block's total passes 48 KB).
template <typename Args>
cudaError_t se_launch_cooperative(void (*kernel)(Args), int64_t grid, int threads,
                                  cudaStream_t stream, const Args& args, size_t smem = 0) {
  cudaLaunchAttribute attr = {};
  attr.id = cudaLaunchAttributeCooperative;
  attr.val.cooperative = 1;
  return se_launch_ex(se_launch_config(grid, threads, smem, stream, &attr), kernel, args);
}

// A cluster launch: grid blocks in clusters of `cluster` consecutive blocks
// (grid a multiple of it), each cluster co-scheduled by the hardware on one
// GPC, or an error and nothing runs (cudaErrorInvalidClusterSize, an
// out-of-resources error when no cluster of that size and shared memory fits,
// cudaErrorNotSupported before sm_90...: the caller falls back on any). Legal
// under stream capture (a kernel node with the attribute). Clusters above 8
// blocks need se_cluster_capacity first (it sets the non-portable opt-in).
template <typename Args>
cudaError_t se_launch_cluster(void (*kernel)(Args), int64_t grid, int cluster, int threads,
                              cudaStream_t stream, const Args& args, size_t smem) {
  cudaLaunchAttribute attr = se_cluster_attribute(cluster);
  return se_launch_ex(se_launch_config(grid, threads, smem, stream, &attr), kernel, args);
}

// The cluster capacity of Kernel on the current device at `threads` threads
// and `smem` bytes of dynamic shared memory (se_allow_dynamic_smem first):
// *max_cluster: the largest cluster the device schedules
// (cudaOccupancyMaxPotentialClusterSize, with the non-portable opt-in, so up
// to 16 on an H100/H200); *active: how many clusters of `cluster` blocks fit
// at once (cudaOccupancyMaxActiveClusters; 0: a launch would be refused), 0
// when cluster is 0 or above *max_cluster. Both 0, and cudaSuccess, where the
// device has no cluster launch or Kernel's image predates sm_90 (its body is
// empty there). Errors of our own calls are cleared and returned.
// The answers are cached per device (the occupancy calculator's calls cost
// host time at batch 1), in kCapacityWays words picked by a hash of the
// question (the forward's cluster_fit asks at up to four shared-memory sizes,
// one per samples-per-round count it tries: with one word per device each
// call missed): a 64-bit word of smem (32 bits), threads and cluster (8
// each, 0: none cached), the largest cluster (8) and the active clusters
// (8, saturated at 255: callers only ask for at least one).
constexpr int kCapacityWays = 4;
static_assert(kCapacityWays == 4, "se_cluster_capacity picks a way from the top 2 bits of a hash");
template <auto Kernel>
cudaError_t se_cluster_capacity(int cluster, int threads, size_t smem, int* max_cluster, int* active) {
  static std::atomic<uint64_t> cache[kMaxDevices][kCapacityWays];
  *max_cluster = 0;
  *active = 0;
  const cudaError_t pending = cudaPeekAtLastError();
  if (pending != cudaSuccess) return pending;  // not ours: reported, not cleared
  int dev = 0, can = 0;
  cudaFuncAttributes fa = {};
  cudaError_t err = cudaGetDevice(&dev);
  const bool cacheable = err == cudaSuccess && dev >= 0 && dev < kMaxDevices && smem < (uint64_t{1} << 32) &&
                         threads > 0 && threads % 32 == 0 && threads / 32 < 256 && cluster >= 0 && cluster < 256;
  const uint64_t key = cacheable ? (static_cast<uint64_t>(smem) << 32) |
                                       (static_cast<uint64_t>(threads / 32) << 24) |
                                       (static_cast<uint64_t>(cluster) << 16) | 0xffffu
                                 : 0;
  const int way = static_cast<int>(((key >> 16) * 0x9E3779B97F4A7C15ull) >> 62);  // of kCapacityWays
  if (cacheable) {
    const uint64_t c = cache[dev][way].load(std::memory_order_relaxed);
    if ((c | 0xffffu) == key) {
      *max_cluster = static_cast<int>((c >> 8) & 0xffu);
      *active = static_cast<int>(c & 0xffu);
      return cudaSuccess;
    }
  }
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&can, cudaDevAttrClusterLaunch, dev);
  if (err == cudaSuccess && can) err = cudaFuncGetAttributes(&fa, Kernel);
  if (err != cudaSuccess || !can || fa.binaryVersion < 90) {
    if (err != cudaSuccess) {
      (void)cudaGetLastError();  // ours
    } else if (cacheable) {
      cache[dev][way].store(key & ~uint64_t{0xffff}, std::memory_order_relaxed);  // 0 and 0
    }
    return err;
  }
  err = cudaFuncSetAttribute(Kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
  cudaLaunchAttribute attr = se_cluster_attribute(cluster);
  cudaLaunchConfig_t cfg = se_launch_config(cluster > 0 ? cluster : 1, threads, smem, nullptr, &attr);
  cfg.numAttrs = 0;  // the largest cluster: asked without one
  if (err == cudaSuccess) err = cudaOccupancyMaxPotentialClusterSize(max_cluster, Kernel, &cfg);
  if (err == cudaSuccess && cluster > 0 && cluster <= *max_cluster) {
    cfg.numAttrs = 1;
    err = cudaOccupancyMaxActiveClusters(active, Kernel, &cfg);
  }
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // ours
    *max_cluster = 0;
    *active = 0;
  } else if (cacheable) {
    const uint64_t largest = static_cast<uint64_t>(*max_cluster < 255 ? *max_cluster : 255);
    const uint64_t fit = static_cast<uint64_t>(*active < 255 ? *active : 255);
    cache[dev][way].store((key & ~uint64_t{0xffff}) | (largest << 8) | fit, std::memory_order_relaxed);
  }
  return err;
}

// The two functions below cache per kernel and device: the kernel is a
// template argument (a function template's statics are per instantiation;
// keyed on the argument type alone, kernels of different registers would
// share one occupancy).
//
// Lets Kernel take up to `bytes` of dynamic shared memory per block (above
// 48 KB a kernel must opt in: cudaFuncAttributeMaxDynamicSharedMemorySize);
// an error (more than the device allows) is cleared and returned, and the
// caller takes another path. The attribute only grows (under a lock, so that
// concurrent callers cannot leave it below what the cache says).
template <auto Kernel>
cudaError_t se_allow_dynamic_smem(size_t bytes) {
  static std::atomic<size_t> allowed[kMaxDevices];
  static std::mutex m;
  const cudaError_t pending = cudaPeekAtLastError();
  if (pending != cudaSuccess) return pending;  // not ours: reported, not cleared
  int dev = 0;
  cudaError_t err = cudaGetDevice(&dev);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // ours
    return err;
  }
  const bool cacheable = dev >= 0 && dev < kMaxDevices;
  if (cacheable && allowed[dev].load(std::memory_order_acquire) >= bytes) return cudaSuccess;
  std::lock_guard<std::mutex> lock(m);
  if (cacheable && allowed[dev].load(std::memory_order_relaxed) >= bytes) return cudaSuccess;
  err = cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(bytes));
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // ours
    return err;
  }
  if (cacheable) allowed[dev].store(bytes, std::memory_order_release);
  return cudaSuccess;
}

// Blocks of Kernel (with `threads` threads and `smem` bytes of dynamic shared
// memory) the current device can hold at once (occupancy x SMs), cached per
// device and per 8 KB of smem (up to 248 KB): what a cooperative grid may use.
template <auto Kernel>
cudaError_t se_resident_blocks(int threads, int* out, size_t smem = 0) {
  constexpr size_t kStep = 8192, kSteps = 32;
  static std::atomic<int> cache[kMaxDevices * kSteps];
  const cudaError_t pending = cudaPeekAtLastError();
  if (pending != cudaSuccess) return pending;  // not ours: reported, not cleared
  int dev = 0;
  cudaError_t err = cudaGetDevice(&dev);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // ours
    return err;
  }
  const size_t slot = smem % kStep == 0 && smem / kStep < kSteps && dev >= 0 && dev < kMaxDevices
                          ? static_cast<size_t>(dev) * kSteps + smem / kStep
                          : kMaxDevices * kSteps;  // not cached
  if (slot < kMaxDevices * kSteps) {
    const int cached = cache[slot].load(std::memory_order_relaxed);
    if (cached > 0) {
      *out = cached;
      return cudaSuccess;
    }
  }
  int sms = 0, per_sm = 0;
  err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  if (err == cudaSuccess) err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, Kernel, threads, smem);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // ours (no image for the device, ...)
    return err;
  }
  *out = per_sm * sms;
  if (slot < kMaxDevices * kSteps && *out > 0) cache[slot].store(*out, std::memory_order_relaxed);
  return cudaSuccess;
}

}  // namespace cuda_kernels
}  // namespace se_fused
