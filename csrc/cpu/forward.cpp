// The CPU forward: squeeze, excite and scale per chunk of samples.
#include "cpu/gemm.h"
#include "cpu/kernels.h"
#include "cpu/scratch.h"
#include "cpu/tiling.h"

namespace se_fused::cpu {
namespace {

template <typename T>
const T* optional_data(const std::optional<at::Tensor>& t) {
  return t.has_value() ? storage_ptr<T>(*t) : nullptr;
}

// The ECA excitation for G samples: z2[g, c] = b + sum_t w[t] pooled[g, c + t - k/2]
// (se_math.h eca_source: zero or circular padding), taps in order t = 0..k-1.
template <typename T, typename A, typename Out>
void eca(const SEProblem& p, const A* pooled, const T* w, const T* b, int64_t G,
         const Out& out) {
  const int64_t C = p.C, k = p.kernel_size;
  const bool circular = p.excitation == Excitation::ECACircular;
  const A bias = b ? to_acc<A>(b[0]) : A(0);
  for (int64_t g = 0; g < G; ++g) {
    const A* pg = pooled + g * C;
    for (int64_t c = 0; c < C; ++c) {
      A v = A(0);
      for (int64_t t = 0; t < k; ++t) {
        const int64_t src = eca_source(c, t, k, C, circular);
        if (src >= 0) v = std::fma(to_acc<A>(w[t]), pg[src], v);
      }
      out(g, c, bias + v);
    }
  }
}

// The excitation for G samples: pooled [G, C] -> (z1, a [G, hidden] for the
// two-FC one), then out(g, c, z2) for the gate's pre-activation z2 [G, C].
template <typename T, typename A, typename Out>
void excite(const SEProblem& p, const A* pooled, const T* w1, const T* b1, const T* w2,
            const T* b2, int64_t G, A* z1, A* a, const Out& out) {
  switch (p.excitation) {
    case Excitation::TwoFC:
      linear(matrix(pooled, G, p.C), matrix(w1, p.hidden, p.C), b1,
             [&](int64_t g, int64_t j, A v) {
               z1[g * p.hidden + j] = v;
               a[g * p.hidden + j] = activation_fwd(p.activation, v);
             });
      linear(matrix<A>(a, G, p.hidden), matrix(w2, p.C, p.hidden), b2, out);
      break;
    case Excitation::OneFC:
      linear(matrix(pooled, G, p.C), matrix(w1, p.C, p.C), b1, out);
      break;
    case Excitation::ECA:
    case Excitation::ECACircular:
      eca(p, pooled, w1, b1, G, out);
      break;
  }
}

}  // namespace

template <typename T>
void forward_kernel(const SEProblem& p, const at::Tensor& x, const at::Tensor& w1,
                    const std::optional<at::Tensor>& b1, const std::optional<at::Tensor>& w2,
                    const std::optional<at::Tensor>& b2, at::Tensor& y,
                    const SavedState<acc_t<T>>* saved) {
  using A = acc_t<T>;
  const Tiling tiling(p);
  const int64_t sample = p.C * p.HW;
  // Large chunks once the MLP's products reach half the elements: whole-batch
  // chunks measured faster at 32x1024x14x14 hidden 64 and eSE 8x512x28x28
  // (products 0.65 of the elements), about even at 32x1152x14x14 hidden 48 (0.49).
  const int64_t G =
      chunk_samples(p, sample * static_cast<int64_t>(sizeof(T)), 2 * mlp_products(p));
  // The scale pass re-reads the newest tiles first where they may still be cached.
  const bool newest_first = chunk_fits(G, sample * static_cast<int64_t>(sizeof(T)));
  const T* xd = storage_ptr<T>(x);
  T* yd = storage_ptr<T>(y);
  const int64_t chunk_state = saved ? 0 : 1;  // per-chunk scratch for the state, or none
  const Scratch<A> scratch({G * tiling.nparts * p.C, G * p.hidden, G * p.C,
                            chunk_state * G * p.C, chunk_state * G * p.hidden,
                            chunk_state * G * p.C});
  A* const parts = scratch[0];
  A* const a = scratch[1];
  A* const gate = scratch[2];

  for (int64_t n0 = 0; n0 < p.N; n0 += G) {
    const int64_t g = std::min(G, p.N - n0);
    const T* xs = xd + n0 * sample;
    A* ps = saved ? saved->pooled + n0 * p.C : scratch[3];
    A* z1s = saved ? saved->z1 + n0 * p.hidden : scratch[4];
    A* z2s = saved ? saved->z2 + n0 * p.C : scratch[5];
    // squeeze
    tiling.squeeze<A, T>(g, tiling.dense(xs), {}, A(1) / static_cast<A>(p.HW), parts, ps);
    // excite
    excite<T, A>(p, ps, storage_ptr<T>(w1), optional_data<T>(b1), optional_data<T>(w2),
                 optional_data<T>(b2), g, z1s, a,
                 [&](int64_t i, int64_t c, A v) { z2s[i * p.C + c] = v; });
    for_each_gate(p.gate, g * p.C, [&](auto gate_kind, int64_t begin, int64_t end) {
      // Four vectors per step: each is a long chain (exp's polynomial, then a
      // division), and interleaved chains keep the FMA ports busy.
#pragma GCC unroll 4
      for (int64_t i = begin; i < end; ++i) gate[i] = gate_fwd(gate_kind(), z2s[i]);  // s
    });
    // scale
    with_residual(p.residual, [&](auto residual) {
      using Ops = GateOps<A, decltype(residual)::value>;
      tiling.for_each_tile(g, newest_first, [&](int64_t i, int64_t begin, int64_t end) {
        const A* gi = gate + i * p.C;
        tiling.map(tiling.dense(xs + i * sample), yd + (n0 + i) * sample, begin, end,
                   [&](A v, int64_t c) { return Ops::scale(v, gi[c]); });
      });
    });
  }
}

#define SE_FUSED_FORWARD(T)                                                                   \
  template void forward_kernel<T>(const SEProblem&, const at::Tensor&, const at::Tensor&,     \
                                  const std::optional<at::Tensor>&,                           \
                                  const std::optional<at::Tensor>&,                           \
                                  const std::optional<at::Tensor>&, at::Tensor&,              \
                                  const SavedState<acc_t<T>>*)
SE_FUSED_CPU_INSTANTIATE(SE_FUSED_FORWARD);

}  // namespace se_fused::cpu
