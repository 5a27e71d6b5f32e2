// Torch interop for the CUDA kernels (se_forward.cuh, se_backward.cuh):
// argument checks, device guard, dense inputs, one allocation per call for
// the outputs and the workspace (torch caching allocator, so CUDA graph
// capture works; no memset, no host synchronisation), the current stream,
// dtype dispatch, and the path setting SE_FUSED_CUDA_PATH (read once).
// The stream comes from c10/cuda/CUDAStream.h (what at::cuda::getCurrentCUDAStream
// returns) rather than ATen/cuda/CUDAContext.h, which pulls in the cuBLAS,
// cuSPARSE and cuSOLVER headers that a minimal CUDA toolkit lacks.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <algorithm>
#include <tuple>
#include <vector>

#include "cuda/se_block.h"
#include "se_checks.h"

namespace se_fused {
namespace {

using cuda_kernels::SEBackwardParams;
using cuda_kernels::SEForwardParams;
using cuda_kernels::SEPath;

// SE_FUSED_CUDA_PATH = auto (default) | twopass | cooperative | onepass, read
// once per process. auto: se_heuristics.h choose_path (today: twopass, the
// path in which no block ever waits). cooperative: one cooperative launch per
// call, falling back to twopass if the driver refuses it. onepass: the
// cooperative launch with each unit's tile of x (dy) kept in shared memory
// across the grid barrier, where it applies (se_heuristics.h
// onepass_applies); else cooperative, then twopass.
SEPath requested_path() {
  static const SEPath path = [] {
    const char* v = std::getenv("SE_FUSED_CUDA_PATH");
    if (v == nullptr || *v == '\0' || std::strcmp(v, "auto") == 0) return SEPath::Auto;
    if (std::strcmp(v, "twopass") == 0) return SEPath::TwoPass;
    if (std::strcmp(v, "cooperative") == 0) return SEPath::Cooperative;
    if (std::strcmp(v, "onepass") == 0) return SEPath::OnePass;
    TORCH_WARN("se_fused: SE_FUSED_CUDA_PATH=", v,
               " is not auto, twopass, cooperative or onepass; using auto");
    return SEPath::Auto;
  }();
  return path;
}

const void* optional_ptr(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->const_data_ptr() : nullptr;
}

std::optional<at::Tensor> contiguous_optional(const std::optional<at::Tensor>& t) {
  if (!t.has_value()) return std::nullopt;
  return t->contiguous();
}

// The fields the forward and backward params share: sizes, options, weights
// (w1 and w2 held contiguous by the caller).
void set_common(SEForwardParams& params, const SEProblem& p, const at::Tensor& w1,
                const std::optional<at::Tensor>& w2) {
  params.w1 = w1.const_data_ptr();
  params.w2 = optional_ptr(w2);
  params.N = p.N;
  params.C = p.C;
  params.HW = p.HW;
  params.hidden = p.hidden;
  params.channels_last = p.channels_last;
  params.activation = p.activation;
  params.gate = p.gate;
  params.excitation = p.excitation;
  params.kernel_size = p.kernel_size;
  params.residual = p.residual;
  params.path = requested_path();
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

// Carves one byte buffer into the call's tensors: take(bytes) returns the
// offset of the next 256-byte aligned piece; view(...) makes a typed tensor
// of it with set_ (same storage, not an autograd view of the buffer: each
// output keeps its own version counter, so an in-place op on y, say
// `out += identity` after an SE block, does not look like a modification of
// the saved pooled/z1/z2, and no output is a view of a uint8 base).
struct Carve {
  int64_t off = 0;
  int64_t take(int64_t bytes) {
    const int64_t o = off;
    off += (bytes + 255) / 256 * 256;
    return o;
  }
  static at::Tensor view(const at::Tensor& buf, int64_t offset, at::ScalarType dtype,
                         at::IntArrayRef sizes, at::IntArrayRef strides) {
    const int64_t es = static_cast<int64_t>(c10::elementSize(dtype));
    at::Tensor t = at::empty({0}, buf.options().dtype(dtype));
    t.set_(buf.storage(), offset / es, sizes, strides);  // offset: a multiple of 256 bytes
    return t;
  }
  static at::Tensor view(const at::Tensor& buf, int64_t offset, at::ScalarType dtype,
                         at::IntArrayRef sizes) {
    std::vector<int64_t> strides(sizes.size(), 1);
    for (int64_t i = static_cast<int64_t>(sizes.size()) - 2; i >= 0; --i)
      strides[i] = strides[i + 1] * std::max<int64_t>(sizes[i + 1], 1);
    return view(buf, offset, dtype, sizes, strides);
  }
};

template <typename T>
size_t forward_workspace(const SEForwardParams& params) {
  return cuda_kernels::se_forward_workspace_bytes<T>(params);
}
template <typename T>
size_t backward_workspace(const SEBackwardParams& params) {
  return cuda_kernels::se_backward_workspace_bytes<T>(params);
}

// One allocation: y (x's memory format), pooled, z1, z2 (acc dtype) and the
// workspace. For the no-grad op the state is workspace too (not returned).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> squeeze_excite_forward_cuda(
    const at::Tensor& x, const at::Tensor& w1, const std::optional<at::Tensor>& b1,
    const std::optional<at::Tensor>& w2, const std::optional<at::Tensor>& b2,
    c10::string_view activation, c10::string_view gate, c10::string_view excitation,
    bool residual) {
  const SEProblem p = check_forward(x, w1, b1, w2, b2, {activation, gate, excitation, residual});
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xd = dense_in_format(x, p);
  const at::ScalarType acc = accumulation_dtype(x.scalar_type());
  const int64_t acc_size = static_cast<int64_t>(c10::elementSize(acc));
  const at::Tensor w1c = w1.contiguous();
  const std::optional<at::Tensor> w2c = contiguous_optional(w2);
  const std::optional<at::Tensor> b1c = contiguous_optional(b1), b2c = contiguous_optional(b2);
  SEForwardParams params;
  set_common(params, p, w1c, w2c);
  params.b1 = optional_ptr(b1c);
  params.b2 = optional_ptr(b2c);
  size_t ws_bytes = 0;
  if (p.N > 0) {
    dispatch_dtype(x.scalar_type(), [&](auto t) { ws_bytes = forward_workspace<decltype(t)>(params); });
  }
  Carve cv;
  const int64_t o_y = cv.take(xd.numel() * static_cast<int64_t>(xd.element_size()));
  const int64_t o_p = cv.take(p.N * p.C * acc_size);
  const int64_t o_z1 = cv.take(p.N * p.hidden * acc_size);
  const int64_t o_z2 = cv.take(p.N * p.C * acc_size);
  const int64_t o_ws = cv.take(static_cast<int64_t>(ws_bytes));
  const at::Tensor buf = at::empty({cv.off}, x.options().dtype(at::kByte));
  at::Tensor y = Carve::view(buf, o_y, x.scalar_type(), xd.sizes(), xd.strides());
  at::Tensor pooled = Carve::view(buf, o_p, acc, {p.N, p.C});
  at::Tensor z1 = Carve::view(buf, o_z1, acc, {p.N, p.hidden});
  at::Tensor z2 = Carve::view(buf, o_z2, acc, {p.N, p.C});
  if (p.N == 0) return {y, pooled, z1, z2};

  params.x = xd.const_data_ptr();
  params.y = y.data_ptr();
  params.pooled = pooled.data_ptr();
  params.z1 = z1.data_ptr();
  params.z2 = z2.data_ptr();
  params.workspace = static_cast<char*>(buf.data_ptr()) + o_ws;
  params.workspace_bytes = ws_bytes;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_dtype(x.scalar_type(), [&](auto t) {
    C10_CUDA_CHECK(cuda_kernels::launch_se_forward<decltype(t)>(params, stream));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {y, pooled, z1, z2};
}

// Two allocations: dx with the workspace, and the weight gradients together.
// (One buffer for all would make every weight's .grad, which autograd keeps
// as it is, a view that pins the dx-sized buffer for as long as the .grad
// lives.)
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> squeeze_excite_backward_cuda(
    const at::Tensor& dy, const at::Tensor& x, const at::Tensor& pooled, const at::Tensor& z1,
    const at::Tensor& z2, const at::Tensor& w1, const std::optional<at::Tensor>& w2,
    c10::string_view activation, c10::string_view gate, bool want_db1, bool want_db2,
    c10::string_view excitation, bool residual) {
  const SEProblem p = check_backward(dy, x, pooled, z1, z2, w1, w2,
                                     {activation, gate, excitation, residual});
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xd = dense_in_format(x, p);
  const at::ScalarType wt = w1.scalar_type();
  const int64_t C = p.C;
  // b1's size: dw1's rows ([hidden] two FCs, [C] one FC), or one (ECA).
  const int64_t nb1 = p.kernel_size ? 1 : w1.size(0);
  want_db2 = want_db2 && w2.has_value();
  if (p.N == 0) {  // the weight gradients of an empty batch are zeros
    return {at::empty_like(xd), at::zeros_like(w1),
            want_db1 ? at::zeros({nb1}, w1.options()) : w1.new_empty({0}),
            w2 ? at::zeros_like(*w2) : w1.new_empty({0}),
            want_db2 ? at::zeros({C}, w1.options()) : w1.new_empty({0})};
  }
  const at::Tensor dyd = dense_in_format(dy, p);
  const at::Tensor pooledc = pooled.contiguous(), z1c = z1.contiguous(), z2c = z2.contiguous();
  const at::Tensor w1c = w1.contiguous();
  const std::optional<at::Tensor> w2c = contiguous_optional(w2);
  SEBackwardParams params;
  set_common(params, p, w1c, w2c);
  size_t ws_bytes = 0;
  dispatch_dtype(x.scalar_type(), [&](auto t) { ws_bytes = backward_workspace<decltype(t)>(params); });

  Carve big;
  const int64_t o_dx = big.take(xd.numel() * static_cast<int64_t>(xd.element_size()));
  const int64_t o_ws = big.take(static_cast<int64_t>(ws_bytes));
  const at::Tensor buf = at::empty({big.off}, x.options().dtype(at::kByte));
  at::Tensor dx = Carve::view(buf, o_dx, x.scalar_type(), xd.sizes(), xd.strides());
  const int64_t es = static_cast<int64_t>(c10::elementSize(wt));
  Carve small;
  const int64_t o_dw1 = small.take(w1.numel() * es);
  const int64_t o_dw2 = small.take(w2 ? w2->numel() * es : 0);
  const int64_t o_db1 = small.take(want_db1 ? nb1 * es : 0);
  const int64_t o_db2 = small.take(want_db2 ? C * es : 0);
  const at::Tensor wbuf = at::empty({small.off}, w1.options().dtype(at::kByte));
  at::Tensor dw1 = Carve::view(wbuf, o_dw1, wt, w1.sizes());
  at::Tensor dw2 = w2 ? Carve::view(wbuf, o_dw2, wt, w2->sizes()) : w1.new_empty({0});
  at::Tensor db1 = want_db1 ? Carve::view(wbuf, o_db1, wt, {nb1}) : w1.new_empty({0});
  at::Tensor db2 = want_db2 ? Carve::view(wbuf, o_db2, wt, {C}) : w1.new_empty({0});

  params.dy = dyd.const_data_ptr();
  params.x = xd.const_data_ptr();
  params.pooled = const_cast<void*>(pooledc.const_data_ptr());
  params.z1 = const_cast<void*>(z1c.const_data_ptr());
  params.z2 = const_cast<void*>(z2c.const_data_ptr());
  params.dx = dx.data_ptr();
  params.dw1 = dw1.data_ptr();
  params.dw2 = w2 ? dw2.data_ptr() : nullptr;
  params.db1 = want_db1 ? db1.data_ptr() : nullptr;
  params.db2 = want_db2 ? db2.data_ptr() : nullptr;
  params.workspace = static_cast<char*>(buf.data_ptr()) + o_ws;
  params.workspace_bytes = ws_bytes;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_dtype(x.scalar_type(), [&](auto t) {
    C10_CUDA_CHECK(cuda_kernels::launch_se_backward<decltype(t)>(params, stream));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {dx, dw1, db1, dw2, db2};
}

at::Tensor squeeze_excite_cuda(const at::Tensor& x, const at::Tensor& w1,
                               const std::optional<at::Tensor>& b1,
                               const std::optional<at::Tensor>& w2,
                               const std::optional<at::Tensor>& b2, c10::string_view activation,
                               c10::string_view gate, c10::string_view excitation,
                               bool residual) {
  return std::get<0>(squeeze_excite_forward_cuda(x, w1, b1, w2, b2, activation, gate,
                                                 excitation, residual));
}

}  // namespace
}  // namespace se_fused

TORCH_LIBRARY_IMPL(se_fused, CUDA, m) {
  m.impl("squeeze_excite", &se_fused::squeeze_excite_cuda);
  m.impl("_squeeze_excite_forward", &se_fused::squeeze_excite_forward_cuda);
  m.impl("_squeeze_excite_backward", &se_fused::squeeze_excite_backward_cuda);
}
