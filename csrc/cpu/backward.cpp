// The CPU backward: dx per chunk of samples, then the weight gradients.
#include "cpu/gemm.h"
#include "cpu/kernels.h"
#include "cpu/scratch.h"
#include "cpu/tiling.h"

#include <type_traits>
#include <vector>

namespace se_fused::cpu {
namespace {

// The backward's products past the gate (through the weights' transposes,
// and the weight gradients) run in grad_t: float for every tensor type but
// double, as in the plain block. Gradients need the plain block's accuracy
// in the tensor's dtype, not the forward's single rounding; the gate s that
// dx is scaled by, dx's sum and the bias gradients' sums stay in acc_t.
template <typename T>
using grad_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// out[m] = sum_n u[n, m] for u: [N, M], summed over n in order, in A.
template <typename A, typename U, typename T>
void sum_over_samples(const U* u, int64_t N, int64_t M, T* out) {
  std::vector<A> acc(M, A(0));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < M; ++m) acc[m] += u[n * M + m];
  for (int64_t m = 0; m < M; ++m) out[m] = from_acc<T>(acc[m]);
}

// The ECA excitation's backward for G samples, dz2 [G, C] -> dp [G, C] (divided by HW):
// dp[g, c'] = sum over the taps t of w[t] dz2[g, c] for the c whose tap t reads c'
// (c = eca_source(c', k - 1 - t)), in order of t, in A.
template <typename A, typename B, typename T>
void eca_backward(const SEProblem& p, const B* dz2, const T* w, int64_t G, A* dp) {
  const int64_t C = p.C, k = p.kernel_size;
  const bool circular = p.excitation == Excitation::ECACircular;
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t c = 0; c < C; ++c) {
      A v = A(0);
      for (int64_t t = 0; t < k; ++t) {
        const int64_t dst = eca_source(c, k - 1 - t, k, C, circular);
        if (dst >= 0) v = std::fma(to_acc<A>(w[t]), static_cast<A>(dz2[g * C + dst]), v);
      }
      dp[g * C + c] = v / static_cast<A>(p.HW);
    }
  }
}

// The ECA weight gradient: dw[t] = sum_n sum_c dz2[n, c] pooled[n, c + t - k/2]
// (the padding taps add nothing), in order of n, then c, in A.
template <typename A, typename B, typename T>
void eca_weight_grad(const SEProblem& p, const B* dz2, const A* pooled, T* dw) {
  const int64_t C = p.C, k = p.kernel_size;
  const bool circular = p.excitation == Excitation::ECACircular;
  for (int64_t t = 0; t < k; ++t) {
    A v = A(0);
    for (int64_t n = 0; n < p.N; ++n) {
      for (int64_t c = 0; c < C; ++c) {
        const int64_t src = eca_source(c, t, k, C, circular);
        if (src >= 0) v = std::fma(static_cast<A>(dz2[n * C + c]), pooled[n * C + src], v);
      }
    }
    dw[t] = from_acc<T>(v);
  }
}

}  // namespace

template <typename T>
void backward_kernel(const SEProblem& p, const at::Tensor& dy, RowStrides dy_strides,
                     const at::Tensor& x,
                     const at::Tensor& pooled, const at::Tensor& z1, const at::Tensor& z2,
                     const at::Tensor& w1, const std::optional<at::Tensor>& w2, at::Tensor& dx,
                     at::Tensor& dw1, at::Tensor* db1, at::Tensor* dw2, at::Tensor* db2) {
  using A = acc_t<T>;
  using B = grad_t<T>;
  const Tiling tiling(p);
  const int64_t sample = p.C * p.HW;
  const int64_t N = p.N, C = p.C, H = p.hidden;
  // Large chunks from a quarter: the per-chunk products (outer_sums) take one
  // sample per register tile below kOuterG samples. Two FCs only: at eSE (one
  // FC) whole-batch chunks measured faster for NCHW, slower for channels_last.
  const int64_t G =
      chunk_samples(p, 2 * sample * static_cast<int64_t>(sizeof(T)), 4 * 2 * p.hidden);
  const Rows<T> dyd{storage_ptr<T>(dy), dy_strides.sample, dy_strides.row};
  const T* xd = storage_ptr<T>(x);
  T* dxd = storage_ptr<T>(dx);
  const A* pd = pooled.data_ptr<A>();
  const A* z1d = z1.data_ptr<A>();
  const A* z2d = z2.data_ptr<A>();

  const Scratch<A> scratch({G * tiling.nparts * C, G * C, G * C, G * C});
  A* const parts = scratch[0];
  A* const ds = scratch[1];
  A* const dp = scratch[2];
  A* const gate = scratch[3];
  // The weight gradients' operands, kept for the whole batch: dz1 and the
  // activations [N, hidden], dz2 [N, C] (and the pooled means, read as they are).
  const Scratch<B, 1> grads({N * H, N * H, N * C});
  B* const dz1 = grads[0];
  B* const act = grads[1];
  B* const dz2 = grads[2];
  for (int64_t i = 0; i < N * H; ++i) act[i] = static_cast<B>(activation_fwd(p.activation, z1d[i]));
  // The gradient at the output of the layer that reads the pooled means (w1):
  // dz1 [N, hidden] for two FCs; dz2 [N, C] for one FC (and ECA).
  const bool two_fc = p.excitation == Excitation::TwoFC;
  const bool eca = p.kernel_size > 0;
  B* const dfirst = two_fc ? dz1 : dz2;
  const int64_t first = two_fc ? H : C;
  const T* w1d = storage_ptr<T>(w1);

  for (int64_t n0 = 0; n0 < N; n0 += G) {
    const int64_t g = std::min(G, N - n0);
    const Rows<T> dys = dyd.from(n0);
    const T* xs = xd + n0 * sample;
    // squeeze: ds = sum_hw dy * x
    tiling.squeeze<A, T>(g, dys, tiling.dense(xs), A(1), parts, ds);
    // excite backward, from the forward's pre-activations.
    const A* z1s = z1d + n0 * H;
    const A* z2s = z2d + n0 * C;
    B* dz1s = dz1 + n0 * H;
    B* dz2s = dz2 + n0 * C;
    for_each_gate(p.gate, g * C, [&](auto gate_kind, int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {  // s and dz2 from z2
        const A s = gate_fwd(gate_kind(), z2s[i]);
        gate[i] = s;
        dz2s[i] = static_cast<B>(gate_backward(gate_kind(), z2s[i], s, ds[i]));
      }
    });
    if (two_fc) {  // da = w2^T dz2, dz1 = activation's backward of da at z1
      outer_sums(matrix<B>(dz2s, g, C), matrix(storage_ptr<T>(*w2), C, H),
                 [&](int64_t i, int64_t j, const B* da, int64_t n) {
                   for (int64_t l = 0; l < n; ++l)
                     dz1s[i * H + j + l] = static_cast<B>(activation_backward<A>(
                         p.activation, z1s[i * H + j + l], static_cast<A>(da[l])));
                 });
    }
    // dp = w1^T dfirst / HW (ECA: the convolution's transpose)
    if (eca) {
      eca_backward(p, dz2s, w1d, g, dp);
    } else {
      outer_sums(matrix<B>(dfirst + n0 * first, g, first), matrix(w1d, first, C),
                 [&](int64_t i, int64_t c, const B* v, int64_t n) {
                   for (int64_t l = 0; l < n; ++l)
                     dp[i * C + c + l] = static_cast<A>(v[l]) / static_cast<A>(p.HW);
                 });
    }
    // dx = dy * s + dp / HW (dy * s + dy + dp / HW for the residual gate)
    with_residual(p.residual, [&](auto residual) {
      using Ops = GateOps<A, decltype(residual)::value>;
      tiling.for_each_tile(g, true, [&](int64_t i, int64_t begin, int64_t end) {
        const A* gi = gate + i * C;
        const A* dpi = dp + i * C;
        tiling.map(dys.from(i), dxd + (n0 + i) * sample, begin, end,
                   [&](A v, int64_t c) { return Ops::scale_add(v, gi[c], dpi[c]); });
      });
    });
  }

  // Weight and bias gradients, summed over samples in order.
  T* dw1d = storage_ptr<T>(dw1);
  if (eca) {
    eca_weight_grad(p, dz2, pd, dw1d);
    if (db1) sum_over_samples<A>(dz2, N * C, 1, storage_ptr<T>(*db1));  // one bias
  } else {
    // dw1[j, c] = sum_n dfirst[n, j] * pooled[n, c]
    outer_sums(matrix<B>(dfirst, N, first).t(), matrix(pd, N, C),
               [&](int64_t j, int64_t c, const B* v, int64_t n) {
                 for (int64_t l = 0; l < n; ++l) dw1d[j * C + c + l] = from_acc<T>(v[l]);
               });
    if (db1) sum_over_samples<A>(dfirst, N, first, storage_ptr<T>(*db1));
  }
  if (two_fc) {
    // dw2[c, j] = sum_n dz2[n, c] * a[n, j]
    T* dw2d = storage_ptr<T>(*dw2);
    outer_sums(matrix<B>(dz2, N, C).t(), matrix<B>(act, N, H),
               [&](int64_t c, int64_t j, const B* v, int64_t n) {
                 for (int64_t l = 0; l < n; ++l) dw2d[c * H + j + l] = from_acc<T>(v[l]);
               });
    if (db2) sum_over_samples<A>(dz2, N, C, storage_ptr<T>(*db2));
  }
}

#define SE_FUSED_BACKWARD(T)                                                                  \
  template void backward_kernel<T>(const SEProblem&, const at::Tensor&, RowStrides,           \
                                   const at::Tensor&, const at::Tensor&, const at::Tensor&,   \
                                   const at::Tensor&, const at::Tensor&,                      \
                                   const std::optional<at::Tensor>&, at::Tensor&,             \
                                   at::Tensor&, at::Tensor*, at::Tensor*, at::Tensor*)
SE_FUSED_CPU_INSTANTIATE(SE_FUSED_BACKWARD);

}  // namespace se_fused::cpu
