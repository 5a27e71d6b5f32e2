// The excitation: the one step between the squeeze and the scale, per
// variant (se_math.h Excitation), in the phases of se_forward.cuh and
// se_backward.cuh. A new variant touches this file alone.
//
//   TwoFC (SE): phase 1 forms each chunk's partial z1 = w1[:, chunk] pooled
//     (backward: partial da = w2[chunk, :]^T dz2) into the workspace; phase 2
//     sums the partials in chunk order (fixed by the shape), applies the
//     activation, then the rows of w2 (backward: the columns of w1) of the
//     unit's own channels.
//   OneFC (eSE): z2 = w1 pooled + b1, w1 [C, C]. Phase 1 only writes pooled
//     (backward: dz2); phase 2 reads the sample's whole vector (written by
//     the other units in phase 1: ld.global.cg) and forms its own channels'
//     rows of w1 (backward: dp from the columns of w1), in se_reduce.cuh's
//     orders.
//   ECA, ECACircular: z2[c] = b1 + sum_t w1[t] pooled[eca_source(c, t)];
//     backward dp[c] = sum_t w1[t] dz2[eca_source(c, k - 1 - t)]: one thread
//     per channel, taps in order t, the neighbours read like OneFC's vector.
// Weight gradients (backward phase 3): 64 x 64 tiles of the FC layers, each
// output summed over n in order; ECA's k + 1 outputs (dw1[t], db1) one block
// each, over (n, c) in a fixed order (thread i: c = i, i + kThreads, ...
// for n = 0..N-1), then group_reduce's fixed tree.
#pragma once

#include "se_tile.cuh"

namespace se_fused {
namespace cuda_kernels {

// The workspace the excitation uses (acc_t; unused ones nullptr).
struct ExciteWs {
  void* part;      // [N, K, hidden]: each chunk's partial z1 (forward) or da (backward)
  void* hscratch;  // [units, hidden] when g.hid_global, else nullptr
  void* dz2;       // [N, C] (backward)
  void* dz1;       // [N, hidden] (backward)
  void* act;       // [N, hidden]: activation(z1) (backward)
  void* psum;      // [N, P, C]: the row parts' squeeze sums when g.parts > 1 (se_tile.cuh put_part_sums, add_part_sums; a cluster exchanges them in shared memory)
};

// Host: the workspace's pieces, each 256-byte aligned, counted in acc_t
// values (fwd_layout, bwd_layout).
template <typename A>
struct WsCursor {
  size_t off = 0;
  size_t take(size_t count) {  // the offset of a piece of count values
    const size_t o = off;
    off += (count * sizeof(A) + 255) / 256 * 256;
    return o;
  }
  size_t total() const { return off > 0 ? off : 256; }  // never a zero-byte workspace
};

__device__ __forceinline__ bool two_fc(const SEForwardParams& p) {
  return p.excitation == Excitation::TwoFC;
}

// ECA taps of channel c: sum_t w[t] v[eca_source(c, t)] (backward: tap
// k - 1 - t, the convolution's transpose), in order of t, v read through L2.
template <typename T, typename A>
__device__ __forceinline__ A eca_taps(const SEForwardParams& p, const T* w, const A* v, int64_t c,
                                      bool transpose) {
  const int64_t k = p.kernel_size, C = p.C;
  const bool circular = p.excitation == Excitation::ECACircular;
  A acc = A(0);
#pragma unroll 1
  for (int64_t t = 0; t < k; ++t) {
    const int64_t src = eca_source(c, transpose ? k - 1 - t : t, k, C, circular);
    if (src >= 0) acc = fma_acc(to_acc(w[t]), __ldcg(v + src), acc);
  }
  return acc;
}

// Where the MLP reads a unit's weights: w1's columns c0..c1 (row j at
// w1c + j * ld1) and w2's rows c0..c1 (row r at w2r + r * hidden). Global
// memory (WeightView::global), or the cluster path's staged slice in shared
// memory (se_onepass.cuh stage_w1_async / stage_w2_async): the same values in
// the same order, so the same bits.
template <typename T>
struct WeightView {
  const T* w1c;
  int64_t ld1;
  const T* w2r;
  __device__ __forceinline__ static WeightView global(const SEForwardParams& p, const UnitIdx& ui) {
    return WeightView{cin<T>(p.w1) + ui.c0, p.C, cin<T>(p.w2) + ui.c0 * p.hidden};
  }
};

// Forward phase 1, after the squeeze (sm.u.buf: the chunk's pooled means).
template <typename T>
__device__ __forceinline__ void excite_fwd_partial(const SEForwardParams& p, const Geometry& g,
                                                   const UnitIdx& ui, const ExciteWs& ws,
                                                   Smem<acc_t<T>>& sm, const WeightView<T>& wv) {
  using A = acc_t<T>;
  if (!two_fc(p)) return;  // the others read pooled in phase 2
  const int64_t H = p.hidden;
  A* part = out<A>(ws.part) + (ui.n * g.chunks + ui.k) * H;
  const VecSrc<A> pv{sm.u.buf};
  row_reduce(
      H, ui.c1 - ui.c0, g.G1, sm.red, [&](int64_t j) { return RowDotVec<T>{wv.w1c + j * wv.ld1, pv}; },
      [&](int64_t j, A v) { part[j] = v; });
}

// Forward phase 2 of the excitations without a hidden layer (store: z2 into
// p.z2 too; a chunk's part 0 does, its other parts compute the same values).
template <typename T>
__device__ __forceinline__ void excite_fwd_direct(const SEForwardParams& p, const Geometry& g,
                                               int64_t n, int64_t c0, int64_t c1, bool store,
                                               Smem<acc_t<T>>& sm) {
  using A = acc_t<T>;
  const int64_t C = p.C, len = c1 - c0;
  A* z2 = out<A>(p.z2) + n * C;
  const T* b1 = cin<T>(p.b1);
  const T* w1 = cin<T>(p.w1);
  if (p.excitation == Excitation::OneFC) {
    const VecSrc<A, true> pv{cin<A>(p.pooled) + n * C};
    row_reduce(
        len, C, g.G2, sm.red, [&](int64_t r) { return RowDotVec<T, true>{w1 + (c0 + r) * C, pv}; },
        [&](int64_t r, A v) {
          const A z = v + (b1 ? to_acc(b1[c0 + r]) : A(0));
          if (store) z2[c0 + r] = z;
          sm.u.buf[r] = z;
        });
  } else {  // ECA
    const A* pooled = cin<A>(p.pooled) + n * C;
    const A bias = b1 ? to_acc(b1[0]) : A(0);
#pragma unroll 1
    for (int64_t r = threadIdx.x; r < len; r += kThreads) {
      const A z = bias + eca_taps(p, w1, pooled, c0 + r, false);
      if (store) z2[c0 + r] = z;
      sm.u.buf[r] = z;
    }
  }
}

// With double accumulation a function of its own (inlined, it spilled in the
// NHWC two-pass kernel on sm_80); with float accumulation the inlined form is
// the one without spills (as se_forward.cuh's staged kernel).
template <typename T>
__device__ __noinline__ void excite_fwd_direct_call(const SEForwardParams& p, const Geometry& g,
                                                    int64_t n, int64_t c0, int64_t c1, bool store,
                                                    Smem<acc_t<T>>& sm) {
  excite_fwd_direct<T>(p, g, n, c0, c1, store, sm);
}

// Forward phase 2: z2 of the unit's own channels into p.z2 and sm.u.buf
// (the caller synchronises before reading sm.u.buf). kFC2: the two-FC
// excitation, else the others: separate kernels (se_forward.cuh), so that
// neither's registers weigh on the other's (one kernel for all spilled on
// sm_80).
// wv: where w2's rows are read (two FCs); staged: its copies are in flight
// (se_cp_async) and waited for before the rows are read.
template <typename T, bool kFC2>
__device__ __forceinline__ void excite_fwd_z2(const SEForwardParams& p, const Geometry& g,
                                              const UnitIdx& ui, int64_t u, const ExciteWs& ws,
                                              Smem<acc_t<T>>& sm, const WeightView<T>& wv,
                                              bool staged) {
  using A = acc_t<T>;
  const int64_t C = p.C, H = p.hidden, K = g.chunks, len = ui.c1 - ui.c0;
  A* z2 = out<A>(p.z2) + ui.n * C;
  const T* b1 = cin<T>(p.b1);
  if constexpr (kFC2) {
    A* hid = g.hid_global ? out<A>(ws.hscratch) + u * H : sm.u.hid;
    const A* part = cin<A>(ws.part) + ui.n * K * H;
    A* z1 = out<A>(p.z1) + ui.n * H;
#pragma unroll 1  // a short loop: kept rolled (fewer live registers)
    for (int64_t j = threadIdx.x; j < H; j += kThreads) {
      A t = __ldcg(part + j);
      for (int64_t k = 1; k < K; ++k) t += __ldcg(part + k * H + j);
      const A z = t + (b1 ? to_acc(b1[j]) : A(0));
      if (ui.k == 0 && ui.p == 0) z1[j] = z;
      hid[j] = z;
    }
    act_terms<A>(p.activation, hid, H);  // each thread its own j: no barrier needed before
    if (staged) se_cp_async_wait(0);  // this thread's copies of the rows ...
    __syncthreads();                  // ... and every thread's
    const T* b2 = cin<T>(p.b2);
    const VecSrc<A> av{hid};
    row_reduce(
        len, H, g.G2, sm.red, [&](int64_t r) { return RowDotVec<T>{wv.w2r + r * H, av}; },
        [&](int64_t r, A v) {
          const A z = v + (b2 ? to_acc(b2[ui.c0 + r]) : A(0));
          if (ui.p == 0) z2[ui.c0 + r] = z;  // a chunk's other parts compute the same z2
          sm.u.buf[r] = z;
        });
  } else if constexpr (sizeof(A) == 8) {
    excite_fwd_direct_call<T>(p, g, ui.n, ui.c0, ui.c1, ui.p == 0, sm);
  } else {
    excite_fwd_direct<T>(p, g, ui.n, ui.c0, ui.c1, ui.p == 0, sm);
  }
}

// Backward phase 1, after dz2 (sm.u.buf and ws.dz2): two FCs' partial da
// (wv: where w2's rows are read).
template <typename T>
__device__ __forceinline__ void excite_bwd_partial(const SEBackwardParams& p, const Geometry& g,
                                                   const UnitIdx& ui, const ExciteWs& ws,
                                                   Smem<acc_t<T>>& sm, const WeightView<T>& wv) {
  using A = acc_t<T>;
  if (!two_fc(p)) return;  // the others read dz2 in phase 2
  const int64_t H = p.hidden;
  A* part = out<A>(ws.part) + (ui.n * g.chunks + ui.k) * H;
  col_reduce(ColDotVec<T>{wv.w2r, H, VecSrc<A>{sm.u.buf}}, ui.c1 - ui.c0, H,
             g.CWa, sm.u.part, [&](int64_t j, A v) { part[j] = v; });
}

// Backward phase 2 of the excitations without a hidden layer (a function of
// its own, as excite_fwd_direct).
template <typename T>
__device__ __noinline__ void excite_bwd_direct(const SEBackwardParams& p, const Geometry& g,
                                               const ExciteWs& ws, int64_t n, int64_t c0,
                                               int64_t c1, Smem<acc_t<T>>& sm) {
  using A = acc_t<T>;
  const int64_t C = p.C, len = c1 - c0;
  const A hw = geo_hw<A>(g), inv_hw = geo_inv_hw<A>(g);
  const A* dz2 = cin<A>(ws.dz2) + n * C;
  if (p.excitation == Excitation::OneFC) {  // dp[c] = sum_j w1[j, c] dz2[j]
    col_reduce(ColDotVec<T, true>{cin<T>(p.w1) + c0, C, VecSrc<A, true>{dz2}}, C, len, g.CWp,
               sm.u.part, [&](int64_t r, A dp) { sm.u.buf2[r] = div_by(dp, hw, inv_hw); });
  } else {  // ECA
#pragma unroll 1
    for (int64_t r = threadIdx.x; r < len; r += kThreads)
      sm.u.buf2[r] = div_by(eca_taps(p, cin<T>(p.w1), dz2, c0 + r, true), hw, inv_hw);
  }
}

// Backward phase 2: g = dp / HW of the unit's own channels into sm.u.buf2
// (the caller synchronises before reading it). wv: where w1's columns are
// read (two FCs); staged: their copies are in flight and waited for here.
template <typename T>
__device__ __forceinline__ void excite_bwd_dp(const SEBackwardParams& p, const Geometry& g,
                                              const UnitIdx& ui, int64_t u, const ExciteWs& ws,
                                              Smem<acc_t<T>>& sm, const WeightView<T>& wv, bool staged) {
  using A = acc_t<T>;
  const int64_t H = p.hidden, K = g.chunks, len = ui.c1 - ui.c0;
  const A hw = geo_hw<A>(g), inv_hw = geo_inv_hw<A>(g);
  if (two_fc(p)) {
    A* hid = g.hid_global ? out<A>(ws.hscratch) + u * H : sm.u.hid;
    const A* part = cin<A>(ws.part) + ui.n * K * H;
    const A* z1 = cin<A>(p.z1) + ui.n * H;
#pragma unroll 1  // a short loop: kept rolled (fewer live registers)
    for (int64_t j = threadIdx.x; j < H; j += kThreads) {
      A t = __ldcg(part + j);
      for (int64_t k = 1; k < K; ++k) t += __ldcg(part + k * H + j);
      hid[j] = t;  // da
    }
    const bool lead = ui.k == 0 && ui.p == 0;  // the sample's first unit stores dz1 and a
    bwd_act_terms<A>(p.activation, z1, hid, lead ? out<A>(ws.dz1) + ui.n * H : nullptr,
                     lead ? out<A>(ws.act) + ui.n * H : nullptr, H);
    if (staged) se_cp_async_wait(0);  // this thread's copies of the columns ...
    __syncthreads();                  // ... and every thread's
    col_reduce(ColDotVec<T>{wv.w1c, wv.ld1, VecSrc<A>{hid}}, H, len, g.CWp, sm.u.part,
               [&](int64_t r, A dp) { sm.u.buf2[r] = div_by(dp, hw, inv_hw); });
  } else {
    excite_bwd_direct<T>(p, g, ws, ui.n, ui.c0, ui.c1, sm);
  }
}

// ECA weight gradients, virtual block vb of k + 1: dw1[vb] (vb < k) or db1.
template <typename T>
__device__ __forceinline__ void eca_wgrad_block(const SEBackwardParams& p, const ExciteWs& ws,
                                                Smem<acc_t<T>>& sm, int64_t vb) {
  using A = acc_t<T>;
  const int64_t N = p.N, C = p.C, k = p.kernel_size;
  if (vb == k && !p.db1) return;  // block-uniform
  const bool circular = p.excitation == Excitation::ECACircular;
  const A* dz2 = cin<A>(ws.dz2);
  const A* pooled = cin<A>(p.pooled);
  A acc = A(0);
  for (int64_t n = 0; n < N; ++n) {
#pragma unroll 1
    for (int64_t c = threadIdx.x; c < C; c += kThreads) {
      const A d = __ldcg(dz2 + n * C + c);
      if (vb == k) {
        acc = acc + d;
      } else {
        const int64_t src = eca_source(c, vb, k, C, circular);
        if (src >= 0) acc = fma_acc(d, __ldcg(pooled + n * C + src), acc);
      }
    }
  }
  acc = group_reduce(acc, kThreads, sm.red);
  if (threadIdx.x == 0) out<T>(vb == k ? p.db1 : p.dw1)[vb == k ? 0 : vb] = from_acc<T>(acc);
}

// Phase 3, virtual block vb: a 64 x 64 tile of dw1 ([rows1, C]) or dw2, or
// kThreads bias entries (db1 then db2); ECA: eca_wgrad_block.
template <typename T>
__device__ __forceinline__ void wgrad_block(const SEBackwardParams& p, const Geometry& g,
                                            const ExciteWs& ws, Smem<acc_t<T>>& sm, int64_t vb) {
  using A = acc_t<T>;
  if (p.kernel_size > 0) {  // block-uniform
    eca_wgrad_block<T>(p, ws, sm, vb);
    return;
  }
  const int64_t N = p.N, C = p.C, H = p.hidden;
  // The layer that reads the pooled means: w1 [H, C] (two FCs) or [C, C] (one FC).
  const bool fc2 = two_fc(p);
  const int64_t rows1 = fc2 ? H : C;
  const A* d1 = cin<A>(fc2 ? ws.dz1 : ws.dz2);
  const A* dz2 = cin<A>(ws.dz2);
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  if (vb < g.tiles1 + g.tiles2) {  // block-uniform
    // out[i, k] = sum_n X[n, i] Y[n, k]; out is [M, Kc].
    const bool first = vb < g.tiles1;
    const int64_t t = first ? vb : vb - g.tiles1;
    const int64_t M = first ? rows1 : C;
    const int64_t Kc = first ? C : H;
    const A* X = first ? d1 : dz2;
    const A* Y = first ? cin<A>(p.pooled) : cin<A>(ws.act);
    T* o = first ? out<T>(p.dw1) : out<T>(p.dw2);
    const int64_t tcols = first ? g.tiles1_cols : g.tiles2_cols;
    const uint32_t tr = static_cast<uint32_t>(t) / static_cast<uint32_t>(tcols);  // 32-bit: see unit_of
    const int64_t i0 = static_cast<int64_t>(tr) * kTile, k0 = (t - static_cast<int64_t>(tr) * tcols) * kTile;
    A acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[i][j] = A(0);
    for (int64_t n0 = 0; n0 < N; n0 += kTileN) {
      for (int e = threadIdx.x; e < kTileN * kTile; e += kThreads) {
        const int nn = e / kTile, ii = e % kTile;
        const int64_t nr = n0 + nn;
        sm.w.sx[nn][ii] = (nr < N && i0 + ii < M) ? __ldcg(X + nr * M + i0 + ii) : A(0);
        sm.w.sy[nn][ii] = (nr < N && k0 + ii < Kc) ? __ldcg(Y + nr * Kc + k0 + ii) : A(0);
      }
      __syncthreads();
      const int steps = N - n0 < kTileN ? static_cast<int>(N - n0) : kTileN;
      for (int kk = 0; kk < steps; ++kk) {
        A xv[4], yv[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) xv[i] = sm.w.sx[kk][ty + 16 * i];
#pragma unroll
        for (int j = 0; j < 4; ++j) yv[j] = sm.w.sy[kk][tx + 16 * j];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) acc[i][j] = fma_acc(xv[i], yv[j], acc[i][j]);
      }
      __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t r = i0 + ty + 16 * i, c = k0 + tx + 16 * j;
        if (r < M && c < Kc) o[r * Kc + c] = from_acc<T>(acc[i][j]);
      }
    }
  } else {
    const int64_t e = (vb - g.tiles1 - g.tiles2) * kThreads + threadIdx.x;
    const int64_t rows2 = fc2 ? C : 0;  // b2's entries
    if (e < rows1 && p.db1) {
      A sum = A(0);
      for (int64_t n = 0; n < N; ++n) sum = sum + __ldcg(d1 + n * rows1 + e);
      out<T>(p.db1)[e] = from_acc<T>(sum);
    } else if (e >= rows1 && e < rows1 + rows2 && p.db2) {
      const int64_t c = e - rows1;
      A sum = A(0);
      for (int64_t n = 0; n < N; ++n) sum = sum + __ldcg(dz2 + n * C + c);
      out<T>(p.db2)[c] = from_acc<T>(sum);
    }
  }
}

}  // namespace cuda_kernels
}  // namespace se_fused
