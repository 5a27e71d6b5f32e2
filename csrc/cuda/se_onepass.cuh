// The staged kernels' tiles (SEPath::OnePass and SEPath::Cluster,
// se_heuristics.h StagedPlan): a unit's tile of x (forward) or dy (backward)
// is copied from global memory into a slot of the block's dynamic shared
// memory once (cp.async, every slot of the round in flight at once), at the
// start of the squeeze phase; the squeeze reads it there, and after the
// round's barrier (grid or cluster) the scale reads it there again instead of
// from global memory (x read once: forward 2N bytes instead of 3N, backward
// 3N instead of 4N+).
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
// Nothing here synchronises: the kernels (se_forward.cuh, se_backward.cuh)
// wait for the copies and meet before reading a slot.
#pragma once

#include "se_excite.cuh"

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
// element-aligned): scalar head to the first 16-byte boundary and scalar tail
// copied at once, the 16-byte body by cp.async (in flight until the thread's
// se_cp_async_wait).
template <typename T>
__device__ __forceinline__ void stage_span_async(const T* src, T* dst, int64_t L) {
  constexpr int V = Vec<T>::V;
  const int m = misalign(src);
  int64_t head = m < 0 ? L : (m == 0 ? 0 : V - m);
  if (head > L) head = L;
  for (int64_t i = threadIdx.x; i < head; i += kThreads) dst[i] = src[i];
  const int64_t nv = (L - head) / V;
  const T* vs = src + head;
  T* vd = dst + head;
  for (int64_t k = threadIdx.x; k < nv; k += kThreads) se_cp_async16(vd + k * V, vs + k * V);
  for (int64_t i = head + nv * V + threadIdx.x; i < L; i += kThreads) dst[i] = src[i];
}

// dst[r * lds + c] = src[r * ld + c] for r < rows, c < len (dst 16-byte
// aligned, lds a multiple of V): cp.async 16-byte copies when every source row
// is aligned and len is whole packs; else element by element, at once.
template <typename T>
__device__ __forceinline__ void stage_rows_async(const T* src, int64_t ld, int64_t rows, int64_t len,
                                                 T* dst, int64_t lds) {
  constexpr int V = Vec<T>::V;
  const bool vec = len % V == 0 && aligned16(src) &&
                   ((ld * static_cast<int64_t>(sizeof(T))) & 15) == 0;
  if (vec) {
    // Pack e of the tile: row e / P, pack e % P (32-bit: a slot is at most
    // kClusterSmemBytes / 16 packs).
    const uint32_t P = static_cast<uint32_t>(len / V);
    const uint32_t total = static_cast<uint32_t>(rows) * P;
    for (uint32_t e = threadIdx.x; e < total; e += kThreads) {
      const uint32_t r = e / P;
      se_cp_async16(dst + static_cast<int64_t>(r) * lds + (e - r * P) * V,
                    src + static_cast<int64_t>(r) * ld + (e - r * P) * V);
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

// Issues the copies of a unit's tile (its first element at `first` in global
// memory: NHWC `rows` rows of `len` channels at row stride C; NCHW `len`
// planes of HW) into `slot`. Nothing waits here: the caller's
// se_cp_async_wait and __syncthreads come before any read of the slot.
template <typename T, bool kNHWC>
__device__ __forceinline__ void stage_tile_async(const T* first, int64_t C, int64_t HW, int64_t rows,
                                                 int64_t len, unsigned char* slot) {
  if constexpr (kNHWC) {
    stage_rows_async(first, C, rows, len, onepass_tile<T, true>(first, slot), onepass_ld<T>(len));
  } else {
    stage_span_async(first, onepass_tile<T, false>(first, slot), len * HW);
  }
}

// Issues the copies of unit u's tile of src (x or dy: a [N, C, HW] tensor in
// the problem's layout) into slot.
template <typename T, bool kNHWC>
__device__ __forceinline__ void stage_unit(const void* src, const SEForwardParams& p, const Geometry& g,
                                           int64_t u, unsigned char* slot) {
  const int64_t C = p.C, HW = p.HW;
  const UnitIdx ui = unit_of<kNHWC>(u, g, C, HW);
  stage_tile_async<T, kNHWC>(static_cast<const T*>(src) + ui.n * C * HW + tile_offset<kNHWC>(ui, C, HW), C,
                             HW, ui.rows, ui.c1 - ui.c0, slot);
}

// The buffer of the unit's weight slice, after the staged slots (the cluster
// plan's weight_bytes), or nullptr: the weights are read from global memory
// (OnePass, one FC and ECA, a slice that does not fit beside the slots).
__device__ __forceinline__ unsigned char* staged_wbuf(const StagedPlan& sp) {
  SE_DYNAMIC_SHARED(dyn);
  return sp.weight_bytes > 0 ? dyn + sp.staged * sp.slot_bytes : nullptr;
}
// Where the row parts' sums meet (se_tile.cuh PartSums): in a cluster
// kernel the plan's exchange after the weight slice (sum_bytes), else the
// workspace's psum (TwoPass, OnePass: no distributed shared-memory store is
// compiled into them, no dynamic shared memory touched).
template <bool kCluster>
__device__ __forceinline__ PartSums part_sums_of(void* psum, const StagedPlan& sp) {
  if (!kCluster || sp.sum_bytes == 0) return PartSums{psum, nullptr, 0};
  SE_DYNAMIC_SHARED(dyn);
  return PartSums{psum, dyn + sp.staged * sp.slot_bytes + sp.weight_bytes, sp.cluster};
}
// The weight slice of unit ui (se_heuristics.h weight_slice_bytes) into
// wbuf, one commit group; the caller waits (se_cp_async_wait(0)) and meets
// its threads before the MLP reads it. w1's columns c0..c1 (forward phase 1,
// backward phase 2): hidden rows at row stride onepass_ld. w2's rows c0..c1
// (forward phase 2, backward phase 1): one span at its global misalignment
// (the rows take the paths they take in global memory). wbuf is free: the previous unit's MLP ended with a __syncthreads.
// copy: issue the copies (the chunk's first unit of the round); else the
// view of the slice an earlier unit of the same chunk staged (the round's
// other samples). wbuf nullptr (staged_wbuf: nothing staged): the view of
// global memory, nothing issued.
template <typename T>
__device__ __forceinline__ WeightView<T> stage_w1_async(const SEForwardParams& p, const UnitIdx& ui,
                                                        unsigned char* wbuf, bool copy) {
  if (!wbuf) return WeightView<T>::global(p, ui);
  const int64_t len = ui.c1 - ui.c0;
  T* dst = reinterpret_cast<T*>(wbuf);
  if (copy) {
    stage_rows_async(cin<T>(p.w1) + ui.c0, p.C, p.hidden, len, dst, onepass_ld<T>(len));
    se_cp_async_commit();
  }
  return WeightView<T>{dst, onepass_ld<T>(len), nullptr};
}
template <typename T>
__device__ __forceinline__ WeightView<T> stage_w2_async(const SEForwardParams& p, const UnitIdx& ui,
                                                        unsigned char* wbuf, bool copy) {
  if (!wbuf) return WeightView<T>::global(p, ui);
  const T* src = cin<T>(p.w2) + ui.c0 * p.hidden;
  T* dst = onepass_tile<T, false>(src, wbuf);
  if (copy) {
    stage_span_async(src, dst, (ui.c1 - ui.c0) * p.hidden);
    se_cp_async_commit();
  }
  return WeightView<T>{nullptr, 0, dst};
}

// A staged kernel's view of its rounds (se_heuristics.h StagedPlan): a round
// starting at unit `base` covers `samples` whole samples (units per sample:
// `per`); the block of rank `rank` takes, of each, units rank + size * j
// (j < slots, below per), below min(base + span, units); the rounds start at
// `first` and step by `stride`. OnePass: the grid (one unit per block, a round
// is the grid's units, per = span); Cluster: the block's cluster (one round of
// `samples` samples). Uniform over the barrier's scope, so every block of it
// meets every barrier.
struct StagedScope {
  int64_t rank, size, first, stride, span;
  int per, samples;  // 32-bit: units per sample (kMaxUnits), samples per round (kMaxClusterSamples)
};
template <bool kCluster>
__device__ __forceinline__ StagedScope staged_scope(const Geometry& g, const StagedPlan& sp) {
  if constexpr (kCluster) {
    const uint32_t cs = static_cast<uint32_t>(sp.cluster), ups = static_cast<uint32_t>(g.chunks * g.parts);
    const int64_t span = static_cast<int64_t>(ups) * sp.samples;
    return StagedScope{blockIdx.x % cs, cs, static_cast<int64_t>(blockIdx.x / cs) * span,
                       static_cast<int64_t>(gridDim.x / cs) * span, span, static_cast<int>(ups),
                       static_cast<int>(sp.samples)};
  } else {
    return StagedScope{blockIdx.x, gridDim.x, 0, gridDim.x, gridDim.x, static_cast<int>(gridDim.x), 1};
  }
}
// The block's j-th unit of sample s of the round at base, or `end` where it
// has none. Its slot: t = j * samples + s (a chunk's units of the round's
// samples back to back).
__device__ __forceinline__ int64_t staged_unit(const StagedScope& sc, int64_t base, int64_t end, int j,
                                               int s) {
  const int64_t c = sc.rank + sc.size * j;
  const int64_t u = base + s * sc.per + c;
  return c < sc.per && u < end ? u : end;
}
// The end of the round starting at base.
__device__ __forceinline__ int64_t staged_end(const StagedScope& sc, int64_t base, int64_t units) {
  return base + sc.span < units ? base + sc.span : units;
}
// The round's barrier: the cluster's (Cluster) or the grid's (OnePass).
template <bool kCluster>
__device__ __forceinline__ void staged_sync() {
  if constexpr (kCluster) {
    se_cluster_sync();
  } else {
    se_grid_sync();
  }
}

// RowDot2 (se_reduce.cuh) of the NCHW staged backward: a the dy tile in
// shared memory, read element by element as each chunk is added (at its own
// misalignment: no realignment needed), b x in global memory, whole rounds of
// 4 chunks: 4 loads of x per lane in flight for the registers of RowDot2's 2
// chunks x 2 tensors. The same terms in the same order.
template <typename T>
struct RowDot2Tile {  // sum_i a[i] * b[i]
  using A = acc_t<T>;
  static constexpr int V = Vec<T>::V;
  static constexpr int kUnroll = 4;
  static constexpr bool kWholeRounds = true;
  static constexpr bool kRealign = true;
  const T* a;
  const T* b;
  struct Raw {
    uint4 b;
  };
  __device__ __forceinline__ bool vec_ok() const { return aligned16(a) && aligned16(b); }
  __device__ __forceinline__ int shift() const {
    const int m = misalign(a);
    return m == misalign(b) ? m : -1;
  }
  __device__ __forceinline__ Raw load(int64_t k) const { return Raw{ld16(b + k * V)}; }
  __device__ __forceinline__ Raw load_shifted(int64_t k, int m) const { return Raw{ld16_shifted(b, k, m)}; }
  __device__ __forceinline__ A add_chunk(A acc, const Raw& r, int64_t k) const {
#pragma unroll
    for (int i = 0; i < V; ++i) acc = fma_acc(to_acc(a[k * V + i]), to_acc(PackIO<T>::get(r.b, i)), acc);
    return acc;
  }
  __device__ __forceinline__ A add_elem(A acc, int64_t i) const {
    return fma_acc(to_acc(a[i]), to_acc(b[i]), acc);
  }
};

// ColDot2 (se_reduce.cuh) with a row stride per operand: a the staged dy
// tile, b x in global memory. The same terms in the same order; whole rounds
// of 4 rows (4 loads of x per thread in flight, 16 KB per block: a unit's x at
// 56x56 bf16 in one latency where 2-row rounds and a tail took two).
template <typename T>
struct ColDot2Ld {  // sum_r a[r, c] * b[r, c]
  using A = acc_t<T>;
  static constexpr int V = Vec<T>::V;
  static constexpr int kUnroll = 4;
  static constexpr bool kWholeRounds = true;
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

// The rounds of a staged kernel (se_forward.cuh, se_backward.cuh): in each
// round the block issues the copies of its staged units' tiles of `src` (x or
// dy), a commit group per slot, all in flight; for each of its units, in
// order (staged_unit: a chunk's units of the round's samples back to back),
// waits for the slot's group and meets its threads (a staged unit) and runs
// phase 1; meets the round's barrier (with row parts: the barrier, the summing
// step, the barrier again); runs each unit's phase 2. The direction's steps:
// phase1(u, slot, first) / phase1_direct(u) (a unit past the staged ones),
// sum_stage(v) and sum(first, last, rank, size), phase2(u, slot, first) /
// phase2_direct(u); first: the unit is its chunk's first of the round (the
// forward stages the chunk's weight slice there; the round's other samples
// reuse it). With row parts, sum_stage(v) issues the weight slice of the
// block's first summing chunk v (a commit group where the plan stages
// weights, else nothing) ahead of the round's tiles, so that its copies land
// behind the squeeze, not after the first barrier; sum finds it there.
template <typename T, bool kNHWC, bool kCluster, typename P1, typename P1d, typename SumStage, typename Sum,
          typename P2, typename P2d>
__device__ __forceinline__ void staged_rounds(const SEForwardParams& p, const Geometry& g, const StagedPlan& sp,
                                              const void* src, const P1& phase1, const P1d& phase1_direct,
                                              const SumStage& sum_stage, const Sum& sum, const P2& phase2,
                                              const P2d& phase2_direct) {
  SE_DYNAMIC_SHARED(dyn);
  const StagedScope sc = staged_scope<kCluster>(g, sp);
  // Slots t = j * S + s < St staged, the rest direct (32-bit: a block's slots are few).
  const int J = static_cast<int>(sp.slots), S = static_cast<int>(sp.samples), St = static_cast<int>(sp.staged);
  for (int64_t base = sc.first; base < g.units; base += sc.stride) {  // a round
    const int64_t end = staged_end(sc, base, g.units);
    if (kNHWC && g.parts > 1 && (base / g.parts) + sc.rank < end / g.parts)  // block-uniform
      sum_stage(base / g.parts + sc.rank);  // older than the tiles' groups: their waits complete it
#pragma unroll 1
    for (int t = 0; t < St; ++t) {  // every slot in flight, a group each
      const int64_t u = staged_unit(sc, base, end, t / S, t % S);
      if (u < end) stage_unit<T, kNHWC>(src, p, g, u, dyn + t * sp.slot_bytes);
      se_cp_async_commit();
    }
#pragma unroll 1
    for (int t = 0; t < J * S; ++t) {
      const int64_t u = staged_unit(sc, base, end, t / S, t % S);
      if (u >= end) continue;  // block-uniform
      if (t < St) {
        se_cp_async_wait(St - 1 - t);  // slot t's group has landed
        __syncthreads();               // ... for every thread's copies
        phase1(u, dyn + t * sp.slot_bytes, t % S == 0);
      } else {
        phase1_direct(u);
      }
    }
    if (kNHWC && g.parts > 1) {  // uniform: every block of the scope meets both barriers
      staged_sync<kCluster>();
      sum(base / g.parts, end / g.parts, sc.rank, sc.size);
    }
    staged_sync<kCluster>();
#pragma unroll 1
    for (int t = 0; t < J * S; ++t) {
      const int64_t u = staged_unit(sc, base, end, t / S, t % S);
      if (u >= end) continue;
      if (t < St) {
        phase2(u, dyn + t * sp.slot_bytes, t % S == 0);
      } else {
        phase2_direct(u);
      }
    }
  }
}

// Host: the cluster plan (se_heuristics.h cluster_plan) that the device
// schedules for Kernel: at most its largest cluster at the plan's shared
// memory, at least one such cluster resident at a time; stage_weights: the
// weight slice staged where it fits (cluster_plan). samples (the forward):
// the most samples per round (8, 4, 2; the test knob p.cluster_samples
// first) whose plan fits and leaves at least as many clusters as fit at
// once, else one. An error (a sample over the cluster's
// shared memory, no cluster launch on this device or a pre-sm_90 image, the
// opt-in refused) means that nothing may run.
template <auto Kernel, typename T>
cudaError_t cluster_fit(const SEForwardParams& p, const Geometry& g, StagedPlan* out, bool stage_weights,
                        bool samples) {
  int64_t max_cluster = kMaxCluster;
  const bool forced = p.cluster_samples > 0;
  for (int attempt = 0; attempt < 2; ++attempt) {
    bool smaller = false;
    // S: the forced count then 1, or 8, 4, 2, 1.
    for (int64_t S = forced ? p.cluster_samples : kMaxClusterSamples; S >= 1;
         S = forced ? (S > 1 ? 1 : 0) : S / 2) {
      if (S > 1 && (!samples || S > p.N)) continue;
      const StagedPlan sp = cluster_plan<T>(p, g, max_cluster, stage_weights, S);
      if (sp.slots == 0) {
        if (S == 1) return cudaErrorInvalidValue;
        continue;
      }
      const size_t smem = static_cast<size_t>(sp.smem());
      int largest = 0, active = 0;
      cudaError_t err = se_allow_dynamic_smem<Kernel>(smem);
      if (err == cudaSuccess)
        err = se_cluster_capacity<Kernel>(static_cast<int>(sp.cluster), kThreads, smem, &largest, &active);
      if (err != cudaSuccess) return err;
      if (largest < 1) return cudaErrorNotSupported;
      if (sp.cluster > largest) {  // the device's largest cluster is smaller: more slots per block
        max_cluster = largest;
        smaller = true;
        break;
      }
      if (active < 1 || (S > 1 && !forced && ceil_div(p.N, S) < active)) {
        if (S == 1) return cudaErrorInvalidClusterSize;
        continue;
      }
      *out = sp;
      return cudaSuccess;
    }
    if (!smaller) break;
  }
  return cudaErrorInvalidClusterSize;
}

}  // namespace cuda_kernels
}  // namespace se_fused
