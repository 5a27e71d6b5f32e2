// CUDA kernels of the SE block (see se_math.h for the math and the numerics).
//
// Forward, one launch (after a cudaMemsetAsync of the counters):
//   se_block_kernel<T, /*backward*/ false, /*NHWC*/ layout>, persistent. A
//   block takes work units in increasing order from a global ticket; unit
//   u = (sample n = u / B, channel tile t = u % B). For each unit it
//     1. squeezes its channels: pooled[n, c] = sum_hw x / HW, each channel
//        reduced by one block in a fixed order;
//     2. arrives on the sample's counter; the last of the B blocks to arrive
//        runs the gate MLP of the sample (z1, a, z2, s), writes z1 and z2 for
//        the backward and publishes s[n, :] with a release flag;
//     3. waits for that flag and scales its channels: y = x * s[n, c]
//        (x re-read, usually from L2).
// Backward, two launches (after the memset):
//   se_block_kernel<T, true, layout>: the same persistent structure with
//     1. ds[n, c] = sum_hw dy * x;
//     2. the last block of the sample runs the gate backward (a and s from the
//        forward's z1 and z2) and writes s, dp / HW, dz2, dz1 and a;
//     3. dx = dy * s + dp / HW for its channels.
//   se_weight_grad_kernel<T>: dw1, dw2 (tiled; each output sums over n in
//     order 0..N-1), db1, db2.
//
// Determinism: no floating-point atomics. Every sum has an order fixed by
// the problem shape (C, HW, hidden, dtype, layout), never by N, the tile
// size, the number of SMs, the alignment of the pointers or timing:
//   - a row reduction (NCHW channel planes, the MLP's dot products) splits
//     the row into chunks of V = 16 / sizeof(T) elements, chunk k belongs to
//     lane k % G of a G-lane group (G from the row length), each lane adds
//     its elements in increasing order, then a shuffle tree (and, for
//     G > 32, a shared-memory pass over the warps in order). The 16-byte
//     vector path and the scalar fallback visit the same elements in the
//     same order, so misaligned inputs give the same bits;
//   - a column reduction (NHWC channels, the MLP's transposed products)
//     gives each column to R row-strided threads (R from the shape), each
//     adding its rows in increasing order, then a fixed tree in shared memory.
// So y of a sample does not depend on the other samples of the batch.
//
// Forward progress of the spin-wait. Let R be the number of blocks of the
// kernel that can be resident at once (occupancy x SMs; the max-shared
// carveout makes that figure what the hardware gives). The launcher sizes
// the channel tiles so that B (tiles per sample) <= R / 2 (half, as a margin
// for an R that overstates what this launch gets) and launches
// min(units, R) persistent blocks. Tickets are taken in increasing order, so
// once any unit of sample m + 1 is taken, every unit of m is held by a
// running block. Take the smallest sample m whose flag is not yet set:
//   - if all B units of m are taken, their blocks are resident and only
//     squeeze before arriving (no waiting), so all arrive, the last runs the
//     MLP (no waiting) and sets the flag;
//   - otherwise no unit past m is taken, and the only blocks that can be
//     waiting are those holding units of m (blocks of earlier samples are
//     released, as those flags are set): fewer than B <= R / 2 blocks. So at
//     least one resident block is not waiting; it finishes its unit, takes
//     the next ticket, which is an untaken unit of m, and the count of m's
//     taken units grows until the first case holds.
// Blocks that are not yet resident (the GPU shared with other kernels) hold
// no ticket, so they cannot be waited on; the argument needs only B of the
// launched blocks resident at once. A watchdog turns a wait of over a minute
// into a trap (a launch error) instead of a hang.
//
// Memory ordering: a block writes its pooled/ds values, __syncthreads, then
// thread 0 does __threadfence + atomicAdd (release pattern); the last block
// does __threadfence after its atomicAdd (acquire pattern), __syncthreads,
// and reads the other blocks' values with ld.global.cg (L2, never a stale
// L1 line). The MLP block writes s (and g), __syncthreads, thread 0 does
// __threadfence + st.release.gpu of the flag; waiters poll with
// ld.acquire.gpu, __threadfence, __syncthreads, and read s with ld.cg.
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <atomic>
#include <cstdint>

#include "se_block.h"
#include "se_math.h"

namespace se_fused {
namespace cuda_kernels {
namespace {

constexpr int kThreads = 256;            // every kernel: 8 warps
constexpr int kWarps = kThreads / 32;
constexpr int kMinBlocks = 3;            // se_block_kernel: <= 80 registers, 3 blocks per SM
constexpr unsigned kMaxPolls = 1u << 27;  // spin-wait watchdog: ~70 s of 512 ns sleeps
constexpr int kBufBytes = 16384;         // pooled[n, :] staging / column partials
constexpr int kHiddenBytes = 8192;       // forward MLP hidden activations
constexpr int kTile = 64;                // weight gradients: 64 x 64 outputs per block
constexpr int kTileN = 16;               // ... samples staged per step

template <typename T>
struct Vec {
  static constexpr int V = 16 / static_cast<int>(sizeof(T));  // elements per 16 bytes
};

template <typename A>
struct Caps {
  static constexpr int64_t kPooled = kBufBytes / sizeof(A);     // C staged in smem up to this
  static constexpr int64_t kHidden = kHiddenBytes / sizeof(A);  // hidden in smem up to this
};

// ---------------------------------------------------------------- scalars

__device__ __forceinline__ double to_acc(float v) { return static_cast<double>(v); }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_acc(acc_t<T> v);
template <>
__device__ __forceinline__ float from_acc<float>(double v) { return static_cast<float>(v); }
template <>
__device__ __forceinline__ double from_acc<double>(double v) { return v; }
template <>
__device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

__device__ __forceinline__ float fma_acc(float a, float b, float c) { return fmaf(a, b, c); }
__device__ __forceinline__ double fma_acc(double a, double b, double c) { return fma(a, b, c); }

// ------------------------------------------------------- 16-byte packs

__device__ __forceinline__ unsigned word_of(const uint4& u, int k) {
  return k == 0 ? u.x : (k == 1 ? u.y : (k == 2 ? u.z : u.w));
}
__device__ __forceinline__ void set_word(uint4& u, int k, unsigned v) {
  if (k == 0) u.x = v;
  else if (k == 1) u.y = v;
  else if (k == 2) u.z = v;
  else u.w = v;
}

// Element i of a 16-byte pack (i is a compile-time constant after unrolling).
template <typename T>
struct PackIO;
template <>
struct PackIO<float> {
  static __device__ __forceinline__ float get(const uint4& u, int i) {
    return __uint_as_float(word_of(u, i));
  }
  static __device__ __forceinline__ void set(uint4& u, int i, float v) {
    set_word(u, i, __float_as_uint(v));
  }
};
template <>
struct PackIO<double> {
  static __device__ __forceinline__ double get(const uint4& u, int i) {
    return __hiloint2double(static_cast<int>(word_of(u, 2 * i + 1)),
                            static_cast<int>(word_of(u, 2 * i)));
  }
  static __device__ __forceinline__ void set(uint4& u, int i, double v) {
    set_word(u, 2 * i, static_cast<unsigned>(__double2loint(v)));
    set_word(u, 2 * i + 1, static_cast<unsigned>(__double2hiint(v)));
  }
};
__device__ __forceinline__ unsigned short half_word(const uint4& u, int i) {
  const unsigned w = word_of(u, i >> 1);
  return static_cast<unsigned short>((i & 1) ? (w >> 16) : (w & 0xffffu));
}
__device__ __forceinline__ void set_half_word(uint4& u, int i, unsigned short b) {
  const unsigned w = word_of(u, i >> 1);
  set_word(u, i >> 1,
           (i & 1) ? ((w & 0x0000ffffu) | (static_cast<unsigned>(b) << 16))
                   : ((w & 0xffff0000u) | static_cast<unsigned>(b)));
}
template <>
struct PackIO<__half> {
  static __device__ __forceinline__ __half get(const uint4& u, int i) {
    return __ushort_as_half(half_word(u, i));
  }
  static __device__ __forceinline__ void set(uint4& u, int i, __half v) {
    set_half_word(u, i, __half_as_ushort(v));
  }
};
template <>
struct PackIO<__nv_bfloat16> {
  static __device__ __forceinline__ __nv_bfloat16 get(const uint4& u, int i) {
    return __ushort_as_bfloat16(half_word(u, i));
  }
  static __device__ __forceinline__ void set(uint4& u, int i, __nv_bfloat16 v) {
    set_half_word(u, i, __bfloat16_as_ushort(v));
  }
};

__device__ __forceinline__ bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}
template <typename T>
__device__ __forceinline__ uint4 ld16(const T* p) {
  return *reinterpret_cast<const uint4*>(p);
}
// Last use of the data: evict-first, keep L2 for what is still to be read.
template <typename T>
__device__ __forceinline__ uint4 ld16_last(const T* p) {
  return __ldcs(reinterpret_cast<const uint4*>(p));
}
template <typename T>
__device__ __forceinline__ void st16_stream(T* p, uint4 v) {
  __stcs(reinterpret_cast<uint4*>(p), v);
}

// ------------------------------------------------ inter-block signalling

__device__ __forceinline__ unsigned ld_acquire_gpu(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void st_release_gpu(unsigned* p, unsigned v) {
  asm volatile("st.release.gpu.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

// A vector of acc_t the gate MLP reads. kL2: read with ld.global.cg (the
// forward's pooled[n, :] when too long to stage in shared memory: written by
// other blocks, so never from a possibly stale L1 line). Otherwise generic
// loads: shared memory, the backward's pooled (an input), or global vectors
// this block wrote before a __syncthreads.
template <typename A, bool kL2 = false>
struct VecSrc {
  const A* p;
  __device__ __forceinline__ A operator[](int64_t i) const {
    if constexpr (kL2) {
      return __ldcg(p + i);
    } else {
      return p[i];
    }
  }
};

// ------------------------------------------------------ row reductions
// An op sums the terms of one row of len elements. Chunk k = elements
// [k V, k V + V). load/add_chunk (16-byte path, only when vec_ok) and
// add_elem (scalar path) must add the same terms in the same order.

template <typename T>
struct RowSum {  // sum_i a[i]
  using A = acc_t<T>;
  static constexpr int V = Vec<T>::V;
  static constexpr int kUnroll = 4;  // 4 16-byte loads in flight per thread
  const T* a;
  struct Raw {
    uint4 a;
  };
  __device__ __forceinline__ bool vec_ok() const { return aligned16(a); }
  __device__ __forceinline__ Raw load(int64_t k) const { return Raw{ld16(a + k * V)}; }
  __device__ __forceinline__ A add_chunk(A acc, const Raw& r, int64_t) const {
#pragma unroll
    for (int i = 0; i < V; ++i) acc = acc + to_acc(PackIO<T>::get(r.a, i));
    return acc;
  }
  __device__ __forceinline__ A add_elem(A acc, int64_t i) const { return acc + to_acc(a[i]); }
};

template <typename T>
struct RowDot2 {  // sum_i a[i] * b[i]
  using A = acc_t<T>;
  static constexpr int V = Vec<T>::V;
  static constexpr int kUnroll = 2;  // 2 chunks x 2 tensors: 4 16-byte loads in flight
  const T* a;
  const T* b;
  struct Raw {
    uint4 a, b;
  };
  __device__ __forceinline__ bool vec_ok() const { return aligned16(a) && aligned16(b); }
  __device__ __forceinline__ Raw load(int64_t k) const { return Raw{ld16(a + k * V), ld16(b + k * V)}; }
  __device__ __forceinline__ A add_chunk(A acc, const Raw& r, int64_t) const {
#pragma unroll
    for (int i = 0; i < V; ++i)
      acc = fma_acc(to_acc(PackIO<T>::get(r.a, i)), to_acc(PackIO<T>::get(r.b, i)), acc);
    return acc;
  }
  __device__ __forceinline__ A add_elem(A acc, int64_t i) const {
    return fma_acc(to_acc(a[i]), to_acc(b[i]), acc);
  }
};

template <typename T, bool kL2 = false>
struct RowDotVec {  // sum_i w[i] * v[i], v in acc_t
  using A = acc_t<T>;
  static constexpr int V = Vec<T>::V;
  static constexpr int kUnroll = 2;  // 2 weight chunks in flight (the MLP: fewer registers)
  const T* w;
  VecSrc<A, kL2> v;
  struct Raw {
    uint4 w;
  };
  __device__ __forceinline__ bool vec_ok() const { return aligned16(w); }
  __device__ __forceinline__ Raw load(int64_t k) const { return Raw{ld16(w + k * V)}; }
  __device__ __forceinline__ A add_chunk(A acc, const Raw& r, int64_t k) const {
#pragma unroll
    for (int i = 0; i < V; ++i) acc = fma_acc(to_acc(PackIO<T>::get(r.w, i)), v[k * V + i], acc);
    return acc;
  }
  __device__ __forceinline__ A add_elem(A acc, int64_t i) const {
    return fma_acc(to_acc(w[i]), v[i], acc);
  }
};

// The partial sum of lane gl (of a G-lane group) over its chunks
// gl, gl + G, gl + 2G, ... in increasing order; the partial last chunk (when
// V does not divide len) goes to its owner lane, nfull % G.
template <typename Op>
__device__ __forceinline__ typename Op::A lane_partial(const Op& op, int64_t len, int gl, int G) {
  using A = typename Op::A;
  constexpr int V = Op::V;
  A acc = A(0);
  const int64_t nfull = len / V;
  if (op.vec_ok()) {
    constexpr int U = Op::kUnroll;
    int64_t k = gl;
    for (; k + (U - 1) * G < nfull; k += U * G) {  // U loads in flight, then add in order
      typename Op::Raw r[U];
#pragma unroll
      for (int u = 0; u < U; ++u) r[u] = op.load(k + u * G);
#pragma unroll
      for (int u = 0; u < U; ++u) acc = op.add_chunk(acc, r[u], k + u * G);
    }
    for (; k < nfull; k += G) acc = op.add_chunk(acc, op.load(k), k);
  } else {  // same elements, same order, scalar loads (not unrolled: a cold path)
    for (int64_t k = gl; k < nfull; k += G) {
      for (int64_t i = k * V; i < k * V + V; ++i) acc = op.add_elem(acc, i);
    }
  }
  if (nfull * V < len && (nfull & (G - 1)) == gl) {  // G is a power of two
    for (int64_t i = nfull * V; i < len; ++i) acc = op.add_elem(acc, i);
  }
  return acc;
}

// The sum over a group of G consecutive threads (G a power of two <= kThreads),
// valid in the group's first thread. For G > 32 it synchronises the block:
// call it from block-uniform control flow only.
template <typename A>
__device__ __forceinline__ A group_reduce(A v, int G, A* red) {
  const int width = G < 32 ? G : 32;
  for (int off = width / 2; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off, width);
  if (G > 32) {
    const int warp = threadIdx.x / 32;
    if ((threadIdx.x & 31) == 0) red[warp] = v;
    __syncthreads();
    if (threadIdx.x % G == 0) {
      A t = red[warp];
      for (int w = 1; w < G / 32; ++w) t += red[warp + w];
      v = t;
    }
    __syncthreads();
  }
  return v;
}

// out(r, sum of row r) for r in [0, nrows); rows handled kThreads / G at a time.
// Block-uniform arguments required (may synchronise).
template <typename A, typename MakeOp, typename Out>
__device__ __forceinline__ void row_reduce(int64_t nrows, int64_t len, int G, A* red,
                                           const MakeOp& make_op, const Out& out) {
  const int gi = threadIdx.x / G;
  const int gl = threadIdx.x % G;
  const int per_round = kThreads / G;
  for (int64_t base = 0; base < nrows; base += per_round) {
    const int64_t r = base + gi;
    A v = A(0);
    if (r < nrows) v = lane_partial(make_op(r), len, gl, G);
    v = group_reduce(v, G, red);
    if (gl == 0 && r < nrows) out(r, v);
  }
}

// --------------------------------------------------- column reductions
// An op adds the terms of row r for V consecutive columns c .. c + V - 1 of a
// row-major matrix (row stride ld elements).

template <typename T>
struct ColSum {  // sum_r a[r, c]
  using A = acc_t<T>;
  static constexpr int V = Vec<T>::V;
  static constexpr int kUnroll = 4;  // 4 16-byte loads in flight per thread
  const T* a;
  int64_t ld;
  struct Raw {
    uint4 a;
  };
  __device__ __forceinline__ bool vec_ok(int64_t c) const {
    return aligned16(a + c) && ((ld * static_cast<int64_t>(sizeof(T))) & 15) == 0;
  }
  __device__ __forceinline__ Raw load(int64_t r, int64_t c) const { return Raw{ld16(a + r * ld + c)}; }
  __device__ __forceinline__ void add_chunk(A (&acc)[V], const Raw& raw, int64_t) const {
#pragma unroll
    for (int i = 0; i < V; ++i) acc[i] = acc[i] + to_acc(PackIO<T>::get(raw.a, i));
  }
  __device__ __forceinline__ A add_elem(A acc, int64_t r, int64_t c) const {
    return acc + to_acc(a[r * ld + c]);
  }
};

template <typename T>
struct ColDot2 {  // sum_r a[r, c] * b[r, c]
  using A = acc_t<T>;
  static constexpr int V = Vec<T>::V;
  static constexpr int kUnroll = 2;  // 2 chunks x 2 tensors: 4 16-byte loads in flight
  const T* a;
  const T* b;
  int64_t ld;
  struct Raw {
    uint4 a, b;
  };
  __device__ __forceinline__ bool vec_ok(int64_t c) const {
    return aligned16(a + c) && aligned16(b + c) &&
           ((ld * static_cast<int64_t>(sizeof(T))) & 15) == 0;
  }
  __device__ __forceinline__ Raw load(int64_t r, int64_t c) const {
    return Raw{ld16(a + r * ld + c), ld16(b + r * ld + c)};
  }
  __device__ __forceinline__ void add_chunk(A (&acc)[V], const Raw& raw, int64_t) const {
#pragma unroll
    for (int i = 0; i < V; ++i)
      acc[i] = fma_acc(to_acc(PackIO<T>::get(raw.a, i)), to_acc(PackIO<T>::get(raw.b, i)), acc[i]);
  }
  __device__ __forceinline__ A add_elem(A acc, int64_t r, int64_t c) const {
    return fma_acc(to_acc(a[r * ld + c]), to_acc(b[r * ld + c]), acc);
  }
};

template <typename T>
struct ColDotVec {  // sum_r w[r, c] * v[r], v in acc_t
  using A = acc_t<T>;
  static constexpr int V = Vec<T>::V;
  static constexpr int kUnroll = 2;  // 2 weight chunks in flight (the MLP: fewer registers)
  const T* w;
  int64_t ld;
  VecSrc<A> v;
  struct Raw {
    uint4 w;
  };
  __device__ __forceinline__ bool vec_ok(int64_t c) const {
    return aligned16(w + c) && ((ld * static_cast<int64_t>(sizeof(T))) & 15) == 0;
  }
  __device__ __forceinline__ Raw load(int64_t r, int64_t c) const { return Raw{ld16(w + r * ld + c)}; }
  __device__ __forceinline__ void add_chunk(A (&acc)[V], const Raw& raw, int64_t r) const {
    const A vr = v[r];
#pragma unroll
    for (int i = 0; i < V; ++i) acc[i] = fma_acc(to_acc(PackIO<T>::get(raw.w, i)), vr, acc[i]);
  }
  __device__ __forceinline__ A add_elem(A acc, int64_t r, int64_t c) const {
    return fma_acc(to_acc(w[r * ld + c]), v[r], acc);
  }
};

// out(c, sum_r term(r, c)) for c in [0, ncols), r in [0, nrows). Threads form
// CW vector-columns x R = kThreads / CW rows; thread (cv, q) adds rows
// q, q + R, ... of columns cv V .. cv V + V - 1 in increasing order, then a
// fixed tree over q in shared memory (part: kThreads * V values).
// Block-uniform arguments required (synchronises).
template <typename Op, typename Out>
__device__ __forceinline__ void col_reduce(const Op& op, int64_t nrows, int64_t ncols, int CW,
                                           typename Op::A* part, const Out& out) {
  using A = typename Op::A;
  constexpr int V = Op::V;
  const int R = kThreads / CW;
  const int cv = threadIdx.x % CW;
  const int q = threadIdx.x / CW;
  for (int64_t col0 = 0; col0 < ncols; col0 += static_cast<int64_t>(CW) * V) {
    const int64_t c = col0 + static_cast<int64_t>(cv) * V;
    A acc[V];
#pragma unroll
    for (int i = 0; i < V; ++i) acc[i] = A(0);
    if (c < ncols) {
      if (c + V <= ncols && op.vec_ok(c)) {
        constexpr int U = Op::kUnroll;
        int64_t r = q;
        for (; r + (U - 1) * R < nrows; r += U * R) {  // U loads in flight, then add in order
          typename Op::Raw raw[U];
#pragma unroll
          for (int u = 0; u < U; ++u) raw[u] = op.load(r + u * R, c);
#pragma unroll
          for (int u = 0; u < U; ++u) op.add_chunk(acc, raw[u], r + u * R);
        }
        for (; r < nrows; r += R) op.add_chunk(acc, op.load(r, c), r);
      } else {
        for (int64_t r = q; r < nrows; r += R) {
#pragma unroll
          for (int i = 0; i < V; ++i)
            if (c + i < ncols) acc[i] = op.add_elem(acc[i], r, c + i);
        }
      }
    }
#pragma unroll
    for (int i = 0; i < V; ++i) part[i * kThreads + threadIdx.x] = acc[i];
    __syncthreads();
    for (int h = R / 2; h > 0; h >>= 1) {
      if (q < h) {
#pragma unroll
        for (int i = 0; i < V; ++i)
          part[i * kThreads + threadIdx.x] += part[i * kThreads + threadIdx.x + h * CW];
      }
      __syncthreads();
    }
    if (q == 0) {  // threadIdx.x == cv
#pragma unroll
      for (int i = 0; i < V; ++i)
        if (c + i < ncols) out(c + i, part[i * kThreads + cv]);
    }
    __syncthreads();  // part is rewritten by the next round
  }
}

// ------------------------------------------------------------ epilogues
// y = x * s (forward) or dx = dy * s + g (backward), rounded once to T.

template <typename T, bool kBwd>
struct Epi {  // __half, __nv_bfloat16: float math
  float s = 0.f, g = 0.f;
  __device__ __forceinline__ void init(float s_, float g_) { s = s_; g = g_; }
  __device__ __forceinline__ T apply(T v) const {
    return kBwd ? from_acc<T>(fmaf(to_acc(v), s, g)) : from_acc<T>(to_acc(v) * s);
  }
};
template <bool kBwd>
struct Epi<float, kBwd> {
  SplitGate sg{0.f, 0.f};
  float g = 0.f;
  __device__ __forceinline__ void init(double s_, double g_) {
    sg = split_gate(s_);
    g = static_cast<float>(g_);
  }
  __device__ __forceinline__ float apply(float v) const {
    return kBwd ? scale_add_float(v, sg, g) : scale_float(v, sg);
  }
};
template <bool kBwd>
struct Epi<double, kBwd> {
  double s = 0.0, g = 0.0;
  __device__ __forceinline__ void init(double s_, double g_) { s = s_; g = g_; }
  __device__ __forceinline__ double apply(double v) const { return kBwd ? fma(v, s, g) : v * s; }
};

template <typename T, typename E>
__device__ __forceinline__ uint4 apply_pack(const E& e, uint4 u) {
  uint4 o = make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
  for (int i = 0; i < Vec<T>::V; ++i) PackIO<T>::set(o, i, e.apply(PackIO<T>::get(u, i)));
  return o;
}

// out[i] = e(in[i]) for one contiguous plane of len elements, by a G-lane
// group: scalar head up to the first 16-byte boundary, 16-byte body, scalar
// tail; all scalar when in and out are not equally aligned.
template <typename T, typename E>
__device__ __forceinline__ void scale_plane(const T* in, T* out, int64_t len, int gl, int G,
                                            const E& e) {
  constexpr int V = Vec<T>::V;
  const uintptr_t ai = reinterpret_cast<uintptr_t>(in);
  const uintptr_t ao = reinterpret_cast<uintptr_t>(out);
  int64_t head = len;
  if (((ai ^ ao) & 15u) == 0 && (ai % sizeof(T)) == 0) {
    head = static_cast<int64_t>(((16u - (ai & 15u)) & 15u) / sizeof(T));
    if (head > len) head = len;
  }
  for (int64_t i = gl; i < head; i += G) out[i] = e.apply(in[i]);
  const int64_t nvec = (len - head) / V;
  const T* vin = in + head;
  T* vout = out + head;
  const int64_t step = static_cast<int64_t>(G) * V;  // elements between a lane's vectors
  int64_t k = gl;
  for (; k + 3 * G < nvec; k += 4 * G) {
    const T* src = vin + k * V;
    T* dst = vout + k * V;
    const uint4 u0 = ld16_last(src);
    const uint4 u1 = ld16_last(src + step);
    const uint4 u2 = ld16_last(src + 2 * step);
    const uint4 u3 = ld16_last(src + 3 * step);
    st16_stream(dst, apply_pack<T>(e, u0));
    st16_stream(dst + step, apply_pack<T>(e, u1));
    st16_stream(dst + 2 * step, apply_pack<T>(e, u2));
    st16_stream(dst + 3 * step, apply_pack<T>(e, u3));
  }
  for (; k < nvec; k += G) st16_stream(vout + k * V, apply_pack<T>(e, ld16_last(vin + k * V)));
  for (int64_t i = head + nvec * V + gl; i < len; i += G) out[i] = e.apply(in[i]);
}

// ----------------------------------------------------------- main kernel

template <typename T>
struct MainArgs {
  using A = acc_t<T>;
  const T* x;
  const T* dy;   // backward only
  T* out;        // y or dx
  A* pooled;     // forward: written; backward: read
  A* z1;         // [N, hidden] forward: written; backward: read
  A* z2;         // [N, C] forward: written; backward: read
  const T* w1;
  const T* b1;   // may be null
  const T* w2;
  const T* b2;   // may be null
  int64_t N, C, HW, hidden;
  int channels_last;
  Activation act;
  Gate gate;
  int G;    // NCHW: lanes per channel plane
  int CW;   // NHWC: vector-columns (of V channels) per round
  int G1;   // MLP: lanes per w1 row (length C)
  int G2;   // MLP: lanes per w2 row (length hidden)
  int CWa;  // backward MLP: column width for da (hidden columns)
  int CWp;  // backward MLP: column width for dp (C columns)
  int64_t tile_channels;  // channels per work unit
  int64_t tiles;          // B: units per sample
  int64_t units;          // N * B
  double inv_tiles;       // 1 / B, to split a ticket without a 64-bit division
  unsigned long long* ticket;
  unsigned* arrive;  // [N]
  unsigned* ready;   // [N]
  A* s;    // [N, C] gate
  A* g;    // [N, C] dp / HW (backward)
  A* ds;   // [N, C] (backward)
  A* dz2;  // [N, C] (backward)
  A* dz1;  // [N, hidden] (backward)
  A* a;    // [N, hidden] activations (backward)
  A* h;    // [N, hidden] forward activations when hidden exceeds shared memory
};

template <typename A>
struct Smem {
  A buf[kBufBytes / sizeof(A)];     // pooled[n, :] staging, or column partials
  A hid[kHiddenBytes / sizeof(A)];  // forward hidden activations
  A red[kWarps];
  unsigned long long ticket;
  int is_last;
};

// 1. squeeze: pooled[n, c] = mean_hw x (forward) or ds[n, c] = sum_hw dy x.
template <typename T, bool kBwd, bool kNHWC>
__device__ __forceinline__ void squeeze_tile(const MainArgs<T>& p, Smem<acc_t<T>>& sm, int64_t n,
                                             int64_t c0, int64_t c1) {
  using A = acc_t<T>;
  const int64_t C = p.C, HW = p.HW;
  const int64_t sample = n * C * HW;
  const T* xs = p.x + sample;
  A* dst = (kBwd ? p.ds : p.pooled) + n * C;
  auto store = [&](int64_t c, A v) {
    if constexpr (kBwd) {
      dst[c] = v;
    } else {
      dst[c] = v / static_cast<A>(HW);
    }
  };
  if constexpr (!kNHWC) {
    auto make_op = [&](int64_t r) {
      const int64_t off = (c0 + r) * HW;
      if constexpr (kBwd) {
        return RowDot2<T>{p.dy + sample + off, xs + off};
      } else {
        return RowSum<T>{xs + off};
      }
    };
    row_reduce(c1 - c0, HW, p.G, sm.red, make_op, [&](int64_t r, A v) { store(c0 + r, v); });
  } else {
    auto out = [&](int64_t c, A v) { store(c0 + c, v); };
    if constexpr (kBwd) {
      col_reduce(ColDot2<T>{p.dy + sample + c0, xs + c0, C}, HW, c1 - c0, p.CW, sm.buf, out);
    } else {
      col_reduce(ColSum<T>{xs + c0, C}, HW, c1 - c0, p.CW, sm.buf, out);
    }
  }
}

// pooled[n, :] staged in shared memory (when C <= Caps::kPooled).
template <typename T>
__device__ __forceinline__ void stage_pooled(const MainArgs<T>& p, Smem<acc_t<T>>& sm, int64_t n) {
  const acc_t<T>* src = p.pooled + n * p.C;
  for (int64_t c = threadIdx.x; c < p.C; c += kThreads) sm.buf[c] = __ldcg(src + c);
  __syncthreads();
}

// 2f. gate MLP of sample n (the whole block): s[n, :].
template <typename T>
__device__ __forceinline__ void excite_forward(const MainArgs<T>& p, Smem<acc_t<T>>& sm, int64_t n) {
  using A = acc_t<T>;
  const int64_t C = p.C, H = p.hidden;
  const bool hid_global = H > Caps<A>::kHidden;
  A* hb = hid_global ? p.h + n * H : sm.hid;
  A* z1_n = p.z1 + n * H;
  A* z2_n = p.z2 + n * C;
  auto store_a = [&](int64_t j, A v) {
    const A z1 = v + (p.b1 ? to_acc(p.b1[j]) : A(0));
    z1_n[j] = z1;
    hb[j] = activation_fwd(p.act, z1);
  };
  if (C <= Caps<A>::kPooled) {  // block-uniform
    stage_pooled(p, sm, n);
    const VecSrc<A> pv{sm.buf};
    row_reduce(
        H, C, p.G1, sm.red, [&](int64_t j) { return RowDotVec<T>{p.w1 + j * C, pv}; }, store_a);
  } else {
    const VecSrc<A, true> pv{p.pooled + n * C};
    row_reduce(
        H, C, p.G1, sm.red, [&](int64_t j) { return RowDotVec<T, true>{p.w1 + j * C, pv}; }, store_a);
  }
  __syncthreads();
  const VecSrc<A> av{hb};
  A* s_n = p.s + n * C;
  row_reduce(
      C, H, p.G2, sm.red, [&](int64_t c) { return RowDotVec<T>{p.w2 + c * H, av}; },
      [&](int64_t c, A v) {
        const A z2 = v + (p.b2 ? to_acc(p.b2[c]) : A(0));
        z2_n[c] = z2;
        s_n[c] = gate_fwd(p.gate, z2);
      });
}

// 2b. gate backward of sample n (the whole block): s, g = dp / HW, dz2, dz1, a,
// from the forward's z1 and z2 (inputs of this launch: plain loads are fine).
template <typename T>
__device__ __forceinline__ void excite_backward(const MainArgs<T>& p, Smem<acc_t<T>>& sm, int64_t n) {
  using A = acc_t<T>;
  const int64_t C = p.C, H = p.hidden;
  const A inv_hw_div = static_cast<A>(p.HW);
  A* a_n = p.a + n * H;
  A* dz1_n = p.dz1 + n * H;
  A* s_n = p.s + n * C;
  A* g_n = p.g + n * C;
  A* dz2_n = p.dz2 + n * C;
  const A* ds_n = p.ds + n * C;
  const A* z1_n = p.z1 + n * H;
  const A* z2_n = p.z2 + n * C;
  // a = activation(z1); s = gate(z2), dz2 = ds * gate'(z2).
  for (int64_t j = threadIdx.x; j < H; j += kThreads) a_n[j] = activation_fwd(p.act, z1_n[j]);
  for (int64_t c = threadIdx.x; c < C; c += kThreads) {
    const A z2 = z2_n[c];
    s_n[c] = gate_fwd(p.gate, z2);
    dz2_n[c] = gate_backward(p.gate, z2, s_n[c], __ldcg(ds_n + c));
  }
  __syncthreads();
  // da[j] = sum_c w2[c, j] dz2[c]; dz1 = da * activation'(z1).
  col_reduce(ColDotVec<T>{p.w2, H, VecSrc<A>{dz2_n}}, C, H, p.CWa, sm.buf,
             [&](int64_t j, A da) { dz1_n[j] = activation_backward(p.act, z1_n[j], da); });
  // dp[c] = sum_j w1[j, c] dz1[j]; g = dp / HW.
  col_reduce(ColDotVec<T>{p.w1, C, VecSrc<A>{dz1_n}}, H, C, p.CWp, sm.buf,
             [&](int64_t c, A dp) { g_n[c] = dp / inv_hw_div; });
}

// 3. scale: y = x * s (forward) or dx = dy * s + g (backward) for the tile.
template <typename T, bool kBwd, bool kNHWC>
__device__ __forceinline__ void scale_tile(const MainArgs<T>& p, int64_t n, int64_t c0, int64_t c1) {
  using A = acc_t<T>;
  constexpr int V = Vec<T>::V;
  const int64_t C = p.C, HW = p.HW;
  const int64_t sample = n * C * HW;
  const T* in = (kBwd ? p.dy : p.x) + sample;
  T* out = p.out + sample;
  const A* s_n = p.s + n * C;
  const A* g_n = kBwd ? p.g + n * C : nullptr;
  if constexpr (!kNHWC) {
    const int G = p.G;
    const int gi = threadIdx.x / G, gl = threadIdx.x % G;
    const int per_round = kThreads / G;
    for (int64_t c = c0 + gi; c < c1; c += per_round) {
      Epi<T, kBwd> e;
      e.init(__ldcg(s_n + c), kBwd ? __ldcg(g_n + c) : A(0));
      scale_plane(in + c * HW, out + c * HW, HW, gl, G, e);
    }
  } else {
    const int CW = p.CW, R = kThreads / CW;
    const int cv = threadIdx.x % CW, q = threadIdx.x / CW;
    const bool rows_aligned = ((C * static_cast<int64_t>(sizeof(T))) & 15) == 0;
    for (int64_t col0 = c0; col0 < c1; col0 += static_cast<int64_t>(CW) * V) {
      const int64_t c = col0 + static_cast<int64_t>(cv) * V;
      if (c >= c1) continue;
      Epi<T, kBwd> e[V];
#pragma unroll
      for (int i = 0; i < V; ++i) {
        if (c + i < c1) e[i].init(__ldcg(s_n + c + i), kBwd ? __ldcg(g_n + c + i) : A(0));
      }
      const T* ip = in + c;
      T* op = out + c;
      if (rows_aligned && c + V <= c1 && aligned16(ip) && aligned16(op)) {
        int64_t r = q;
        for (; r + 3 * R < HW; r += 4 * R) {
          const uint4 u0 = ld16_last(ip + r * C);
          const uint4 u1 = ld16_last(ip + (r + R) * C);
          const uint4 u2 = ld16_last(ip + (r + 2 * R) * C);
          const uint4 u3 = ld16_last(ip + (r + 3 * R) * C);
          uint4 o[4] = {u0, u1, u2, u3};
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            uint4 t = make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
            for (int i = 0; i < V; ++i) PackIO<T>::set(t, i, e[i].apply(PackIO<T>::get(o[j], i)));
            o[j] = t;
          }
#pragma unroll
          for (int j = 0; j < 4; ++j) st16_stream(op + (r + j * R) * C, o[j]);
        }
        for (; r < HW; r += R) {
          const uint4 u = ld16_last(ip + r * C);
          uint4 t = make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
          for (int i = 0; i < V; ++i) PackIO<T>::set(t, i, e[i].apply(PackIO<T>::get(u, i)));
          st16_stream(op + r * C, t);
        }
      } else {
        for (int64_t r = q; r < HW; r += R) {
#pragma unroll
          for (int i = 0; i < V; ++i)
            if (c + i < c1) op[r * C + i] = e[i].apply(ip[r * C + i]);
        }
      }
    }
  }
}

template <typename T, bool kBwd, bool kNHWC>
__global__ void __launch_bounds__(kThreads, kMinBlocks) se_block_kernel(const __grid_constant__ MainArgs<T> p) {
  using A = acc_t<T>;
  __shared__ Smem<A> sm;
  for (;;) {
    if (threadIdx.x == 0) sm.ticket = atomicAdd(p.ticket, 1ull);
    __syncthreads();
    const unsigned long long unit = sm.ticket;
    if (unit >= static_cast<unsigned long long>(p.units)) break;  // block-uniform
    // n = unit / B, t = unit % B: an estimate from the reciprocal, made exact
    // (a 64-bit division would be a subroutine call here).
    int64_t n = static_cast<int64_t>(static_cast<double>(unit) * p.inv_tiles);
    while (n > 0 && n * p.tiles > static_cast<int64_t>(unit)) --n;
    while ((n + 1) * p.tiles <= static_cast<int64_t>(unit)) ++n;
    const int64_t t = static_cast<int64_t>(unit) - n * p.tiles;
    const int64_t c0 = t * p.tile_channels;
    const int64_t c1 = c0 + p.tile_channels < p.C ? c0 + p.tile_channels : p.C;

    squeeze_tile<T, kBwd, kNHWC>(p, sm, n, c0, c1);

    __syncthreads();  // this tile's pooled / ds values are written
    if (threadIdx.x == 0) {
      __threadfence();
      const unsigned prev = atomicAdd(p.arrive + n, 1u);
      const int last = prev == static_cast<unsigned>(p.tiles - 1);
      if (last) __threadfence();
      sm.is_last = last;
    }
    __syncthreads();
    if (sm.is_last) {  // block-uniform
      if constexpr (kBwd) {
        excite_backward(p, sm, n);
      } else {
        excite_forward(p, sm, n);
      }
      __syncthreads();  // s (and g) of the sample are written
      if (threadIdx.x == 0) {
        __threadfence();
        st_release_gpu(p.ready + n, 1u);
      }
    } else if (threadIdx.x == 0) {
      unsigned ns = 32;
      unsigned polls = 0;
      while (ld_acquire_gpu(p.ready + n) == 0u) {
        __nanosleep(ns);
        if (ns < 512) ns *= 2;
        // A wait lasts a tile's squeeze plus one gate MLP (microseconds).
        // After ~a minute something is broken: fail the launch (a CUDA
        // error the caller sees) rather than hang the process.
        if (++polls == kMaxPolls) __trap();
      }
      __threadfence();
    }
    __syncthreads();

    scale_tile<T, kBwd, kNHWC>(p, n, c0, c1);
    __syncthreads();  // shared memory and sm.ticket are reused by the next unit
  }
}

// ------------------------------------------------------ weight gradients

template <typename T>
struct WGradArgs {
  using A = acc_t<T>;
  const A* dz1;     // [N, hidden]
  const A* dz2;     // [N, C]
  const A* a;       // [N, hidden]
  const A* pooled;  // [N, C]
  T* dw1;           // [hidden, C]
  T* db1;           // [hidden]
  T* dw2;           // [C, hidden]
  T* db2;           // [C]
  int64_t N, C, H;
  int64_t tiles1_cols;  // dw1 tiles along C
  int64_t tiles2_cols;  // dw2 tiles along hidden
  int64_t tiles1, tiles2, total_blocks;
};

// dw1[j, c] = sum_n dz1[n, j] pooled[n, c]; dw2[c, j] = sum_n dz2[n, c] a[n, j];
// db1[j] = sum_n dz1[n, j]; db2[c] = sum_n dz2[n, c]; every sum over n in
// order 0..N-1 by one thread.
template <typename T>
__global__ void __launch_bounds__(kThreads) se_weight_grad_kernel(const __grid_constant__ WGradArgs<T> p) {
  using A = acc_t<T>;
  __shared__ A sx[kTileN][kTile];
  __shared__ A sy[kTileN][kTile];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  for (int64_t vb = blockIdx.x; vb < p.total_blocks; vb += gridDim.x) {  // block-uniform
    if (vb < p.tiles1 + p.tiles2) {
      // out[i, k] = sum_n X[n, i] Y[n, k]; out is [M, K].
      const bool first = vb < p.tiles1;
      const int64_t t = first ? vb : vb - p.tiles1;
      const int64_t M = first ? p.H : p.C;
      const int64_t K = first ? p.C : p.H;
      const A* X = first ? p.dz1 : p.dz2;
      const A* Y = first ? p.pooled : p.a;
      T* out = first ? p.dw1 : p.dw2;
      const int64_t tcols = first ? p.tiles1_cols : p.tiles2_cols;
      const int64_t i0 = (t / tcols) * kTile, k0 = (t % tcols) * kTile;
      A acc[4][4];
#pragma unroll
      for (int u = 0; u < 4; ++u)
#pragma unroll
        for (int v = 0; v < 4; ++v) acc[u][v] = A(0);
      for (int64_t n0 = 0; n0 < p.N; n0 += kTileN) {
        for (int e = threadIdx.x; e < kTileN * kTile; e += kThreads) {
          const int nn = e / kTile, ii = e % kTile;
          const int64_t nrow = n0 + nn;
          sx[nn][ii] = (nrow < p.N && i0 + ii < M) ? X[nrow * M + i0 + ii] : A(0);
          sy[nn][ii] = (nrow < p.N && k0 + ii < K) ? Y[nrow * K + k0 + ii] : A(0);
        }
        __syncthreads();
        const int steps = p.N - n0 < kTileN ? static_cast<int>(p.N - n0) : kTileN;
        for (int kk = 0; kk < steps; ++kk) {
          A xv[4], yv[4];
#pragma unroll
          for (int u = 0; u < 4; ++u) xv[u] = sx[kk][ty + 16 * u];
#pragma unroll
          for (int v = 0; v < 4; ++v) yv[v] = sy[kk][tx + 16 * v];
#pragma unroll
          for (int u = 0; u < 4; ++u)
#pragma unroll
            for (int v = 0; v < 4; ++v) acc[u][v] = fma_acc(xv[u], yv[v], acc[u][v]);
        }
        __syncthreads();
      }
#pragma unroll
      for (int u = 0; u < 4; ++u) {
#pragma unroll
        for (int v = 0; v < 4; ++v) {
          const int64_t i = i0 + ty + 16 * u, k = k0 + tx + 16 * v;
          if (i < M && k < K) out[i * K + k] = from_acc<T>(acc[u][v]);
        }
      }
    } else {
      const int64_t e = (vb - p.tiles1 - p.tiles2) * kThreads + threadIdx.x;
      if (e < p.H) {
        A sum = A(0);
        for (int64_t n = 0; n < p.N; ++n) sum = sum + p.dz1[n * p.H + e];
        p.db1[e] = from_acc<T>(sum);
      } else if (e < p.H + p.C) {
        const int64_t c = e - p.H;
        A sum = A(0);
        for (int64_t n = 0; n < p.N; ++n) sum = sum + p.dz2[n * p.C + c];
        p.db2[c] = from_acc<T>(sum);
      }
    }
  }
}

// ------------------------------------------------------------------ host

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Smallest power of two >= v, for v in [1, cap]; cap when v > cap.
int pow2_at_least(int64_t v, int cap) {
  int p = 1;
  while (p < v && p < cap) p *= 2;
  return p;
}

// The shape-only geometry choices (they fix every reduction order).
template <typename T>
int nchw_group(int64_t HW) {  // ~4 chunks of 16 bytes per lane, up to the whole block
  return pow2_at_least(ceil_div(ceil_div(HW, Vec<T>::V), 4), kThreads);
}
template <typename T>
int nhwc_columns(int64_t C, int64_t HW) {  // rows: ~4 per thread, up to 32; columns: the rest
  const int rows = pow2_at_least(ceil_div(HW, 4), 32);
  return pow2_at_least(ceil_div(C, Vec<T>::V), kThreads / rows);
}
template <typename T>
int dot_group(int64_t len) {  // MLP row dot products: a sub-warp group per row
  return pow2_at_least(ceil_div(ceil_div(len, Vec<T>::V), 4), 32);
}
template <typename T>
int dot_columns(int64_t ncols) {  // MLP column dot products
  return pow2_at_least(ceil_div(ncols, Vec<T>::V), 32);
}

size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

struct Layout {
  size_t counters = 0;  // ticket (8 bytes), arrive[N], ready[N]: zeroed per launch
  size_t s = 0, g = 0, ds = 0, dz2 = 0, dz1 = 0, a = 0, h = 0;
  size_t total = 0;
};

template <typename A>
Layout workspace_layout(bool backward, int64_t N, int64_t C, int64_t H) {
  Layout L;
  L.counters = sizeof(unsigned long long) + 2 * sizeof(unsigned) * static_cast<size_t>(N);
  size_t off = align_up(L.counters, 256);
  auto take = [&](size_t count) {
    const size_t o = off;
    off += align_up(count * sizeof(A), 256);
    return o;
  };
  const size_t nc = static_cast<size_t>(N) * static_cast<size_t>(C);
  const size_t nh = static_cast<size_t>(N) * static_cast<size_t>(H);
  L.s = take(nc);
  if (backward) {
    L.g = take(nc);
    L.ds = take(nc);
    L.dz2 = take(nc);
    L.dz1 = take(nh);
    L.a = take(nh);
  } else if (H > Caps<A>::kHidden) {
    L.h = take(nh);
  }
  L.total = off;
  return L;
}

// Blocks of `kernel` that can be resident at once on the current device,
// cached per device (the kernel's resource use does not change).
template <typename Kernel>
cudaError_t resident_blocks(Kernel kernel, std::atomic<int>* cache, int cache_size, int* out) {
  int dev = 0;
  cudaError_t err = cudaGetDevice(&dev);
  if (err != cudaSuccess) return err;
  if (dev < cache_size) {
    const int cached = cache[dev].load(std::memory_order_relaxed);
    if (cached > 0) {
      *out = cached;
      return cudaSuccess;
    }
  }
  int sms = 0;
  err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  if (err != cudaSuccess) return err;
  // The most shared memory per SM, so that the occupancy figure below is
  // what the hardware gives this kernel (the spin-wait relies on it).
  err = cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel),
                             cudaFuncAttributePreferredSharedMemoryCarveout,
                             static_cast<int>(cudaSharedmemCarveoutMaxShared));
  if (err != cudaSuccess) return err;
  int per_sm = 0;
  err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0);
  if (err != cudaSuccess) return err;
  if (per_sm < 1 || sms < 1) return cudaErrorLaunchOutOfResources;
  *out = per_sm * sms;
  if (dev < cache_size) cache[dev].store(*out, std::memory_order_relaxed);
  return cudaSuccess;
}

template <typename T, bool kBwd, bool kNHWC>
cudaError_t launch_main_layout(MainArgs<T>& p, const Layout& L, void* workspace, cudaStream_t stream) {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cache[kMaxDevices];
  int resident = 0;
  cudaError_t err = resident_blocks(se_block_kernel<T, kBwd, kNHWC>, cache, kMaxDevices, &resident);
  if (err != cudaSuccess) return err;

  // Channel tiles: whole rounds of the geometry (channels the block handles
  // at once), as many rounds per tile as needed to keep B <= max_tiles. The
  // spin-wait needs B <= resident; half of it leaves a margin for an
  // occupancy figure that overstates what this launch gets (MPS limits,
  // kernels running on other streams, another se_fused call among them).
  const int64_t max_tiles = resident / 2 > 1 ? resident / 2 : 1;
  const int64_t per_round =
      kNHWC ? static_cast<int64_t>(p.CW) * Vec<T>::V : static_cast<int64_t>(kThreads / p.G);
  const int64_t rounds = ceil_div(p.C, per_round);
  const int64_t rounds_per_tile = ceil_div(rounds, max_tiles);
  p.tile_channels = rounds_per_tile * per_round;
  p.tiles = ceil_div(p.C, p.tile_channels);  // <= ceil(rounds / rounds_per_tile) <= max_tiles
  p.units = p.N * p.tiles;
  p.inv_tiles = 1.0 / static_cast<double>(p.tiles);
  const int64_t grid = p.units < resident ? p.units : resident;

  err = cudaMemsetAsync(workspace, 0, L.counters, stream);
  if (err != cudaSuccess) return err;
  se_block_kernel<T, kBwd, kNHWC><<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <typename T, bool kBwd>
cudaError_t launch_main(MainArgs<T>& p, const Layout& L, void* workspace, cudaStream_t stream) {
  return p.channels_last ? launch_main_layout<T, kBwd, true>(p, L, workspace, stream)
                         : launch_main_layout<T, kBwd, false>(p, L, workspace, stream);
}

template <typename T>
void fill_common(MainArgs<T>& p, int64_t N, int64_t C, int64_t HW, int64_t hidden, bool channels_last,
                 Activation act, Gate gate) {
  p.N = N;
  p.C = C;
  p.HW = HW;
  p.hidden = hidden;
  p.channels_last = channels_last ? 1 : 0;
  p.act = act;
  p.gate = gate;
  p.G = nchw_group<T>(HW);
  p.CW = nhwc_columns<T>(C, HW);
  p.G1 = dot_group<T>(C);
  p.G2 = dot_group<T>(hidden);
  p.CWa = dot_columns<T>(hidden);
  p.CWp = dot_columns<T>(C);
}

}  // namespace

template <typename T>
size_t se_forward_workspace_bytes(int64_t N, int64_t C, int64_t hidden) {
  return workspace_layout<acc_t<T>>(false, N, C, hidden).total;
}

template <typename T>
size_t se_backward_workspace_bytes(int64_t N, int64_t C, int64_t hidden) {
  return workspace_layout<acc_t<T>>(true, N, C, hidden).total;
}

template <typename T>
cudaError_t launch_se_forward(const SEForwardParams& q, cudaStream_t stream) {
  using A = acc_t<T>;
  if (q.N <= 0) return cudaSuccess;
  const Layout L = workspace_layout<A>(false, q.N, q.C, q.hidden);
  if (q.workspace == nullptr || q.workspace_bytes < L.total) return cudaErrorInvalidValue;
  char* ws = static_cast<char*>(q.workspace);

  MainArgs<T> p{};
  p.x = static_cast<const T*>(q.x);
  p.dy = nullptr;
  p.out = static_cast<T*>(q.y);
  p.pooled = static_cast<A*>(q.pooled);
  p.z1 = static_cast<A*>(q.z1);
  p.z2 = static_cast<A*>(q.z2);
  p.w1 = static_cast<const T*>(q.w1);
  p.b1 = static_cast<const T*>(q.b1);
  p.w2 = static_cast<const T*>(q.w2);
  p.b2 = static_cast<const T*>(q.b2);
  fill_common(p, q.N, q.C, q.HW, q.hidden, q.channels_last, q.activation, q.gate);
  p.ticket = reinterpret_cast<unsigned long long*>(ws);
  p.arrive = reinterpret_cast<unsigned*>(ws + sizeof(unsigned long long));
  p.ready = p.arrive + q.N;
  p.s = reinterpret_cast<A*>(ws + L.s);
  p.h = q.hidden > Caps<A>::kHidden ? reinterpret_cast<A*>(ws + L.h) : nullptr;
  return launch_main<T, false>(p, L, ws, stream);
}

template <typename T>
cudaError_t launch_se_backward(const SEBackwardParams& q, cudaStream_t stream) {
  using A = acc_t<T>;
  if (q.N <= 0) return cudaSuccess;
  const Layout L = workspace_layout<A>(true, q.N, q.C, q.hidden);
  if (q.workspace == nullptr || q.workspace_bytes < L.total) return cudaErrorInvalidValue;
  char* ws = static_cast<char*>(q.workspace);

  MainArgs<T> p{};
  p.x = static_cast<const T*>(q.x);
  p.dy = static_cast<const T*>(q.dy);
  p.out = static_cast<T*>(q.dx);
  // pooled, z1 and z2 are read only in the backward; it reads no bias.
  p.pooled = const_cast<A*>(static_cast<const A*>(q.pooled));
  p.z1 = const_cast<A*>(static_cast<const A*>(q.z1));
  p.z2 = const_cast<A*>(static_cast<const A*>(q.z2));
  p.w1 = static_cast<const T*>(q.w1);
  p.b1 = nullptr;
  p.w2 = static_cast<const T*>(q.w2);
  p.b2 = nullptr;
  fill_common(p, q.N, q.C, q.HW, q.hidden, q.channels_last, q.activation, q.gate);
  p.ticket = reinterpret_cast<unsigned long long*>(ws);
  p.arrive = reinterpret_cast<unsigned*>(ws + sizeof(unsigned long long));
  p.ready = p.arrive + q.N;
  p.s = reinterpret_cast<A*>(ws + L.s);
  p.g = reinterpret_cast<A*>(ws + L.g);
  p.ds = reinterpret_cast<A*>(ws + L.ds);
  p.dz2 = reinterpret_cast<A*>(ws + L.dz2);
  p.dz1 = reinterpret_cast<A*>(ws + L.dz1);
  p.a = reinterpret_cast<A*>(ws + L.a);
  p.h = nullptr;
  cudaError_t err = launch_main<T, true>(p, L, ws, stream);
  if (err != cudaSuccess) return err;

  WGradArgs<T> w{};
  w.dz1 = p.dz1;
  w.dz2 = p.dz2;
  w.a = p.a;
  w.pooled = p.pooled;
  w.dw1 = static_cast<T*>(q.dw1);
  w.db1 = static_cast<T*>(q.db1);
  w.dw2 = static_cast<T*>(q.dw2);
  w.db2 = static_cast<T*>(q.db2);
  w.N = q.N;
  w.C = q.C;
  w.H = q.hidden;
  w.tiles1_cols = ceil_div(q.C, kTile);
  w.tiles2_cols = ceil_div(q.hidden, kTile);
  w.tiles1 = ceil_div(q.hidden, kTile) * w.tiles1_cols;
  w.tiles2 = ceil_div(q.C, kTile) * w.tiles2_cols;
  w.total_blocks = w.tiles1 + w.tiles2 + ceil_div(q.hidden + q.C, kThreads);
  const int64_t kMaxGrid = int64_t{1} << 20;  // blocks loop past this
  const int64_t grid = w.total_blocks < kMaxGrid ? w.total_blocks : kMaxGrid;
  se_weight_grad_kernel<T><<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(w);
  return cudaGetLastError();
}

#define SE_FUSED_INSTANTIATE(T)                                                             \
  template size_t se_forward_workspace_bytes<T>(int64_t, int64_t, int64_t);                \
  template size_t se_backward_workspace_bytes<T>(int64_t, int64_t, int64_t);               \
  template cudaError_t launch_se_forward<T>(const SEForwardParams&, cudaStream_t);         \
  template cudaError_t launch_se_backward<T>(const SEBackwardParams&, cudaStream_t);

SE_FUSED_INSTANTIATE(float)
SE_FUSED_INSTANTIATE(double)
SE_FUSED_INSTANTIATE(__half)
SE_FUSED_INSTANTIATE(__nv_bfloat16)
#undef SE_FUSED_INSTANTIATE

}  // namespace cuda_kernels
}  // namespace se_fused
