// The backward kernels and their launch (instantiated per dtype by
// se_backward_<dtype>.cu). s and a are recomputed from the forward's z2, z1.
//
// Phase 1, unit (n, k), channels [c0, c1):
//   ds[c] = sum_hw dy x;  dz2[n, c] = ds * gate'(z2[n, c])  (workspace; the
//   gate's derivative at s even for the residual gate)
//   the excitation's share (se_excite.cuh): two FCs: part[n, k, j] =
//   sum_{c in chunk} w2[c, j] dz2[n, c] for every j; the others: nothing
// Phase 2, unit (n, k), its own channels:
//   g[c] = dp[c] / HW from the excitation (se_excite.cuh): two FCs: da = the
//   partials summed in chunk order, dz1 = da * activation'(z1) (unit k == 0
//   also stores dz1 and a = activation(z1) for phase 3), dp = w1[:, c]^T dz1;
//   one FC: dp = w1[:, c]^T dz2[n, :]; ECA: k taps of dz2[n, :] (transposed)
//   dx[n, c, :] = dy * s + g, s = gate(z2[n, c]) (dy * s + (dy + g) for the residual gate)
// Phase 3 (se_excite.cuh wgrad_block): dw1, dw2, db1, db2 (if asked for),
//   each FC output summed over n in order 0..N-1 by one thread; ECA's dw1[t]
//   and db1 one block each, in a fixed order over (n, c).
// Invariant: each phase starts after the previous one finished for every unit
// it reads (dz2 of the other units in phase 2 for one FC and ECA; stream
// order in TwoPass: three launches; the round's barrier in the staged kernel
// of OnePass and Cluster). Cross-block data is read with ld.global.cg.
#pragma once

#include "se_excite.cuh"
#include "se_onepass.cuh"

namespace se_fused {
namespace cuda_kernels {

struct BwdArgs {
  SEBackwardParams p;
  Geometry g;
  ExciteWs ws;  // part, hscratch, dz2, dz1, act (se_excite.cuh)
  StagedPlan sp;  // the staged kernels' plan (OnePass, Cluster; se_heuristics.h)
};

// After the squeeze of chunk ui (sm.u.buf: its channels' sums of dy * x over
// every row): dz2 = ds * gate'(z2) (the gate's derivative at s even for the
// residual gate) into sm.u.buf and the workspace, and the excitation's share
// of phase 1.
// wv: where w2's rows are read; staged: their copies are in flight
// (stage_w2_async) and waited for here.
template <typename T>
__device__ __forceinline__ void bwd_finish(const BwdArgs& a, Smem<acc_t<T>>& sm, const UnitIdx& ui,
                                           const WeightView<T>& wv, bool staged) {
  using A = acc_t<T>;
  const SEBackwardParams& p = a.p;
  const A* z2 = cin<A>(p.z2) + ui.n * p.C;
  A* dz2 = out<A>(a.ws.dz2) + ui.n * p.C;
#pragma unroll 1
  for (int64_t r = threadIdx.x; r < ui.c1 - ui.c0; r += kThreads) {
    const A z = z2[ui.c0 + r];
    const A d = gate_backward(p.gate, z, gate_fwd(p.gate, z), sm.u.buf[r]);
    sm.u.buf[r] = d;
    dz2[ui.c0 + r] = d;
  }
  if (staged) se_cp_async_wait(0);  // this thread's copies of the rows ...
  __syncthreads();                  // ... and every thread's
  excite_bwd_partial<T>(p, a.g, ui, a.ws, sm, wv);
  __syncthreads();
}

// kStaged: the unit's tile of dy was staged in `slot` (kept for the scale
// after the barrier; the copies waited for); x, needed by the squeeze alone,
// is read from global memory once (se_onepass.cuh; the same sums in the same
// orders).
// wbuf (the cluster plan's weight_bytes): the unit's w2 rows are staged there
// while it squeezes, and the MLP reads them there.
template <typename T, bool kNHWC, bool kStaged = false, bool kCluster = false>
__device__ __forceinline__ void bwd_phase1(const BwdArgs& a, Smem<acc_t<T>>& sm, int64_t u,
                                           unsigned char* slot = nullptr, unsigned char* wbuf = nullptr) {
  using A = acc_t<T>;
  const SEBackwardParams& p = a.p;
  const int64_t C = p.C, HW = p.HW;
  const UnitIdx ui = unit_of<kNHWC>(u, a.g, C, HW);
  const int64_t len = ui.c1 - ui.c0;
  const int64_t rows = ui.n * C * HW + ui.r0 * C;  // the unit's rows (NCHW: the sample)
  const auto sums = [&](int64_t r, A v) { sm.u.buf[r] = v; };
  if (kNHWC && a.g.parts > 1) wbuf = nullptr;  // a part runs no MLP here (the summing step stages its own)
  const WeightView<T> wv = stage_w2_async<T>(p, ui, wbuf, true);
  if constexpr (kStaged) {
    const T* xs = cin<T>(p.x) + rows;
    const T* dtile = onepass_tile<T, kNHWC>(cin<T>(p.dy) + rows + (kNHWC ? ui.c0 : ui.c0 * HW), slot);
    if constexpr (kNHWC) {  // ColDot2 of the two-pass squeeze, with the tile's row stride
      col_reduce(ColDot2Ld<T>{dtile, onepass_ld<T>(len), xs + ui.c0, C}, ui.rows, len, a.g.CW,
                 sm.u.part, sums);
    } else {  // squeeze_chunk's RowDot2, the tile read as each chunk is added
      const T* xc = xs + ui.c0 * HW;
      row_reduce(
          len, HW, a.g.G, sm.red, [&](int64_t r) { return RowDot2Tile<T>{dtile + r * HW, xc + r * HW}; },
          sums);
    }
  } else {
    squeeze_chunk<T, true, kNHWC>(cin<T>(p.x) + rows, cin<T>(p.dy) + rows, C, ui.rows, ui.c0,
                                  ui.c1, a.g, sm, sums);
  }
  __syncthreads();
  if (!kNHWC || a.g.parts == 1) {  // NCHW: never split (se_heuristics.h)
    bwd_finish<T>(a, sm, ui, wv, wbuf != nullptr);
  } else {  // the part's sums, for bwd_sum
    put_part_sums<A>(part_sums_of<kCluster>(a.ws.psum, a.sp), ui, a.g, C, sm.u.buf);
    __syncthreads();
  }
}

// The summing step (parts > 1), chunk v of N * K: the parts' sums added in
// part order 0..P-1, then as phase 1 after an unsplit squeeze.
// wbuf, copy: as fwd_sum's, for w2's rows.
template <typename T, bool kCluster = false>
__device__ __forceinline__ void bwd_sum(const BwdArgs& a, Smem<acc_t<T>>& sm, int64_t v,
                                        unsigned char* wbuf = nullptr, bool copy = true) {
  using A = acc_t<T>;
  const int64_t C = a.p.C;
  const UnitIdx ui = chunk_of(v, a.g, C, a.p.HW);
  const WeightView<T> wv = stage_w2_async<T>(a.p, ui, wbuf, copy);
  add_part_sums<A>(part_sums_of<kCluster>(a.ws.psum, a.sp), ui, a.g, C, sm.u.buf);
  __syncthreads();
  bwd_finish<T>(a, sm, ui, wv, wbuf != nullptr);
}

// wbuf: as bwd_phase1's, for w1's columns.
template <typename T, bool kNHWC>
__device__ __forceinline__ void bwd_phase2(const BwdArgs& a, Smem<acc_t<T>>& sm, int64_t u,
                                           unsigned char* wbuf = nullptr) {
  using A = acc_t<T>;
  const SEBackwardParams& p = a.p;
  const int64_t C = p.C, HW = p.HW;
  const UnitIdx ui = unit_of<kNHWC>(u, a.g, C, HW);
  const WeightView<T> wv = stage_w1_async<T>(p, ui, wbuf, true);
  gate_terms<A>(p.gate, cin<A>(p.z2) + ui.n * C + ui.c0, sm.u.buf, ui.c1 - ui.c0);
  excite_bwd_dp<T>(p, a.g, ui, u, a.ws, sm, wv, wbuf != nullptr);
  __syncthreads();
  const int64_t rows = ui.n * C * HW + ui.r0 * C;  // the unit's rows (NCHW: the sample)
  scale_chunk<T, true, kNHWC>(cin<T>(p.dy) + rows, out<T>(p.dx) + rows, C, ui.rows, ui.c0, ui.c1,
                              a.g, sm.u.buf, sm.u.buf2, p.residual);
  __syncthreads();
}

template <typename T, bool kNHWC>
__global__ void __launch_bounds__(kThreads) se_bwd_phase1_kernel(const __grid_constant__ BwdArgs a) {
  SE_SHARED(Smem<acc_t<T>>, sm);
  bwd_phase1<T, kNHWC>(a, sm, blockIdx.x);  // one unit per block (grid = units)
}
template <typename T>
__global__ void __launch_bounds__(kThreads) se_bwd_sum_kernel(const __grid_constant__ BwdArgs a) {
  SE_SHARED(Smem<acc_t<T>>, sm);
  bwd_sum<T>(a, sm, blockIdx.x);  // one chunk per block (grid = N * K)
}
template <typename T, bool kNHWC>
__global__ void __launch_bounds__(kThreads) se_bwd_phase2_kernel(const __grid_constant__ BwdArgs a) {
  SE_SHARED(Smem<acc_t<T>>, sm);
  bwd_phase2<T, kNHWC>(a, sm, blockIdx.x);  // one unit per block (grid = units)
}
template <typename T>
__global__ void __launch_bounds__(kThreads) se_wgrad_kernel(const __grid_constant__ BwdArgs a) {
  SE_SHARED(Smem<acc_t<T>>, sm);
  wgrad_block<T>(a.p, a.g, a.ws, sm, blockIdx.x);  // one virtual block per block (grid = wgrad_blocks)
}
// The summing step's loop (as se_forward.cuh fwd_sum_loop).
template <typename T, bool kCluster>
__device__ __noinline__ void bwd_sum_loop(const BwdArgs& a, Smem<acc_t<T>>& sm, int64_t first,
                                          int64_t last, int64_t rank, int64_t size) {
  for (int64_t v = first + rank; v < last; v += size) bwd_sum<T, kCluster>(a, sm, v, staged_wbuf(a.sp), !kCluster || v != first + rank);
}
// The slice of the block's first summing chunk v at the round's start (as se_forward.cuh fwd_sum_stage).
template <typename T>
__device__ __forceinline__ void bwd_sum_stage(const BwdArgs& a, int64_t v) {
  stage_w2_async<T>(a.p, chunk_of(v, a.g, a.p.C, a.p.HW), staged_wbuf(a.sp), true);
}
// Weight-gradient blocks rank, rank + size, ... on this block.
template <typename T>
__device__ __noinline__ void wgrad_loop(const BwdArgs& a, Smem<acc_t<T>>& sm, int64_t rank, int64_t size) {
  for (int64_t vb = rank; vb < a.g.wgrad_blocks; vb += size) wgrad_block<T>(a.p, a.g, a.ws, sm, vb);
}

// The staged kernel (OnePass, Cluster; as se_forward.cuh's) on dy: each
// round's tiles of dy stay in shared memory across the round's barrier and
// phase 2 forms dx from them. Then phase 3: OnePass after a grid barrier, by
// the whole grid; Cluster inside the kernel only when one cluster is the
// whole batch (N == 1: after the cluster's barrier), else the weight-gradient
// kernel is a launch of its own (it sums over every sample).
template <typename T, bool kNHWC, bool kCluster>
__device__ __noinline__ void bwd_staged_phase1_call(const BwdArgs& a, Smem<acc_t<T>>& sm, int64_t u,
                                                    unsigned char* slot) {
  bwd_phase1<T, kNHWC, true, kCluster>(a, sm, u, slot, staged_wbuf(a.sp));
}
template <typename T, bool kNHWC>
__device__ __noinline__ void bwd_staged_phase2_call(const BwdArgs& a, Smem<acc_t<T>>& sm, int64_t u,
                                                    unsigned char* slot) {
  using A = acc_t<T>;
  const SEBackwardParams& p = a.p;
  const int64_t C = p.C, HW = p.HW;
  const UnitIdx ui = unit_of<kNHWC>(u, a.g, C, HW);
  const int64_t len = ui.c1 - ui.c0;
  unsigned char* wbuf = staged_wbuf(a.sp);
  const WeightView<T> wv = stage_w1_async<T>(p, ui, wbuf, true);
  gate_terms<A>(p.gate, cin<A>(p.z2) + ui.n * C + ui.c0, sm.u.buf, len);
  excite_bwd_dp<T>(p, a.g, ui, u, a.ws, sm, wv, wbuf != nullptr);
  __syncthreads();
  const int64_t first = ui.n * C * HW + tile_offset<kNHWC>(ui, C, HW);  // the unit's first element
  onepass_scale<T, true, kNHWC>(onepass_tile<T, kNHWC>(cin<T>(p.dy) + first, slot), out<T>(p.dx) + first,
                                C, ui.rows, len, a.g, sm.u.buf, sm.u.buf2, p.residual);
  __syncthreads();  // the slot and sm are reused by the next unit, round or phase 3
}
// A unit past the staged ones (as se_forward.cuh's): the two-pass phases.
template <typename T, bool kNHWC, bool kCluster>
__device__ __noinline__ void bwd_direct_phase1_call(const BwdArgs& a, Smem<acc_t<T>>& sm, int64_t u) {
  bwd_phase1<T, kNHWC, false, kCluster>(a, sm, u, nullptr, staged_wbuf(a.sp));
}
template <typename T, bool kNHWC>
__device__ __noinline__ void bwd_direct_phase2_call(const BwdArgs& a, Smem<acc_t<T>>& sm, int64_t u) {
  bwd_phase2<T, kNHWC>(a, sm, u, staged_wbuf(a.sp));
}
template <typename T, bool kNHWC, bool kCluster>
__global__ void __launch_bounds__(kThreads) se_bwd_staged_kernel(const __grid_constant__ BwdArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
  if constexpr (kCluster) return;  // no clusters before sm_90: never launched there (se_cluster_capacity)
#endif
  SE_SHARED(Smem<acc_t<T>>, sm);
  staged_rounds<T, kNHWC, kCluster>(
      a.p, a.g, a.sp, a.p.dy,
      [&](int64_t u, unsigned char* slot, bool) { bwd_staged_phase1_call<T, kNHWC, kCluster>(a, sm, u, slot); },
      [&](int64_t u) { bwd_direct_phase1_call<T, kNHWC, kCluster>(a, sm, u); },
      [&](int64_t v) {
        if constexpr (kCluster) bwd_sum_stage<T>(a, v);  // OnePass stages no weights
      },
      [&](int64_t first, int64_t last, int64_t rank, int64_t size) {
        bwd_sum_loop<T, kCluster>(a, sm, first, last, rank, size);
      },
      [&](int64_t u, unsigned char* slot, bool) { bwd_staged_phase2_call<T, kNHWC>(a, sm, u, slot); },
      [&](int64_t u) { bwd_direct_phase2_call<T, kNHWC>(a, sm, u); });
  if (!kCluster || gridDim.x == a.sp.cluster) {  // grid-uniform
    staged_sync<kCluster>();
    const StagedScope sc = staged_scope<kCluster>(a.g, a.sp);
    wgrad_loop<T>(a, sm, sc.rank, sc.size);
  }
}

// ------------------------------------------------------------------ host

struct BwdLayout {
  size_t part = 0, dz2 = 0, dz1 = 0, act = 0, hscratch = 0, psum = 0, total = 0;
};
template <typename T>
BwdLayout bwd_layout(const SEBackwardParams& p, const Geometry& g) {
  using A = acc_t<T>;
  BwdLayout L;
  WsCursor<A> ws;
  const size_t N = static_cast<size_t>(p.N), C = static_cast<size_t>(p.C);
  const size_t H = static_cast<size_t>(p.hidden);
  L.part = ws.take(N * static_cast<size_t>(g.chunks) * H);
  L.dz2 = ws.take(N * C);
  L.dz1 = ws.take(N * H);
  L.act = ws.take(N * H);
  L.hscratch = ws.take(g.hid_global ? static_cast<size_t>(g.units) * H : 0);
  L.psum = ws.take(g.parts > 1 ? N * static_cast<size_t>(g.parts) * C : 0);
  L.total = ws.total();
  return L;
}

// The one-pass launch where onepass_applies (se_heuristics.h; the tile is
// dy's); any error means that nothing ran (as launch_forward_onepass).
template <typename T, bool kNHWC>
cudaError_t launch_backward_onepass(BwdArgs a, cudaStream_t stream) {
  constexpr auto kernel = se_bwd_staged_kernel<T, kNHWC, false>;
  const int64_t smem = onepass_smem_bytes<T>(a.p, a.g);
  if (smem > kOnePassSmemBytes) return cudaErrorInvalidValue;
  int resident = 0;
  cudaError_t err = se_allow_dynamic_smem<kernel>(smem);
  if (err == cudaSuccess) err = se_resident_blocks<kernel>(kThreads, &resident, smem);
  if (err != cudaSuccess) return err;
  if (!onepass_applies(smem, a.g, resident)) return cudaErrorCooperativeLaunchTooLarge;
  a.sp = StagedPlan{1, 1, smem, 0};
  // Phase 3 loops over the weight-gradient blocks on whatever grid the rounds use.
  return se_launch_cooperative(kernel, onepass_grid(a.p, a.g, resident), kThreads, stream, a,
                               static_cast<size_t>(smem));
}

// The cluster launch (as launch_forward_cluster), then the weight-gradient
// kernel unless one cluster is the whole batch. An error from the first
// launch means that nothing ran; from the second, it is the call's error.
template <typename T, bool kNHWC>
cudaError_t launch_backward_cluster(BwdArgs a, cudaStream_t stream, bool* launched) {
  constexpr auto kernel = se_bwd_staged_kernel<T, kNHWC, true>;
  *launched = false;
  cudaError_t err = cluster_fit<kernel, T>(a.p, a.g, &a.sp, /*stage_weights=*/true, /*samples=*/false);
  if (err == cudaSuccess)
    err = se_launch_cluster(kernel, ceil_div(a.p.N, a.sp.samples) * a.sp.cluster,
                            static_cast<int>(a.sp.cluster), kThreads, stream, a, static_cast<size_t>(a.sp.smem()));
  if (err != cudaSuccess) return err;
  *launched = true;
  return a.p.N == 1 ? cudaSuccess : se_launch(se_wgrad_kernel<T>, a.g.wgrad_blocks, kThreads, stream, a);
}

template <typename T, bool kNHWC>
cudaError_t launch_backward_layout(const BwdArgs& a, cudaStream_t stream, SEPath* taken) {
  SEPath path = choose_path(a.p.path);
  if (path == SEPath::Cluster) {
    bool launched = false;
    const cudaError_t err = launch_backward_cluster<T, kNHWC>(a, stream, &launched);
    if (launched) {
      if (err == cudaSuccess && taken) *taken = SEPath::Cluster;
      return err;
    }
    path = SEPath::TwoPass;  // does not apply here, or refused: as below
  }
  if (path == SEPath::OnePass) {
    if (launch_backward_onepass<T, kNHWC>(a, stream) == cudaSuccess) {
      if (taken) *taken = SEPath::OnePass;
      return cudaSuccess;
    }
    // Does not apply here, or refused (se_sync.h cleared its own error; one
    // pending from earlier work stays, and the first launch reports it): the
    // three-launch path (same bits).
  }
  const int64_t grid = a.g.units;
  cudaError_t err = se_launch(se_bwd_phase1_kernel<T, kNHWC>, grid, kThreads, stream, a);
  if (err != cudaSuccess) return err;
  if (a.g.parts > 1) {
    err = se_launch(se_bwd_sum_kernel<T>, grid / a.g.parts, kThreads, stream, a);
    if (err != cudaSuccess) return err;
  }
  err = se_launch(se_bwd_phase2_kernel<T, kNHWC>, grid, kThreads, stream, a);
  if (err != cudaSuccess) return err;
  err = se_launch(se_wgrad_kernel<T>, a.g.wgrad_blocks, kThreads, stream, a);
  if (err == cudaSuccess && taken) *taken = SEPath::TwoPass;
  return err;
}

template <typename T>
size_t se_backward_workspace_bytes(const SEBackwardParams& p) {
  return bwd_layout<T>(p, make_geometry<T>(p, true)).total;
}

template <typename T>
SEWorkspaceRegions se_backward_workspace_regions(const SEBackwardParams& p) {
  const BwdLayout L = bwd_layout<T>(p, make_geometry<T>(p, true));
  return ws_regions<6>({L.part, L.dz2, L.dz1, L.act, L.hscratch, L.psum}, L.total);
}

template <typename T>
cudaError_t launch_se_backward(const SEBackwardParams& p, cudaStream_t stream) {
  if (p.N <= 0) return cudaSuccess;
  BwdArgs a;
  a.p = p;
  a.g = make_geometry<T>(p, true);
  if (a.g.units > kMaxUnits || a.g.wgrad_blocks > kMaxUnits) return cudaErrorInvalidValue;
  const BwdLayout L = bwd_layout<T>(p, a.g);
  if (!ws_ok(p, L.total)) return cudaErrorInvalidValue;
  a.ws = ExciteWs{ws_region(p, 0, L.part), a.g.hid_global ? ws_region(p, 4, L.hscratch) : nullptr,
                  ws_region(p, 1, L.dz2), ws_region(p, 2, L.dz1), ws_region(p, 3, L.act),
                  a.g.parts > 1 ? ws_region(p, 5, L.psum) : nullptr};
  return p.channels_last ? launch_backward_layout<T, true>(a, stream, p.path_taken)
                         : launch_backward_layout<T, false>(a, stream, p.path_taken);
}

#define SE_FUSED_INSTANTIATE_BACKWARD(T)                                       \
  template size_t se_backward_workspace_bytes<T>(const SEBackwardParams&);    \
  template SEWorkspaceRegions se_backward_workspace_regions<T>(const SEBackwardParams&); \
  template cudaError_t launch_se_backward<T>(const SEBackwardParams&, cudaStream_t);

}  // namespace cuda_kernels
}  // namespace se_fused
