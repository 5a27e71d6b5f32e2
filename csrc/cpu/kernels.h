// The SE block on the CPU: fused forward and backward kernels.
//
// The batch is processed in chunks of samples small enough to stay in the
// cores' caches. For each chunk the data path runs as three parallel phases
// (see se_math.h for the math):
//   forward : squeeze (x -> pooled)  | excite (pooled -> z1, z2, gate) | scale (x, gate -> y)
//   backward: squeeze (dy, x -> ds)  | excite backward (z1, z2 saved)  | dx = dy * s + dp / HW
// The excite step alone knows which excitation runs (two FCs, one FC, ECA).
// then the weight gradients are reduced over the batch. The squeeze and
// scale phases split the chunk into the same tiles (sample, channel block)
// with the same static partition, so each thread re-reads in its scale phase
// the tile it just read in its squeeze phase, from its own cache: x comes
// from memory about once.
//
// Multiply-adds in sums are explicit std::fma (the build turns off the
// compiler's own contraction, so no code path rounds differently from another).
//
// Determinism: every sum has a fixed order that depends on neither the thread
// count nor the batch size: a channel's mean or dot product runs over H x W
// in a fixed pattern (kLanes partial sums, then a fixed tree for NCHW; in
// order of hw for channels_last), the gate MLP's dot products over kLanes
// partial sums, the backward's products in blocks of 64 terms in order.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <optional>
#include <type_traits>

#include "cpu/vec.h"
#include "se_checks.h"
#include "se_math.h"

namespace se_fused::cpu {

// How a gate is stored and applied, per tensor dtype: rounding happens once.

// The gate is kept in acc_t and the product formed in acc_t (GateOps), then
// rounded once to T (Tiling::map). (For float tensors that is a double
// multiply: exact enough for a single rounding, and vectorisable without
// hardware FMA.)
// With the residual gate (kResidual) y = x * s + x and dx = dy * s + dy + g, as the
// plain block's x * s + x orders them: an infinite x where s is 0 gives NaN.
template <typename A, bool kResidual = false>
struct GateOps {
  static A scale(A x, A s) { return kResidual ? residual_product(x, s) : x * s; }
  static A scale_add(A dy, A s, A g) { return (kResidual ? residual_product(dy, s) : dy * s) + g; }
};

// Calls fn(residual) with residual a std::bool_constant, so that the scale loops
// are compiled once per case with the choice folded away.
template <typename Fn>
void with_residual(bool residual, const Fn& fn) {
  if (residual) {
    fn(std::true_type{});
  } else {
    fn(std::false_type{});
  }
}

// Calls fn(gate_kind, begin, end) over [0, n) in parallel, with gate_kind a
// constant-returning functor for the gate, so the loop fn runs is compiled
// once per gate with the choice folded away (and vectorised).
template <typename Fn>
void for_each_gate(Gate gate, int64_t n, const Fn& fn) {
  constexpr int64_t kGrain = 2048;
  auto run = [&](auto gate_kind) {
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) { fn(gate_kind, begin, end); });
  };
  if (gate == Gate::Sigmoid) {
    run([] { return Gate::Sigmoid; });
  } else {
    run([] { return Gate::HardSigmoid; });
  }
}

template <typename S>
S* storage_ptr(const at::Tensor& t) {
  return reinterpret_cast<S*>(t.data_ptr());
}

// The state the backward needs, [N, C], [N, hidden], [N, C] in acc_t.
template <typename A>
struct SavedState {
  A* pooled;
  A* z1;
  A* z2;
};

// The kernels, for T = Storage<scalar_t>::type (instantiated for the four
// dtypes by SE_FUSED_CPU_INSTANTIATE in forward.cpp and backward.cpp).
// y = the block on x; when `saved` (the pooled means, z1 and z2 for the
// backward) is null they live in per-chunk scratch.
template <typename T>
void forward_kernel(const SEProblem& p, const at::Tensor& x, const at::Tensor& w1,
                    const std::optional<at::Tensor>& b1, const std::optional<at::Tensor>& w2,
                    const std::optional<at::Tensor>& b2, at::Tensor& y,
                    const SavedState<acc_t<T>>* saved);

// Where the backward reads dy's rows (Rows, tiling.h): the strides between
// samples and between rows, in elements.
struct RowStrides {
  int64_t sample, row;
};

// dx and the weight gradients (dw2 with a w2; db1, db2 when not null) from the
// saved state.
template <typename T>
void backward_kernel(const SEProblem& p, const at::Tensor& dy, RowStrides dy_strides,
                     const at::Tensor& x,
                     const at::Tensor& pooled, const at::Tensor& z1, const at::Tensor& z2,
                     const at::Tensor& w1, const std::optional<at::Tensor>& w2, at::Tensor& dx,
                     at::Tensor& dw1, at::Tensor* db1, at::Tensor* dw2, at::Tensor* db2);

#define SE_FUSED_CPU_INSTANTIATE(kernel)                     \
  kernel(double);                                            \
  kernel(float);                                             \
  kernel(Storage<c10::Half>::type);                          \
  kernel(Storage<c10::BFloat16>::type)

}  // namespace se_fused::cpu
