// The backward kernels and their launch (instantiated per dtype by
// se_backward_<dtype>.cu). s and a are recomputed from the forward's z2, z1.
//
// Phase 1, unit (n, k), channels [c0, c1):
//   ds[c] = sum_hw dy x;  dz2[n, c] = ds * gate'(z2[n, c])  (workspace)
//   part[n, k, j] = sum_{c in chunk} w2[c, j] dz2[n, c]     for every j
// Phase 2, unit (n, k):
//   da[j] = part[n, 0, j] + ... + part[n, K-1, j] (chunk order);
//   dz1[j] = da[j] * activation'(z1[n, j])  (unit k == 0 also stores dz1 and
//   a = activation(z1) for phase 3)
//   g[c] = (sum_j w1[j, c] dz1[j]) / HW, s[c] = gate(z2[n, c]), for its channels
//   dx[n, c, :] = dy * s + g
// Phase 3: dw1[j, c] = sum_n dz1[n, j] pooled[n, c], dw2[c, j] =
//   sum_n dz2[n, c] a[n, j], db1, db2 (if asked for): each output summed over
//   n in order 0..N-1 by one thread.
// Invariant: each phase starts after the previous one finished for every unit
// it reads (stream order in TwoPass: three launches; se_grid_sync() in the
// cooperative kernel). Cross-block data is read with ld.global.cg.
#pragma once

#include "se_tile.cuh"

namespace se_fused {
namespace cuda_kernels {

struct BwdArgs {
  SEBackwardParams p;
  Geometry g;
  void* part;      // [N, K, hidden] acc_t: each chunk's partial da
  void* hscratch;  // [units, hidden] acc_t when g.hid_global, else nullptr
  void* dz2;       // [N, C] acc_t
  void* dz1;       // [N, hidden] acc_t
  void* act;       // [N, hidden] acc_t: activation(z1)
};

template <typename T, bool kNHWC>
__device__ __forceinline__ void bwd_phase1(const BwdArgs& a, Smem<acc_t<T>>& sm, int64_t u) {
  using A = acc_t<T>;
  const SEBackwardParams& p = a.p;
  const UnitIdx ui = unit_of(u, a.g, p.C);
  const int64_t C = p.C, HW = p.HW, H = p.hidden;
  const int64_t sample = ui.n * C * HW;
  const A* z2 = cin<A>(p.z2) + ui.n * C;
  A* dz2 = out<A>(a.dz2) + ui.n * C;
  squeeze_chunk<T, true, kNHWC>(cin<T>(p.x) + sample, cin<T>(p.dy) + sample, C, HW, ui.c0, ui.c1,
                                a.g, sm, [&](int64_t r, A ds) {
                                  const A z = z2[ui.c0 + r];
                                  const A d = gate_backward(p.gate, z, gate_fwd(p.gate, z), ds);
                                  sm.u.buf[r] = d;
                                  dz2[ui.c0 + r] = d;
                                });
  __syncthreads();
  A* part = out<A>(a.part) + (ui.n * a.g.chunks + ui.k) * H;
  col_reduce(ColDotVec<T>{cin<T>(p.w2) + ui.c0 * H, H, VecSrc<A>{sm.u.buf}}, ui.c1 - ui.c0, H,
             a.g.CWa, sm.u.part, [&](int64_t j, A v) { part[j] = v; });
  __syncthreads();
}

template <typename T, bool kNHWC>
__device__ __forceinline__ void bwd_phase2(const BwdArgs& a, Smem<acc_t<T>>& sm, int64_t u) {
  using A = acc_t<T>;
  const SEBackwardParams& p = a.p;
  const UnitIdx ui = unit_of(u, a.g, p.C);
  const int64_t C = p.C, HW = p.HW, H = p.hidden, K = a.g.chunks;
  A* hid = a.g.hid_global ? out<A>(a.hscratch) + u * H : sm.u.hid;
  const A* part = cin<A>(a.part) + ui.n * K * H;
  const A* z1 = cin<A>(p.z1) + ui.n * H;
#pragma unroll 1  // a short loop: kept rolled (fewer live registers)
  for (int64_t j = threadIdx.x; j < H; j += kThreads) {
    A t = __ldcg(part + j);
    for (int64_t k = 1; k < K; ++k) t += __ldcg(part + k * H + j);
    hid[j] = t;  // da
  }
  bwd_act_terms<A>(p.activation, z1, hid, ui.k == 0 ? out<A>(a.dz1) + ui.n * H : nullptr,
                   ui.k == 0 ? out<A>(a.act) + ui.n * H : nullptr, H);
  const A hw = geo_hw<A>(a.g), inv_hw = geo_inv_hw<A>(a.g);
  gate_terms<A>(p.gate, cin<A>(p.z2) + ui.n * C + ui.c0, sm.u.buf, ui.c1 - ui.c0);
  __syncthreads();
  col_reduce(ColDotVec<T>{cin<T>(p.w1) + ui.c0, C, VecSrc<A>{hid}}, H, ui.c1 - ui.c0, a.g.CWp,
             sm.u.part, [&](int64_t r, A dp) { sm.u.buf2[r] = div_by(dp, hw, inv_hw); });
  __syncthreads();
  const int64_t sample = ui.n * C * HW;
  scale_chunk<T, true, kNHWC>(cin<T>(p.dy) + sample, out<T>(p.dx) + sample, C, HW, ui.c0, ui.c1,
                              a.g, sm.u.buf, sm.u.buf2);
  __syncthreads();
}

// Phase 3, virtual block vb: a 64 x 64 tile of dw1 or dw2, or kThreads bias entries.
template <typename T>
__device__ __forceinline__ void wgrad_block(const BwdArgs& a, Smem<acc_t<T>>& sm, int64_t vb) {
  using A = acc_t<T>;
  const SEBackwardParams& p = a.p;
  const Geometry& g = a.g;
  const int64_t N = p.N, C = p.C, H = p.hidden;
  const A* dz1 = cin<A>(a.dz1);
  const A* dz2 = cin<A>(a.dz2);
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  if (vb < g.tiles1 + g.tiles2) {  // block-uniform
    // out[i, k] = sum_n X[n, i] Y[n, k]; out is [M, Kc].
    const bool first = vb < g.tiles1;
    const int64_t t = first ? vb : vb - g.tiles1;
    const int64_t M = first ? H : C;
    const int64_t Kc = first ? C : H;
    const A* X = first ? dz1 : dz2;
    const A* Y = first ? cin<A>(p.pooled) : cin<A>(a.act);
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
    if (e < H && p.db1) {
      A sum = A(0);
      for (int64_t n = 0; n < N; ++n) sum = sum + __ldcg(dz1 + n * H + e);
      out<T>(p.db1)[e] = from_acc<T>(sum);
    } else if (e >= H && e < H + C && p.db2) {
      const int64_t c = e - H;
      A sum = A(0);
      for (int64_t n = 0; n < N; ++n) sum = sum + __ldcg(dz2 + n * C + c);
      out<T>(p.db2)[c] = from_acc<T>(sum);
    }
  }
}

template <typename T, bool kNHWC>
__global__ void __launch_bounds__(kThreads) se_bwd_phase1_kernel(const __grid_constant__ BwdArgs a) {
  SE_SHARED(Smem<acc_t<T>>, sm);
  bwd_phase1<T, kNHWC>(a, sm, blockIdx.x);  // one unit per block (grid = units)
}
template <typename T, bool kNHWC>
__global__ void __launch_bounds__(kThreads) se_bwd_phase2_kernel(const __grid_constant__ BwdArgs a) {
  SE_SHARED(Smem<acc_t<T>>, sm);
  bwd_phase2<T, kNHWC>(a, sm, blockIdx.x);  // one unit per block (grid = units)
}
template <typename T>
__global__ void __launch_bounds__(kThreads) se_wgrad_kernel(const __grid_constant__ BwdArgs a) {
  SE_SHARED(Smem<acc_t<T>>, sm);
  wgrad_block<T>(a, sm, blockIdx.x);  // one virtual block per block (grid = wgrad_blocks)
}
// Cooperative: the three phases, grid barriers between them; each phase's
// loop its own function (no spills: see se_forward.cuh).
template <typename T, bool kNHWC>
__device__ __noinline__ void bwd_phase1_loop(const BwdArgs& a, Smem<acc_t<T>>& sm) {
  for (int64_t u = blockIdx.x; u < a.g.units; u += gridDim.x) bwd_phase1<T, kNHWC>(a, sm, u);
}
template <typename T, bool kNHWC>
__device__ __noinline__ void bwd_phase2_loop(const BwdArgs& a, Smem<acc_t<T>>& sm) {
  for (int64_t u = blockIdx.x; u < a.g.units; u += gridDim.x) bwd_phase2<T, kNHWC>(a, sm, u);
}
template <typename T>
__device__ __noinline__ void wgrad_loop(const BwdArgs& a, Smem<acc_t<T>>& sm) {
  for (int64_t vb = blockIdx.x; vb < a.g.wgrad_blocks; vb += gridDim.x) wgrad_block<T>(a, sm, vb);
}
template <typename T, bool kNHWC>
__global__ void __launch_bounds__(kThreads) se_bwd_coop_kernel(const __grid_constant__ BwdArgs a) {
  SE_SHARED(Smem<acc_t<T>>, sm);
  bwd_phase1_loop<T, kNHWC>(a, sm);
  se_grid_sync();
  bwd_phase2_loop<T, kNHWC>(a, sm);
  se_grid_sync();
  wgrad_loop<T>(a, sm);
}

// ------------------------------------------------------------------ host

struct BwdLayout {
  size_t part = 0, dz2 = 0, dz1 = 0, act = 0, hscratch = 0, total = 0;
};
template <typename T>
BwdLayout bwd_layout(const SEBackwardParams& p, const Geometry& g) {
  using A = acc_t<T>;
  BwdLayout L;
  size_t off = 0;
  auto take = [&](size_t count) {
    const size_t o = off;
    off += (count * sizeof(A) + 255) / 256 * 256;
    return o;
  };
  const size_t N = static_cast<size_t>(p.N), C = static_cast<size_t>(p.C);
  const size_t H = static_cast<size_t>(p.hidden);
  L.part = take(N * static_cast<size_t>(g.chunks) * H);
  L.dz2 = take(N * C);
  L.dz1 = take(N * H);
  L.act = take(N * H);
  L.hscratch = take(g.hid_global ? static_cast<size_t>(g.units) * H : 0);
  L.total = off > 0 ? off : 256;
  return L;
}

template <typename T, bool kNHWC>
cudaError_t launch_backward_layout(const BwdArgs& a, cudaStream_t stream, SEPath* taken) {
  if (choose_path(a.p.path) == SEPath::Cooperative) {
    int resident = 0;
    cudaError_t err = se_resident_blocks(se_bwd_coop_kernel<T, kNHWC>, kThreads, &resident);
    if (err == cudaSuccess && resident > 0) {
      const int64_t want = max64(a.g.units, a.g.wgrad_blocks);
      err = se_launch_cooperative(se_bwd_coop_kernel<T, kNHWC>, min64(want, resident), kThreads,
                                  stream, a);
      if (err == cudaSuccess) {
        if (taken) *taken = SEPath::Cooperative;
        return cudaSuccess;
      }
    }
    (void)cudaGetLastError();  // refused: the three-launch path (same bits) instead
  }
  const int64_t grid = a.g.units;
  cudaError_t err = se_launch(se_bwd_phase1_kernel<T, kNHWC>, grid, kThreads, stream, a);
  if (err != cudaSuccess) return err;
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
cudaError_t launch_se_backward(const SEBackwardParams& p, cudaStream_t stream) {
  if (p.N <= 0) return cudaSuccess;
  BwdArgs a;
  a.p = p;
  a.g = make_geometry<T>(p, true);
  if (a.g.units > kMaxUnits || a.g.wgrad_blocks > kMaxUnits) return cudaErrorInvalidValue;
  const BwdLayout L = bwd_layout<T>(p, a.g);
  if (p.workspace == nullptr || p.workspace_bytes < L.total) return cudaErrorInvalidValue;
  char* ws = static_cast<char*>(p.workspace);
  a.part = ws + L.part;
  a.dz2 = ws + L.dz2;
  a.dz1 = ws + L.dz1;
  a.act = ws + L.act;
  a.hscratch = a.g.hid_global ? ws + L.hscratch : nullptr;
  return p.channels_last ? launch_backward_layout<T, true>(a, stream, p.path_taken)
                         : launch_backward_layout<T, false>(a, stream, p.path_taken);
}

#define SE_FUSED_INSTANTIATE_BACKWARD(T)                                       \
  template size_t se_backward_workspace_bytes<T>(const SEBackwardParams&);    \
  template cudaError_t launch_se_backward<T>(const SEBackwardParams&, cudaStream_t);

}  // namespace cuda_kernels
}  // namespace se_fused
