// CPU emulation of the CUDA features csrc/cuda/ uses (see README.md).
// include/cuda/se_sync.h (found before csrc/cuda/se_sync.h on the include
// path) includes this header in place of the CUDA runtime.
//
// A block runs on one OS thread: its CUDA threads are fibers (ucontext), each
// with its own stack, switched only where a CUDA thread waits (__syncthreads,
// the two halves of __shfl_down_sync, the grid barrier), so a barrier costs
// a few user-level switches instead of a futex storm. The device holds
// g_resident blocks at once over all launches from all host threads
// (streams): an ordinary launch runs its blocks as slots free up (no
// co-residency promised), a cooperative one takes all its slots at once
// (waiting for them, as the driver does) or is refused, and its blocks meet at
// the grid barrier. Memory is the host's (x86: TSO).
#pragma once
// Lambdas in the (anonymous-namespace) launch code capture kernel argument structs.
#pragma GCC diagnostic ignored "-Wsubobject-linkage"
#include <cuda_runtime_api.h>
#include <vector_types.h>
#include <vector_functions.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <ucontext.h>
#include <atomic>
#include <barrier>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#endif

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
#define __noinline__
#define __grid_constant__

namespace emu {
constexpr int kArenaBytes = 49152;        // static shared memory per block (the kernels use ~25 KB)
constexpr size_t kStackBytes = 128 << 10;  // per CUDA thread (fiber)
constexpr size_t kMaxDynamicSmem = 227 << 10;  // dynamic shared memory per block (an H100's opt-in limit)

inline thread_local const char* g_case = "";  // set by main.cpp, named in fatal errors

// A barrier among fibers of one OS thread: no atomics needed.
struct Bar {
  int expected = 0, count = 0;
  uint64_t gen = 0;
};

// One block slot: the OS thread's fibers, their stacks, the block's barrier,
// per-warp barriers and shuffle buffers, and its shared memory.
struct Slot {
  int threads;
  std::vector<ucontext_t> ctx;
  std::vector<std::unique_ptr<char[]>> stacks;
  std::vector<const Bar*> wait_bar;
  std::vector<uint64_t> wait_gen;
  std::vector<char> done;
  ucontext_t sched;
  Bar block_bar, grid_bar_local;
  std::vector<Bar> warp_bar;
  std::vector<uint64_t> shfl_buf;
  std::barrier<>* grid_bar = nullptr;  // cooperative launches: one arrival per block
  const std::function<void()>* fn = nullptr;
  int cur = 0;
#ifdef EMU_ASAN
  void* fake_stack = nullptr;
  const void* sched_bottom = nullptr;
  size_t sched_size = 0;
#endif
  std::unique_ptr<unsigned char[]> dyn;  // dynamic shared memory (cooperative launches with smem)
  size_t dyn_bytes = 0;
  alignas(64) char arena[kArenaBytes];
  explicit Slot(int n, size_t smem = 0)
      : threads(n), ctx(n), stacks(n), wait_bar(n, nullptr), wait_gen(n, 0), done(n, 0), warp_bar((n + 31) / 32),
        shfl_buf(n), dyn(smem ? new unsigned char[smem] : nullptr), dyn_bytes(smem) {
    for (auto& s : stacks) s.reset(new char[kStackBytes]);
    block_bar.expected = n;
    grid_bar_local.expected = n;
    for (auto& w : warp_bar) w.expected = 32;
  }
};
inline thread_local Slot* tl_slot = nullptr;
inline thread_local uint3 tl_tid, tl_bid;
inline thread_local uint3 tl_gdim;

// The current fiber gives the OS thread back to its slot's scheduler.
inline void yield_to_scheduler() {
  Slot* s = tl_slot;
  const int me = s->cur;
#ifdef EMU_ASAN
  void* fs = nullptr;
  __sanitizer_start_switch_fiber(&fs, s->sched_bottom, s->sched_size);
#endif
  swapcontext(&s->ctx[me], &s->sched);
#ifdef EMU_ASAN
  __sanitizer_finish_switch_fiber(fs, nullptr, nullptr);
#endif
}

inline void arrive(Bar& b) {
  Slot* s = tl_slot;
  const uint64_t g = b.gen;
  if (++b.count == b.expected) {
    b.count = 0;
    b.gen++;
    return;
  }
  s->wait_bar[s->cur] = &b;
  s->wait_gen[s->cur] = g;
  while (b.gen == g) yield_to_scheduler();
  s->wait_bar[s->cur] = nullptr;
}

inline void fiber_entry() {
  Slot* s = tl_slot;
#ifdef EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &s->sched_bottom, &s->sched_size);
#endif
  (*s->fn)();
  s->done[s->cur] = 1;
#ifdef EMU_ASAN
  __sanitizer_start_switch_fiber(nullptr, s->sched_bottom, s->sched_size);  // this fiber ends
#endif
  setcontext(&s->sched);
}

// Runs block `id` of a launch on this OS thread's slot: every fiber until all
// have returned; aborts if all wait and none can go on (a barrier not reached
// by every thread).
inline void run_block(Slot& s, int64_t id, int64_t grid, const std::function<void()>& fn) {
  tl_slot = &s;
  tl_bid = make_uint3((unsigned)id, 0, 0);
  tl_gdim = make_uint3((unsigned)grid, 1, 1);
  s.fn = &fn;
  for (int t = 0; t < s.threads; ++t) {
    s.done[t] = 0;
    s.wait_bar[t] = nullptr;
    getcontext(&s.ctx[t]);
    s.ctx[t].uc_stack.ss_sp = s.stacks[t].get();
    s.ctx[t].uc_stack.ss_size = kStackBytes;
    s.ctx[t].uc_link = nullptr;
    makecontext(&s.ctx[t], fiber_entry, 0);
  }
  int left = s.threads;
  while (left > 0) {
    bool progress = false;
    for (int t = 0; t < s.threads; ++t) {
      if (s.done[t]) continue;
      if (s.wait_bar[t] && s.wait_bar[t]->gen == s.wait_gen[t]) continue;
      s.cur = t;
      tl_tid = make_uint3((unsigned)t, 0, 0);
#ifdef EMU_ASAN
      __sanitizer_start_switch_fiber(&s.fake_stack, s.stacks[t].get(), kStackBytes);
#endif
      swapcontext(&s.sched, &s.ctx[t]);
#ifdef EMU_ASAN
      __sanitizer_finish_switch_fiber(s.fake_stack, nullptr, nullptr);
#endif
      progress = true;
      if (s.done[t]) --left;
    }
    if (!progress) {
      fprintf(stderr, "emu: block %ld deadlocked (a barrier some threads never reach) in case %s\n", (long)id, g_case);
      abort();
    }
  }
}

// The emulated device holds g_resident blocks at once over all launches.
inline int g_resident = 3;
inline bool g_coop_supported = true;  // false: cooperative launches fail (cudaErrorNotSupported)
inline std::mutex g_pool_m;
inline std::condition_variable g_pool_cv;
inline int g_pool_used = 0;
inline std::atomic<long> g_launches{0}, g_coop_launches{0}, g_coop_refused{0}, g_blocks{0};
inline std::atomic<int> g_peak_slots{0};

inline void acquire_slots(int k) {
  std::unique_lock<std::mutex> g(g_pool_m);
  g_pool_cv.wait(g, [&] { return g_pool_used + k <= g_resident; });
  g_pool_used += k;
  if (g_pool_used > g_peak_slots.load()) g_peak_slots.store(g_pool_used);
}
inline void release_slots(int k) {
  { std::lock_guard<std::mutex> g(g_pool_m); g_pool_used -= k; }
  g_pool_cv.notify_all();
}

template <typename T> T& shared() {
  static_assert(sizeof(T) <= kArenaBytes, "shared arena too small");
  return *reinterpret_cast<T*>(tl_slot->arena);
}
// The block's dynamic shared memory; a kernel that uses it must be launched with it.
inline unsigned char* dynamic_shared() {
  if (!tl_slot->dyn) { fprintf(stderr, "emu: dynamic shared memory used but the launch has none in case %s\n", g_case); abort(); }
  return tl_slot->dyn.get();
}

// An ordinary launch: min(grid, g_resident) workers (OS threads); a worker
// takes a device slot for each block it runs and frees it after, so blocks of
// concurrent launches interleave and no launch is promised co-residency.
template <typename F>
cudaError_t launch(int64_t grid, int threads, F f) {
  if (grid < 1 || threads < 1 || threads % 32) { fprintf(stderr, "emu: bad launch %ld x %d in case %s\n", (long)grid, threads, g_case); abort(); }
  g_launches++;
  const std::function<void()> fn = f;
  const int workers = (int)(grid < g_resident ? grid : g_resident);
  std::atomic<int64_t> next{0};
  std::vector<std::thread> ts;
  const char* c = g_case;
  for (int w = 0; w < workers; ++w)
    ts.emplace_back([&, c] {
      g_case = c;
      Slot slot(threads);
      for (;;) {
        acquire_slots(1);
        const int64_t id = next.fetch_add(1);
        if (id < grid) { g_blocks++; run_block(slot, id, grid, fn); }
        release_slots(1);
        if (id >= grid) break;
      }
    });
  for (auto& t : ts) t.join();
  return cudaSuccess;
}

// A cooperative launch: refused (nothing runs) when the device cannot hold the
// whole grid at once or does not support it; otherwise all blocks run at once.
// smem: dynamic shared memory per block (a fresh heap block per block slot,
// filled with 0xff so that a read of a byte no thread wrote shows as NaN).
template <typename F>
cudaError_t launch_cooperative(int64_t grid, int threads, F f, size_t smem = 0) {
  if (!g_coop_supported) { g_coop_refused++; return cudaErrorNotSupported; }
  if (grid > g_resident) { g_coop_refused++; return cudaErrorCooperativeLaunchTooLarge; }
  if (smem > kMaxDynamicSmem) { g_coop_refused++; return cudaErrorInvalidValue; }
  g_launches++;
  g_coop_launches++;
  const std::function<void()> fn = f;
  acquire_slots((int)grid);
  std::barrier<> grid_bar((std::ptrdiff_t)grid);
  std::vector<std::thread> ts;
  const char* c = g_case;
  for (int64_t b = 0; b < grid; ++b)
    ts.emplace_back([&, b, c] {
      g_case = c;
      Slot slot(threads, smem);
      if (smem) std::memset(slot.dyn.get(), 0xff, smem);
      slot.grid_bar = &grid_bar;
      g_blocks++;
      run_block(slot, b, grid, fn);
    });
  for (auto& t : ts) t.join();
  release_slots((int)grid);
  return cudaSuccess;
}

// The grid barrier: the block's threads meet; the last one to arrive waits
// for the other blocks (its OS thread blocks: every other fiber of the block
// is waiting anyway), then releases the block.
inline void grid_sync() {
  Slot* s = tl_slot;
  if (!s->grid_bar) { fprintf(stderr, "emu: grid sync outside a cooperative launch in case %s\n", g_case); abort(); }
  Bar& b = s->grid_bar_local;
  const uint64_t g = b.gen;
  if (++b.count == b.expected) {
    s->grid_bar->arrive_and_wait();
    b.count = 0;
    b.gen++;
    return;
  }
  s->wait_bar[s->cur] = &b;
  s->wait_gen[s->cur] = g;
  while (b.gen == g) yield_to_scheduler();
  s->wait_bar[s->cur] = nullptr;
}
}  // namespace emu

#define threadIdx (emu::tl_tid)
#define blockIdx (emu::tl_bid)
#define gridDim (emu::tl_gdim)

inline void __syncthreads() { emu::arrive(emu::tl_slot->block_bar); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
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
  emu::Slot* s = emu::tl_slot;
  const int base = threadIdx.x - lane;
  uint64_t b = 0; std::memcpy(&b, &v, sizeof(T));
  s->shfl_buf[threadIdx.x] = b;
  emu::arrive(s->warp_bar[threadIdx.x / 32]);
  const int src = lane + off;
  T r = v;
  if (src < 32 && src / width == lane / width) std::memcpy(&r, &s->shfl_buf[base + src], sizeof(T));
  emu::arrive(s->warp_bar[threadIdx.x / 32]);
  return r;
}
inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned s) {
  return (unsigned)((((uint64_t)hi << 32) | lo) >> (s & 31));
}
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline double __hiloint2double(int hi, int lo) {
  uint64_t b = ((uint64_t)(uint32_t)hi << 32) | (uint32_t)lo; double d; std::memcpy(&d, &b, 8); return d;
}
inline int __double2loint(double d) { uint64_t b; std::memcpy(&b, &d, 8); return (int)(uint32_t)b; }
inline int __double2hiint(double d) { uint64_t b; std::memcpy(&b, &d, 8); return (int)(uint32_t)(b >> 32); }
using std::fma;

