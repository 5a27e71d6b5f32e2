#include "se_checks.h"

namespace se_fused {
namespace {

Activation parse_activation(c10::string_view s) {
  if (s == "relu") return Activation::ReLU;
  if (s == "silu") return Activation::SiLU;
  if (s == "hardswish") return Activation::HardSwish;
  TORCH_CHECK_VALUE(false, "se_fused: activation must be 'relu', 'silu' or 'hardswish', got '",
                    std::string(s), "'");
}

Excitation parse_excitation(c10::string_view s) {
  if (s == "two_fc") return Excitation::TwoFC;
  if (s == "one_fc") return Excitation::OneFC;
  if (s == "eca") return Excitation::ECA;
  if (s == "eca_circular") return Excitation::ECACircular;
  TORCH_CHECK_VALUE(false, "se_fused: excitation must be 'two_fc', 'one_fc', 'eca' or "
                    "'eca_circular', got '", std::string(s), "'");
}

Gate parse_gate(c10::string_view s) {
  if (s == "sigmoid") return Gate::Sigmoid;
  if (s == "hardsigmoid") return Gate::HardSigmoid;
  TORCH_CHECK_VALUE(false, "se_fused: gate must be 'sigmoid' or 'hardsigmoid', got '",
                    std::string(s), "'");
}

void check_same_device_and_dtype(const at::Tensor& x, const at::Tensor& t,
                                 const char* name) {
  TORCH_CHECK(t.device() == x.device(), "se_fused: ", name, " is on ", t.device(),
              " but x is on ", x.device(), "; all tensors must be on one device");
  TORCH_CHECK_TYPE(t.scalar_type() == x.scalar_type(), "se_fused: ", name, " has dtype ",
                   t.scalar_type(), " but x has dtype ", x.scalar_type(),
                   "; the weights must have x's dtype (cast the module, or run it "
                   "under torch.autocast)");
}

void check_shape(const at::Tensor& t, const char* name, at::IntArrayRef expected,
                 const char* what) {
  TORCH_CHECK_VALUE(t.sizes() == expected, "se_fused: ", name, " must have shape ",
                    expected, " (", what, "), got ", t.sizes());
}

// Which of the two layouts x is closer to: for 4-D and 5-D tensors
// suggest_memory_format (channels_last, channels_last_3d); for [N, C, L] the
// [N, L, C]-strided form when the channels are the inner dimension.
bool prefers_channels_last(const at::Tensor& x) {
  switch (x.dim()) {
    case 3: return x.stride(1) < x.stride(2);
    case 4: return x.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
    default: return x.suggest_memory_format() == at::MemoryFormat::ChannelsLast3d;
  }
}

}  // namespace

at::ScalarType accumulation_dtype(at::ScalarType dtype) {
  return (dtype == at::kHalf || dtype == at::kBFloat16) ? at::kFloat : at::kDouble;
}

SEProblem check_forward(const at::Tensor& x, const at::Tensor& w1,
                        const std::optional<at::Tensor>& b1, const std::optional<at::Tensor>& w2,
                        const std::optional<at::Tensor>& b2, const SEOptions& options) {
  SEProblem p;
  p.excitation = parse_excitation(options.excitation);
  const bool two_fc = p.excitation == Excitation::TwoFC;
  if (two_fc) {
    p.activation = parse_activation(options.activation);
  } else {
    TORCH_CHECK_VALUE(options.activation == "none", "se_fused: the ",
                      std::string(options.excitation), " excitation has no hidden layer: "
                      "activation must be 'none', got '", std::string(options.activation), "'");
  }
  p.gate = parse_gate(options.gate);
  p.residual = options.residual;

  TORCH_CHECK_VALUE(x.dim() >= 3 && x.dim() <= 5,
                    "se_fused: x must be [N, C, L], [N, C, H, W] or [N, C, D, H, W] (3-D to "
                    "5-D), got ", x.dim(), "-D with shape ", x.sizes());
  const auto dt = x.scalar_type();
  TORCH_CHECK_TYPE(dt == at::kFloat || dt == at::kDouble || dt == at::kHalf ||
                       dt == at::kBFloat16,
                   "se_fused: x must be float32, float64, float16 or bfloat16, got ", dt);
  p.N = x.size(0);
  p.C = x.size(1);
  p.HW = 1;
  for (int64_t d = 2; d < x.dim(); ++d) p.HW *= x.size(d);
  TORCH_CHECK_VALUE(p.C > 0, "se_fused: x must have at least one channel, got shape ",
                    x.sizes());
  TORCH_CHECK_VALUE(p.HW > 0, "se_fused: x must have a non-empty spatial map, got shape ",
                    x.sizes());

  check_same_device_and_dtype(x, w1, "w1");
  if (two_fc) {
    TORCH_CHECK_VALUE(w1.dim() == 2, "se_fused: w1 must be 2-D [hidden, C], got shape ",
                      w1.sizes());
    p.hidden = w1.size(0);
    TORCH_CHECK_VALUE(p.hidden > 0,
                      "se_fused: w1 has no rows: the hidden size (C // r) is 0");
    TORCH_CHECK_VALUE(w1.size(1) == p.C, "se_fused: x has ", p.C, " channels (shape ",
                      x.sizes(), ") but w1 has shape ", w1.sizes(),
                      ", [hidden, C] for a block of ", w1.size(1), " channels");
    TORCH_CHECK_VALUE(w2.has_value(), "se_fused: the two_fc excitation needs w2 [C, hidden]");
    check_shape(*w2, "w2", {p.C, p.hidden}, "[C, hidden]");
    check_same_device_and_dtype(x, *w2, "w2");
  } else {
    TORCH_CHECK_VALUE(!w2.has_value() && !b2.has_value(), "se_fused: the ",
                      std::string(options.excitation),
                      " excitation has one weight (w1, b1): w2 and b2 must be None");
    if (p.excitation == Excitation::OneFC) {
      check_shape(w1, "w1", {p.C, p.C}, "[C, C] for the one_fc excitation");
    } else {
      TORCH_CHECK_VALUE(w1.dim() == 1 && w1.size(0) % 2 == 1,
                        "se_fused: the ECA excitation's w1 must be 1-D [k] with k odd (the "
                        "Conv1d weight [1, 1, k] flattened), got shape ", w1.sizes());
      p.kernel_size = w1.size(0);
      TORCH_CHECK_VALUE(p.excitation != Excitation::ECACircular || p.kernel_size / 2 <= p.C,
                        "se_fused: circular padding of ", p.kernel_size / 2,
                        " channels wraps around more than once for x with ", p.C,
                        " channels (k = ", p.kernel_size, ")");
    }
  }
  if (b1.has_value()) {
    const int64_t b1_size = two_fc ? p.hidden : (p.kernel_size ? 1 : p.C);
    check_shape(*b1, "b1", {b1_size},
                two_fc ? "[hidden]" : (p.kernel_size ? "[1], the convolution's bias" : "[C]"));
    check_same_device_and_dtype(x, *b1, "b1");
  }
  if (b2.has_value()) {
    check_shape(*b2, "b2", {p.C}, "[C]");
    check_same_device_and_dtype(x, *b2, "b2");
  }

  // The kernels index two layouts: [N, C, *spatial] and [N, *spatial, C]
  // (channels_last). When C == 1 or the map has one element both describe the
  // same memory, and the first is used.
  p.channels_last = p.C > 1 && p.HW > 1 && prefers_channels_last(x);
  return p;
}

SEProblem check_backward(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& pooled,
                         const at::Tensor& z1, const at::Tensor& z2, const at::Tensor& w1,
                         const std::optional<at::Tensor>& w2, const SEOptions& options) {
  SEProblem p = check_forward(x, w1, std::nullopt, w2, std::nullopt, options);
  check_shape(dy, "dy (the gradient of y)", x.sizes(), "the shape of x");
  check_same_device_and_dtype(x, dy, "dy (the gradient of y)");
  const at::ScalarType acc = accumulation_dtype(x.scalar_type());
  auto check_saved = [&](const at::Tensor& t, const char* name, at::IntArrayRef shape,
                         const char* what) {
    check_shape(t, name, shape, what);
    TORCH_CHECK(t.device() == x.device(), "se_fused: ", name, " is on ", t.device(),
                " but x is on ", x.device());
    TORCH_CHECK_TYPE(t.scalar_type() == acc, "se_fused: ", name, " must have dtype ", acc,
                     " for x of dtype ", x.scalar_type(), ", got ", t.scalar_type());
  };
  check_saved(pooled, "pooled", {p.N, p.C}, "[N, C], as returned by the forward");
  check_saved(z1, "z1", {p.N, p.hidden}, "[N, hidden], as returned by the forward");
  check_saved(z2, "z2", {p.N, p.C}, "[N, C], as returned by the forward");
  return p;
}

at::Tensor dense_in_format(const at::Tensor& t, const SEProblem& p) {
  if (!p.channels_last) return t.contiguous();
  // [N, C, *spatial] viewed from dense [N, *spatial, C] memory: movedim(1, -1) is
  // contiguous exactly when t already is, and is copied once otherwise.
  return t.movedim(1, -1).contiguous().movedim(-1, 1);
}

}  // namespace se_fused
