// What the forward and backward kernels share: the block's shared memory,
// the work-unit decomposition, and the two streaming loops over a unit's
// tile: the squeeze (a per-channel reduction of x, or of dy * x) and the
// scale (y = x * s, or dx = dy * s + g). Both loops rely on se_reduce.cuh's
// invariant (orders fixed by the shape) and on the unit's gate s (and g)
// being in shared memory before the scale starts.
#pragma once

#include "se_heuristics.h"
#include "se_reduce.cuh"

namespace se_fused {
namespace cuda_kernels {

// One variable per block (SE_SHARED). The union's members are used by
// different phases; a phase ends with __syncthreads before the next reuses it.
template <typename A>
struct Smem {
  struct Unit {
    A buf[kMaxChunk];    // the chunk's pooled means (fwd 1), gate s (fwd 2, bwd 2), dz2 (bwd 1)
    A buf2[kMaxChunk];   // the chunk's g = dp / HW (bwd 2)
    A hid[kHiddenBytes / sizeof(A)];  // activations (fwd 2) or dz1 (bwd 2), when hidden fits
    A part[kColBytes / sizeof(A)];    // column-reduction partials
  };
  struct WGrad {
    A sx[kTileN][kTile];
    A sy[kTileN][kTile];
  };
  union {
    Unit u;
    WGrad w;
  };
  A red[kWarps];  // group_reduce across warps
};

template <typename T>
__device__ __forceinline__ const T* cin(const void* p) {
  return static_cast<const T*>(p);
}
template <typename T>
__device__ __forceinline__ T* out(void* p) {
  return static_cast<T*>(p);
}

// Unit u -> (sample n, chunk k, row part p), p fastest: channels [c0, c1),
// rows [r0, r0 + rows). kSplit false (NCHW, never split): one part of every
// row, constants the compiler folds away. 32-bit division: a 64-bit one is a
// subroutine call in SASS, whose saved registers show up as spills (the host
// keeps N * K * P below 2^31, se_heuristics.h kMaxUnits).
struct UnitIdx {
  int64_t n, k, p, c0, c1, r0, rows;
};
template <bool kSplit>
__device__ __forceinline__ UnitIdx unit_of(int64_t u, const Geometry& g, int64_t C, int64_t HW) {
  UnitIdx r;
  const uint32_t uu = static_cast<uint32_t>(u), P = kSplit ? static_cast<uint32_t>(g.parts) : 1u;
  const uint32_t kp = static_cast<uint32_t>(g.chunks) * P;
  const uint32_t n = uu / kp, rest = uu - n * kp, k = kSplit ? rest / P : rest;
  r.n = n;
  r.k = k;
  r.p = kSplit ? rest - k * P : 0;
  r.c0 = r.k * g.chunk;
  r.c1 = r.c0 + g.chunk < C ? r.c0 + g.chunk : C;
  r.r0 = kSplit ? r.p * g.part_rows : 0;
  r.rows = kSplit && r.r0 + g.part_rows < HW ? g.part_rows : HW - r.r0;
  return r;
}
// Chunk v (of N * K) of the summing step (parts > 1): (n, k), every row.
__device__ __forceinline__ UnitIdx chunk_of(int64_t v, const Geometry& g, int64_t C, int64_t HW) {
  return unit_of<false>(v, g, C, HW);
}
// The first element of unit ui's tile in its sample (NHWC: row r0, channel
// c0; NCHW: plane c0).
template <bool kNHWC>
__device__ __forceinline__ int64_t tile_offset(const UnitIdx& ui, int64_t C, int64_t HW) {
  return kNHWC ? ui.r0 * C + ui.c0 : ui.c0 * HW;
}
// The row parts' squeeze sums (parts > 1): put_part_sums gives unit ui's
// (buf[r]: channel c0 + r of part p) to the summing step; add_part_sums gives
// buf[r] = the sum over the parts of chunk ui's channel c0 + r, added in part
// order 0..P-1 (fixed by the shape). Where they meet (PartSums): the
// workspace, [N, P, C] in acc_t in L2 (TwoPass, OnePass); in a cluster (the
// plan's sum_bytes, se_heuristics.h part_sum_bytes) the shared memory of the
// block that sums chunk k, rank k % cluster, [k / cluster][P][chunk] there:
// each part stores its sums into it (se_cluster_store), that block reads them
// after the cluster barrier. The same values added in the same order: the
// same bits.
struct PartSums {
  void* psum;             // the workspace's [N, P, C], or unused
  unsigned char* region;  // the cluster's exchange (this block's), or nullptr
  int64_t cluster;        // blocks per cluster (region only)
};
template <typename A>
__device__ __forceinline__ void put_part_sums(const PartSums& ps, const UnitIdx& ui, const Geometry& g,
                                              int64_t C, const A* buf) {
  if (ps.region) {
    A* d = reinterpret_cast<A*>(ps.region) + ((ui.k / ps.cluster) * g.parts + ui.p) * g.chunk;
    const unsigned rank = static_cast<unsigned>(ui.k % ps.cluster);
    for (int64_t r = threadIdx.x; r < ui.c1 - ui.c0; r += kThreads) se_cluster_store(d + r, rank, buf[r]);
  } else {
    A* d = static_cast<A*>(ps.psum) + (ui.n * g.parts + ui.p) * C + ui.c0;
    for (int64_t r = threadIdx.x; r < ui.c1 - ui.c0; r += kThreads) d[r] = buf[r];
  }
}
template <typename A>
__device__ __forceinline__ void add_part_sums(const PartSums& ps, const UnitIdx& ui, const Geometry& g,
                                              int64_t C, A* buf) {
  // One order for both places: part 0, then 1..P-1, at part stride `stride`.
  const auto add = [&](const A* s, int64_t stride, auto load) {
#pragma unroll 1
    for (int64_t r = threadIdx.x; r < ui.c1 - ui.c0; r += kThreads) {
      A t = load(s + r);
      for (int64_t q = 1; q < g.parts; ++q) t += load(s + q * stride + r);
      buf[r] = t;
    }
  };
  if (ps.region) {  // this block's chunk (the summing loop's rank k % cluster), in shared memory
    add(reinterpret_cast<const A*>(ps.region) + (ui.k / ps.cluster) * g.parts * g.chunk, g.chunk,
        [](const A* q) { return *q; });
  } else {  // the workspace, written by other blocks of this launch or the previous one
    add(static_cast<const A*>(ps.psum) + ui.n * g.parts * C + ui.c0, C, [](const A* q) { return __ldcg(q); });
  }
}

// The per-element activation and gate math (sigmoid's division: its slow
// path is a call in SASS) as functions of their own, called with little live
// state: inlined into a phase, the call's saved registers showed up as spills.
// Backward: dz1 = activation'(z1) da in place in hid; unit 0 also stores dz1 and a.
template <typename A>
__device__ __noinline__ void bwd_act_terms(Activation act, const A* z1, A* hid, A* dz1, A* a,
                                           int64_t H) {
  for (int64_t j = threadIdx.x; j < H; j += kThreads) {
    const A z = z1[j];
    const A d = activation_backward(act, z, hid[j]);
    hid[j] = d;
    if (dz1) {
      dz1[j] = d;
      a[j] = activation_fwd(act, z);
    }
  }
}
// s[r] = gate(z2[r]) for r < len (the residual gate adds x in the epilogue, Epi).
template <typename A>
__device__ __noinline__ void gate_terms(Gate gate, const A* z2, A* s, int64_t len) {
  for (int64_t r = threadIdx.x; r < len; r += kThreads) s[r] = gate_fwd(gate, z2[r]);
}

// Forward: v[j] = activation(v[j]) in place.
template <typename A>
__device__ __noinline__ void act_terms(Activation act, A* v, int64_t H) {
  for (int64_t j = threadIdx.x; j < H; j += kThreads) v[j] = activation_fwd(act, v[j]);
}

// Squeeze of channels [c0, c1) of one sample: out(r, sum) for r = c - c0, the
// sum over HW of x (kBwd false) or of dy * x (kBwd true), in acc_t.
template <typename T, bool kBwd, bool kNHWC, typename Out>
__device__ __forceinline__ void squeeze_chunk(const T* xs, const T* dys, int64_t C, int64_t HW,
                                              int64_t c0, int64_t c1, const Geometry& g,
                                              Smem<acc_t<T>>& sm, const Out& out) {
  if constexpr (!kNHWC) {
    auto make_op = [&](int64_t r) {
      const int64_t off = (c0 + r) * HW;
      if constexpr (kBwd) {
        return RowDot2<T>{dys + off, xs + off};
      } else {
        return RowSum<T>{xs + off};
      }
    };
    row_reduce(c1 - c0, HW, g.G, sm.red, make_op, out);
  } else {
    if constexpr (kBwd) {
      col_reduce(ColDot2<T>{dys + c0, xs + c0, C}, HW, c1 - c0, g.CW, sm.u.part, out);
    } else {
      col_reduce(ColSum<T>{xs + c0, C}, HW, c1 - c0, g.CW, sm.u.part, out);
    }
  }
}

// Scale of channels [c0, c1) of one sample: o = e(in) with the gate s[r] (and
// g[r], backward) of channel c0 + r from shared memory; + in for the residual
// gate (kRes).
template <typename T, bool kBwd, bool kNHWC, bool kRes>
__device__ __forceinline__ void scale_chunk_as(const T* in, T* o, int64_t C, int64_t HW,
                                               int64_t c0, int64_t c1, const Geometry& g,
                                               const acc_t<T>* s, const acc_t<T>* gg) {
  using A = acc_t<T>;
  constexpr int V = Vec<T>::V;
  if constexpr (!kNHWC) {
    const int G = g.G;
    const int gi = threadIdx.x / G, gl = threadIdx.x % G;
    const int per_round = kThreads / G;
    for (int64_t c = c0 + gi; c < c1; c += per_round) {
      Epi<T, kBwd, kRes> e;
      e.init(s[c - c0], kBwd ? gg[c - c0] : A(0));
      scale_plane(in + c * HW, o + c * HW, HW, gl, G, e);
    }
  } else {
    const int CW = g.CW, R = kThreads / CW;
    const int cv = threadIdx.x % CW, q = threadIdx.x / CW;
    const bool rows_aligned = ((C * static_cast<int64_t>(sizeof(T))) & 15) == 0;
    for (int64_t col0 = c0; col0 < c1; col0 += static_cast<int64_t>(CW) * V) {
      const int64_t c = col0 + static_cast<int64_t>(cv) * V;
      if (c >= c1) continue;
      Epi<T, kBwd, kRes> e[V];
#pragma unroll
      for (int i = 0; i < V; ++i) {
        if (c + i < c1) e[i].init(s[c + i - c0], kBwd ? gg[c + i - c0] : A(0));
      }
      const T* ip = in + c;
      T* op = o + c;
      if (rows_aligned && c + V <= c1 && aligned16(ip) && aligned16(op)) {
        int64_t r = q;
        for (; r + 3 * R < HW; r += 4 * R) {  // 4 16-byte loads in flight per thread
          uint4 u[4];
#pragma unroll
          for (int j = 0; j < 4; ++j) u[j] = ld16_last(ip + (r + j * R) * C);
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            uint4 t = make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
            for (int i = 0; i < V; ++i) PackIO<T>::set(t, i, e[i].apply(PackIO<T>::get(u[j], i)));
            st16_stream(op + (r + j * R) * C, t);
          }
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

// scale_chunk_as for the problem's gate: the residual one (+ in) or the plain
// one, each compiled without the other's select in the element loop.
template <typename T, bool kBwd, bool kNHWC>
__device__ __forceinline__ void scale_chunk(const T* in, T* o, int64_t C, int64_t HW, int64_t c0,
                                            int64_t c1, const Geometry& g, const acc_t<T>* s,
                                            const acc_t<T>* gg, bool residual) {
  if (residual) {
    scale_chunk_as<T, kBwd, kNHWC, true>(in, o, C, HW, c0, c1, g, s, gg);
  } else {
    scale_chunk_as<T, kBwd, kNHWC, false>(in, o, C, HW, c0, c1, g, s, gg);
  }
}

}  // namespace cuda_kernels
}  // namespace se_fused
