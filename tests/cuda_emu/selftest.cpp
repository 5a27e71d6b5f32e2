// Tiny kernels that prove each check of the emulator fires, and the real
// csrc/cuda/se_sync.h against the emulated runtime (tests/test_cuda_emulation.py
// runs every name below):
//
//   selftest list        the names, one a line: "good NAME" (exits 0, prints "ok NAME")
//                        or "bad NAME" (must exit non-zero naming the fault)
//   selftest NAME
//
// Built like main.cpp (same include path: the emulator's include/ first).
#include <cuda/se_sync.h>

#include "cuda/se_load.cuh"

#include <string>
#include <vector>

using namespace se_fused::cuda_kernels;

namespace {

int g_failures = 0;
#define EXPECT(cond)                                                                   \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                           \
      g_failures++;                                                                    \
    }                                                                                  \
  } while (0)
#define EXPECT_ERR(expr, want)                                                         \
  do {                                                                                 \
    const cudaError_t got_ = (expr);                                                   \
    if (got_ != (want)) {                                                              \
      printf("FAIL %s:%d: %s gave %s, expected %s\n", __FILE__, __LINE__, #expr,       \
             cudaGetErrorName(got_), cudaGetErrorName(want));                          \
      g_failures++;                                                                    \
    }                                                                                  \
  } while (0)

constexpr int kN = 256;  // threads per block in these kernels (8 warps)

struct Args {
  float* out;
  const float* in;
  int n;  // a kernel-specific parameter
};
constexpr int kCTd = 64;  // threads per block of k_dsmem (its dynamic shared memory: kCTd floats)

// ------------------------------------------------------------ alignment
struct alignas(16) Tile {
  float v[kN * 4 + 4];
};

__global__ void k_ld16_global(Args a) {  // a.n = element offset of the load
  const uint4 u = ld16(a.in + a.n + 4 * threadIdx.x);
  a.out[threadIdx.x] = __uint_as_float(u.x);
}
__global__ void k_st16_shared(Args a) {
  SE_SHARED(Tile, sm);
  st16(sm.v + a.n + 4 * threadIdx.x, make_uint4(1u, 2u, 3u, 4u));
  __syncthreads();
  a.out[threadIdx.x] = sm.v[4 * threadIdx.x + a.n];
}
__global__ void k_ld16_dynamic(Args a) {
  SE_DYNAMIC_SHARED(dyn);
  float* t = reinterpret_cast<float*>(dyn);
  for (int i = threadIdx.x; i < kN * 4 + 4; i += kN) t[i] = 1.f;
  __syncthreads();
  const uint4 u = ld16(t + a.n + 4 * threadIdx.x);
  a.out[threadIdx.x] = __uint_as_float(u.y);
}

// ------------------------------------------------------------- shuffles
// a.n selects the fault: 0 none (the reductions of se_reduce.cuh's group_reduce).
__global__ void k_shuffle(Args a) {
  const int lane = threadIdx.x % 32;
  float v = a.in[threadIdx.x];
  switch (a.n) {
    case 0:
      for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off, 32);
      for (int off = 4; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off, 8);
      break;
    case 1:  // a partial mask called by every lane
      v += __shfl_down_sync(0x0000ffffu, v, 8, 16);
      break;
    case 2:  // the upper half returns, the lower names it
      if (lane >= 16) return;
      v += __shfl_down_sync(0xffffffffu, v, 8, 16);
      break;
    case 3:  // the upper half waits at a barrier instead
      if (lane < 16) v += __shfl_down_sync(0xffffffffu, v, 8, 16);
      __syncthreads();
      break;
    case 4:  // the two halves at different shuffles
      if (lane < 16) v += __shfl_down_sync(0xffffffffu, v, 8, 16);
      else v -= __shfl_down_sync(0xffffffffu, v, 8, 16);
      break;
    case 5:  // an offset of the whole width
      for (int off = 32; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off, 32);
      break;
    case 6:  // a width that is no power of two
      v += __shfl_down_sync(0xffffffffu, v, 4, 24);
      break;
    case 7:  // a right mask for a half-warp's shuffle (valid: each half names itself)
      v += __shfl_down_sync(lane < 16 ? 0x0000ffffu : 0xffff0000u, v, 8, 16);
      break;
  }
  a.out[threadIdx.x] = v;
}

// ---------------------------------------------------------------- races
struct Buf {
  float v[kN];
};
// a.n: 0 correct, 1 no barrier between the write and the read of a
// neighbour's value (read-after-write), 2 no barrier between a read of a
// neighbour's value and the next round's write over it (write-after-read).
__global__ void k_race(Args a) {
  SE_SHARED(Buf, sm);
  const int t = threadIdx.x;
  float acc = 0.f;
  for (int round = 0; round < 3; ++round) {
    sm.v[t] = a.in[t] * (float)(round + 1);
    if (a.n != 1) __syncthreads();
    acc += sm.v[(t + 1) % kN] + sm.v[(t + kN - 1) % kN];
    if (a.n != 2) __syncthreads();
  }
  a.out[t] = acc;
}

// A block-wide sum as se_reduce.cuh group_reduce (shuffles, then the warps'
// sums through red), three in a row; a.n 0 correct, 1 without the barrier
// after the leader's read of red (the next sum's warps overwrite it first:
// seen only when a warp is held back for several shuffles, the starve schedule).
struct Red {
  float red[kN / 32];
};
__global__ void k_reduce_reuse(Args a) {
  SE_SHARED(Red, sm);
  float total = 0.f;
  for (int round = 0; round < 3; ++round) {
    float v = a.in[threadIdx.x] * (float)(round + 1);
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off, 32);
    if (threadIdx.x % 32 == 0) sm.red[threadIdx.x / 32] = v;
    __syncthreads();
    if (threadIdx.x == 0)
      for (int w = 0; w < kN / 32; ++w) total += sm.red[w];
    if (a.n == 0) __syncthreads();
  }
  if (threadIdx.x == 0) a.out[0] = total;
}

// ---------------------------------------------------------- launch code
__global__ void k_plain(Args a) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < a.n) a.out[i] = a.in[i] + 1.f;
}
struct Static20k {
  float v[5120];
};
__global__ void k_static(Args a) {  // 20 KB of static shared memory
  SE_SHARED(Static20k, sm);
  sm.v[threadIdx.x] = a.in[threadIdx.x];
  __syncthreads();
  if (blockIdx.x == 0) a.out[threadIdx.x] = sm.v[(threadIdx.x + 1) % kN];
}
// Every block adds its id to out[block]; after the grid barrier block 0 sums them.
__global__ void k_coop(Args a) {
  if (threadIdx.x == 0) a.out[blockIdx.x] = (float)blockIdx.x;
  se_grid_sync();
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    float s = 0.f;
    for (unsigned b = 0; b < gridDim.x; ++b) s += a.out[b];
    a.out[gridDim.x] = s;
  }
}
// k_coop with a.n bytes of dynamic shared memory written and read back.
__global__ void k_coop_dyn(Args a) {
  SE_DYNAMIC_SHARED(dyn);
  for (int i = threadIdx.x; i < a.n; i += kN) dyn[i] = (unsigned char)i;
  se_grid_sync();
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned s = 0;
    for (int i = 0; i < a.n; ++i) s += dyn[i];
    a.out[blockIdx.x] = (float)s;
  }
}

// ------------------------------------------------------------- clusters
// Three rounds: every block writes a value to out[block]; after the cluster
// barrier it adds its cluster's next block's (rank + 1); a second barrier
// before the next round overwrites out. Then out[grid + b] = the sum,
// out[2 grid + b] = its rank, out[3 grid + b] = the cluster's size. Thread 0
// of each block does the global accesses, every thread meets at the barriers.
__device__ void cluster_exchange(const Args& a) {
  const auto cl = cooperative_groups::this_cluster();
  const unsigned r = cl.block_rank(), c = cl.num_blocks(), b = blockIdx.x, g = gridDim.x;
  float acc = 0.f;
  for (int round = 0; round < 3; ++round) {
    if (threadIdx.x == 0) a.out[b] = a.in[b] * (float)(round + 1);
    se_cluster_sync();
    if (threadIdx.x == 0) acc += a.out[b - r + (r + 1) % c];
    se_cluster_sync();
  }
  if (threadIdx.x == 0) {
    a.out[g + b] = acc;
    a.out[2 * g + b] = (float)r;
    a.out[3 * g + b] = (float)c;
  }
}
__global__ void k_cluster(Args a) { cluster_exchange(a); }
// The same body, another kernel (its own attributes).
__global__ void k_cluster2(Args a) { cluster_exchange(a); }
// Rank 0 returns without the cluster barrier its cluster's other blocks wait at.
__global__ void k_cluster_exit(Args a) {
  if (cooperative_groups::this_cluster().block_rank() == 0) return;
  se_cluster_sync();
  if (threadIdx.x == 0) a.out[blockIdx.x] = 1.f;
}

// ------------------------------------------------------------- distributed shared memory
// Each thread stores its value of in into the dynamic shared memory of the
// cluster's next block (rank + 1) with se_cluster_store; after the cluster
// barrier out[b kCT + t] = what its block received (from rank - 1). a.n: 0
// right, 1 read before the barrier, 2 a store past the dynamic shared memory,
// 3 no barrier after the stores, 4 a misaligned store, 5 a rank past the
// cluster.
__global__ void k_dsmem(Args a) {
  SE_DYNAMIC_SHARED(dyn);
  float* f = reinterpret_cast<float*>(dyn);
  const auto cl = cooperative_groups::this_cluster();
  const unsigned r = cl.block_rank(), c = cl.num_blocks(), t = threadIdx.x, b = blockIdx.x;
  float* dst = a.n == 2 ? f + blockDim.x + t : f + t;
  if (a.n == 4) dst = reinterpret_cast<float*>(dyn + 4 * t + 1);
  se_cluster_store(dst, a.n == 5 ? c : (r + 1) % c, a.in[b * blockDim.x + t]);
  if (a.n == 3) return;
  if (a.n != 1) se_cluster_sync();
  a.out[b * blockDim.x + t] = f[t];
  if (a.n == 1) se_cluster_sync();
  se_cluster_sync();  // nobody stores into a block that has returned
}
// k_dsmem's results: true iff each block holds its cluster's previous block's values.
bool dsmem_right(const std::vector<float>& in, const std::vector<float>& out, int grid, int c) {
  for (int b = 0; b < grid; ++b) {
    const int r = b % c, from = b - r + (r + c - 1) % c;
    for (int t = 0; t < kCTd; ++t)
      if (out[b * kCTd + t] != in[from * kCTd + t]) {
        printf("FAIL dsmem grid %d of %d: block %d thread %d got %g, expected %g (from block %d)\n", grid, c, b, t,
               out[b * kCTd + t], in[from * kCTd + t], from);
        return false;
      }
  }
  return true;
}

// ------------------------------------------------------------- cp.async
// Each thread stages its 16 bytes (4 floats of in) of a tile in shared memory
// with cp.async, then out[t] = the sum of its neighbour's (t + 1) 16 bytes.
// a.n: 0 right (commit, wait, __syncthreads; dynamic shared memory), 1 its own
// bytes read before the wait, 2 the neighbour's read after its own wait but
// without the barrier, 3 a misaligned source, 4 a misaligned destination, 5 a
// destination past the dynamic shared memory, 6 no wait, 7 a wait without a
// commit, 8 right, in static shared memory (SE_SHARED).
__global__ void k_cp_async(Args a) {
  SE_DYNAMIC_SHARED(dyn);
  SE_SHARED(Tile, st);
  const int t = threadIdx.x, n = blockDim.x;
  float* tile = a.n == 8 ? st.v : reinterpret_cast<float*>(dyn);
  float* dst = a.n == 5 ? tile + 4 * n : tile + 4 * t + (a.n == 4 ? 2 : 0);
  se_cp_async16(dst, a.in + 4 * t + (a.n == 3 ? 1 : 0));
  const float early = dst[0] + dst[1] + dst[2] + dst[3];
  if (a.n != 7) se_cp_async_commit();
  if (a.n != 6) se_cp_async_wait(0);
  if (a.n != 2) __syncthreads();
  const float* nb = tile + 4 * ((t + 1) % n);
  a.out[t] = a.n == 1 ? early : nb[0] + nb[1] + nb[2] + nb[3];
}
// Two tiles in two commit groups and an empty third: wait(2) lands the first
// only; out[t] the neighbour's sums of both after wait(0) and the barrier,
// out[n + t] 1 iff after wait(2) the thread's bytes of tile 0 were staged and
// those of tile 1 still the 0xff of an unwritten shared memory.
__global__ void k_cp_pipeline(Args a) {
  SE_DYNAMIC_SHARED(dyn);
  const int t = threadIdx.x, n = blockDim.x;
  float* t0 = reinterpret_cast<float*>(dyn);
  float* t1 = t0 + 4 * n;
  se_cp_async16(t0 + 4 * t, a.in + 4 * t);
  se_cp_async_commit();
  se_cp_async16(t1 + 4 * t, a.in + 4 * n + 4 * t);
  se_cp_async_commit();
  se_cp_async_commit();
  se_cp_async_wait(2);
  const bool staged = std::memcmp(t0 + 4 * t, a.in + 4 * t, 16) == 0 && __float_as_uint(t1[4 * t]) == 0xffffffffu;
  se_cp_async_wait(0);
  __syncthreads();
  const int u = 4 * ((t + 1) % n);
  a.out[t] = t0[u] + t0[u + 1] + t0[u + 2] + t0[u + 3] + t1[u] + t1[u + 1] + t1[u + 2] + t1[u + 3];
  a.out[n + t] = staged ? 1.f : 0.f;
}

// Runs kernel on one block of kN threads, `times` times, and returns whether
// every run gave the same out (the schedule changes per launch).
template <typename Args_>
bool same_every_launch(void (*kernel)(Args_), Args_ a, int times, std::vector<float>& out) {
  std::vector<float> first;
  for (int r = 0; r < times; ++r) {
    std::fill(out.begin(), out.end(), -1.f);
    const cudaError_t e = se_launch(kernel, 1, kN, nullptr, a);
    if (e != cudaSuccess) { printf("launch failed: %s\n", cudaGetErrorName(e)); exit(3); }
    if (r == 0) first = out;
    else if (std::memcmp(first.data(), out.data(), out.size() * sizeof(float)) != 0) return false;
  }
  return true;
}

void device(int sms, int per_sm, size_t smem_per_sm) {
  emu::g_sms = sms;
  emu::g_blocks_per_sm = per_sm;
  emu::g_smem_per_sm = smem_per_sm;
}

// The runtime's own rules (cuda_runtime.h), without se_sync.h.
void test_runtime() {
  std::vector<float> in(1024, 1.f), out(1024, 0.f);
  Args a{out.data(), in.data(), 1024};
  device(2, 4, 100 << 10);
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(4);
  cfg.blockDim = dim3(kN);
  EXPECT_ERR(cudaLaunchKernelEx(&cfg, k_plain, a), cudaSuccess);
  EXPECT(out[1023] == 2.f);
  cfg.blockDim = dim3(1025);
  EXPECT_ERR(cudaLaunchKernelEx(&cfg, k_plain, a), cudaErrorInvalidConfiguration);
  EXPECT_ERR(cudaPeekAtLastError(), cudaErrorInvalidConfiguration);  // peek leaves it
  EXPECT_ERR(cudaGetLastError(), cudaErrorInvalidConfiguration);     // get clears it
  EXPECT_ERR(cudaGetLastError(), cudaSuccess);
  cfg.blockDim = dim3(kN);
  cfg.gridDim = dim3(0);
  EXPECT_ERR(cudaLaunchKernelEx(&cfg, k_plain, a), cudaErrorInvalidConfiguration);
  cfg.gridDim = dim3(4);
  EXPECT_ERR(cudaLaunchKernelEx(&cfg, k_plain, a), cudaSuccess);  // success leaves the last error
  EXPECT_ERR(cudaGetLastError(), cudaErrorInvalidConfiguration);
  // <<<>>> (emu::chevron) records its error only.
  emu::chevron(k_plain, dim3(4), dim3(2048))(a);
  EXPECT_ERR(cudaGetLastError(), cudaErrorInvalidConfiguration);
  // Dynamic shared memory: 48 KB less the static without the opt-in, the opt-in limit with it.
  cfg.dynamicSmemBytes = 48 << 10;
  EXPECT_ERR(cudaLaunchKernelEx(&cfg, k_plain, a), cudaSuccess);
  cfg.dynamicSmemBytes = (48 << 10) + 16;
  EXPECT_ERR(cudaLaunchKernelEx(&cfg, k_plain, a), cudaErrorInvalidValue);
  EXPECT_ERR(cudaFuncSetAttribute(k_plain, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 << 10), cudaSuccess);
  EXPECT_ERR(cudaLaunchKernelEx(&cfg, k_plain, a), cudaSuccess);
  EXPECT_ERR(cudaFuncSetAttribute(k_plain, cudaFuncAttributeMaxDynamicSharedMemorySize, 228 << 10),
             cudaErrorInvalidValue);
  (void)cudaGetLastError();
  emu::chevron(k_static, dim3(1), dim3(kN), 0)(a);  // the first launch learns its 20 KB
  EXPECT_ERR(cudaGetLastError(), cudaSuccess);
  cfg.dynamicSmemBytes = 30 << 10;  // 20 + 30 > 48 KB
  EXPECT_ERR(cudaLaunchKernelEx(&cfg, k_static, a), cudaErrorInvalidValue);
  cudaFuncAttributes fa;
  EXPECT_ERR(cudaFuncGetAttributes(&fa, k_static), cudaSuccess);
  EXPECT(fa.sharedSizeBytes == sizeof(Static20k));
  EXPECT(fa.maxDynamicSharedSizeBytes == (48 << 10) - (int)sizeof(Static20k));
  // Occupancy: min(blocks per SM, threads, shared memory / (static + dynamic + 1 KB)).
  int n = -1, sms = -1, dev = -1;
  EXPECT_ERR(cudaGetDevice(&dev), cudaSuccess);
  EXPECT_ERR(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), cudaSuccess);
  EXPECT(sms == 2);
  EXPECT_ERR(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, k_plain, kN, 0), cudaSuccess);
  EXPECT(n == 4);
  EXPECT_ERR(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, k_plain, 1024, 0), cudaSuccess);
  EXPECT(n == 2);
  EXPECT_ERR(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, k_plain, kN, 40 << 10), cudaSuccess);
  EXPECT(n == 2);
  EXPECT_ERR(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, k_static, kN, 20 << 10), cudaSuccess);
  EXPECT(n == 2);
  // Cooperative: refused past occupancy x SMs, or on a device without it.
  cfg.dynamicSmemBytes = 0;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeCooperative;
  attr[0].val.cooperative = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  cfg.gridDim = dim3(8);
  EXPECT_ERR(cudaLaunchKernelEx(&cfg, k_coop, a), cudaSuccess);
  EXPECT(out[8] == 28.f);
  cfg.gridDim = dim3(9);
  EXPECT_ERR(cudaLaunchKernelEx(&cfg, k_coop, a), cudaErrorCooperativeLaunchTooLarge);
  emu::g_coop_supported = false;
  cfg.gridDim = dim3(2);
  EXPECT_ERR(cudaLaunchKernelEx(&cfg, k_coop, a), cudaErrorNotSupported);
  emu::g_coop_supported = true;
  // A device the build has no kernel for.
  emu::g_no_kernel_image = true;
  EXPECT_ERR(cudaFuncGetAttributes(&fa, k_plain), cudaErrorNoKernelImageForDevice);
  EXPECT_ERR(cudaLaunchKernelEx(&cfg, k_coop, a), cudaErrorNoKernelImageForDevice);
  emu::g_no_kernel_image = false;
  (void)cudaGetLastError();
  // A sticky error: returned by every call, never cleared.
  emu::set_sticky(cudaErrorIllegalAddress);
  EXPECT_ERR(cudaLaunchKernelEx(&cfg, k_coop, a), cudaErrorIllegalAddress);
  EXPECT_ERR(cudaGetLastError(), cudaErrorIllegalAddress);
  EXPECT_ERR(cudaGetLastError(), cudaErrorIllegalAddress);
  EXPECT_ERR(cudaGetDevice(&dev), cudaErrorIllegalAddress);
  emu::set_sticky(cudaSuccess);
  (void)cudaGetLastError();
}

// csrc/cuda/se_sync.h's wrappers on the emulated runtime.
void test_se_sync() {
  std::vector<float> in(4096, 1.f), out(4096, 0.f);
  Args a{out.data(), in.data(), 4096};
  device(2, 4, 100 << 10);
  // se_launch: runs, or returns (and clears) the launch error.
  EXPECT_ERR(se_launch(k_plain, 16, kN, nullptr, a), cudaSuccess);
  EXPECT(out[4095] == 2.f);
  EXPECT_ERR(se_launch(k_plain, 16, 2048, nullptr, a), cudaErrorInvalidConfiguration);
  EXPECT_ERR(se_launch(k_plain, 0, kN, nullptr, a), cudaErrorInvalidConfiguration);
  EXPECT_ERR(cudaPeekAtLastError(), cudaSuccess);
  // se_resident_blocks: occupancy x SMs per kernel, device and dynamic shared memory,
  // whatever the order of the calls (its cache).
  auto resident = [&](auto kernel_tag, size_t smem) {
    constexpr auto K = decltype(kernel_tag)::value;
    int r = -1, n = -1, dev = 0, sms = 0;
    EXPECT_ERR(se_resident_blocks<K>(kN, &r, smem), cudaSuccess);
    (void)cudaGetDevice(&dev);
    (void)cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    (void)cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, K, kN, smem);
    if (r != n * sms) {
      printf("FAIL se_resident_blocks gave %d, the device holds %d x %d (smem %zu)\n", r, n, sms, smem);
      g_failures++;
    }
    return r;
  };
  using Plain = std::integral_constant<void (*)(Args), k_plain>;
  using Static = std::integral_constant<void (*)(Args), k_static>;
  EXPECT(resident(Plain{}, 0) == 8);
  EXPECT(resident(Plain{}, 40 << 10) == 4);
  EXPECT(resident(Plain{}, 0) == 8);
  EXPECT(resident(Plain{}, 30000) == 6);
  EXPECT_ERR(se_allow_dynamic_smem<k_plain>(64 << 10), cudaSuccess);
  EXPECT(resident(Plain{}, 64 << 10) == 2);
  EXPECT_ERR(se_allow_dynamic_smem<k_plain>(120 << 10), cudaSuccess);
  EXPECT(resident(Plain{}, 120 << 10) == 0);  // the SM has 100 KB
  EXPECT_ERR(se_allow_dynamic_smem<k_plain>(300 << 10), cudaErrorInvalidValue);  // past the opt-in limit
  EXPECT_ERR(cudaPeekAtLastError(), cudaSuccess);
  (void)se_launch(k_static, 1, kN, nullptr, a);  // its static shared memory, as a first launch learns it
  EXPECT(resident(Static{}, 0) == 8);
  EXPECT(resident(Static{}, 24 << 10) == 4);  // 20 + 24 + 1 KB: 2 per SM
  device(3, 4, 100 << 10);                    // another device: the caches must not answer for it
  EXPECT(resident(Plain{}, 0) == 12);
  EXPECT(resident(Static{}, 24 << 10) == 6);
  device(2, 4, 100 << 10);
  // se_launch_cooperative: all blocks at the grid barrier, or an error (left
  // cleared when none was pending before) and nothing run.
  int r = 0;
  EXPECT_ERR(se_resident_blocks<k_coop>(kN, &r), cudaSuccess);
  EXPECT(r == 8);
  std::fill(out.begin(), out.end(), 0.f);
  EXPECT_ERR(se_launch_cooperative(k_coop, r, kN, nullptr, a), cudaSuccess);
  EXPECT(out[8] == 28.f);
  std::fill(out.begin(), out.end(), 0.f);
  EXPECT_ERR(se_launch_cooperative(k_coop, r + 1, kN, nullptr, a), cudaErrorCooperativeLaunchTooLarge);
  EXPECT(out[r + 1] == 0.f);  // nothing ran
  EXPECT_ERR(cudaPeekAtLastError(), cudaSuccess);
  emu::g_coop_supported = false;
  EXPECT_ERR(se_launch_cooperative(k_coop, 2, kN, nullptr, a), cudaErrorNotSupported);
  EXPECT_ERR(cudaPeekAtLastError(), cudaSuccess);
  emu::g_coop_supported = true;
  // Dynamic shared memory past 48 KB: refused without the opt-in, runs with it.
  Args d{out.data(), in.data(), 60 << 10};
  EXPECT_ERR(se_launch_cooperative(k_coop_dyn, 2, kN, nullptr, d, 60 << 10), cudaErrorInvalidValue);
  EXPECT_ERR(se_allow_dynamic_smem<k_coop_dyn>(60 << 10), cudaSuccess);
  EXPECT_ERR(se_resident_blocks<k_coop_dyn>(kN, &r, 60 << 10), cudaSuccess);
  EXPECT(r == 2);
  EXPECT_ERR(se_launch_cooperative(k_coop_dyn, r, kN, nullptr, d, 60 << 10), cudaSuccess);
  unsigned want = 0;
  for (int i = 0; i < (60 << 10); ++i) want += (unsigned char)i;
  EXPECT(out[0] == (float)want && out[1] == (float)want);
  EXPECT_ERR(cudaPeekAtLastError(), cudaSuccess);
  // An error pending from earlier work (here a refused attribute, not checked by
  // its caller): every wrapper returns it and leaves it pending, for its owner.
  EXPECT_ERR(cudaFuncSetAttribute(k_plain, cudaFuncAttributeMaxDynamicSharedMemorySize, 300 << 10),
             cudaErrorInvalidValue);
  EXPECT_ERR(se_launch(k_plain, 16, kN, nullptr, a), cudaErrorInvalidValue);
  EXPECT_ERR(se_launch_cooperative(k_coop, 2, kN, nullptr, a), cudaErrorInvalidValue);
  EXPECT_ERR(se_allow_dynamic_smem<k_coop_dyn>(64 << 10), cudaErrorInvalidValue);
  EXPECT_ERR(se_resident_blocks<k_coop>(kN, &r), cudaErrorInvalidValue);
  EXPECT_ERR(cudaPeekAtLastError(), cudaErrorInvalidValue);
  EXPECT_ERR(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_ERR(cudaPeekAtLastError(), cudaSuccess);
}

// A launch through cudaLaunchKernelEx: cluster x cy blocks per cluster (cluster < 0: no attribute).
template <typename K>
cudaError_t launch_ex(K kernel, unsigned grid, unsigned threads, Args a, size_t smem = 0, int cluster = -1,
                      unsigned cy = 1) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(grid);
  cfg.blockDim = dim3(threads);
  cfg.dynamicSmemBytes = smem;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = (unsigned)cluster;
  attr[0].val.clusterDim.y = cy;
  attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = cluster >= 0 ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, a);
}
// k_cluster's results for a grid in clusters of c: true iff all right.
bool cluster_right(const std::vector<float>& in, const std::vector<float>& out, int grid, int c) {
  for (int b = 0; b < grid; ++b) {
    const int r = b % c, next = b - r + (r + 1) % c;
    if (out[grid + b] != in[next] * 6.f || out[2 * grid + b] != (float)r || out[3 * grid + b] != (float)c) {
      printf("FAIL cluster grid %d of %d: block %d gave %g (rank %g of %g), expected %g (rank %d)\n", grid, c, b,
             out[grid + b], out[2 * grid + b], out[3 * grid + b], in[next] * 6.f, r);
      return false;
    }
  }
  return true;
}
void device_gpc(int sms, int per_sm, size_t smem_per_sm, int per_gpc) {
  device(sms, per_sm, smem_per_sm);
  emu::g_sms_per_gpc = per_gpc;
}
constexpr int kCT = 64;  // threads per block of the cluster kernels

// Cluster launches that run: the exchange through global memory right on every
// schedule (each launch another), clusters of 1 to 16 in waves over several
// GPCs, and three host threads launching clusters, ordinary and cooperative
// grids at once on a device of few slots.
void test_cluster() {
  std::vector<float> in(4096), out(4096, 0.f);
  for (size_t i = 0; i < in.size(); ++i) in[i] = (float)(i % 29) + 1.f;
  Args a{out.data(), in.data(), 0};
  device_gpc(10, 4, 100 << 10, 4);  // GPCs of 4, 4 and 2 SMs: 16, 16 and 8 blocks of k_cluster
  emu::g_peak_slots = 0;
  EXPECT_ERR(cudaFuncSetAttribute(k_cluster, cudaFuncAttributeNonPortableClusterSizeAllowed, 1), cudaSuccess);
  for (int rep = 0; rep < 3; ++rep)
    for (auto [grid, c] : {std::pair{5, 1}, {16, 2}, {80, 8}, {96, 16}, {24, 12}, {14, 7}}) {
      std::fill(out.begin(), out.end(), -1.f);
      EXPECT_ERR(launch_ex(k_cluster, grid, kCT, a, 0, c), cudaSuccess);
      EXPECT(cluster_right(in, out, grid, c));
    }
  EXPECT(emu::g_peak_slots.load() <= 40);
  // Dynamic shared memory: 40 KB, 2 blocks per SM: clusters of 8 fit the 4-SM GPCs only.
  std::fill(out.begin(), out.end(), -1.f);
  EXPECT_ERR(launch_ex(k_cluster, 64, kCT, a, 40 << 10, 8), cudaSuccess);
  EXPECT(cluster_right(in, out, 64, 8));
  // Distributed shared memory: each block's values in the next block's shared memory.
  EXPECT_ERR(cudaFuncSetAttribute(k_dsmem, cudaFuncAttributeNonPortableClusterSizeAllowed, 1), cudaSuccess);
  for (auto [grid, c] : {std::pair{4, 1}, {16, 2}, {48, 16}, {24, 3}}) {
    std::fill(out.begin(), out.end(), -2.f);
    EXPECT_ERR(launch_ex(k_dsmem, grid, kCTd, Args{out.data(), in.data(), 0}, kCTd * sizeof(float), c), cudaSuccess);
    EXPECT(dsmem_right(in, out, grid, c));
  }
  // Several host threads at once on 4 SMs of one slot, in 2 GPCs: clusters of
  // 2 need a whole GPC while the others' blocks come and go.
  device_gpc(4, 1, 100 << 10, 2);
  emu::g_peak_slots = 0;
  std::vector<float> out2(4096), out3(4096);
  bool ok[3] = {true, true, true};
  std::thread t1([&] {
    for (int r = 0; r < 6 && ok[0]; ++r) {
      std::fill(out.begin(), out.end(), -1.f);
      ok[0] = launch_ex(k_cluster, 12, kCT, a, 0, 2) == cudaSuccess && cluster_right(in, out, 12, 2);
    }
  });
  std::thread t2([&] {
    for (int r = 0; r < 6 && ok[1]; ++r) {
      std::fill(out2.begin(), out2.end(), -1.f);
      ok[1] = launch_ex(k_plain, 16, kN, Args{out2.data(), in.data(), 4096}) == cudaSuccess && out2[4095] == in[4095] + 1.f;
    }
  });
  std::thread t3([&] {
    for (int r = 0; r < 6 && ok[2]; ++r) {
      std::fill(out3.begin(), out3.end(), 0.f);
      ok[2] = se_launch_cooperative(k_coop, 4, kN, nullptr, Args{out3.data(), in.data(), 0}) == cudaSuccess &&
              out3[4] == 6.f;
    }
  });
  t1.join();
  t2.join();
  t3.join();
  EXPECT(ok[0] && ok[1] && ok[2]);
  EXPECT(emu::g_peak_slots.load() <= 4);
}

// The runtime's cluster rules: attributes, refusals (nothing runs), occupancy answers.
void test_cluster_runtime() {
  std::vector<float> in(4096, 1.f), out(4096, 0.f);
  Args a{out.data(), in.data(), 0};
  device_gpc(10, 4, 100 << 10, 4);  // GPCs of 4, 4 and 2 SMs
  int dev = -1, v = -1;
  EXPECT_ERR(cudaGetDevice(&dev), cudaSuccess);
  EXPECT_ERR(cudaDeviceGetAttribute(&v, cudaDevAttrClusterLaunch, dev), cudaSuccess);
  EXPECT(v == 1);
  EXPECT_ERR(cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMajor, dev), cudaSuccess);
  EXPECT(v == 9);
  cudaFuncAttributes fa;
  EXPECT_ERR(cudaFuncGetAttributes(&fa, k_cluster2), cudaSuccess);
  EXPECT(fa.binaryVersion == 90 && fa.nonPortableClusterSizeAllowed == 0);
  // Occupancy: 4 blocks per SM at 0 bytes, 3 at 30 KB, 2 at 40 KB.
  cudaLaunchConfig_t cfg = {};
  cfg.blockDim = dim3(kCT);
  cfg.gridDim = dim3(1);
  auto potential = [&](size_t smem) {
    cfg.dynamicSmemBytes = smem;
    cfg.numAttrs = 0;
    int n = -1;
    EXPECT_ERR(cudaOccupancyMaxPotentialClusterSize(&n, k_cluster2, &cfg), cudaSuccess);
    return n;
  };
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  auto active = [&](unsigned c, size_t smem, cudaError_t want = cudaSuccess) {
    cfg.dynamicSmemBytes = smem;
    attr[0].val.clusterDim.x = c;
    attr[0].val.clusterDim.y = attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    int n = -1;
    EXPECT_ERR(cudaOccupancyMaxActiveClusters(&n, k_cluster2, &cfg), want);
    return n;
  };
  EXPECT(potential(0) == 8);
  EXPECT(potential(40 << 10) == 8);
  EXPECT(potential(60 << 10) == 0);  // above the kernel's dynamic limit (no opt-in)
  EXPECT(active(8, 0) == 5);         // 2 + 2 + 1
  EXPECT(active(4, 0) == 10);
  EXPECT(active(8, 40 << 10) == 2);  // 8 + 8 + 4 blocks
  EXPECT(active(6, 30 << 10) == 5);  // 12 + 12 + 6 blocks
  active(9, 0, cudaErrorInvalidClusterSize);
  active(0, 0, cudaErrorInvalidClusterSize);
  cfg.numAttrs = 0;
  int n = -1;
  EXPECT_ERR(cudaOccupancyMaxActiveClusters(&n, k_cluster2, &cfg), cudaErrorInvalidClusterSize);
  EXPECT_ERR(cudaFuncSetAttribute(k_cluster2, cudaFuncAttributeNonPortableClusterSizeAllowed, 1), cudaSuccess);
  EXPECT_ERR(cudaFuncGetAttributes(&fa, k_cluster2), cudaSuccess);
  EXPECT(fa.nonPortableClusterSizeAllowed == 1);
  EXPECT(potential(0) == 16);
  EXPECT(potential(30 << 10) == 12);
  EXPECT(potential(40 << 10) == 8);
  EXPECT(active(16, 0) == 2);  // the 2-SM GPC holds none
  EXPECT(active(12, 30 << 10) == 2);
  EXPECT(active(9, 0) == 2);
  active(17, 0, cudaErrorInvalidClusterSize);
  // Launch refusals: the error, recorded as the last error, and nothing run (or a launch that runs).
  auto refused = [&](unsigned grid, size_t smem, int c, unsigned cy, cudaError_t want) {
    std::fill(out.begin(), out.end(), -1.f);
    EXPECT_ERR(launch_ex(k_cluster2, grid, kCT, a, smem, c, cy), want);
    EXPECT_ERR(cudaGetLastError(), want);
    if (want != cudaSuccess) EXPECT(out[0] == -1.f && out[grid] == -1.f);  // nothing ran
  };
  refused(12, 0, 8, 1, cudaErrorInvalidClusterSize);  // grid not a multiple
  refused(8, 0, 2, 2, cudaErrorInvalidClusterSize);   // 2 x 2
  refused(8, 0, 0, 1, cudaErrorInvalidClusterSize);
  refused(17, 0, 17, 1, cudaErrorInvalidClusterSize);  // above 16
  refused(16, 40 << 10, 16, 1, cudaErrorLaunchOutOfResources);  // a GPC holds 8 such blocks
  refused(16, 0, 16, 2, cudaErrorInvalidClusterSize);
  refused(16, 0, 16, 1, cudaSuccess);  // the opt-in
  EXPECT(cluster_right(in, out, 16, 16));
  EXPECT_ERR(cudaFuncSetAttribute(k_cluster2, cudaFuncAttributeNonPortableClusterSizeAllowed, 0), cudaSuccess);
  refused(18, 0, 9, 1, cudaErrorInvalidClusterSize);  // 9 without the opt-in
  EXPECT_ERR(cudaFuncSetAttribute(k_cluster2, cudaFuncAttributeNonPortableClusterSizeAllowed, 2),
             cudaErrorInvalidValue);
  (void)cudaGetLastError();
  emu::chevron(k_cluster2, dim3(4), dim3(2048))(a);  // the ordinary checks first
  EXPECT_ERR(launch_ex(k_cluster2, 4, 2048, a, 0, 2), cudaErrorInvalidConfiguration);
  (void)cudaGetLastError();
  // One GPC of every SM: another device; clusters of 16 up to 40 blocks at once.
  emu::g_sms_per_gpc = 0;
  int dev1 = -1;
  EXPECT_ERR(cudaGetDevice(&dev1), cudaSuccess);
  EXPECT(dev1 != dev);
  EXPECT_ERR(cudaFuncSetAttribute(k_cluster2, cudaFuncAttributeNonPortableClusterSizeAllowed, 1), cudaSuccess);
  EXPECT(active(16, 0) == 2 && active(8, 0) == 5 && active(16, 40 << 10) == 1);
  refused(16, 40 << 10, 16, 1, cudaSuccess);
  // A device before sm_90: no cluster launch.
  emu::g_cc = 86;
  EXPECT_ERR(cudaGetDevice(&dev1), cudaSuccess);
  EXPECT(dev1 != dev);
  EXPECT_ERR(cudaDeviceGetAttribute(&v, cudaDevAttrClusterLaunch, dev1), cudaSuccess);
  EXPECT(v == 0);
  EXPECT_ERR(cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMinor, dev1), cudaSuccess);
  EXPECT(v == 6);
  refused(8, 0, 2, 1, cudaErrorNotSupported);
  EXPECT_ERR(cudaOccupancyMaxPotentialClusterSize(&n, k_cluster2, &cfg), cudaErrorNotSupported);
  (void)cudaGetLastError();
  emu::g_cc = 90;
  // A pre-Hopper image: its attributes say so.
  emu::g_binary_version = 80;
  EXPECT_ERR(cudaFuncGetAttributes(&fa, k_cluster2), cudaSuccess);
  EXPECT(fa.binaryVersion == 80);
  emu::g_binary_version = 90;
}

// csrc/cuda/se_sync.h's se_cluster_capacity and se_launch_cluster on the emulated runtime.
void test_se_sync_cluster() {
  std::vector<float> in(4096), out(4096, 0.f);
  for (size_t i = 0; i < in.size(); ++i) in[i] = (float)(i % 31) - 15.f;
  Args a{out.data(), in.data(), 0};
  device_gpc(10, 4, 100 << 10, 4);  // GPCs of 4, 4 and 2 SMs
  int mc = -1, act = -1;
  // Before the capacity query (which sets the opt-in), 16 is refused.
  EXPECT_ERR(se_launch_cluster(k_cluster, 32, 16, kCT, nullptr, a, 0), cudaErrorInvalidClusterSize);
  EXPECT_ERR(cudaPeekAtLastError(), cudaSuccess);
  EXPECT_ERR(se_cluster_capacity<k_cluster>(8, kCT, 0, &mc, &act), cudaSuccess);
  EXPECT(mc == 16 && act == 5);
  EXPECT_ERR(se_cluster_capacity<k_cluster>(16, kCT, 0, &mc, &act), cudaSuccess);
  EXPECT(mc == 16 && act == 2);
  EXPECT_ERR(se_cluster_capacity<k_cluster>(17, kCT, 0, &mc, &act), cudaSuccess);
  EXPECT(mc == 16 && act == 0);
  EXPECT_ERR(se_cluster_capacity<k_cluster>(0, kCT, 0, &mc, &act), cudaSuccess);
  EXPECT(mc == 16 && act == 0);
  EXPECT_ERR(se_cluster_capacity<k_cluster>(8, kCT, 40 << 10, &mc, &act), cudaSuccess);
  EXPECT(mc == 8 && act == 2);
  EXPECT_ERR(se_cluster_capacity<k_cluster>(8, kCT, 60 << 10, &mc, &act), cudaSuccess);  // no smem opt-in
  EXPECT(mc == 0 && act == 0);
  EXPECT_ERR(se_allow_dynamic_smem<k_cluster>(60 << 10), cudaSuccess);
  EXPECT_ERR(se_cluster_capacity<k_cluster>(4, kCT, 60 << 10, &mc, &act), cudaSuccess);
  EXPECT(mc == 4 && act == 2);  // 1 block per SM: GPCs of 4, 4 and 2 blocks
  // Launches: run right, or the error (cleared) and nothing run.
  for (auto [grid, c] : {std::pair{80, 8}, {64, 16}, {10, 1}}) {
    std::fill(out.begin(), out.end(), -1.f);
    EXPECT_ERR(se_launch_cluster(k_cluster, grid, c, kCT, nullptr, a, 0), cudaSuccess);
    EXPECT(cluster_right(in, out, grid, c));
  }
  std::fill(out.begin(), out.end(), -1.f);
  EXPECT_ERR(se_launch_cluster(k_cluster, 12, 4, kCT, nullptr, a, 60 << 10), cudaSuccess);
  EXPECT(cluster_right(in, out, 12, 4));
  std::fill(out.begin(), out.end(), -1.f);
  EXPECT_ERR(se_launch_cluster(k_cluster, 12, 8, kCT, nullptr, a, 0), cudaErrorInvalidClusterSize);
  EXPECT_ERR(se_launch_cluster(k_cluster, 16, 8, kCT, nullptr, a, 60 << 10), cudaErrorLaunchOutOfResources);
  EXPECT(out[0] == -1.f && out[12] == -1.f);
  EXPECT_ERR(cudaPeekAtLastError(), cudaSuccess);
  // An error pending from earlier work: returned, left pending, nothing launched or asked.
  const long launches = emu::g_launches.load();
  EXPECT_ERR(cudaFuncSetAttribute(k_plain, cudaFuncAttributeMaxDynamicSharedMemorySize, 300 << 10),
             cudaErrorInvalidValue);
  EXPECT_ERR(se_launch_cluster(k_cluster, 16, 8, kCT, nullptr, a, 0), cudaErrorInvalidValue);
  mc = act = -1;
  EXPECT_ERR(se_cluster_capacity<k_cluster>(8, kCT, 0, &mc, &act), cudaErrorInvalidValue);
  EXPECT(mc == 0 && act == 0);
  EXPECT_ERR(cudaPeekAtLastError(), cudaErrorInvalidValue);
  EXPECT_ERR(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT(emu::g_launches.load() == launches && out[0] == -1.f);
  // A pre-Hopper device or image: 0 / 0, cudaSuccess, nothing launched; a launch is refused.
  emu::g_cc = 80;
  mc = act = -1;
  EXPECT_ERR(se_cluster_capacity<k_cluster>(8, kCT, 0, &mc, &act), cudaSuccess);
  EXPECT(mc == 0 && act == 0);
  EXPECT_ERR(se_launch_cluster(k_cluster, 16, 8, kCT, nullptr, a, 0), cudaErrorNotSupported);
  EXPECT_ERR(cudaPeekAtLastError(), cudaSuccess);
  emu::g_cc = 90;
  emu::g_binary_version = 80;
  mc = act = -1;
  EXPECT_ERR(se_cluster_capacity<k_cluster>(8, kCT, 0, &mc, &act), cudaSuccess);
  EXPECT(mc == 0 && act == 0);
  emu::g_binary_version = 90;
  EXPECT(emu::g_launches.load() == launches && out[0] == -1.f);
  // No kernel image: the error, cleared, 0 / 0.
  emu::g_no_kernel_image = true;
  mc = act = -1;
  EXPECT_ERR(se_cluster_capacity<k_cluster>(8, kCT, 0, &mc, &act), cudaErrorNoKernelImageForDevice);
  EXPECT(mc == 0 && act == 0);
  EXPECT_ERR(cudaPeekAtLastError(), cudaSuccess);
  emu::g_no_kernel_image = false;
  // GPCs of one single-slot SM (main.cpp's g_resident device, split): no cluster of 2 fits.
  device_gpc(4, 1, 100 << 10, 1);
  EXPECT_ERR(se_cluster_capacity<k_cluster>(2, kCT, 0, &mc, &act), cudaSuccess);
  EXPECT(mc == 1 && act == 0);
  EXPECT_ERR(se_launch_cluster(k_cluster, 4, 2, kCT, nullptr, a, 0), cudaErrorLaunchOutOfResources);
  EXPECT_ERR(cudaPeekAtLastError(), cudaSuccess);
}

// cp.async used rightly: a staged tile read after the wait and a barrier, in
// dynamic and static shared memory, on every schedule; wait(n) leaves the
// newest n groups (an empty one counted) in flight.
bool cp_async_right(int mode, int times, bool verbose) {
  std::vector<float> in(8 * kN), out(2 * kN);
  for (size_t i = 0; i < in.size(); ++i) in[i] = (float)(i % 17) - 8.f;
  for (int r = 0; r < times; ++r) {
    std::fill(out.begin(), out.end(), -1.f);
    EXPECT_ERR(launch_ex(k_cp_async, 1, kN, Args{out.data(), in.data(), mode}, 16 * kN), cudaSuccess);
    for (int t = 0; t < kN; ++t) {
      const int u = mode == 1 ? 4 * t : 4 * ((t + 1) % kN);
      if (out[t] != in[u] + in[u + 1] + in[u + 2] + in[u + 3]) {
        if (verbose) printf("FAIL cp.async mode %d launch %d: thread %d read %g\n", mode, r, t, out[t]);
        return false;
      }
    }
  }
  return true;
}
void test_cp_async() {
  EXPECT(cp_async_right(0, 8, true));
  EXPECT(cp_async_right(8, 8, true));
  std::vector<float> in(8 * kN), out(2 * kN);
  for (size_t i = 0; i < in.size(); ++i) in[i] = (float)(i % 11) - 5.f;
  for (int r = 0; r < 8; ++r) {
    std::fill(out.begin(), out.end(), -1.f);
    EXPECT_ERR(launch_ex(k_cp_pipeline, 1, kN, Args{out.data(), in.data(), 0}, 32 * kN), cudaSuccess);
    bool ok = true;
    for (int t = 0; t < kN; ++t) {
      const int u = 4 * ((t + 1) % kN);
      float want = 0.f;
      for (int j = 0; j < 4; ++j) want += in[u + j] + in[4 * kN + u + j];
      ok = ok && out[t] == want && out[kN + t] == 1.f;
    }
    EXPECT(ok);
  }
}

int run(const std::string& name) {
  std::vector<float> in(kN * 8 + 64), out(kN * 8 + 64, 0.f);
  for (size_t i = 0; i < in.size(); ++i) in[i] = (float)(i % 13) - 6.f;
  Args a{out.data(), in.data(), 0};
  if (name == "good") {  // the checked accesses, shuffles and barriers used rightly
    EXPECT_ERR(se_launch(k_ld16_global, 1, kN, nullptr, Args{out.data(), in.data(), 4}), cudaSuccess);
    EXPECT_ERR(se_launch(k_st16_shared, 1, kN, nullptr, Args{out.data(), in.data(), 0}), cudaSuccess);
    EXPECT(out[0] == __uint_as_float(1u));
    EXPECT_ERR(se_launch_cooperative(k_ld16_dynamic, 1, kN, nullptr, Args{out.data(), in.data(), 0},
                                     sizeof(Tile)), cudaSuccess);
    EXPECT(out[5] == 1.f);
    for (int mode : {0, 7}) {
      a.n = mode;
      EXPECT(same_every_launch(k_shuffle, a, 4, out));
    }
    a.n = 7;  // lane 0 of each half-warp: its value plus lane 8's
    EXPECT(same_every_launch(k_shuffle, a, 1, out) && out[0] == in[0] + in[8] && out[16] == in[16] + in[24]);
    a.n = 0;
    EXPECT(same_every_launch(k_reduce_reuse, a, 8, out));
    EXPECT(same_every_launch(k_race, a, 8, out));
    const float want = (in[1] + in[kN - 1]) * 6.f;
    EXPECT(out[0] == want);
  } else if (name == "runtime") {
    test_runtime();
  } else if (name == "se_sync") {
    test_se_sync();
  } else if (name == "misaligned_global_load") {
    (void)se_launch(k_ld16_global, 1, kN, nullptr, Args{out.data(), in.data(), 1});
  } else if (name == "misaligned_shared_store") {
    (void)se_launch(k_st16_shared, 1, kN, nullptr, Args{out.data(), in.data(), 2});
  } else if (name == "misaligned_dynamic_load") {
    (void)se_launch_cooperative(k_ld16_dynamic, 1, kN, nullptr, Args{out.data(), in.data(), 3}, sizeof(Tile));
  } else if (name.rfind("shuffle_", 0) == 0) {
    const char* kinds[] = {"", "shuffle_partial_mask", "shuffle_exited_lane", "shuffle_lane_elsewhere",
                           "shuffle_divergent", "shuffle_offset", "shuffle_width"};
    a.n = -1;
    for (int k = 1; k < 7; ++k)
      if (name == kinds[k]) a.n = k;
    if (a.n < 0) { printf("unknown check %s\n", name.c_str()); return 64; }
    (void)se_launch(k_shuffle, 1, kN, nullptr, a);
  } else if (name == "race_read_after_write" || name == "race_write_after_read") {
    a.n = name == "race_read_after_write" ? 1 : 2;
    if (!same_every_launch(k_race, a, 8, out)) {
      printf("race: the results change with the thread schedule (a missing __syncthreads)\n");
      return 1;
    }
  } else if (name == "race_reduction_reuse") {
    a.n = 1;
    if (!same_every_launch(k_reduce_reuse, a, 8, out)) {
      printf("race: the results change with the thread schedule (a missing __syncthreads)\n");
      return 1;
    }
  } else if (name == "grid_sync_outside_cooperative") {
    (void)se_launch(k_coop, 2, kN, nullptr, a);
  } else if (name == "cluster") {
    test_cluster();
  } else if (name == "cluster_runtime") {
    test_cluster_runtime();
  } else if (name == "se_sync_cluster") {
    test_se_sync_cluster();
  } else if (name == "cp_async") {
    test_cp_async();
  } else if (name == "cluster_sync_outside_cluster") {
    (void)se_launch(k_cluster, 2, kCT, nullptr, a);
  } else if (name == "cluster_sync_block_returned") {
    (void)se_launch_cluster(k_cluster_exit, 4, 2, kCT, nullptr, a, 0);
  } else if (name == "cluster_sync_pre_hopper_image") {
    emu::g_binary_version = 80;
    (void)se_launch_cluster(k_cluster, 4, 2, kCT, nullptr, a, 0);
  } else if (name.rfind("dsmem_", 0) == 0) {
    const char* kinds[] = {"", "dsmem_read_before_barrier", "dsmem_outside_shared", "dsmem_no_barrier",
                           "dsmem_misaligned", "dsmem_rank_outside_cluster"};
    int mode = -1;
    for (int k = 1; k < 6; ++k)
      if (name == kinds[k]) mode = k;
    if (mode < 0) { printf("unknown check %s\n", name.c_str()); return 64; }
    std::vector<float> in(4096), out(4096, -2.f);
    for (size_t i = 0; i < in.size(); ++i) in[i] = (float)(i % 29) + 1.f;
    EXPECT_ERR(cudaFuncSetAttribute(k_dsmem, cudaFuncAttributeNonPortableClusterSizeAllowed, 1), cudaSuccess);
    (void)launch_ex(k_dsmem, 8, kCTd, Args{out.data(), in.data(), mode}, kCTd * sizeof(float), 4);
    if (!dsmem_right(in, out, 8, 4)) {
      printf("distributed shared memory: a read before the cluster barrier saw the bytes there before: wrong results\n");
      return 1;
    }
  } else if (name.rfind("cp_async_", 0) == 0) {
    const char* kinds[] = {"", "cp_async_read_before_wait", "cp_async_read_before_barrier",
                           "cp_async_misaligned_source", "cp_async_misaligned_destination",
                           "cp_async_outside_shared", "cp_async_pending_at_exit", "cp_async_wait_without_commit"};
    int mode = -1;
    for (int k = 1; k < 8; ++k)
      if (name == kinds[k]) mode = k;
    if (mode < 0) { printf("unknown check %s\n", name.c_str()); return 64; }
    if (!cp_async_right(mode, 8, false)) {
      printf("cp.async: a read before the wait (or the barrier after it) saw unstaged shared memory: wrong results\n");
      return 1;
    }
  } else {
    printf("unknown check %s\n", name.c_str());
    return 64;
  }
  if (g_failures) return 1;
  printf("ok %s\n", name.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) { fprintf(stderr, "usage: %s list | NAME\n", argv[0]); return 64; }
  const std::string name = argv[1];
  if (name == "list") {
    for (const char* g : {"good", "runtime", "se_sync", "cluster", "cluster_runtime", "se_sync_cluster", "cp_async"})
      printf("good %s\n", g);
    for (const char* b : {"misaligned_global_load", "misaligned_shared_store", "misaligned_dynamic_load",
                          "shuffle_partial_mask", "shuffle_exited_lane", "shuffle_lane_elsewhere", "shuffle_divergent",
                          "shuffle_offset", "shuffle_width", "race_read_after_write", "race_write_after_read",
                          "race_reduction_reuse", "grid_sync_outside_cooperative", "cluster_sync_outside_cluster",
                          "cluster_sync_block_returned", "cluster_sync_pre_hopper_image", "cp_async_read_before_wait",
                          "cp_async_read_before_barrier", "cp_async_misaligned_source",
                          "cp_async_misaligned_destination", "cp_async_outside_shared", "cp_async_pending_at_exit",
                          "cp_async_wait_without_commit", "dsmem_read_before_barrier", "dsmem_outside_shared",
                          "dsmem_no_barrier", "dsmem_misaligned", "dsmem_rank_outside_cluster"})
      printf("bad %s\n", b);
    return 0;
  }
  emu::g_case = argv[1];
  emu::g_resident = 4;
  return run(name);
}
