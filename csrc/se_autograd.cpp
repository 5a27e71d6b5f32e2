// Autograd and autocast for the se_fused operators, in C++ so that a call
// costs one dispatcher hop and one autograd node, not a Python round trip
// (the shape of torchvision's csrc/ops/autograd and autocast kernels).
//
//   squeeze_excite  --Autocast-->  weights cast to x's dtype, then
//                   --Autograd-->  a gradient to record: SqueezeExcite node
//                                  around _squeeze_excite_forward (saves x,
//                                  pooled, z1, z2, w1, w2 if any);
//                                  none: the backend's y-only kernel.
//   _squeeze_excite_backward --Autograd--> refuses double backward.
//
// Where neither serves, squeeze_excite runs the plain computation
// (se_fused::_squeeze_excite_plain, se_fused/_plain.py: ATen ops, whose own
// derivatives and batching rules apply): under forward-mode AD (an input with a
// tangent; the C++ node has no forward derivative), inside a torch.func
// transform (grad, jvp, vjp, jacrev, ...: functorch refuses C++ autograd
// Functions; vmap has its own rule, which runs the fused op on merged batch
// dims), and for an empty map (the kernels need one element; the plain block
// returns an empty y).
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/SymBool.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <optional>
#include <string>
#include <tuple>

#include "se_plain.h"

namespace se_fused {

// The plain computation, an op of the Python package (se_fused/_plain.py)
// (declared in se_plain.h: the backends call it for an empty map too).
at::Tensor call_plain(const at::Tensor& x, const at::Tensor& w1,
                      const std::optional<at::Tensor>& b1, const std::optional<at::Tensor>& w2,
                      const std::optional<at::Tensor>& b2, c10::string_view activation,
                      c10::string_view gate, c10::string_view excitation, bool residual) {
  using Tensor = at::Tensor;
  using OptTensor = std::optional<at::Tensor>;
  static const auto op = [] {
    auto handle = c10::Dispatcher::singleton().findSchema({"se_fused::_squeeze_excite_plain", ""});
    TORCH_CHECK(handle.has_value(),
                "se_fused: forward-mode AD, torch.func transforms and empty maps run the plain "
                "computation, se_fused::_squeeze_excite_plain, which `import se_fused` defines");
    return handle->typed<Tensor(const Tensor&, const Tensor&, const OptTensor&, const OptTensor&,
                                const OptTensor&, c10::string_view, c10::string_view,
                                c10::string_view, bool)>();
  }();
  return op.call(x, w1, b1, w2, b2, activation, gate, excitation, residual);
}

namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Typed handles to the ops, looked up once.
Tensor call_squeeze_excite(const Tensor& x, const Tensor& w1, const OptTensor& b1,
                           const OptTensor& w2, const OptTensor& b2, c10::string_view activation,
                           c10::string_view gate, c10::string_view excitation, bool residual) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("se_fused::squeeze_excite", "")
          .typed<Tensor(const Tensor&, const Tensor&, const OptTensor&, const OptTensor&,
                        const OptTensor&, c10::string_view, c10::string_view, c10::string_view,
                        bool)>();
  return op.call(x, w1, b1, w2, b2, activation, gate, excitation, residual);
}

std::tuple<Tensor, Tensor, Tensor, Tensor> call_forward(
    const Tensor& x, const Tensor& w1, const OptTensor& b1, const OptTensor& w2,
    const OptTensor& b2, c10::string_view activation, c10::string_view gate,
    c10::string_view excitation, bool residual) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("se_fused::_squeeze_excite_forward", "")
          .typed<std::tuple<Tensor, Tensor, Tensor, Tensor>(
              const Tensor&, const Tensor&, const OptTensor&, const OptTensor&,
              const OptTensor&, c10::string_view, c10::string_view, c10::string_view, bool)>();
  return op.call(x, w1, b1, w2, b2, activation, gate, excitation, residual);
}


using BackwardResult = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor>;

BackwardResult call_backward(const Tensor& dy, const Tensor& x, const Tensor& pooled,
                             const Tensor& z1, const Tensor& z2, const Tensor& w1,
                             const OptTensor& w2, c10::string_view activation,
                             c10::string_view gate, bool want_db1, bool want_db2,
                             c10::string_view excitation, bool residual) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("se_fused::_squeeze_excite_backward", "")
          .typed<BackwardResult(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                const Tensor&, const Tensor&, const OptTensor&,
                                c10::string_view, c10::string_view, bool, bool,
                                c10::string_view, bool)>();
  return op.call(dy, x, pooled, z1, z2, w1, w2, activation, gate, want_db1, want_db2,
                 excitation, residual);
}

// The SE block's autograd node. Inputs: x, w1, b1?, w2?, b2? (the differentiable
// ones, in this order; an absent one has no edge) and the options.
class SqueezeExcite : public torch::autograd::Function<SqueezeExcite> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const Tensor& w1,
                               const OptTensor& b1, const OptTensor& w2, const OptTensor& b2,
                               c10::string_view activation, c10::string_view gate,
                               c10::string_view excitation, bool residual) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [y, pooled, z1, z2] =
        call_forward(x, w1, b1, w2, b2, activation, gate, excitation, residual);
    ctx->save_for_backward({x, pooled, z1, z2, w1, w2.value_or(Tensor())});
    ctx->saved_data["activation"] = std::string(activation);
    ctx->saved_data["gate"] = std::string(gate);
    ctx->saved_data["excitation"] = std::string(excitation);
    ctx->saved_data["residual"] = residual;
    ctx->saved_data["has_b1"] = b1.has_value();
    ctx->saved_data["has_w2"] = w2.has_value();
    ctx->saved_data["has_b2"] = b2.has_value();
    return {y};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const bool has_b1 = ctx->saved_data["has_b1"].toBool();
    const bool has_w2 = ctx->saved_data["has_w2"].toBool();
    const bool has_b2 = ctx->saved_data["has_b2"].toBool();
    // Edges: x 0, w1 1, then b1, w2, b2 where present.
    const bool want_db1 = has_b1 && ctx->needs_input_grad(2);
    const bool want_db2 = has_b2 && ctx->needs_input_grad(2 + has_b1 + has_w2);
    auto [dx, dw1, db1, dw2, db2] = call_backward(
        grads[0], saved[0], saved[1], saved[2], saved[3], saved[4],
        has_w2 ? OptTensor(saved[5]) : std::nullopt,
        ctx->saved_data["activation"].toStringRef(), ctx->saved_data["gate"].toStringRef(),
        want_db1, want_db2, ctx->saved_data["excitation"].toStringRef(),
        ctx->saved_data["residual"].toBool());
    return {dx,          dw1,      want_db1 ? db1 : Tensor(),
            has_w2 ? dw2 : Tensor(), want_db2 ? db2 : Tensor(),
            Tensor(),    Tensor(), Tensor(), Tensor()};
  }
};

bool requires_grad(const Tensor& t) { return t.requires_grad(); }
bool requires_grad(const OptTensor& t) { return t.has_value() && t->requires_grad(); }
bool has_tangent(const Tensor& t) { return t._fw_grad(/*level=*/0).defined(); }
bool has_tangent(const OptTensor& t) { return t.has_value() && has_tangent(*t); }

// Whether the plain computation must run instead of the fused kernels (see the top).
bool needs_plain(const Tensor& x, const Tensor& w1, const OptTensor& b1, const OptTensor& w2,
                 const OptTensor& b2) {
  if (has_empty_map(x)) return true;
  if (has_tangent(x) || has_tangent(w1) || has_tangent(b1) || has_tangent(w2) ||
      has_tangent(b2)) {
    return true;
  }
  // Inside a torch.func transform (functorch includes its back-mode key while one
  // is on its stack): functorch refuses C++ autograd nodes, and only ATen ops carry
  // its derivative and batching rules. vmap's own rule (se_fused/_plain.py) calls the
  // op with its level popped, so vmap alone reaches the fused kernels.
  return c10::impl::tls_is_dispatch_key_included(
      c10::DispatchKey::FuncTorchDynamicLayerBackMode);
}

Tensor squeeze_excite_autograd(const Tensor& x, const Tensor& w1, const OptTensor& b1,
                               const OptTensor& w2, const OptTensor& b2,
                               c10::string_view activation, c10::string_view gate,
                               c10::string_view excitation, bool residual) {
  const bool record = at::GradMode::is_enabled() &&
                      (requires_grad(x) || requires_grad(w1) || requires_grad(w2) ||
                       requires_grad(b1) || requires_grad(b2));
  if (needs_plain(x, w1, b1, w2, b2)) {
    return call_plain(x, w1, b1, w2, b2, activation, gate, excitation, residual);
  }
  if (record) {
    return SqueezeExcite::apply(x, w1, b1, w2, b2, activation, gate, excitation, residual)[0];
  }
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return call_squeeze_excite(x, w1, b1, w2, b2, activation, gate, excitation, residual);
}

// The backward op as a node whose own backward refuses: a gradient of the
// gradient is not implemented.
class SqueezeExciteBackward : public torch::autograd::Function<SqueezeExciteBackward> {
 public:
  static variable_list forward(AutogradContext*, const Tensor& dy, const Tensor& x,
                               const Tensor& pooled, const Tensor& z1, const Tensor& z2,
                               const Tensor& w1, const OptTensor& w2,
                               c10::string_view activation, c10::string_view gate,
                               bool want_db1, bool want_db2, c10::string_view excitation,
                               bool residual) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [dx, dw1, db1, dw2, db2] = call_backward(dy, x, pooled, z1, z2, w1, w2, activation,
                                                  gate, want_db1, want_db2, excitation, residual);
    return {dx, dw1, db1, dw2, db2};
  }

  static variable_list backward(AutogradContext*, variable_list) {
    TORCH_CHECK(false,
                "se_fused: double backward (a gradient of the gradient) is not supported");
  }
};

BackwardResult squeeze_excite_backward_autograd(
    const Tensor& dy, const Tensor& x, const Tensor& pooled, const Tensor& z1, const Tensor& z2,
    const Tensor& w1, const OptTensor& w2, c10::string_view activation, c10::string_view gate,
    bool want_db1, bool want_db2, c10::string_view excitation, bool residual) {
  if (!at::GradMode::is_enabled()) {  // a first-order backward: nothing to record
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return call_backward(dy, x, pooled, z1, z2, w1, w2, activation, gate, want_db1, want_db2,
                         excitation, residual);
  }
  auto r = SqueezeExciteBackward::apply(dy, x, pooled, z1, z2, w1, w2, activation, gate,
                                        want_db1, want_db2, excitation, residual);
  return {r[0], r[1], r[2], r[3], r[4]};
}

// Autocast: the gate is computed in float32 or better whatever the dtype, so
// the (small) weights are cast to x's dtype and the op runs in x's precision,
// as the plain block's multiply does. The casts are ordinary differentiable
// ops: gradients reach the float32 parameters.
OptTensor cast_optional(const OptTensor& t, at::ScalarType dtype) {
  return t.has_value() ? OptTensor(t->to(dtype)) : std::nullopt;
}

Tensor squeeze_excite_autocast(const Tensor& x, const Tensor& w1, const OptTensor& b1,
                               const OptTensor& w2, const OptTensor& b2,
                               c10::string_view activation, c10::string_view gate,
                               c10::string_view excitation, bool residual) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  const at::ScalarType dtype = x.scalar_type();
  return call_squeeze_excite(x, w1.to(dtype), cast_optional(b1, dtype), cast_optional(w2, dtype),
                             cast_optional(b2, dtype), activation, gate, excitation, residual);
}

}  // namespace

TORCH_LIBRARY_IMPL(se_fused, Autograd, m) {
  m.impl("squeeze_excite", &squeeze_excite_autograd);
  m.impl("_squeeze_excite_forward", torch::autograd::autogradNotImplementedFallback());
  m.impl("_squeeze_excite_backward", &squeeze_excite_backward_autograd);
}

TORCH_LIBRARY_IMPL(se_fused, AutocastCPU, m) {
  m.impl("squeeze_excite", &squeeze_excite_autocast);
}

TORCH_LIBRARY_IMPL(se_fused, AutocastCUDA, m) {
  m.impl("squeeze_excite", &squeeze_excite_autocast);
}

}  // namespace se_fused
