// Argument checks shared by every backend's launcher: run once at the op
// boundary, with messages that name the tensor, what it is and what was
// expected. Kernels behind these checks assume valid input.
#pragma once

#include <ATen/ATen.h>

#include "se_math.h"

namespace se_fused {

// What the kernels need to know about one call, after the checks. x is
// [N, C, *spatial] with 1 to 3 spatial dims; the kernels see it as [N, C, HW].
struct SEProblem {
  int64_t N = 0;       // samples
  int64_t C = 0;       // channels
  int64_t HW = 0;      // the map's size: H * W (T for [N, C, T], D * H * W for [N, C, D, H, W])
  int64_t hidden = 0;  // w1.size(0) for the two-FC excitation; 0 for the others (z1 is [N, 0])
  bool channels_last = false;  // memory is [N, *spatial, C] (channels_last, channels_last_3d)
  Activation activation = Activation::ReLU;  // the two-FC excitation's (unused by the others)
  Gate gate = Gate::Sigmoid;
  Excitation excitation = Excitation::TwoFC;
  int64_t kernel_size = 0;  // ECA: w1.size(0), odd; 0 for the others
  bool residual = false;    // y = x * s + x
};

// The options of one call as the op's strings and flag name them.
struct SEOptions {
  c10::string_view activation;  // "relu", "silu", "hardswish"; "none" without a hidden layer
  c10::string_view gate;        // "sigmoid", "hardsigmoid"
  c10::string_view excitation;  // "two_fc", "one_fc", "eca", "eca_circular"
  bool residual;
};

// Checks x, the weights and the options of se_fused::squeeze_excite. The
// weights by excitation: two_fc w1 [hidden, C], b1 [hidden], w2 [C, hidden],
// b2 [C]; one_fc w1 [C, C], b1 [C]; eca and eca_circular w1 [k] (k odd),
// b1 [1]; w2 and b2 are None for the last three.
SEProblem check_forward(const at::Tensor& x, const at::Tensor& w1,
                        const std::optional<at::Tensor>& b1,
                        const std::optional<at::Tensor>& w2,
                        const std::optional<at::Tensor>& b2, const SEOptions& options);

// The forward checks (without biases: the backward does not read them) plus
// dy (shape of x) and the forward's saved state, pooled and z2 ([N, C]) and
// z1 ([N, hidden]) in the accumulation dtype, for se_fused::_squeeze_excite_backward.
SEProblem check_backward(const at::Tensor& dy, const at::Tensor& x,
                         const at::Tensor& pooled, const at::Tensor& z1,
                         const at::Tensor& z2, const at::Tensor& w1,
                         const std::optional<at::Tensor>& w2, const SEOptions& options);

// dtype of the pooled means (and of every intermediate): float64 for
// float32/float64 tensors, float32 for float16/bfloat16.
at::ScalarType accumulation_dtype(at::ScalarType dtype);

// x (or dy) in the layout the kernels index: dense [N, C, *spatial] or dense
// [N, *spatial, C] (p.channels_last); a copy only when the input is not already.
// at::empty_like of the result keeps that layout (y and dx keep x's format).
at::Tensor dense_in_format(const at::Tensor& t, const SEProblem& p);

}  // namespace se_fused
