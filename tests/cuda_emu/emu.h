// CPU emulation of the few CUDA features csrc/cuda/se_block.cu uses (see
// README.md). gen.py replaces the kernel's `#include <cuda_runtime.h>` by this
// header. Each CUDA thread is a std::thread; a block has a std::barrier
// (__syncthreads) and a shared-memory arena; a warp has a barrier and an
// exchange buffer for __shfl_down_sync. All blocks of a launch run at once
// (every launched block is "resident"), so the kernel's inter-block spin-wait
// really waits on other threads. Memory is the host's (x86: TSO), atomics
// are std::atomic_ref.
#pragma once
// Lambdas in the (anonymous-namespace) launch code capture kernel argument structs.
#pragma GCC diagnostic ignored "-Wsubobject-linkage"
#include <cuda_runtime_api.h>
#include <vector_types.h>
#include <vector_functions.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <system_error>
#include <thread>
#include <vector>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#undef __device__
#undef __global__
#undef __forceinline__
#undef __host__
#undef __grid_constant__
#define __device__
#define __global__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __grid_constant__

namespace emu {
constexpr int kArenas = 4;
constexpr int kArenaBytes = 32768;
struct Warp {
  std::barrier<> bar{32};
  uint64_t buf[32];
};
struct Block {
  std::barrier<> bar;
  std::vector<Warp> warps;
  alignas(64) char arena[kArenas][kArenaBytes];
  explicit Block(int n) : bar(n), warps((n + 31) / 32) {}
};
inline thread_local Block* tl_block = nullptr;
inline thread_local uint3 tl_tid, tl_bid;
inline thread_local uint3 tl_gdim;

// Blocks the emulated device can hold at once: the launcher's
// occupancy x SMs (reported as g_resident SMs x 1 block per SM).
inline int g_resident = 3;
inline std::atomic<int> g_dev{1000};      // a new device id per call: defeats the launcher's cache
inline std::atomic<long> g_polls{0};      // __nanosleep calls = spin-wait polls that found no flag
inline long g_last_tiles = 0, g_last_grid = 0, g_max_tiles = 0, g_max_grid = 0;
inline int g_peak_threads = 0;
inline const char* g_case = "";              // set by main.cpp, named in fatal errors

inline void note_main_launch(int64_t tiles, int64_t grid) {
  g_last_tiles = tiles;
  g_last_grid = grid;
  if (tiles > g_max_tiles) g_max_tiles = tiles;
  if (grid > g_max_grid) g_max_grid = grid;
}

template <typename T> T& shared(int id) {
  static_assert(sizeof(T) <= kArenaBytes, "shared arena too small");
  return *reinterpret_cast<T*>(tl_block->arena[id]);
}
template <typename F>
void launch(int64_t grid, int threads, F fn) {
  if (grid < 1 || threads < 1 || threads % 32) { fprintf(stderr, "emu: bad launch %ld x %d in case %s\n", (long)grid, threads, g_case); abort(); }
  std::vector<std::unique_ptr<Block>> blocks;
  std::vector<std::thread> ts;
  for (int64_t b = 0; b < grid; ++b) blocks.emplace_back(new Block(threads));
  const int64_t total = grid * threads;
  if (total > g_peak_threads) g_peak_threads = (int)total;
  ts.reserve(total);
  try {
    for (int64_t b = 0; b < grid; ++b)
      for (int t = 0; t < threads; ++t)
        ts.emplace_back([&, b, t] {
          tl_block = blocks[b].get();
          tl_tid = make_uint3(t, 0, 0);
          tl_bid = make_uint3((unsigned)b, 0, 0);
          tl_gdim = make_uint3((unsigned)grid, 1, 1);
          fn();
        });
  } catch (const std::system_error& e) {  // the started threads would wait forever at a barrier
    fprintf(stderr, "emu: could not start thread %zu of %ld in case %s: %s\n", ts.size(), (long)total, g_case, e.what());
    _Exit(3);
  }
  for (auto& t : ts) t.join();
}
}  // namespace emu

#define threadIdx (emu::tl_tid)
#define blockIdx (emu::tl_bid)
#define gridDim (emu::tl_gdim)

inline void __syncthreads() { emu::tl_block->bar.arrive_and_wait(); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __nanosleep(unsigned) { emu::g_polls.fetch_add(1, std::memory_order_relaxed); std::this_thread::yield(); }
inline void __trap() { fprintf(stderr, "emu: __trap (spin-wait watchdog) in case %s\n", emu::g_case); abort(); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return std::atomic_ref<unsigned>(*p).fetch_add(v); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
  return std::atomic_ref<unsigned long long>(*p).fetch_add(v);
}
// A 16-byte vector access to an address that is not 16-byte aligned faults on
// the GPU ("misaligned address"); here it aborts.
inline void emu_check_align(const void* p) {
  if ((uintptr_t)p & 15) { fprintf(stderr, "emu: misaligned 16-byte access %p in case %s\n", p, emu::g_case); abort(); }
}
template <typename T> T __ldcg(const T* p) { if constexpr (sizeof(T) == 16) emu_check_align(p); return *p; }
template <typename T> T __ldcs(const T* p) { if constexpr (sizeof(T) == 16) emu_check_align(p); return *p; }
template <typename T> void __stcs(T* p, T v) { if constexpr (sizeof(T) == 16) emu_check_align(p); *p = v; }
// All 32 lanes of the warp must call it (as on the GPU with a full mask).
template <typename T>
T __shfl_down_sync(unsigned, T v, int off, int width) {
  static_assert(sizeof(T) <= 8, "");
  const int lane = threadIdx.x % 32;
  emu::Warp& w = emu::tl_block->warps[threadIdx.x / 32];
  uint64_t b = 0; std::memcpy(&b, &v, sizeof(T));
  w.buf[lane] = b;
  w.bar.arrive_and_wait();
  const int src = lane + off;
  T r = v;
  if (src < 32 && src / width == lane / width) std::memcpy(&r, &w.buf[src], sizeof(T));
  w.bar.arrive_and_wait();
  return r;
}
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline double __hiloint2double(int hi, int lo) {
  uint64_t b = ((uint64_t)(uint32_t)hi << 32) | (uint32_t)lo; double d; std::memcpy(&d, &b, 8); return d;
}
inline int __double2loint(double d) { uint64_t b; std::memcpy(&b, &d, 8); return (int)(uint32_t)b; }
inline int __double2hiint(double d) { uint64_t b; std::memcpy(&b, &d, 8); return (int)(uint32_t)(b >> 32); }
using std::fma;

// Runtime API: the device has g_resident SMs and every kernel fits 1 block per SM.
inline cudaError_t emu_cudaGetDevice(int* d) { *d = emu::g_dev++; return cudaSuccess; }
inline cudaError_t emu_cudaDeviceGetAttribute(int* v, cudaDeviceAttr, int) { *v = emu::g_resident; return cudaSuccess; }
template <typename K> cudaError_t emu_cudaFuncSetAttribute(K, cudaFuncAttribute, int) { return cudaSuccess; }
template <typename K> cudaError_t emu_cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* v, K, int, size_t) { *v = 1; return cudaSuccess; }
inline cudaError_t emu_cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t) { std::memset(p, v, n); return cudaSuccess; }
inline cudaError_t emu_cudaGetLastError() { return cudaSuccess; }
#define cudaGetDevice emu_cudaGetDevice
#define cudaDeviceGetAttribute emu_cudaDeviceGetAttribute
#define cudaFuncSetAttribute emu_cudaFuncSetAttribute
#define cudaOccupancyMaxActiveBlocksPerMultiprocessor emu_cudaOccupancyMaxActiveBlocksPerMultiprocessor
#define cudaMemsetAsync emu_cudaMemsetAsync
#define cudaGetLastError emu_cudaGetLastError
