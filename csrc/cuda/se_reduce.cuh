// Block-wide reductions with an order fixed by the shape alone (never by N,
// the grid, the alignment of the pointers or timing): the invariant every
// kernel's determinism and batch invariance rest on.
//   - a row reduction (NCHW channel planes, the MLP's row dot products)
//     splits the row into chunks of V = 16 / sizeof(T) elements counted from
//     the row's first element; chunk k belongs to lane k % G of a G-lane
//     group (G from the row length), each lane adds its elements in
//     increasing order, then a shuffle tree (and, for G > 32, a
//     shared-memory pass over the warps in order). The 16-byte path and the
//     scalar fallback (misaligned rows) visit the same elements in the same
//     order, so misaligned inputs give the same bits;
//   - a column reduction (NHWC channels, the MLP's transposed products) gives
//     each column to R row-strided threads (R from the shape), each adding
//     its rows in increasing order, then a fixed tree in shared memory.
// Every function here is called from block-uniform control flow (they may
// __syncthreads).
#pragma once

#include "se_load.cuh"

namespace se_fused {
namespace cuda_kernels {

// A vector of acc_t the MLP products read: shared memory or global memory
// this block (or an earlier launch) wrote. kL2: written by other blocks of
// the same launch before a grid barrier: read with ld.global.cg, never from
// a possibly stale L1 line.
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

// Chunk k (elements [k V, k V + V)) of a row that starts m elements past a
// 16-byte boundary (0 < m < V, p element-aligned): two aligned 16-byte loads
// realigned in registers (the row ops' load_shifted).
template <typename T>
__device__ __forceinline__ uint4 ld16_shifted(const T* p, int64_t k, int m) {
  constexpr int V = Vec<T>::V;
  const T* q = p + k * V - m;
  const uint4 u = ld16(q), w = ld16(q + V);
  if constexpr (sizeof(T) == 8) return make_uint4(u.z, u.w, w.x, w.y);  // m is 1
  return realign16(u, w, m * static_cast<int>(sizeof(T)));
}

template <typename T>
struct RowSum {  // sum_i a[i]
  using A = acc_t<T>;
  static constexpr int V = Vec<T>::V;
  static constexpr int kUnroll = 4;  // 4 16-byte loads in flight per thread
  static constexpr bool kWholeRounds = false;
  const T* a;
  struct Raw {
    uint4 a;
  };
  static constexpr bool kRealign = true;  // see lane_partial
  __device__ __forceinline__ bool vec_ok() const { return aligned16(a); }
  __device__ __forceinline__ int shift() const { return misalign(a); }
  __device__ __forceinline__ Raw load(int64_t k) const { return Raw{ld16(a + k * V)}; }
  __device__ __forceinline__ Raw load_shifted(int64_t k, int m) const { return Raw{ld16_shifted(a, k, m)}; }
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
  static constexpr bool kWholeRounds = false;
  const T* a;
  const T* b;
  struct Raw {
    uint4 a, b;
  };
  static constexpr bool kRealign = true;
  __device__ __forceinline__ bool vec_ok() const { return aligned16(a) && aligned16(b); }
  __device__ __forceinline__ int shift() const {
    const int m = misalign(a);
    return m == misalign(b) ? m : -1;
  }
  __device__ __forceinline__ Raw load(int64_t k) const { return Raw{ld16(a + k * V), ld16(b + k * V)}; }
  __device__ __forceinline__ Raw load_shifted(int64_t k, int m) const {
    return Raw{ld16_shifted(a, k, m), ld16_shifted(b, k, m)};
  }
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
  static constexpr bool kWholeRounds = false;
  const T* w;
  VecSrc<A, kL2> v;
  struct Raw {
    uint4 w;
  };
  static constexpr bool kRealign = false;  // short rows (the MLP): scalar when misaligned
  __device__ __forceinline__ bool vec_ok() const { return aligned16(w); }
  __device__ __forceinline__ int shift() const { return -1; }
  __device__ __forceinline__ Raw load(int64_t k) const { return Raw{ld16(w + k * V)}; }
  __device__ __forceinline__ Raw load_shifted(int64_t k, int) const { return load(k); }
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
    if constexpr (Op::kWholeRounds) {  // as col_reduce's: the last round clamped
#pragma unroll 1
      for (; k < nfull; k += U * G) {
        typename Op::Raw r[U];
#pragma unroll
        for (int u = 0; u < U; ++u) r[u] = op.load(k + u * G < nfull ? k + u * G : nfull - 1);
#pragma unroll
        for (int u = 0; u < U; ++u)
          if (k + u * G < nfull) acc = op.add_chunk(acc, r[u], k + u * G);
      }
    }
    for (; k + (U - 1) * G < nfull; k += U * G) {  // U loads in flight, then add in order
      typename Op::Raw r[U];
#pragma unroll
      for (int u = 0; u < U; ++u) r[u] = op.load(k + u * G);
#pragma unroll
      for (int u = 0; u < U; ++u) acc = op.add_chunk(acc, r[u], k + u * G);
    }
    for (; k < nfull; k += G) acc = op.add_chunk(acc, op.load(k), k);
  } else {
    // The row does not start on a 16-byte boundary. Same chunks, same order:
    // a chunk wholly inside the row past its first aligned pack is two
    // aligned 16-byte loads realigned in registers (kRealign ops, when the
    // pointers share their misalignment m); the others (chunk 0, the last
    // ones) element by element.
    const int m = Op::kRealign ? op.shift() : -1;
    int64_t k = gl;
    if (m > 0) {
      if (k == 0 && nfull > 0) {  // chunk 0 starts before the first aligned pack
        for (int64_t i = 0; i < V; ++i) acc = op.add_elem(acc, i);
        k += G;
      }
      // Two chunks (four aligned loads) in flight while both are inside the row.
      for (; k + G < nfull && (k + G) * V - m + 2 * V <= len; k += 2 * G) {
        const typename Op::Raw r0 = op.load_shifted(k, m);
        const typename Op::Raw r1 = op.load_shifted(k + G, m);
        acc = op.add_chunk(acc, r0, k);
        acc = op.add_chunk(acc, r1, k + G);
      }
    }
    for (; k < nfull; k += G) {
      if (m > 0 && k * V - m + 2 * V <= len) {
        acc = op.add_chunk(acc, op.load_shifted(k, m), k);
      } else {
        for (int64_t i = k * V; i < k * V + V; ++i) acc = op.add_elem(acc, i);
      }
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
// row-major matrix (row stride ld elements). kWholeRounds: col_reduce issues
// whole rounds of kUnroll loads, the last one clamped (an opt-in: in the
// two-pass kernels the clamped round cost registers, and a spill on sm_80).

template <typename T>
struct ColSum {  // sum_r a[r, c]
  using A = acc_t<T>;
  static constexpr int V = Vec<T>::V;
  static constexpr int kUnroll = 4;  // 4 16-byte loads in flight per thread
  static constexpr bool kWholeRounds = false;
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
  static constexpr bool kWholeRounds = false;
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

template <typename T, bool kL2 = false>
struct ColDotVec {  // sum_r w[r, c] * v[r], v in acc_t
  using A = acc_t<T>;
  static constexpr int V = Vec<T>::V;
  static constexpr int kUnroll = 2;  // 2 weight chunks in flight (the MLP: fewer registers)
  static constexpr bool kWholeRounds = false;
  const T* w;
  int64_t ld;
  VecSrc<A, kL2> v;
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
        if constexpr (Op::kWholeRounds) {
          // Every round U loads in flight, the last one's past nrows clamped
          // to row nrows - 1 and not added: a thread of 3 rows waits one
          // latency, not 3 (the tail loop below).
#pragma unroll 1
          for (; r < nrows; r += U * R) {
            typename Op::Raw raw[U];
#pragma unroll
            for (int u = 0; u < U; ++u) raw[u] = op.load(r + u * R < nrows ? r + u * R : nrows - 1, c);
#pragma unroll
            for (int u = 0; u < U; ++u)
              if (r + u * R < nrows) op.add_chunk(acc, raw[u], r + u * R);
          }
        }
        for (; r + (U - 1) * R < nrows; r += U * R) {  // U loads in flight, then add in order
          typename Op::Raw raw[U];
#pragma unroll
          for (int u = 0; u < U; ++u) raw[u] = op.load(r + u * R, c);
#pragma unroll
          for (int u = 0; u < U; ++u) op.add_chunk(acc, raw[u], r + u * R);
        }
#pragma unroll 1  // tails kept rolled: their trip-count arithmetic spilled (sm_90, NHWC)
        for (; r < nrows; r += R) op.add_chunk(acc, op.load(r, c), r);
      } else {
#pragma unroll 1
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


}  // namespace cuda_kernels
}  // namespace se_fused
