// Torch interop for the CUDA kernels (se_forward.cuh, se_backward.cuh):
// argument checks, device guard, whether the build runs on the device (checked
// before anything launches), dense inputs, one allocation per returned tensor
// and the workspace apart (se_cuda_plan.cpp; torch caching allocator, so CUDA
// graph capture works; no memset, no host synchronisation), the current
// stream, dtype dispatch, the path setting SE_FUSED_CUDA_PATH (read once) and
// the record of the path each call took (se_cuda_plan.h; named in the
// profiler trace). It also registers the hooks through which se_fused._C
// answers questions about the CUDA build (se_fused.cpp).
// The stream comes from c10/cuda/CUDAStream.h (what at::cuda::getCurrentCUDAStream
// returns) rather than ATen/cuda/CUDAContext.h, which pulls in the cuBLAS,
// cuSPARSE and cuSOLVER headers that a minimal CUDA toolkit lacks.
#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "cuda/se_block.h"
#include "se_checks.h"
#include "se_cuda_plan.h"

#ifndef SE_FUSED_CUDA_ARCHS
#define SE_FUSED_CUDA_ARCHS "unknown"
#endif
#ifndef SE_FUSED_NVCC_VERSION
#define SE_FUSED_NVCC_VERSION "unknown"
#endif

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

std::vector<int64_t> region_bytes(const cuda_kernels::SEWorkspaceRegions& r) {
  return std::vector<int64_t>(r.bytes, r.bytes + r.count);
}

// ---------------------------------------------------------------- the device

static_assert(static_cast<int>(SEPath::TwoPass) == 1 && static_cast<int>(SEPath::Cooperative) == 2 &&
                  static_cast<int>(SEPath::OnePass) == 3,
              "se_cuda_plan.h kCudaPathNames numbers the paths as SEPath");

constexpr int kMaxDevices = 64;

// "7.5" for device dev, or "" if the runtime cannot say.
std::string capability(int dev) {
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
    (void)cudaGetLastError();  // ours
    return "";
  }
  return std::to_string(major) + "." + std::to_string(minor);
}

std::string device_name(int dev) {
  const std::string cc = capability(dev);
  std::string sm = cc;
  sm.erase(std::remove(sm.begin(), sm.end(), '.'), sm.end());
  return "cuda:" + std::to_string(dev) +
         (cc.empty() ? std::string(" (compute capability unknown)")
                     : " (compute capability " + cc + ", sm_" + sm + ")");
}

// Whether the build has code the current device (dev) runs, cached per device:
// cudaFuncGetAttributes on a kernel built with the same architectures as all
// the others (se_device.cu). An error already pending is not cached (nor is
// it ours: the caller reports it first).
cudaError_t image_status(int dev) {
  static std::atomic<int> cache[kMaxDevices];  // 0 unknown, else error + 1
  const bool cacheable = dev >= 0 && dev < kMaxDevices;
  if (cacheable) {
    const int c = cache[dev].load(std::memory_order_relaxed);
    if (c != 0) return static_cast<cudaError_t>(c - 1);
  }
  const cudaError_t err = cuda_kernels::se_kernel_image_status();
  if (cacheable) cache[dev].store(static_cast<int>(err) + 1, std::memory_order_relaxed);
  return err;
}

std::string unsupported_message(int dev, cudaError_t err) {
  const std::string cc = capability(dev);
  const std::string list = cc.empty() ? std::string("<its capability>") : cc;
  return "se_fused: this build has no CUDA code for " + device_name(dev) +
         ": it was built with TORCH_CUDA_ARCH_LIST=" + SE_FUSED_CUDA_ARCHS + " (nvcc " +
         SE_FUSED_NVCC_VERSION + "), and the driver finds neither a kernel for this device nor "
         "PTX it can compile for it (" + cudaGetErrorName(err) + ": " + cudaGetErrorString(err) +
         "). Rebuild se_fused with the device's architecture in the list, e.g. "
         "`TORCH_CUDA_ARCH_LIST=\"" + list + "\" pip install --no-build-isolation -e .` "
         "(or add " + list + " to the list)";
}

// At the op boundary, before anything launches (the device guard is set):
// an error pending on this thread from earlier work is reported, not
// cleared; a device the build has no code for is named with how to rebuild.
void check_device_ready(int dev) {
  const cudaError_t pending = cudaPeekAtLastError();
  TORCH_CHECK(pending == cudaSuccess, "se_fused: a CUDA error from earlier work is pending on this "
              "thread (", cudaGetErrorName(pending), ": ", cudaGetErrorString(pending),
              "); nothing was launched. Check the work before this call.");
  const cudaError_t err = image_status(dev);
  TORCH_CHECK(err == cudaSuccess, unsupported_message(dev, err));
}

// Runs launch(&taken) inside the profiler's record of the launch, checks its
// error, records the path it took (se_cuda_plan.h) and marks it in the trace.
template <typename Launch>
void launch_recorded(Direction d, const Launch& launch) {
  RECORD_FUNCTION(cuda_launch_event(d), std::vector<c10::IValue>());
  SEPath taken = SEPath::Auto;
  C10_CUDA_CHECK(launch(&taken));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const int path = static_cast<int>(taken);
  record_cuda_path(d, path);
  {
    RECORD_FUNCTION(cuda_path_event(d, path), std::vector<c10::IValue>());
  }
}

// The kernels' view of the planned workspace (se_cuda_plan.cpp): one pointer,
// or (separate) one per region; ptrs must outlive the launch.
void set_workspace(SEForwardParams& params, const std::vector<at::Tensor>& ws, size_t total,
                   bool separate, std::vector<void*>& ptrs) {
  if (!separate) {
    params.workspace = ws.at(0).data_ptr();
    params.workspace_bytes = total;
    return;
  }
  for (const at::Tensor& t : ws) ptrs.push_back(t.defined() ? t.data_ptr() : nullptr);
  params.workspace_regions = ptrs.data();
}

// y (x's memory format), pooled, z1, z2 (acc dtype): an allocation each; the
// workspace apart. For the no-grad op the state is computed all the same.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> squeeze_excite_forward_cuda(
    const at::Tensor& x, const at::Tensor& w1, const std::optional<at::Tensor>& b1,
    const std::optional<at::Tensor>& w2, const std::optional<at::Tensor>& b2,
    c10::string_view activation, c10::string_view gate, c10::string_view excitation,
    bool residual) {
  const SEProblem p = check_forward(x, w1, b1, w2, b2, {activation, gate, excitation, residual});
  const c10::cuda::CUDAGuard device_guard(x.device());
  check_device_ready(x.get_device());
  const at::Tensor xd = dense_in_format(x, p);
  const at::Tensor w1c = w1.contiguous();
  const std::optional<at::Tensor> w2c = contiguous_optional(w2);
  const std::optional<at::Tensor> b1c = contiguous_optional(b1), b2c = contiguous_optional(b2);
  SEForwardParams params;
  set_common(params, p, w1c, w2c);
  params.b1 = optional_ptr(b1c);
  params.b2 = optional_ptr(b2c);
  std::vector<int64_t> regions;
  size_t ws_bytes = 0;
  if (p.N > 0) {
    dispatch_dtype(x.scalar_type(), [&](auto t) {
      regions = region_bytes(cuda_kernels::se_forward_workspace_regions<decltype(t)>(params));
      ws_bytes = cuda_kernels::se_forward_workspace_bytes<decltype(t)>(params);
    });
  }
  const bool separate = separate_workspace();
  const ForwardAlloc out = plan_forward(xd, p, regions, separate);
  if (p.N == 0) return {out.y, out.pooled, out.z1, out.z2};

  params.x = xd.const_data_ptr();
  params.y = out.y.data_ptr();
  params.pooled = out.pooled.data_ptr();
  params.z1 = out.z1.data_ptr();
  params.z2 = out.z2.data_ptr();
  std::vector<void*> ptrs;
  set_workspace(params, out.workspace, ws_bytes, separate, ptrs);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  launch_recorded(Direction::Forward, [&](SEPath* taken) {
    params.path_taken = taken;
    cudaError_t err = cudaSuccess;
    dispatch_dtype(x.scalar_type(), [&](auto t) {
      err = cuda_kernels::launch_se_forward<decltype(t)>(params, stream);
    });
    return err;
  });
  return {out.y, out.pooled, out.z1, out.z2};
}

// dx, dw1, db1, dw2, db2: an allocation each (a weight's .grad, which autograd
// keeps as it is, pins nothing else); the workspace apart.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> squeeze_excite_backward_cuda(
    const at::Tensor& dy, const at::Tensor& x, const at::Tensor& pooled, const at::Tensor& z1,
    const at::Tensor& z2, const at::Tensor& w1, const std::optional<at::Tensor>& w2,
    c10::string_view activation, c10::string_view gate, bool want_db1, bool want_db2,
    c10::string_view excitation, bool residual) {
  const SEProblem p = check_backward(dy, x, pooled, z1, z2, w1, w2,
                                     {activation, gate, excitation, residual});
  const c10::cuda::CUDAGuard device_guard(x.device());
  check_device_ready(x.get_device());
  const at::Tensor xd = dense_in_format(x, p);
  want_db2 = want_db2 && w2.has_value();
  const at::Tensor w1c = w1.contiguous();
  const std::optional<at::Tensor> w2c = contiguous_optional(w2);
  SEBackwardParams params;
  set_common(params, p, w1c, w2c);
  std::vector<int64_t> regions;
  size_t ws_bytes = 0;
  if (p.N > 0) {
    dispatch_dtype(x.scalar_type(), [&](auto t) {
      regions = region_bytes(cuda_kernels::se_backward_workspace_regions<decltype(t)>(params));
      ws_bytes = cuda_kernels::se_backward_workspace_bytes<decltype(t)>(params);
    });
  }
  const bool separate = separate_workspace();
  const BackwardAlloc out = plan_backward(xd, w1, w2, want_db1, want_db2, p, regions, separate);
  if (p.N == 0) {  // the weight gradients of an empty batch are zeros
    out.dw1.zero_();
    out.db1.zero_();
    out.dw2.zero_();
    out.db2.zero_();
    return {out.dx, out.dw1, out.db1, out.dw2, out.db2};
  }
  const at::Tensor dyd = dense_in_format(dy, p);
  const at::Tensor pooledc = pooled.contiguous(), z1c = z1.contiguous(), z2c = z2.contiguous();

  params.dy = dyd.const_data_ptr();
  params.x = xd.const_data_ptr();
  params.pooled = const_cast<void*>(pooledc.const_data_ptr());
  params.z1 = const_cast<void*>(z1c.const_data_ptr());
  params.z2 = const_cast<void*>(z2c.const_data_ptr());
  params.dx = out.dx.data_ptr();
  params.dw1 = out.dw1.data_ptr();
  params.dw2 = w2 ? out.dw2.data_ptr() : nullptr;
  params.db1 = want_db1 ? out.db1.data_ptr() : nullptr;
  params.db2 = want_db2 ? out.db2.data_ptr() : nullptr;
  std::vector<void*> ptrs;
  set_workspace(params, out.workspace, ws_bytes, separate, ptrs);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  launch_recorded(Direction::Backward, [&](SEPath* taken) {
    params.path_taken = taken;
    cudaError_t err = cudaSuccess;
    dispatch_dtype(x.scalar_type(), [&](auto t) {
      err = cuda_kernels::launch_se_backward<decltype(t)>(params, stream);
    });
    return err;
  });
  return {out.dx, out.dw1, out.db1, out.dw2, out.db2};
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

// ---------------------------------------------------------------- hooks

bool device_support(int index, std::string* message) {
  const int count = static_cast<int>(c10::cuda::device_count());
  if (index < 0 || index >= count) {
    *message = "no CUDA device " + std::to_string(index) + " (this process sees " +
               std::to_string(count) + ")";
    return false;
  }
  const c10::cuda::CUDAGuard device_guard(static_cast<c10::DeviceIndex>(index));
  const cudaError_t pending = cudaPeekAtLastError();
  if (pending != cudaSuccess) {  // not ours: reported, not cleared
    *message = std::string("cannot tell: a CUDA error from earlier work is pending on this thread (") +
               cudaGetErrorName(pending) + ")";
    return false;
  }
  const cudaError_t err = image_status(index);
  *message = err == cudaSuccess
                 ? device_name(index) + ": this build runs on it (TORCH_CUDA_ARCH_LIST=" +
                       SE_FUSED_CUDA_ARCHS + ")"
                 : unsupported_message(index, err);
  return err == cudaSuccess;
}

int auto_path(Direction d, int64_t N, int64_t C, int64_t HW, int64_t hidden, at::ScalarType dtype,
              bool channels_last) {
  SEBackwardParams params;
  params.N = N;
  params.C = C;
  params.HW = HW;
  params.hidden = hidden;
  params.excitation = hidden > 0 ? Excitation::TwoFC : Excitation::OneFC;
  params.channels_last = channels_last;
  SEPath path = SEPath::TwoPass;
  dispatch_dtype(dtype, [&](auto t) {
    path = cuda_kernels::se_auto_path<decltype(t)>(params, d == Direction::Backward);
  });
  return static_cast<int>(path);
}

const CudaHooks kHooks = {SE_FUSED_CUDA_ARCHS, SE_FUSED_NVCC_VERSION, CUDART_VERSION,
                          &device_support, &auto_path};
const bool kHooksRegistered = (register_cuda_hooks(&kHooks), true);

}  // namespace
}  // namespace se_fused

TORCH_LIBRARY_IMPL(se_fused, CUDA, m) {
  m.impl("squeeze_excite", &se_fused::squeeze_excite_cuda);
  m.impl("_squeeze_excite_forward", &se_fused::squeeze_excite_forward_cuda);
  m.impl("_squeeze_excite_backward", &se_fused::squeeze_excite_backward_cuda);
}
