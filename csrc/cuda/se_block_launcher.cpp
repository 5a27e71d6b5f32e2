// Torch interop for the CUDA kernels (se_block.cu): argument checks, device
// guard, dense inputs, output and workspace allocation (torch caching
// allocator, so CUDA graph capture works), the current stream, dtype dispatch.
// The stream comes from c10/cuda/CUDAStream.h (what at::cuda::getCurrentCUDAStream
// returns) rather than ATen/cuda/CUDAContext.h, which pulls in the cuBLAS,
// cuSPARSE and cuSOLVER headers that a minimal CUDA toolkit lacks.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <optional>
#include <tuple>

#include "cuda/se_block.h"
#include "se_checks.h"

namespace se_fused {
namespace {

using cuda_kernels::SEBackwardParams;
using cuda_kernels::SEForwardParams;

const void* optional_ptr(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->const_data_ptr() : nullptr;
}

std::optional<at::Tensor> contiguous_optional(const std::optional<at::Tensor>& t) {
  if (!t.has_value()) return std::nullopt;
  return t->contiguous();
}

// The fields the forward and backward params share: sizes, options, weights
// (w1 and w2 held contiguous by the caller).
template <typename Params>
void set_common(Params& params, const SEProblem& p, const at::Tensor& w1, const at::Tensor& w2) {
  params.w1 = w1.const_data_ptr();
  params.w2 = w2.const_data_ptr();
  params.N = p.N;
  params.C = p.C;
  params.HW = p.HW;
  params.hidden = p.hidden;
  params.channels_last = p.channels_last;
  params.activation = p.activation;
  params.gate = p.gate;
}

// Calls fn with a value of the kernels' element type for x's dtype.
template <typename Fn>
void dispatch_dtype(at::ScalarType dtype, const Fn& fn) {
  switch (dtype) {
    case at::kFloat: fn(float{}); break;
    case at::kDouble: fn(double{}); break;
    case at::kHalf: fn(__half{}); break;
    case at::kBFloat16: fn(__nv_bfloat16{}); break;
    default: TORCH_CHECK(false, "se_fused: unsupported dtype ", dtype);  // checked before
  }
}

template <typename T>
void run_forward(SEForwardParams& params, const at::Tensor& x, cudaStream_t stream) {
  const size_t bytes = cuda_kernels::se_forward_workspace_bytes<T>(params.N, params.C, params.hidden);
  at::Tensor workspace = at::empty({static_cast<int64_t>(bytes)}, x.options().dtype(at::kByte));
  params.workspace = workspace.data_ptr();
  params.workspace_bytes = bytes;
  C10_CUDA_CHECK(cuda_kernels::launch_se_forward<T>(params, stream));
}

template <typename T>
void run_backward(SEBackwardParams& params, const at::Tensor& x, cudaStream_t stream) {
  const size_t bytes = cuda_kernels::se_backward_workspace_bytes<T>(params.N, params.C, params.hidden);
  at::Tensor workspace = at::empty({static_cast<int64_t>(bytes)}, x.options().dtype(at::kByte));
  params.workspace = workspace.data_ptr();
  params.workspace_bytes = bytes;
  C10_CUDA_CHECK(cuda_kernels::launch_se_backward<T>(params, stream));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> squeeze_excite_forward_cuda(
    const at::Tensor& x, const at::Tensor& w1, const std::optional<at::Tensor>& b1,
    const at::Tensor& w2, const std::optional<at::Tensor>& b2, c10::string_view activation,
    c10::string_view gate) {
  const SEProblem p = check_forward(x, w1, b1, w2, b2, activation, gate);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xd = dense_in_format(x, p);
  at::Tensor y = at::empty_like(xd);
  const auto acc = x.options().dtype(accumulation_dtype(x.scalar_type()));
  at::Tensor pooled = at::empty({p.N, p.C}, acc);
  at::Tensor z1 = at::empty({p.N, p.hidden}, acc), z2 = at::empty({p.N, p.C}, acc);
  if (p.N == 0) return {y, pooled, z1, z2};

  const at::Tensor w1c = w1.contiguous(), w2c = w2.contiguous();
  const std::optional<at::Tensor> b1c = contiguous_optional(b1), b2c = contiguous_optional(b2);
  SEForwardParams params;
  set_common(params, p, w1c, w2c);
  params.b1 = optional_ptr(b1c);
  params.b2 = optional_ptr(b2c);
  params.x = xd.const_data_ptr();
  params.y = y.data_ptr();
  params.pooled = pooled.data_ptr();
  params.z1 = z1.data_ptr();
  params.z2 = z2.data_ptr();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_dtype(x.scalar_type(), [&](auto t) { run_forward<decltype(t)>(params, x, stream); });
  return {y, pooled, z1, z2};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> squeeze_excite_backward_all_cuda(
    const at::Tensor& dy, const at::Tensor& x, const at::Tensor& pooled, const at::Tensor& z1,
    const at::Tensor& z2, const at::Tensor& w1, const at::Tensor& w2, c10::string_view activation,
    c10::string_view gate) {
  const SEProblem p = check_backward(dy, x, pooled, z1, z2, w1, w2, activation, gate);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xd = dense_in_format(x, p);
  at::Tensor dx = at::empty_like(xd);
  if (p.N == 0) {
    return {dx, at::zeros({p.hidden, p.C}, w1.options()), at::zeros({p.hidden}, w1.options()),
            at::zeros({p.C, p.hidden}, w2.options()), at::zeros({p.C}, w2.options())};
  }
  at::Tensor dw1 = at::empty({p.hidden, p.C}, w1.options());
  at::Tensor db1 = at::empty({p.hidden}, w1.options());
  at::Tensor dw2 = at::empty({p.C, p.hidden}, w2.options());
  at::Tensor db2 = at::empty({p.C}, w2.options());

  const at::Tensor dyd = dense_in_format(dy, p);
  const at::Tensor pooledc = pooled.contiguous(), z1c = z1.contiguous(), z2c = z2.contiguous();
  const at::Tensor w1c = w1.contiguous(), w2c = w2.contiguous();
  SEBackwardParams params;
  set_common(params, p, w1c, w2c);
  params.dy = dyd.const_data_ptr();
  params.x = xd.const_data_ptr();
  params.pooled = pooledc.const_data_ptr();
  params.z1 = z1c.const_data_ptr();
  params.z2 = z2c.const_data_ptr();
  params.dx = dx.data_ptr();
  params.dw1 = dw1.data_ptr();
  params.db1 = db1.data_ptr();
  params.dw2 = dw2.data_ptr();
  params.db2 = db2.data_ptr();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_dtype(x.scalar_type(), [&](auto t) { run_backward<decltype(t)>(params, x, stream); });
  return {dx, dw1, db1, dw2, db2};
}

at::Tensor squeeze_excite_cuda(const at::Tensor& x, const at::Tensor& w1,
                               const std::optional<at::Tensor>& b1, const at::Tensor& w2,
                               const std::optional<at::Tensor>& b2, c10::string_view activation,
                               c10::string_view gate) {
  return std::get<0>(squeeze_excite_forward_cuda(x, w1, b1, w2, b2, activation, gate));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> squeeze_excite_backward_cuda(
    const at::Tensor& dy, const at::Tensor& x, const at::Tensor& pooled, const at::Tensor& z1,
    const at::Tensor& z2, const at::Tensor& w1, const at::Tensor& w2, c10::string_view activation,
    c10::string_view gate, bool want_db1, bool want_db2) {
  auto [dx, dw1, db1, dw2, db2] =
      squeeze_excite_backward_all_cuda(dy, x, pooled, z1, z2, w1, w2, activation, gate);
  return {dx, dw1, want_db1 ? db1 : db1.new_empty({0}), dw2, want_db2 ? db2 : db2.new_empty({0})};
}

}  // namespace
}  // namespace se_fused

TORCH_LIBRARY_IMPL(se_fused, CUDA, m) {
  m.impl("squeeze_excite", &se_fused::squeeze_excite_cuda);
  m.impl("_squeeze_excite_forward", &se_fused::squeeze_excite_forward_cuda);
  m.impl("_squeeze_excite_backward", &se_fused::squeeze_excite_backward_cuda);
}
