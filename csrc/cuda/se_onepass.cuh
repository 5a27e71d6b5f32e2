// The one-pass path's tile (SEPath::OnePass, se_heuristics.h onepass_applies):
// a unit's tile of x (forward) or dy (backward) is copied from global memory
// into the block's dynamic shared memory once, at the start of the squeeze
// phase; the squeeze reads it there, and after the grid barrier the scale
// reads it there again instead of from global memory (x read once: forward
// 2N bytes instead of 3N, backward 3N instead of 4N+).
//
// Same bits as the other paths: the squeeze runs se_reduce.cuh's reductions
// with the geometry's lane groups and column widths; their orders depend on
// the shape alone, not on where the tile lives nor on its alignment (the
// 16-byte and scalar paths add the same terms in the same order), and the
// scale applies the same epilogue to the same values.
//
// Layouts in shared memory:
//   NCHW: the chunk's planes are one contiguous span of len * HW elements of
//     the sample; it is copied as a byte image, starting at the same offset
//     modulo 16 as in global memory (every plane keeps its misalignment, so
//     the squeeze and the scale take the same 16-byte / realigned / scalar
//     paths as the two-pass kernels).
//   NHWC: HW rows of the chunk's len channels, row stride round_up(len, V)
//     elements, every row 16-byte aligned.
// Nothing here synchronises but stage_tile (one __syncthreads at its end).
#pragma once

#include "se_tile.cuh"

namespace se_fused {
namespace cuda_kernels {

// NHWC: the staged tile's row stride (elements).
template <typename T>
__device__ __forceinline__ int64_t onepass_ld(int64_t len) {
  constexpr int64_t V = Vec<T>::V;
  return (len + V - 1) / V * V;
}

// The staged tile in dyn (the block's dynamic shared memory) of the unit whose
// first element is at src in global memory.
template <typename T, bool kNHWC>
__device__ __forceinline__ T* onepass_tile(const T* src, unsigned char* dyn) {
  T* base = reinterpret_cast<T*>(dyn);
  if constexpr (kNHWC) {
    return base;
  } else {
    const int m = misalign(src);
    return base + (m > 0 ? m : 0);
  }
}

// dst[i] = src[i] for i < L (dst: src's offset modulo 16, or 0 if src is not
// element-aligned): scalar head to the first 16-byte boundary, 16-byte body
// with 4 loads in flight per thread (last use of src: evict-first), scalar tail.
template <typename T>
__device__ __forceinline__ void stage_span(const T* src, T* dst, int64_t L) {
  constexpr int V = Vec<T>::V;
  const int m = misalign(src);
  int64_t head = m < 0 ? L : (m == 0 ? 0 : V - m);
  if (head > L) head = L;
  for (int64_t i = threadIdx.x; i < head; i += kThreads) dst[i] = src[i];
  const int64_t nv = (L - head) / V;
  const T* vs = src + head;
  T* vd = dst + head;
  int64_t k = threadIdx.x;
  for (; k + 3 * kThreads < nv; k += 4 * kThreads) {
    uint4 u[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) u[j] = ld16_last(vs + (k + j * kThreads) * V);
#pragma unroll
    for (int j = 0; j < 4; ++j) st16(vd + (k + j * kThreads) * V, u[j]);
  }
  for (; k < nv; k += kThreads) st16(vd + k * V, ld16_last(vs + k * V));
  for (int64_t i = head + nv * V + threadIdx.x; i < L; i += kThreads) dst[i] = src[i];
}

// dst[r * lds + c] = src[r * ld + c] for r < rows, c < len (dst 16-byte
// aligned, lds a multiple of V): 16-byte copies, 4 in flight per thread, when
// every source row is aligned and len is whole packs; else element by element.
template <typename T>
__device__ __forceinline__ void stage_rows(const T* src, int64_t ld, int64_t rows, int64_t len,
                                           T* dst, int64_t lds) {
  constexpr int V = Vec<T>::V;
  const bool vec = len % V == 0 && aligned16(src) &&
                   ((ld * static_cast<int64_t>(sizeof(T))) & 15) == 0;
  if (vec) {
    // Pack e of the tile: row e / P, pack e % P (32-bit: the tile is at most
    // kOnePassSmemBytes / 16 packs).
    const uint32_t P = static_cast<uint32_t>(len / V);
    const uint32_t total = static_cast<uint32_t>(rows) * P;
    for (uint32_t e = threadIdx.x; e < total; e += 4 * kThreads) {
      uint4 u[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const uint32_t f = e + j * kThreads, r = f / P;
        if (f < total) u[j] = ld16_last(src + static_cast<int64_t>(r) * ld + (f - r * P) * V);
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const uint32_t f = e + j * kThreads, r = f / P;
        if (f < total) st16(dst + static_cast<int64_t>(r) * lds + (f - r * P) * V, u[j]);
      }
    }
  } else {
    const uint32_t L = static_cast<uint32_t>(len);
    const uint32_t total = static_cast<uint32_t>(rows) * L;
#pragma unroll 1
    for (uint32_t e = threadIdx.x; e < total; e += kThreads) {
      const uint32_t r = e / L;
      dst[static_cast<int64_t>(r) * lds + (e - r * L)] = src[static_cast<int64_t>(r) * ld + (e - r * L)];
    }
  }
}

// Stages the unit's tile (channels [c0, c0 + len) of the sample at xs) and
// returns it; the block's threads meet before it returns.
template <typename T, bool kNHWC>
__device__ __forceinline__ const T* stage_tile(const T* xs, int64_t C, int64_t HW, int64_t c0,
                                               int64_t len, unsigned char* dyn) {
  if constexpr (kNHWC) {
    T* tile = onepass_tile<T, true>(xs + c0, dyn);
    stage_rows(xs + c0, C, HW, len, tile, onepass_ld<T>(len));
    __syncthreads();
    return tile;
  } else {
    T* tile = onepass_tile<T, false>(xs + c0 * HW, dyn);
    stage_span(xs + c0 * HW, tile, len * HW);
    __syncthreads();
    return tile;
  }
}

// ColDot2 (se_reduce.cuh) with a row stride per operand: a the staged dy
// tile, b x in global memory. The same terms in the same order.
template <typename T>
struct ColDot2Ld {  // sum_r a[r, c] * b[r, c]
  using A = acc_t<T>;
  static constexpr int V = Vec<T>::V;
  static constexpr int kUnroll = 2;
  const T* a;
  int64_t lda;
  const T* b;
  int64_t ldb;
  struct Raw {
    uint4 a, b;
  };
  __device__ __forceinline__ bool vec_ok(int64_t c) const {
    return aligned16(a + c) && aligned16(b + c) &&
           (((lda | ldb) * static_cast<int64_t>(sizeof(T))) & 15) == 0;
  }
  __device__ __forceinline__ Raw load(int64_t r, int64_t c) const {
    return Raw{ld16(a + r * lda + c), ld16(b + r * ldb + c)};
  }
  __device__ __forceinline__ void add_chunk(A (&acc)[V], const Raw& raw, int64_t) const {
#pragma unroll
    for (int i = 0; i < V; ++i)
      acc[i] = fma_acc(to_acc(PackIO<T>::get(raw.a, i)), to_acc(PackIO<T>::get(raw.b, i)), acc[i]);
  }
  __device__ __forceinline__ A add_elem(A acc, int64_t r, int64_t c) const {
    return fma_acc(to_acc(a[r * lda + c]), to_acc(b[r * ldb + c]), acc);
  }
};

// scale_plane (se_load.cuh) reading `in` from shared memory (plain loads: the
// cache-hinted global loads must not see a shared address).
template <typename T, typename E>
__device__ __forceinline__ void scale_plane_staged(const T* in, T* out, int64_t len, int gl, int G,
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
#pragma unroll 4
  for (int64_t k = gl; k < nvec; k += G) st16_stream(vout + k * V, apply_pack<T>(e, ld16(vin + k * V)));
  for (int64_t i = head + nvec * V + gl; i < len; i += G) out[i] = e.apply(in[i]);
}

// The scale of the unit's len channels from the staged tile: o (global, the
// sample's first channel c0 of y or dx; NHWC row stride C) = e(tile), with the
// gate s[r] (and g[r], backward) of channel r from shared memory. E: the
// epilogue type (se_load.cuh Epi).
template <typename T, bool kBwd, bool kNHWC, typename E>
__device__ __forceinline__ void onepass_scale_as(const T* tile, T* o, int64_t C, int64_t HW,
                                                 int64_t len, const Geometry& g,
                                                 const acc_t<T>* s, const acc_t<T>* gg) {
  using A = acc_t<T>;
  constexpr int V = Vec<T>::V;
  if constexpr (!kNHWC) {
    const int G = g.G;
    const int gi = threadIdx.x / G, gl = threadIdx.x % G;
    const int per_round = kThreads / G;
    for (int64_t r = gi; r < len; r += per_round) {
      E e;
      e.init(s[r], kBwd ? gg[r] : A(0));
      scale_plane_staged(tile + r * HW, o + r * HW, HW, gl, G, e);
    }
  } else {
    const int CW = g.CW, R = kThreads / CW;
    const int cv = threadIdx.x % CW, q = threadIdx.x / CW;
    const int64_t lds = onepass_ld<T>(len);
    const bool rows_aligned = ((C * static_cast<int64_t>(sizeof(T))) & 15) == 0;
    for (int64_t col0 = 0; col0 < len; col0 += static_cast<int64_t>(CW) * V) {
      const int64_t c = col0 + static_cast<int64_t>(cv) * V;
      if (c >= len) continue;
      E e[V];
#pragma unroll
      for (int i = 0; i < V; ++i) {
        if (c + i < len) e[i].init(s[c + i], kBwd ? gg[c + i] : A(0));
      }
      const T* ip = tile + c;  // 16-byte aligned: c is whole packs
      T* op = o + c;
      if (rows_aligned && c + V <= len && aligned16(op)) {
#pragma unroll 4
        for (int64_t r = q; r < HW; r += R) {
          const uint4 u = ld16(ip + r * lds);
          uint4 t = make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
          for (int i = 0; i < V; ++i) PackIO<T>::set(t, i, e[i].apply(PackIO<T>::get(u, i)));
          st16_stream(op + r * C, t);
        }
      } else {
#pragma unroll 1
        for (int64_t r = q; r < HW; r += R) {
#pragma unroll
          for (int i = 0; i < V; ++i)
            if (c + i < len) op[r * C + i] = e[i].apply(ip[r * lds + i]);
        }
      }
    }
  }
}

// onepass_scale_as for the problem's gate, each compiled without the other's
// select in the element loop (as se_tile.cuh scale_chunk).
template <typename T, bool kBwd, bool kNHWC>
__device__ __forceinline__ void onepass_scale(const T* tile, T* o, int64_t C, int64_t HW,
                                              int64_t len, const Geometry& g, const acc_t<T>* s,
                                              const acc_t<T>* gg, bool residual) {
  if (residual) {
    onepass_scale_as<T, kBwd, kNHWC, Epi<T, kBwd, true>>(tile, o, C, HW, len, g, s, gg);
  } else {
    onepass_scale_as<T, kBwd, kNHWC, Epi<T, kBwd, false>>(tile, o, C, HW, len, g, s, gg);
  }
}

}  // namespace cuda_kernels
}  // namespace se_fused
