// The CPU operators: checks, layout, allocation and dtype dispatch around the
// kernels of forward.cpp and backward.cpp.
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "cpu/kernels.h"
#include "se_plain.h"

namespace se_fused::cpu {
namespace {

using OptTensor = std::optional<at::Tensor>;

OptTensor contiguous(const OptTensor& t) {
  return t ? OptTensor(t->contiguous()) : std::nullopt;
}

// dy where the backward kernel reads it (Rows, tiling.h): in place when its
// rows are contiguous (NCHW: each channel's spatial plane; channels_last: each
// position's C channels), whatever the strides between rows and between
// samples, 0 included (a dy expanded across samples or positions); one value
// broadcast everywhere (the gradient of y.sum() or y.mean()) from one row that
// holds it; any other dy copied dense in the problem's format. The kernel
// reads the same values in the same order either way: the same bits.
std::pair<at::Tensor, RowStrides> dy_rows(const at::Tensor& dy, const SEProblem& p) {
  const at::IntArrayRef sizes = dy.sizes(), strides = dy.strides();
  const int64_t d = dy.dim();
  // Whether dims [first, d) step through memory as one flat index of stride unit.
  auto flat = [&](int64_t first, int64_t unit) {
    int64_t step = unit;
    for (int64_t k = d - 1; k >= first; --k) {
      if (sizes[k] != 1 && strides[k] != step) return false;
      step *= sizes[k];
    }
    return true;
  };
  if (!p.channels_last && flat(2, 1)) return {dy, {strides[0], strides[1]}};
  if (p.channels_last && (sizes[1] == 1 || strides[1] == 1)) {
    int64_t row = 0;  // the stride of the last spatial dim that is not 1
    for (int64_t k = d - 1; k >= 2 && row == 0; --k)
      if (sizes[k] != 1) row = strides[k];
    if (flat(2, row)) return {dy, {strides[0], row}};
  }
  bool one_value = dy.numel() > 0;
  for (int64_t k = 0; k < d; ++k) one_value = one_value && (sizes[k] == 1 || strides[k] == 0);
  if (one_value) return {dy.as_strided({p.channels_last ? p.C : p.HW}, {0}).contiguous(), {0, 0}};
  return {dense_in_format(dy, p), {p.C * p.HW, p.channels_last ? p.C : p.HW}};
}

// The forward, writing y and, when `saved`, the state for the backward.
at::Tensor forward_cpu(const at::Tensor& x_in, const at::Tensor& w1_in, const OptTensor& b1_in,
                       const OptTensor& w2_in, const OptTensor& b2_in, const SEOptions& options,
                       at::Tensor* saved) {
  const SEProblem p = check_forward(x_in, w1_in, b1_in, w2_in, b2_in, options);
  const at::Tensor x = dense_in_format(x_in, p);
  const at::Tensor w1 = w1_in.contiguous();
  const OptTensor b1 = contiguous(b1_in), w2 = contiguous(w2_in), b2 = contiguous(b2_in);
  at::Tensor y = at::empty_like(x);
  if (saved) {
    const auto acc = x.options().dtype(accumulation_dtype(x.scalar_type()));
    saved[0] = at::empty({p.N, p.C}, acc);
    saved[1] = at::empty({p.N, p.hidden}, acc);
    saved[2] = at::empty({p.N, p.C}, acc);
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "squeeze_excite_cpu",
                                  [&] {
    using T = typename Storage<scalar_t>::type;
    using A = acc_t<T>;
    if (saved) {
      const SavedState<A> state{saved[0].data_ptr<A>(), saved[1].data_ptr<A>(),
                                saved[2].data_ptr<A>()};
      forward_kernel<T>(p, x, w1, b1, w2, b2, y, &state);
    } else {
      forward_kernel<T>(p, x, w1, b1, w2, b2, y, nullptr);
    }
  });
  return y;
}

at::Tensor squeeze_excite_cpu(const at::Tensor& x, const at::Tensor& w1, const OptTensor& b1,
                              const OptTensor& w2, const OptTensor& b2,
                              c10::string_view activation, c10::string_view gate,
                              c10::string_view excitation, bool residual) {
  if (has_empty_map(x))  // the plain block's empty y (se_plain.h)
    return call_plain(x, w1, b1, w2, b2, activation, gate, excitation, residual);
  return forward_cpu(x, w1, b1, w2, b2, {activation, gate, excitation, residual}, nullptr);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> squeeze_excite_forward_cpu(
    const at::Tensor& x, const at::Tensor& w1, const OptTensor& b1, const OptTensor& w2,
    const OptTensor& b2, c10::string_view activation, c10::string_view gate,
    c10::string_view excitation, bool residual) {
  at::Tensor saved[3];
  at::Tensor y =
      forward_cpu(x, w1, b1, w2, b2, {activation, gate, excitation, residual}, saved);
  return {y, saved[0], saved[1], saved[2]};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> squeeze_excite_backward_cpu(
    const at::Tensor& dy_in, const at::Tensor& x_in, const at::Tensor& pooled_in,
    const at::Tensor& z1_in, const at::Tensor& z2_in, const at::Tensor& w1_in,
    const OptTensor& w2_in, c10::string_view activation, c10::string_view gate, bool want_db1,
    bool want_db2, c10::string_view excitation, bool residual) {
  const SEProblem p = check_backward(dy_in, x_in, pooled_in, z1_in, z2_in, w1_in, w2_in,
                                     {activation, gate, excitation, residual});
  const at::Tensor x = dense_in_format(x_in, p);
  const std::pair<at::Tensor, RowStrides> dy_view = dy_rows(dy_in, p);
  const at::Tensor& dy = dy_view.first;
  const RowStrides dy_strides = dy_view.second;
  const at::Tensor pooled = pooled_in.contiguous();
  const at::Tensor z1 = z1_in.contiguous(), z2 = z2_in.contiguous();
  const at::Tensor w1 = w1_in.contiguous();
  const OptTensor w2 = contiguous(w2_in);
  at::Tensor dx = at::empty_like(x);
  at::Tensor dw1 = at::empty_like(w1);
  at::Tensor dw2 = w2 ? at::empty_like(*w2) : at::empty({0}, w1.options());
  // b1 is [hidden] (two FCs), [C] (one FC) or [1] (ECA): dw1's rows, or one.
  at::Tensor db1 = at::empty({want_db1 ? (p.kernel_size ? 1 : w1.size(0)) : 0}, w1.options());
  at::Tensor db2 = at::empty({want_db2 && w2 ? p.C : 0}, w1.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "squeeze_excite_backward_cpu", [&] {
    backward_kernel<typename Storage<scalar_t>::type>(
        p, dy, dy_strides, x, pooled, z1, z2, w1, w2, dx, dw1, want_db1 ? &db1 : nullptr,
        w2 ? &dw2 : nullptr, want_db2 && w2 ? &db2 : nullptr);
  });
  return {dx, dw1, db1, dw2, db2};
}

}  // namespace

TORCH_LIBRARY_IMPL(se_fused, CPU, m) {
  m.impl("squeeze_excite", &squeeze_excite_cpu);
  m.impl("_squeeze_excite_forward", &squeeze_excite_forward_cpu);
  m.impl("_squeeze_excite_backward", &squeeze_excite_backward_cpu);
}

}  // namespace se_fused::cpu
