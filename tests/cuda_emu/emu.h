// CPU emulation of the CUDA device that csrc/cuda/ runs on (see README.md):
// the execution model (blocks, threads, barriers, shuffles, shared memory,
// the grid barrier) and the emulated device the runtime in
// include/cuda_runtime.h launches on. include/cuda/se_sync.h (found before
// csrc/cuda/se_sync.h on the include path) wraps the real csrc/cuda/se_sync.h.
//
// A block runs on one OS thread: its CUDA threads are fibers (ucontext), each
// with its own stack, switched only where a CUDA thread waits (__syncthreads,
// the two halves of __shfl_down_sync, the grid barrier). Between two such
// points a fiber runs alone, and the order in which the scheduler runs the
// fibers is adversarial: forward, reverse, a seeded permutation redrawn at
// every pass, or one that also starves a random half of the warps, chosen
// per block from a launch counter and EMU_SCHED_SEED, so that a missing
// barrier or a write-after-read race on shared memory gives results that
// change from launch to launch (every pair of threads runs in both orders
// over a few launches). The device holds a number of blocks at
// once over all launches from all host threads (streams): an ordinary launch
// runs its blocks as slots free up (no co-residency promised), a cooperative
// one takes all its slots at once (waiting for them, as the driver does) or is
// refused, and its blocks meet at the grid barrier. Memory is the host's
// (x86: TSO). Thread-block clusters (GPCs, cluster launches and barriers) and
// cp.async copies: emu_cluster.h, included at the end.
#pragma once
// Lambdas in the (anonymous-namespace) launch code capture kernel argument structs.
#pragma GCC diagnostic ignored "-Wsubobject-linkage"
#include <cuda_runtime_api.h>
#include <vector_types.h>
#include <vector_functions.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <ucontext.h>
#include <array>
#include <atomic>
#include <barrier>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <source_location>
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

// gridDim and blockDim are variables, not macros: cudaLaunchConfig_t has fields of those names.
inline thread_local uint3 gridDim, blockDim;

namespace emu {
constexpr int kArenaBytes = 49152;        // static shared memory per block (the kernels use ~25 KB)
constexpr size_t kStackBytes = 128 << 10;  // per CUDA thread (fiber)
constexpr size_t kMaxDynamicSmem = 227 << 10;  // default per-block opt-in limit (an H100's)
constexpr size_t kDefaultSmemPerBlock = 48 << 10;  // without the opt-in: static + dynamic
constexpr int kMaxThreadsPerBlock = 1024;

inline thread_local const char* g_case = "";  // set by main.cpp, named in fatal errors

[[noreturn]] inline void fatal(const char* what) {
  fprintf(stderr, "emu: %s in case %s\n", what, g_case);
  fflush(stderr);
  abort();
}

// ------------------------------------------------------------ the device
// The emulated device: g_resident block slots (main.cpp's knob) as g_resident
// SMs of one block each, unless g_sms > 0: then g_sms SMs of up to
// g_blocks_per_sm blocks. Every SM has g_threads_per_sm threads and
// g_smem_per_sm bytes of shared memory (1 KB reserved per block, as on
// sm_80/sm_90); a block may opt in to g_smem_optin bytes. Each distinct
// setting is a distinct device (cudaGetDevice returns its index), so that the
// per-device caches of se_sync.h stay right while a test changes the device.
inline int g_resident = 3;
inline bool g_coop_supported = true;  // false: cooperative launches fail (cudaErrorNotSupported)
inline int g_sms = 0;
inline int g_blocks_per_sm = 1;
inline int g_threads_per_sm = 2048;
inline size_t g_smem_per_sm = 228 << 10;
inline size_t g_smem_optin = kMaxDynamicSmem;
inline bool g_no_kernel_image = false;  // the build has no kernel for this device (every kernel call fails)
inline int g_cc = 90;                   // compute capability x 10: cluster launches need 90 (sm_90) or more
inline int g_sms_per_gpc = 0;           // SMs per GPC (the last GPC may have fewer); 0: every SM in one GPC
inline int g_binary_version = 90;       // the kernels' image (cudaFuncGetAttributes); < 90: a pre-Hopper image
constexpr size_t kSmemReservedPerBlock = 1024;

struct Device {
  int sms, blocks_per_sm, threads_per_sm;
  size_t smem_per_sm, smem_optin;
  bool coop, image;
  int cc, sms_per_gpc, binary;
  bool operator==(const Device&) const = default;
  int slots() const { return sms * blocks_per_sm; }
  int gpcs() const { return sms_per_gpc > 0 ? (sms + sms_per_gpc - 1) / sms_per_gpc : 1; }
  int gpc_sms(int g) const { return std::min(sms_per_gpc, sms - g * sms_per_gpc); }
};
inline Device current_device() {
  const int sms = g_sms > 0 ? g_sms : g_resident;
  return Device{sms, g_sms > 0 ? g_blocks_per_sm : 1, g_threads_per_sm, g_smem_per_sm, g_smem_optin,
                g_coop_supported, !g_no_kernel_image, g_cc, g_sms_per_gpc > 0 ? std::min(g_sms_per_gpc, sms) : sms,
                g_binary_version};
}
inline std::mutex g_dev_m;
inline std::vector<Device> g_devices;
inline int device_index(const Device& d) {
  std::lock_guard<std::mutex> g(g_dev_m);
  for (size_t i = 0; i < g_devices.size(); ++i)
    if (g_devices[i] == d) return (int)i;
  g_devices.push_back(d);
  return (int)g_devices.size() - 1;
}
inline bool device_of(int dev, Device* out) {
  std::lock_guard<std::mutex> g(g_dev_m);
  if (dev < 0 || dev >= (int)g_devices.size()) return false;
  *out = g_devices[dev];
  return true;
}

// What the runtime knows of a kernel (a __global__ function): its static
// shared memory (learned when its first block runs: SE_SHARED's type) and, per
// device, cudaFuncAttributeMaxDynamicSharedMemorySize (-1: not set) and
// cudaFuncAttributeNonPortableClusterSizeAllowed.
struct KernelInfo {
  std::atomic<size_t> static_smem{0};
  std::atomic<bool> static_known{false};
  std::mutex m;
  std::map<int, int> max_dyn, nonportable;
  int max_dyn_attr(int dev) {
    std::lock_guard<std::mutex> g(m);
    auto it = max_dyn.find(dev);
    return it == max_dyn.end() ? -1 : it->second;
  }
};
inline std::mutex g_kernels_m;
inline std::map<const void*, std::unique_ptr<KernelInfo>> g_kernels;
inline KernelInfo* kernel_info(const void* k) {
  std::lock_guard<std::mutex> g(g_kernels_m);
  auto& p = g_kernels[k];
  if (!p) p.reset(new KernelInfo);
  return p.get();
}
// Dynamic shared memory a launch of k may take on dev: the attribute if set,
// else 48 KB less the static shared memory.
inline size_t max_dynamic_smem(KernelInfo* ki, int dev) {
  const int a = ki->max_dyn_attr(dev);
  if (a >= 0) return (size_t)a;
  const size_t st = ki->static_smem.load();
  return st < kDefaultSmemPerBlock ? kDefaultSmemPerBlock - st : 0;
}
// Blocks of k (threads, dynamic smem) one SM of d holds.
inline int occupancy(const Device& d, KernelInfo* ki, int threads, size_t smem) {
  if (threads < 1 || threads > kMaxThreadsPerBlock) return 0;
  const int warps = (threads + 31) / 32;
  int n = d.blocks_per_sm;
  n = std::min(n, d.threads_per_sm / (warps * 32));
  const size_t per_block = ki->static_smem.load() + smem + kSmemReservedPerBlock;
  n = std::min<int64_t>(n, (int64_t)(d.smem_per_sm / per_block));
  return n > 0 ? n : 0;
}

// ------------------------------------------------------------- errors
// The runtime's error state: the last error of each host thread (cleared by
// cudaGetLastError, not by cudaPeekAtLastError) and the context's sticky error
// (a kernel fault on a GPU: every later call returns it and it is never
// cleared). Here a kernel fault aborts the process instead; set_sticky()
// models one (as if an earlier kernel had faulted).
inline thread_local cudaError_t tl_last_error = cudaSuccess;
inline std::atomic<int> g_sticky{0};
inline cudaError_t fail(cudaError_t e) {
  if (e != cudaSuccess) tl_last_error = e;
  return e;
}
inline cudaError_t sticky() { return (cudaError_t)g_sticky.load(); }
inline void set_sticky(cudaError_t e) { g_sticky.store((int)e); }

// ------------------------------------------------------------- schedules
// EMU_SCHED: forward, reverse, random, starve or mixed (the default: per
// block one of the four, from the launch number, the block and the seed);
// EMU_SCHED_SEED: the seed (default 0). random redraws the order at every
// pass; starve also holds back a random half of the warps, run only when no
// other thread can go on (a warp that reads what others overwrite a few
// shuffles later, with no barrier between, then reads it late).
inline int sched_mode() {  // -1 mixed, 0 forward, 1 reverse, 2 random, 3 starve
  static const int m = [] {
    const char* e = getenv("EMU_SCHED");
    if (!e || !*e || !strcmp(e, "mixed")) return -1;
    if (!strcmp(e, "forward")) return 0;
    if (!strcmp(e, "reverse")) return 1;
    if (!strcmp(e, "random")) return 2;
    if (!strcmp(e, "starve")) return 3;
    fprintf(stderr, "emu: EMU_SCHED must be forward, reverse, random, starve or mixed, not %s\n", e);
    exit(64);
  }();
  return m;
}
inline uint64_t sched_seed() {
  static const uint64_t s = [] { const char* e = getenv("EMU_SCHED_SEED"); return e ? strtoull(e, nullptr, 0) : 0ull; }();
  return s;
}
inline uint64_t splitmix(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
inline std::atomic<uint64_t> g_launch_counter{0};

// ------------------------------------------------------------- blocks
// A barrier among fibers of one OS thread: no atomics needed.
struct Bar {
  int expected = 0, count = 0;
  uint64_t gen = 0;
};
// A shuffle in progress in a warp: its mask and call site (every lane the
// mask names must come to the same one), the lanes that arrived. A warp may
// have several at once, of disjoint masks (e.g. each half-warp its own).
struct Shfl {
  bool open = false;
  unsigned mask = 0, arrived = 0;
  std::source_location loc;
  Bar bar;
};

struct ClusterRun;  // emu_cluster.h
struct CpCopy {     // a cp.async copy not yet done: 16 bytes, of commit group `group` (emu_cluster.h)
  void* dst;
  const void* src;
  uint64_t group;
};

// One block slot: the OS thread's fibers, their stacks, the block's barrier,
// per-warp shuffle state, its shared memory, its cluster, per thread its cp.async copies.
struct Slot {
  int threads;
  std::vector<ucontext_t> ctx;
  std::vector<std::unique_ptr<char[]>> stacks;
  std::vector<const Bar*> wait_bar;
  std::vector<uint64_t> wait_gen;
  std::vector<char> done;
  std::vector<int> order;
  std::vector<char> held;  // starve: run only when no other fiber can
  ucontext_t sched;
  Bar block_bar, grid_bar_local, cluster_bar_local;
  static constexpr int kRounds = 8;  // disjoint shuffles open at once per warp
  std::vector<std::array<Shfl, kRounds>> shfl;
  std::vector<uint64_t> shfl_buf;
  std::barrier<>* grid_bar = nullptr;  // cooperative launches: one arrival per block
  ClusterRun* cluster = nullptr;       // cluster launches: the block's cluster
  int cluster_rank = 0;
  std::vector<std::vector<CpCopy>> cp;  // per thread: its pending cp.async copies, in issue order
  std::vector<uint64_t> cp_groups;      // per thread: commit groups so far
  const std::function<void()>* fn = nullptr;
  int cur = 0;
#ifdef EMU_ASAN
  void* fake_stack = nullptr;
  const void* sched_bottom = nullptr;
  size_t sched_size = 0;
#endif
  KernelInfo* kernel = nullptr;
  size_t static_limit = kArenaBytes;  // the static shared memory the launch's checks allowed
  size_t static_used = 0;
  struct Free { void operator()(unsigned char* p) const { ::operator delete[](p, std::align_val_t(128)); } };
  std::unique_ptr<unsigned char[], Free> dyn;  // dynamic shared memory, exactly the launch's bytes
  size_t dyn_bytes = 0;
  alignas(128) char arena[kArenaBytes];
  explicit Slot(int n, size_t smem = 0)
      : threads(n), ctx(n), stacks(n), wait_bar(n, nullptr), wait_gen(n, 0), done(n, 0), order(n), held(n, 0),
        shfl((n + 31) / 32), shfl_buf(n), cp(n), cp_groups(n, 0),
        dyn(smem ? static_cast<unsigned char*>(::operator new[](smem, std::align_val_t(128))) : nullptr),
        dyn_bytes(smem) {
    for (auto& s : stacks) s.reset(new char[kStackBytes]);
    block_bar.expected = grid_bar_local.expected = cluster_bar_local.expected = n;
  }
  int warp_lanes(int w) const { return std::min(32, threads - 32 * w); }
};
inline thread_local Slot* tl_slot = nullptr;
inline thread_local uint3 tl_tid, tl_bid;
inline void check_exit_cp_async(Slot& s, int t);  // emu_cluster.h

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

// Waits until b.expected fibers have arrived; true for the last to arrive.
inline bool arrive(Bar& b) {
  Slot* s = tl_slot;
  const uint64_t g = b.gen;
  if (++b.count == b.expected) {
    b.count = 0;
    b.gen++;
    return true;
  }
  s->wait_bar[s->cur] = &b;
  s->wait_gen[s->cur] = g;
  while (b.gen == g) yield_to_scheduler();
  s->wait_bar[s->cur] = nullptr;
  return false;
}

inline void describe_shuffle(char* buf, size_t n, const Shfl& sh) {
  snprintf(buf, n, "%s:%u (mask 0x%08x)", sh.loc.file_name(), (unsigned)sh.loc.line(), sh.mask);
}

// A lane that returns while its warp's open shuffle names it: that shuffle never completes.
inline void check_exit_in_shuffle(Slot& s, int t) {
  const int lane = t % 32;
  for (const Shfl& sh : s.shfl[t / 32])
    if (sh.open && (sh.mask >> lane & 1u) && !(sh.arrived >> lane & 1u)) {
      char where[512], msg[700];
      describe_shuffle(where, sizeof where, sh);
      snprintf(msg, sizeof msg,
               "shuffle mask names an exited lane: thread %d returned while warp %d waits in the shuffle at %s", t,
               t / 32, where);
      fatal(msg);
    }
}

inline void fiber_entry() {
  Slot* s = tl_slot;
#ifdef EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &s->sched_bottom, &s->sched_size);
#endif
  (*s->fn)();
  s->done[s->cur] = 1;
  check_exit_in_shuffle(*s, s->cur);
  check_exit_cp_async(*s, s->cur);
#ifdef EMU_ASAN
  __sanitizer_start_switch_fiber(nullptr, s->sched_bottom, s->sched_size);  // this fiber ends
#endif
  setcontext(&s->sched);
}

[[noreturn]] inline void deadlock(Slot& s, int64_t id) {
  char msg[1024];
  int at_sync = 0, at_grid = 0, at_cluster = 0, exited = 0;
  for (int t = 0; t < s.threads; ++t) {
    if (s.done[t]) exited++;
    else if (s.wait_bar[t] == &s.block_bar) at_sync++;
    else if (s.wait_bar[t] == &s.grid_bar_local) at_grid++;
    else if (s.wait_bar[t] == &s.cluster_bar_local) at_cluster++;
  }
  int len = snprintf(msg, sizeof msg,
                     "block %ld deadlocked (a barrier or shuffle some threads never reach): %d threads at __syncthreads, "
                     "%d at the grid barrier, %d at the cluster barrier, %d returned",
                     (long)id, at_sync, at_grid, at_cluster, exited);
  for (size_t w = 0; w < s.shfl.size() && len < 900; ++w)
    for (const Shfl& sh : s.shfl[w])
      if (sh.open && len < 900) {
        char where[400];
        describe_shuffle(where, sizeof where, sh);
        len += snprintf(msg + len, sizeof msg - len, "; warp %zu in the shuffle at %s, lanes 0x%08x never came", w, where,
                        sh.mask & ~sh.arrived);
      }
  fatal(msg);
}

// Runs block `id` of a launch on this OS thread's slot: every fiber until all
// have returned, in the launch's adversarial order; aborts if all wait and
// none can go on (a barrier or shuffle not reached by every thread it names).
inline void run_block(Slot& s, int64_t id, int64_t grid, const std::function<void()>& fn, uint64_t launch = 0) {
  tl_slot = &s;
  tl_bid = make_uint3((unsigned)id, 0, 0);
  ::gridDim = make_uint3((unsigned)grid, 1, 1);
  ::blockDim = make_uint3((unsigned)s.threads, 1, 1);
  s.fn = &fn;
  s.static_used = 0;
  // Shared memory starts as garbage on a GPU: 0xff bytes (NaN) here, every block.
  std::memset(s.arena, 0xff, s.kernel && s.kernel->static_known.load() ? s.kernel->static_smem.load() : kArenaBytes);
  if (s.dyn) std::memset(s.dyn.get(), 0xff, s.dyn_bytes);
  for (auto& w : s.shfl)
    for (Shfl& sh : w) sh.open = false;
  s.block_bar.count = s.grid_bar_local.count = s.cluster_bar_local.count = 0;
  for (int t = 0; t < s.threads; ++t) {
    s.done[t] = 0;
    s.wait_bar[t] = nullptr;
    s.cp[t].clear();
    s.cp_groups[t] = 0;
    getcontext(&s.ctx[t]);
    s.ctx[t].uc_stack.ss_sp = s.stacks[t].get();
    s.ctx[t].uc_stack.ss_size = kStackBytes;
    s.ctx[t].uc_link = nullptr;
    makecontext(&s.ctx[t], fiber_entry, 0);
  }
  // mixed: forward, reverse, random, starve, shifting by one per launch and block.
  uint64_t rng = sched_seed() * 0x9e3779b97f4a7c15ull ^ (launch << 24) ^ (uint64_t)id;
  const int mode = sched_mode() >= 0 ? sched_mode() : (int)((sched_seed() + launch + (uint64_t)id) % 4);
  const int n = s.threads;
  // starve holds back whole warps (a warp's lanes meet at every shuffle, so
  // holding back single lanes would hold back their warps' others too).
  uint64_t held_warps = mode == 3 ? splitmix(rng) : 0;
  for (int i = 0; i < n; ++i) {
    s.order[i] = mode == 1 ? n - 1 - i : i;
    s.held[i] = (char)(held_warps >> (i / 32 % 64) & 1);
  }
  int left = n;
  while (left > 0) {
    if (mode >= 2)
      for (int i = n - 1; i > 0; --i) std::swap(s.order[i], s.order[splitmix(rng) % (uint64_t)(i + 1)]);
    // Pass 0 runs every fiber that can go on but the held-back ones (starve),
    // pass 1 those only when no other could.
    bool progress = false;
    for (int pass = 0; pass < 2 && !progress; ++pass)
      for (int i = 0; i < n; ++i) {
        const int t = s.order[i];
        if (s.done[t] || s.held[t] != pass * (mode == 3)) continue;
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
    if (!progress) deadlock(s, id);
  }
  if (s.kernel && s.static_used) {
    size_t cur = s.kernel->static_smem.load();
    while (cur < s.static_used && !s.kernel->static_smem.compare_exchange_weak(cur, s.static_used)) {}
    s.kernel->static_known.store(true);
  }
}

// ------------------------------------------------------------- launches
// The device's block slots in use, in all and per GPC (an SM's slots are its GPC's).
inline std::mutex g_pool_m;
inline std::condition_variable g_pool_cv;
inline int g_pool_used = 0;
inline std::vector<int> g_gpc_used;
inline std::atomic<long> g_launches{0}, g_coop_launches{0}, g_coop_refused{0}, g_blocks{0};
inline std::atomic<int> g_peak_slots{0};

// Takes k slots at once (waiting for them), all in one GPC when one_gpc (a
// cluster: the fullest GPC that has room), else each where most are free; k
// above what the device (or a GPC) holds waits for an empty device. Returns the
// slots taken per GPC, for release_slots.
inline std::vector<int> acquire_slots(int k, bool one_gpc = false) {
  std::unique_lock<std::mutex> g(g_pool_m);
  std::vector<int> take;
  g_pool_cv.wait(g, [&] {
    const Device d = current_device();
    if ((int)g_gpc_used.size() < d.gpcs()) g_gpc_used.resize(d.gpcs(), 0);
    take.assign(g_gpc_used.size(), 0);
    auto room = [&](int i) {
      return i < d.gpcs() ? std::max(0, d.gpc_sms(i) * d.blocks_per_sm - g_gpc_used[i] - take[i]) : 0;
    };
    int best = -1, total = 0;
    for (int i = 0; i < (int)take.size(); ++i) {
      total += room(i);
      if (room(i) >= k && (best < 0 || room(i) < room(best))) best = i;
    }
    const bool too_big = k > (one_gpc ? d.sms_per_gpc * d.blocks_per_sm : d.slots());
    if (too_big) return g_pool_used == 0 && (take[0] = k);
    if (one_gpc) return best >= 0 && (take[best] = k);
    if (total < k) return false;
    for (int j = 0; j < k; ++j) {
      int m = 0;
      for (int i = 1; i < (int)take.size(); ++i) if (room(i) > room(m)) m = i;
      take[m]++;
    }
    return true;
  });
  for (size_t i = 0; i < take.size(); ++i) g_gpc_used[i] += take[i];
  g_pool_used += k;
  if (g_pool_used > g_peak_slots.load()) g_peak_slots.store(g_pool_used);
  return take;
}
inline void release_slots(const std::vector<int>& take) {
  {
    std::lock_guard<std::mutex> g(g_pool_m);
    for (size_t i = 0; i < take.size(); ++i) g_gpc_used[i] -= take[i], g_pool_used -= take[i];
  }
  g_pool_cv.notify_all();
}

// A launch of kernel k (its KernelInfo) as the runtime checked it: grid x
// threads, smem dynamic bytes, on device d (index dev).
struct LaunchPlan {
  KernelInfo* ki;
  Device d;
  int dev;
  int64_t grid;
  int threads;
  size_t smem;
  bool coop;
  int cluster = 0;  // blocks per cluster in a cluster launch (emu_cluster.h), else 0
};
inline cudaError_t check_cluster(LaunchPlan* p, dim3 cluster);  // emu_cluster.h
inline void run_cluster_launch(const LaunchPlan& p, const std::function<void()>& fn, uint64_t launch);

// The launch checks of the runtime (cudaLaunchKernelEx, <<<>>>): an error and
// nothing runs, or cudaSuccess and the plan. cluster: the launch's
// cudaLaunchAttributeClusterDimension, if it has one.
inline cudaError_t check_launch(const void* k, dim3 grid, dim3 block, size_t smem, bool coop, LaunchPlan* p,
                                const dim3* cluster = nullptr) {
  if (sticky()) return sticky();
  const uint64_t nthreads = (uint64_t)block.x * block.y * block.z;
  if (nthreads == 0 || nthreads > (uint64_t)kMaxThreadsPerBlock || block.x > 1024 || block.y > 1024 || block.z > 64)
    return cudaErrorInvalidConfiguration;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535)
    return cudaErrorInvalidConfiguration;
  if (grid.y != 1 || grid.z != 1 || block.y != 1 || block.z != 1) fatal("the emulator runs 1-D grids and blocks only");
  p->d = current_device();
  p->dev = device_index(p->d);
  if (!p->d.image) return cudaErrorNoKernelImageForDevice;
  p->ki = kernel_info(k);
  p->grid = grid.x;
  p->threads = (int)block.x;
  p->smem = smem;
  p->coop = coop;
  if (smem > max_dynamic_smem(p->ki, p->dev) || p->ki->static_smem.load() + smem > p->d.smem_optin)
    return cudaErrorInvalidValue;
  if (coop) {
    if (!p->d.coop) return cudaErrorNotSupported;
    if ((int64_t)grid.x > (int64_t)occupancy(p->d, p->ki, p->threads, smem) * p->d.sms)
      return cudaErrorCooperativeLaunchTooLarge;
  }
  return cluster ? check_cluster(p, *cluster) : cudaSuccess;
}

inline void prepare_slot(Slot& slot, const LaunchPlan& p) {
  slot.kernel = p.ki;
  // What static shared memory the block may declare, given the checks passed.
  const int a = p.ki->max_dyn_attr(p.dev);
  slot.static_limit = a >= 0 ? (p.d.smem_optin > (size_t)a ? p.d.smem_optin - a : 0)
                             : (kDefaultSmemPerBlock > p.smem ? kDefaultSmemPerBlock - p.smem : 0);
  if (slot.static_limit > (size_t)kArenaBytes) slot.static_limit = kArenaBytes;
}

// Runs a checked launch: an ordinary one on min(grid, resident) workers (OS
// threads), each taking a device slot for each block it runs and freeing it
// after, so blocks of concurrent launches interleave and no launch is promised
// co-residency; a cooperative one takes all its slots at once and its blocks
// meet at the grid barrier; a cluster launch: emu_cluster.h.
inline void run_launch(const LaunchPlan& p, const std::function<void()>& fn) {
  g_launches++;
  const uint64_t launch = g_launch_counter.fetch_add(1);
  if (p.cluster) return run_cluster_launch(p, fn, launch);
  const char* c = g_case;
  std::vector<std::thread> ts;
  if (!p.coop) {
    const int64_t fit = std::max<int64_t>(1, (int64_t)occupancy(p.d, p.ki, p.threads, p.smem) * p.d.sms);
    const int workers = (int)std::min<int64_t>(p.grid, fit);
    std::atomic<int64_t> next{0};
    for (int w = 0; w < workers; ++w)
      ts.emplace_back([&, c] {
        g_case = c;
        Slot slot(p.threads, p.smem);
        prepare_slot(slot, p);
        for (;;) {
          const std::vector<int> taken = acquire_slots(1);
          const int64_t id = next.fetch_add(1);
          if (id < p.grid) { g_blocks++; run_block(slot, id, p.grid, fn, launch); }
          release_slots(taken);
          if (id >= p.grid) break;
        }
      });
    for (auto& t : ts) t.join();
    return;
  }
  g_coop_launches++;
  const std::vector<int> taken = acquire_slots((int)p.grid);
  std::barrier<> grid_bar((std::ptrdiff_t)p.grid);
  for (int64_t b = 0; b < p.grid; ++b)
    ts.emplace_back([&, b, c] {
      g_case = c;
      Slot slot(p.threads, p.smem);
      prepare_slot(slot, p);
      slot.grid_bar = &grid_bar;
      g_blocks++;
      run_block(slot, b, p.grid, fn, launch);
    });
  for (auto& t : ts) t.join();
  release_slots(taken);
}

// Checks and runs a launch of kernel k (identity for the runtime's per-kernel
// state); records an error as the runtime does.
inline std::atomic<long> g_cluster_launches{0}, g_cluster_refused{0};
inline std::atomic<long> g_cluster_stores{0};  // distributed shared-memory stores into another block (cluster_store)
inline cudaError_t launch_kernel(const void* k, dim3 grid, dim3 block, size_t smem, bool coop,
                                 const std::function<void()>& fn, const dim3* cluster = nullptr) {
  LaunchPlan p;
  const cudaError_t err = check_launch(k, grid, block, smem, coop, &p, cluster);
  if (err != cudaSuccess) {
    if (coop) g_coop_refused++;
    if (cluster) g_cluster_refused++;
    return fail(err);
  }
  run_launch(p, fn);
  return cudaSuccess;
}

// The former entry points (a kernel of its own per call site's lambda type).
template <typename F>
cudaError_t launch(int64_t grid, int threads, F f) {
  static const char key = 0;
  return launch_kernel(&key, dim3((unsigned)grid), dim3((unsigned)threads), 0, false, std::function<void()>(f));
}
template <typename F>
cudaError_t launch_cooperative(int64_t grid, int threads, F f, size_t smem = 0) {
  static const char key = 0;
  return launch_kernel(&key, dim3((unsigned)grid), dim3((unsigned)threads), smem, true, std::function<void()>(f));
}

// The block's static shared memory (SE_SHARED): one arena per block slot,
// 0xff at the start of every block.
template <typename T> T& shared() {
  static_assert(sizeof(T) <= kArenaBytes, "shared arena too small");
  Slot* s = tl_slot;
  if (sizeof(T) > s->static_used) {
    if (sizeof(T) > s->static_limit) {
      char msg[300];
      snprintf(msg, sizeof msg,
               "the block declares %zu bytes of static shared memory beside %zu dynamic: more than the launch may have "
               "(48 KB in all without cudaFuncAttributeMaxDynamicSharedMemorySize, else the opt-in limit); a GPU "
               "refuses this launch", sizeof(T), s->dyn_bytes);
      fatal(msg);
    }
    s->static_used = sizeof(T);
  }
  return *reinterpret_cast<T*>(s->arena);
}
// The block's dynamic shared memory; a kernel that uses it must be launched with it.
inline unsigned char* dynamic_shared() {
  if (!tl_slot->dyn) fatal("dynamic shared memory used but the launch has none");
  return tl_slot->dyn.get();
}

// An inter-block barrier (grid or cluster): the block's threads meet at b;
// the last one to arrive runs wait_blocks, the wait for the other blocks (its
// OS thread blocks: every other fiber of the block is waiting anyway), then
// releases the block.
template <typename F>
inline void block_meet(Bar& b, const F& wait_blocks) {
  Slot* s = tl_slot;
  const uint64_t g = b.gen;
  if (++b.count == b.expected) {
    wait_blocks();
    b.count = 0;
    b.gen++;
    return;
  }
  s->wait_bar[s->cur] = &b;
  s->wait_gen[s->cur] = g;
  while (b.gen == g) yield_to_scheduler();
  s->wait_bar[s->cur] = nullptr;
}

// The grid barrier (block_meet, the blocks meeting at the launch's std::barrier).
inline void grid_sync() {
  Slot* s = tl_slot;
  if (!s->grid_bar) fatal("grid sync outside a cooperative launch");
  block_meet(s->grid_bar_local, [&] { s->grid_bar->arrive_and_wait(); });
}

// A 16-byte vector access to an address that is not 16-byte aligned faults on
// the GPU ("misaligned address", a sticky error); here it aborts.
inline void check_align16(const void* p, const char* what = "access") {
  if ((uintptr_t)p & 15) {
    char msg[160];
    snprintf(msg, sizeof msg, "misaligned 16-byte %s at %p (a GPU faults: cudaErrorMisalignedAddress)", what, p);
    fatal(msg);
  }
}
}  // namespace emu

#include "emu_cluster.h"

#define threadIdx (emu::tl_tid)
#define blockIdx (emu::tl_bid)

inline void __syncthreads() { emu::arrive(emu::tl_slot->block_bar); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void emu_check_align(const void* p) { emu::check_align16(p); }
// The cache-hinted loads read where the kernel wrote them, as a GPU's
// ld.global.cg/.cs (volatile asm) does: the empty asm keeps g++ from moving
// the read under a later bounds check, where ASan would never see it.
template <typename T> T emu_hinted_load(const T* p) { const T v = *p; asm volatile("" : : "m"(v)); return v; }
template <typename T> T __ldcg(const T* p) { if constexpr (sizeof(T) == 16) emu::check_align16(p, "load (__ldcg)"); return emu_hinted_load(p); }
template <typename T> T __ldcs(const T* p) { if constexpr (sizeof(T) == 16) emu::check_align16(p, "load (__ldcs)"); return emu_hinted_load(p); }
template <typename T> void __stcs(T* p, T v) { if constexpr (sizeof(T) == 16) emu::check_align16(p, "store (__stcs)"); *p = v; }

// __shfl_down_sync with the hardware's rules checked: width a power of two
// up to 32, delta in [1, width) (0 or >= width returns the caller's own value:
// never what a reduction means); the mask names the caller, only lanes that
// exist, and every lane it names comes to this same shuffle (call site) with
// the same mask; a lane it names that returns or waits elsewhere is a
// deadlock. The value comes from lane + delta when that lane is in the same
// width-segment (as on the GPU; a source lane outside the mask is undefined
// there, an abort here).
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32,
                   std::source_location loc = std::source_location::current()) {
  static_assert(sizeof(T) <= 8, "");
  emu::Slot* s = emu::tl_slot;
  const int t = threadIdx.x, lane = t % 32, w = t / 32;
  char msg[700];
  if (width < 1 || width > 32 || (width & (width - 1))) {
    snprintf(msg, sizeof msg, "shuffle width %d at %s:%u is not a power of two in [1, 32]", width, loc.file_name(),
             (unsigned)loc.line());
    emu::fatal(msg);
  }
  if (delta < 1 || delta >= (unsigned)width) {
    snprintf(msg, sizeof msg, "shuffle offset %d out of range [1, %d) at %s:%u", (int)delta, width, loc.file_name(),
             (unsigned)loc.line());
    emu::fatal(msg);
  }
  if (!(mask >> lane & 1u)) {
    snprintf(msg, sizeof msg, "shuffle mask 0x%08x at %s:%u does not include the calling lane %d (thread %d)", mask,
             loc.file_name(), (unsigned)loc.line(), lane, t);
    emu::fatal(msg);
  }
  const int lanes = s->warp_lanes(w);
  if (lanes < 32 && (mask >> lanes)) {
    snprintf(msg, sizeof msg, "shuffle mask 0x%08x at %s:%u names lanes past the block's last thread", mask,
             loc.file_name(), (unsigned)loc.line());
    emu::fatal(msg);
  }
  // The open shuffle of this warp whose mask names this lane, else a new one.
  emu::Shfl* sh = nullptr;
  for (emu::Shfl& o : s->shfl[w])
    if (o.open && (o.mask & mask)) {
      if (o.mask != mask || o.loc.line() != loc.line() || o.loc.column() != loc.column() ||
          std::strcmp(o.loc.file_name(), loc.file_name()) != 0) {
        char where[400];
        emu::describe_shuffle(where, sizeof where, o);
        snprintf(msg, sizeof msg,
                 "lanes of warp %d meet in different shuffles: lane %d at %s:%u (mask 0x%08x), others at %s", w, lane,
                 loc.file_name(), (unsigned)loc.line(), mask, where);
        emu::fatal(msg);
      }
      sh = &o;
      break;
    }
  if (!sh) {
    for (int l = 0; l < lanes; ++l)
      if ((mask >> l & 1u) && s->done[32 * w + l]) {
        snprintf(msg, sizeof msg, "shuffle mask 0x%08x at %s:%u names lane %d, an exited lane", mask,
                 loc.file_name(), (unsigned)loc.line(), l);
        emu::fatal(msg);
      }
    for (emu::Shfl& o : s->shfl[w])
      if (!o.open) { sh = &o; break; }
    if (!sh) emu::fatal("more disjoint shuffles open at once in a warp than the emulator holds");
    sh->open = true;
    sh->mask = mask;
    sh->arrived = 0;
    sh->loc = loc;
    sh->bar.expected = __builtin_popcount(mask);
  }
  sh->arrived |= 1u << lane;
  uint64_t b = 0; std::memcpy(&b, &v, sizeof(T));
  s->shfl_buf[t] = b;
  emu::arrive(sh->bar);
  const int src = lane + (int)delta;
  T r = v;
  if (src < 32 && src / width == lane / width) {
    if (!(mask >> src & 1u)) {
      snprintf(msg, sizeof msg, "shuffle at %s:%u: lane %d reads lane %d, which mask 0x%08x leaves out",
               loc.file_name(), (unsigned)loc.line(), lane, src, mask);
      emu::fatal(msg);
    }
    std::memcpy(&r, &s->shfl_buf[32 * w + src], sizeof(T));
  }
  if (emu::arrive(sh->bar)) sh->open = false;
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
