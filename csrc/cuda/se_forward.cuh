// The forward kernels and their launch (instantiated per dtype by
// se_forward_<dtype>.cu).
//
// Phase 1, unit (n, k), channels [c0, c1) of chunk k:
//   pooled[n, c] = sum_hw x / HW                  (se_reduce.cuh orders)
//   the excitation's share (se_excite.cuh): two FCs: part[n, k, j] =
//   sum_{c in chunk} w1[j, c] pooled[n, c] for every j; the others: nothing
// Phase 2, unit (n, k), its own channels:
//   z2[n, c] from the excitation (se_excite.cuh): two FCs: the partials
//   summed in chunk order 0..K-1 (fixed by the shape) + b1, activation, the
//   rows of w2 + b2; one FC: the rows of w1 with the sample's pooled vector
//   + b1; ECA: k taps of the pooled vector + b1
//   s = gate(z2), y[n, c, :] = x[n, c, :] * s (+ x for the residual gate)
// Invariant: phase 2 of sample n starts after phase 1 of every unit of n has
// written its part and pooled means. TwoPass: two launches in stream order.
// OnePass and Cluster (the staged kernel below): one launch, the round's
// barrier between the phases (se_grid_sync under a cooperative launch,
// se_cluster_sync under a cluster launch; se_sync.h). Phase 2 reads what
// other blocks wrote (partials, pooled) with ld.global.cg (no stale L1 line
// in the one-launch kernels). Every sum's order depends on the shape alone,
// so every path, any N and any grid give the same bits; a sample's result
// does not depend on the others.
#pragma once

#include "se_excite.cuh"
#include "se_onepass.cuh"

namespace se_fused {
namespace cuda_kernels {

// Forward kernel arguments: the caller's problem, the geometry, the workspace.
struct FwdArgs {
  SEForwardParams p;  // pointers untyped (T and acc_t<T>)
  Geometry g;
  ExciteWs ws;  // part, hscratch (se_excite.cuh)
  StagedPlan sp;  // the staged kernels' plan (OnePass, Cluster; se_heuristics.h)
};

// After the squeeze of chunk ui (sm.u.buf: its channels' sums over every
// row): the means (mean_div: no division call, a pass of its own), pooled,
// and the excitation's share of phase 1.
// wv: where the unit's weights are read; staged: its w1 copies are in flight
// (stage_w1_async) and waited for here.
template <typename T>
__device__ __forceinline__ void fwd_finish(const FwdArgs& a, Smem<acc_t<T>>& sm, const UnitIdx& ui,
                                           acc_t<T>* pooled, const WeightView<T>& wv, bool staged) {
  using A = acc_t<T>;
  const A hw = geo_hw<A>(a.g), inv_hw = geo_inv_hw<A>(a.g);
#pragma unroll 1  // a short loop: kept rolled (fewer live registers)
  for (int64_t r = threadIdx.x; r < ui.c1 - ui.c0; r += kThreads) {
    const A m = mean_div(sm.u.buf[r], hw, inv_hw);
    sm.u.buf[r] = m;
    pooled[ui.c0 + r] = m;
  }
  if (staged) se_cp_async_wait(0);  // this thread's copies of the slice ...
  __syncthreads();                  // ... and every thread's
  excite_fwd_partial<T>(a.p, a.g, ui, a.ws, sm, wv);
  __syncthreads();  // sm is reused by the next unit
}

// kStaged: the unit's tile was staged in `slot` (se_onepass.cuh; the copies
// waited for) and is squeezed from there: the same sums in the same orders.
// wbuf (the cluster plan's weight_bytes): the unit's w1 columns are staged
// there while it squeezes (first: the chunk's first unit of the round; the
// others find them there), and the MLP reads them there.
template <typename T, bool kNHWC, bool kStaged = false, bool kCluster = false>
__device__ __forceinline__ void fwd_phase1(const FwdArgs& a, Smem<acc_t<T>>& sm, int64_t u,
                                           unsigned char* slot = nullptr, unsigned char* wbuf = nullptr,
                                           bool first = true) {
  using A = acc_t<T>;
  const SEForwardParams& p = a.p;
  const int64_t C = p.C, HW = p.HW;
  const UnitIdx ui = unit_of<kNHWC>(u, a.g, C, HW);
  // The unit's rows as a sample of ui.rows rows (NCHW: the whole sample).
  const T* xs = cin<T>(p.x) + ui.n * C * HW + ui.r0 * C;
  A* pooled = out<A>(p.pooled) + ui.n * C;
  const auto sums = [&](int64_t r, A v) { sm.u.buf[r] = v; };
  // Rows split (NHWC parts): a part runs no MLP here (the summing step does,
  // staging the chunk's slice itself).
  if (kNHWC && a.g.parts > 1) wbuf = nullptr;
  const WeightView<T> wv = stage_w1_async<T>(p, ui, wbuf, first);
  if constexpr (kStaged) {
    const int64_t len = ui.c1 - ui.c0;
    const T* tile = onepass_tile<T, kNHWC>(xs + (kNHWC ? ui.c0 : ui.c0 * HW), slot);
    // The tile's channel r is channel c0 + r (NHWC: row stride onepass_ld).
    squeeze_chunk<T, false, kNHWC>(tile, nullptr, kNHWC ? onepass_ld<T>(len) : C, ui.rows, 0, len,
                                   a.g, sm, sums);
  } else {
    squeeze_chunk<T, false, kNHWC>(xs, nullptr, C, ui.rows, ui.c0, ui.c1, a.g, sm, sums);
  }
  __syncthreads();
  if (!kNHWC || a.g.parts == 1) {  // NCHW: never split (se_heuristics.h)
    fwd_finish<T>(a, sm, ui, pooled, wv, wbuf != nullptr && first);
  } else {  // the part's sums, for fwd_sum
    put_part_sums<A>(part_sums_of<kCluster>(a.ws.psum, a.sp), ui, a.g, C, sm.u.buf);
    __syncthreads();  // sm is reused by the next unit
  }
}

// The summing step (parts > 1), chunk v of N * K: the parts' sums added in
// part order 0..P-1, then as phase 1 after an unsplit squeeze.
// wbuf (the staged kernel's, else nullptr): the chunk's w1 columns staged there
// while the parts' sums are added (copy), or already issued (!copy: the
// block's first chunk of the round, fwd_sum_stage).
template <typename T, bool kCluster = false>
__device__ __forceinline__ void fwd_sum(const FwdArgs& a, Smem<acc_t<T>>& sm, int64_t v,
                                        unsigned char* wbuf = nullptr, bool copy = true) {
  using A = acc_t<T>;
  const int64_t C = a.p.C;
  const UnitIdx ui = chunk_of(v, a.g, C, a.p.HW);
  const WeightView<T> wv = stage_w1_async<T>(a.p, ui, wbuf, copy);
  add_part_sums<A>(part_sums_of<kCluster>(a.ws.psum, a.sp), ui, a.g, C, sm.u.buf);
  __syncthreads();
  fwd_finish<T>(a, sm, ui, out<A>(a.p.pooled) + ui.n * C, wv, wbuf != nullptr);
}

// wbuf: as fwd_phase1's, for w2's rows.
template <typename T, bool kNHWC, bool kFC2>
__device__ __forceinline__ void fwd_phase2(const FwdArgs& a, Smem<acc_t<T>>& sm, int64_t u,
                                           unsigned char* wbuf = nullptr) {
  using A = acc_t<T>;
  const SEForwardParams& p = a.p;
  const int64_t C = p.C, HW = p.HW;
  const UnitIdx ui = unit_of<kNHWC>(u, a.g, C, HW);
  const WeightView<T> wv = stage_w2_async<T>(p, ui, wbuf, true);
  excite_fwd_z2<T, kFC2>(p, a.g, ui, u, a.ws, sm, wv, wbuf != nullptr);
  __syncthreads();
  gate_terms<A>(p.gate, sm.u.buf, sm.u.buf, ui.c1 - ui.c0);  // s, in place
  __syncthreads();
  const int64_t rows = ui.n * C * HW + ui.r0 * C;  // the unit's rows (NCHW: the sample)
  scale_chunk<T, false, kNHWC>(cin<T>(p.x) + rows, out<T>(p.y) + rows, C, ui.rows, ui.c0, ui.c1,
                               a.g, sm.u.buf, nullptr, p.residual);
  __syncthreads();  // sm is reused by the next unit
}

// TwoPass: launch 1, the summing step when the rows are split (parts > 1),
// launch 2.
template <typename T, bool kNHWC>
__global__ void __launch_bounds__(kThreads) se_fwd_phase1_kernel(const __grid_constant__ FwdArgs a) {
  SE_SHARED(Smem<acc_t<T>>, sm);
  fwd_phase1<T, kNHWC>(a, sm, blockIdx.x);  // one unit per block (grid = units)
}
template <typename T>
__global__ void __launch_bounds__(kThreads) se_fwd_sum_kernel(const __grid_constant__ FwdArgs a) {
  SE_SHARED(Smem<acc_t<T>>, sm);
  fwd_sum<T>(a, sm, blockIdx.x);  // one chunk per block (grid = N * K)
}
template <typename T, bool kNHWC, bool kFC2>
__global__ void __launch_bounds__(kThreads) se_fwd_phase2_kernel(const __grid_constant__ FwdArgs a) {
  SE_SHARED(Smem<acc_t<T>>, sm);
  fwd_phase2<T, kNHWC, kFC2>(a, sm, blockIdx.x);  // one unit per block (grid = units)
}
// The summing step's loop over chunks [first, last) of the N * K, chunk
// first + rank + i * size on this block (the kernels call it, with the
// barrier before it, where parts > 1); inlined into the kernels' bodies (a
// function of its own spilled).
template <typename T, bool kCluster>
__device__ __forceinline__ void fwd_sum_loop(const FwdArgs& a, Smem<acc_t<T>>& sm, int64_t first,
                                             int64_t last, int64_t rank, int64_t size) {
  for (int64_t v = first + rank; v < last; v += size) fwd_sum<T, kCluster>(a, sm, v, staged_wbuf(a.sp), !kCluster || v != first + rank);
}
// The slice of the block's first summing chunk v, issued at the round's start
// (se_onepass.cuh staged_rounds), where the plan stages weights.
template <typename T>
__device__ __forceinline__ void fwd_sum_stage(const FwdArgs& a, int64_t v) {
  stage_w1_async<T>(a.p, chunk_of(v, a.g, a.p.C, a.p.HW), staged_wbuf(a.sp), true);
}

// The staged kernel (OnePass: kCluster false, a cooperative launch; Cluster:
// kCluster true, a cluster launch): rounds (se_onepass.cuh StagedScope) in
// which a block stages the tiles of its units (u0, u0 + step, ... below end)
// in the slots of its dynamic shared memory, all in flight at once, squeezes
// each as its copies land, meets the round's blocks at the barrier (grid or
// cluster; two with row parts) and scales each from its slot. Nothing a round
// writes is read by another round (the workspace is per sample or per unit),
// and a block stages its next round only after all its threads are done with
// the slots (the __syncthreads ending phase 2).
template <typename T, bool kNHWC, bool kCluster>
__device__ __noinline__ void fwd_staged_phase1_call(const FwdArgs& a, Smem<acc_t<T>>& sm, int64_t u,
                                                    unsigned char* slot, bool first) {
  fwd_phase1<T, kNHWC, true, kCluster>(a, sm, u, slot, staged_wbuf(a.sp), first);
}
template <typename T, bool kNHWC, bool kFC2>
__device__ __noinline__ void fwd_staged_phase2_call(const FwdArgs& a, Smem<acc_t<T>>& sm, int64_t u,
                                                    unsigned char* slot, bool first) {
  using A = acc_t<T>;
  unsigned char* wbuf = staged_wbuf(a.sp);
  const SEForwardParams& p = a.p;
  const int64_t C = p.C, HW = p.HW;
  const UnitIdx ui = unit_of<kNHWC>(u, a.g, C, HW);
  const int64_t len = ui.c1 - ui.c0;
  const WeightView<T> wv = stage_w2_async<T>(p, ui, wbuf, first);
  excite_fwd_z2<T, kFC2>(p, a.g, ui, u, a.ws, sm, wv, wbuf != nullptr && first);
  __syncthreads();
  gate_terms<A>(p.gate, sm.u.buf, sm.u.buf, len);  // s, in place
  __syncthreads();
  const int64_t e0 = ui.n * C * HW + tile_offset<kNHWC>(ui, C, HW);  // the unit's first element
  onepass_scale<T, false, kNHWC>(onepass_tile<T, kNHWC>(cin<T>(p.x) + e0, slot), out<T>(p.y) + e0,
                                 C, ui.rows, len, a.g, sm.u.buf, nullptr, p.residual);
  __syncthreads();  // the slot and sm are reused by the next unit or round
}
// A unit past the staged ones (Cluster, where a block's tiles pass the
// budget by one): the two-pass phases, x read from global memory twice.
template <typename T, bool kNHWC, bool kCluster>
__device__ __noinline__ void fwd_direct_phase1_call(const FwdArgs& a, Smem<acc_t<T>>& sm, int64_t u) {
  fwd_phase1<T, kNHWC, false, kCluster>(a, sm, u, nullptr, staged_wbuf(a.sp));
}
template <typename T, bool kNHWC, bool kFC2>
__device__ __noinline__ void fwd_direct_phase2_call(const FwdArgs& a, Smem<acc_t<T>>& sm, int64_t u) {
  fwd_phase2<T, kNHWC, kFC2>(a, sm, u, staged_wbuf(a.sp));
}
// Its registers: with no minimum of blocks per SM, ptxas's own target keeps
// every instance at <= 128 registers without spills on sm_80 and sm_90 (two
// blocks per SM where shared memory allows), but on sm_100 it takes the fp32
// and fp64 NHWC two-FC instances to 80 registers and 48-144-byte spills, and
// with a minimum of 2 (a 128 cap) they still spill on sm_100, and new 4-8-byte
// spills appear on sm_90. So from sm_100 the kernel states one block per SM
// (116-197 registers, no spills; tests/test_ptxas.py); before, nothing.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 1000
#define SE_FWD_STAGED_BOUNDS __launch_bounds__(kThreads, 1)
#else
#define SE_FWD_STAGED_BOUNDS __launch_bounds__(kThreads)
#endif
template <typename T, bool kNHWC, bool kFC2, bool kCluster>
__global__ void SE_FWD_STAGED_BOUNDS se_fwd_staged_kernel(const __grid_constant__ FwdArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
  if constexpr (kCluster) return;  // no clusters before sm_90: never launched there (se_cluster_capacity)
#endif
  SE_SHARED(Smem<acc_t<T>>, sm);
  staged_rounds<T, kNHWC, kCluster>(
      a.p, a.g, a.sp, a.p.x,
      [&](int64_t u, unsigned char* slot, bool first) {
        fwd_staged_phase1_call<T, kNHWC, kCluster>(a, sm, u, slot, first);
      },
      [&](int64_t u) { fwd_direct_phase1_call<T, kNHWC, kCluster>(a, sm, u); },
      [&](int64_t v) {
        if constexpr (kCluster) fwd_sum_stage<T>(a, v);  // OnePass stages no weights
      },
      [&](int64_t first, int64_t last, int64_t rank, int64_t size) {
        fwd_sum_loop<T, kCluster>(a, sm, first, last, rank, size);
      },
      [&](int64_t u, unsigned char* slot, bool first) {
        fwd_staged_phase2_call<T, kNHWC, kFC2>(a, sm, u, slot, first);
      },
      [&](int64_t u) { fwd_direct_phase2_call<T, kNHWC, kFC2>(a, sm, u); });
}

// ------------------------------------------------------------------ host

struct FwdLayout {
  size_t part = 0, hscratch = 0, psum = 0, total = 0;
};
template <typename T>
FwdLayout fwd_layout(const SEForwardParams& p, const Geometry& g) {
  using A = acc_t<T>;
  FwdLayout L;
  WsCursor<A> ws;
  const size_t N = static_cast<size_t>(p.N), H = static_cast<size_t>(p.hidden);
  L.part = ws.take(N * static_cast<size_t>(g.chunks) * H);
  L.hscratch = ws.take(g.hid_global ? static_cast<size_t>(g.units) * H : 0);
  L.psum = ws.take(g.parts > 1 ? N * static_cast<size_t>(g.parts) * static_cast<size_t>(p.C) : 0);
  L.total = ws.total();
  return L;
}

// The one-pass launch where onepass_applies (se_heuristics.h); any error (the
// tile over the budget, a sample's units more than the resident blocks, the
// shared-memory opt-in or the launch refused) means that nothing ran.
template <typename T, bool kNHWC, bool kFC2>
cudaError_t launch_forward_onepass(FwdArgs a, cudaStream_t stream) {
  constexpr auto kernel = se_fwd_staged_kernel<T, kNHWC, kFC2, false>;
  const int64_t smem = onepass_smem_bytes<T>(a.p, a.g);
  if (smem > kOnePassSmemBytes) return cudaErrorInvalidValue;
  int resident = 0;
  cudaError_t err = se_allow_dynamic_smem<kernel>(smem);
  if (err == cudaSuccess) err = se_resident_blocks<kernel>(kThreads, &resident, smem);
  if (err != cudaSuccess) return err;
  if (!onepass_applies(smem, a.g, resident)) return cudaErrorCooperativeLaunchTooLarge;
  a.sp = StagedPlan{1, 1, smem, 0};
  return se_launch_cooperative(kernel, onepass_grid(a.p, a.g, resident), kThreads, stream, a,
                               static_cast<size_t>(smem));
}

// The cluster launch (se_onepass.cuh cluster_fit; grid = N clusters); any
// error means that nothing ran.
template <typename T, bool kNHWC, bool kFC2>
cudaError_t launch_forward_cluster(FwdArgs a, cudaStream_t stream) {
  constexpr auto kernel = se_fwd_staged_kernel<T, kNHWC, kFC2, true>;
  const cudaError_t err = cluster_fit<kernel, T>(a.p, a.g, &a.sp, /*stage_weights=*/true, /*samples=*/true);
  if (err != cudaSuccess) return err;
  return se_launch_cluster(kernel, ceil_div(a.p.N, a.sp.samples) * a.sp.cluster, static_cast<int>(a.sp.cluster),
                           kThreads,
                           stream, a, static_cast<size_t>(a.sp.smem()));
}

template <typename T, bool kNHWC, bool kFC2>
cudaError_t launch_forward_layout(const FwdArgs& a, cudaStream_t stream, SEPath* taken) {
  SEPath path = choose_path(a.p.path);
  if (path == SEPath::Cluster) {
    if (launch_forward_cluster<T, kNHWC, kFC2>(a, stream) == cudaSuccess) {
      if (taken) *taken = SEPath::Cluster;
      return cudaSuccess;
    }
    path = SEPath::TwoPass;  // does not apply here, or refused: as below
  }
  if (path == SEPath::OnePass) {
    if (launch_forward_onepass<T, kNHWC, kFC2>(a, stream) == cudaSuccess) {
      if (taken) *taken = SEPath::OnePass;
      return cudaSuccess;
    }
    // Does not apply here, or refused (se_sync.h cleared its own error; one
    // pending from earlier work stays, and the first two-pass launch reports
    // it): the two-pass kernels (same bits).
  }
  const int64_t grid = a.g.units;
  cudaError_t err = se_launch(se_fwd_phase1_kernel<T, kNHWC>, grid, kThreads, stream, a);
  if (err != cudaSuccess) return err;
  if (a.g.parts > 1) {
    err = se_launch(se_fwd_sum_kernel<T>, grid / a.g.parts, kThreads, stream, a);
    if (err != cudaSuccess) return err;
  }
  err = se_launch(se_fwd_phase2_kernel<T, kNHWC, kFC2>, grid, kThreads, stream, a);
  if (err == cudaSuccess && taken) *taken = SEPath::TwoPass;
  return err;
}

template <typename T>
size_t se_forward_workspace_bytes(const SEForwardParams& p) {
  return fwd_layout<T>(p, make_geometry<T>(p, false)).total;
}

template <typename T>
SEWorkspaceRegions se_forward_workspace_regions(const SEForwardParams& p) {
  const FwdLayout L = fwd_layout<T>(p, make_geometry<T>(p, false));
  return ws_regions<3>({L.part, L.hscratch, L.psum}, L.total);
}

template <typename T>
cudaError_t launch_se_forward(const SEForwardParams& p, cudaStream_t stream) {
  if (p.N <= 0) return cudaSuccess;
  FwdArgs a;
  a.p = p;
  a.g = make_geometry<T>(p, false);
  if (a.g.units > kMaxUnits) return cudaErrorInvalidValue;
  const FwdLayout L = fwd_layout<T>(p, a.g);
  if (!ws_ok(p, L.total)) return cudaErrorInvalidValue;
  a.ws = ExciteWs{ws_region(p, 0, L.part), a.g.hid_global ? ws_region(p, 1, L.hscratch) : nullptr,
                  nullptr, nullptr, nullptr, a.g.parts > 1 ? ws_region(p, 2, L.psum) : nullptr};
  if (p.excitation == Excitation::TwoFC)
    return p.channels_last ? launch_forward_layout<T, true, true>(a, stream, p.path_taken)
                           : launch_forward_layout<T, false, true>(a, stream, p.path_taken);
  return p.channels_last ? launch_forward_layout<T, true, false>(a, stream, p.path_taken)
                         : launch_forward_layout<T, false, false>(a, stream, p.path_taken);
}

#define SE_FUSED_INSTANTIATE_FORWARD(T)                                        \
  template size_t se_forward_workspace_bytes<T>(const SEForwardParams&);      \
  template SEWorkspaceRegions se_forward_workspace_regions<T>(const SEForwardParams&); \
  template cudaError_t launch_se_forward<T>(const SEForwardParams&, cudaStream_t);

}  // namespace cuda_kernels
}  // namespace se_fused
