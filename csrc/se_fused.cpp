// The se_fused operators: one schema for every backend. Kernels register
// per dispatch key: the backends in csrc/cpu/ and csrc/cuda/, autograd and
// autocast in csrc/se_autograd.cpp; the fake (meta) kernels for
// torch.compile in Python (se_fused/_ops.py).
//
// The module's functions (wrapped in se_fused/_cuda.py) tell what the CUDA
// part of the build is and did: in a CPU-only build they answer from
// se_cuda_plan.cpp alone (no CUDA hooks registered), so this file builds and
// links the same either way.
#include <Python.h>
#include <torch/library.h>
#include <torch/python.h>

#include <stdexcept>
#include <string>

#include "se_cuda_plan.h"

namespace se_fused {
namespace {

namespace py = pybind11;

Direction parse_direction(const std::string& d) {
  if (d == "forward") return Direction::Forward;
  if (d == "backward") return Direction::Backward;
  throw std::invalid_argument("se_fused: direction must be 'forward' or 'backward', got '" + d + "'");
}

at::ScalarType parse_dtype(const std::string& d) {
  if (d == "float32") return at::kFloat;
  if (d == "float64") return at::kDouble;
  if (d == "float16") return at::kHalf;
  if (d == "bfloat16") return at::kBFloat16;
  throw std::invalid_argument("se_fused: dtype must be float32, float64, float16 or bfloat16, got " + d);
}

py::object cuda_build_info() {
  const CudaHooks* h = cuda_hooks();
  if (h == nullptr) return py::none();
  py::dict info;
  info["archs"] = h->archs;
  info["cuda_runtime"] = std::to_string(h->runtime_version / 1000) + "." +
                         std::to_string(h->runtime_version % 1000 / 10);
  info["nvcc"] = h->nvcc;
  info["fmad"] = false;  // setup.py: --fmad=false (docs/cuda.md, one arithmetic)
  return info;
}

py::tuple cuda_device_support(int index) {
  const CudaHooks* h = cuda_hooks();
  if (h == nullptr)
    return py::make_tuple(false, "this build of se_fused has no CUDA kernels (built without nvcc, "
                                 "with a CPU build of torch, or with SE_FUSED_CUDA=0); rebuild with "
                                 "SE_FUSED_CUDA=1 TORCH_CUDA_ARCH_LIST=<the device's capability>");
  std::string message;
  const bool ok = h->device_support(index, &message);
  return py::make_tuple(ok, message);
}

std::string last_path(const std::string& direction) {
  return kCudaPathNames[last_cuda_path(parse_direction(direction))];
}

py::dict path_counts(bool reset) {
  int64_t counts[2][kCudaPaths];
  cuda_path_counts(counts, reset);
  py::dict out;
  const char* directions[2] = {"forward", "backward"};
  for (int d = 0; d < 2; ++d) {
    py::dict per;
    for (int k = 1; k < kCudaPaths; ++k) per[kCudaPathNames[k]] = counts[d][k];
    out[directions[d]] = per;
  }
  return out;
}

std::string auto_path(const std::string& direction, int64_t N, int64_t C, int64_t HW,
                      int64_t hidden, const std::string& dtype, bool channels_last) {
  const Direction d = parse_direction(direction);
  const at::ScalarType t = parse_dtype(dtype);
  if (N < 0 || C < 1 || HW < 1 || hidden < 0)
    throw std::invalid_argument("se_fused: cuda_auto_path needs N >= 0, C >= 1, HW >= 1, hidden >= 0");
  const CudaHooks* h = cuda_hooks();
  if (h == nullptr) throw std::runtime_error("se_fused: this build has no CUDA kernels");
  return kCudaPathNames[h->auto_path(d, N, C, HW, hidden, t, channels_last)];
}

py::list workspace_list(const std::vector<at::Tensor>& ws) {
  py::list l;
  for (const at::Tensor& t : ws) l.append(t.defined() ? py::cast(t) : py::none());
  return l;
}

// The CUDA launcher's allocation plan on any device (tests: a CPU tensor shows
// what a CUDA call would return), after the op's own checks.
py::tuple plan_forward_debug(const at::Tensor& x, const at::Tensor& w1,
                             const std::optional<at::Tensor>& b1,
                             const std::optional<at::Tensor>& w2,
                             const std::optional<at::Tensor>& b2, const std::string& activation,
                             const std::string& gate, const std::string& excitation,
                             bool residual, const std::vector<int64_t>& regions, bool separate) {
  const SEProblem p = check_forward(x, w1, b1, w2, b2, {activation, gate, excitation, residual});
  const ForwardAlloc a = plan_forward(dense_in_format(x, p), p, regions, separate);
  return py::make_tuple(a.y, a.pooled, a.z1, a.z2, workspace_list(a.workspace));
}

py::tuple plan_backward_debug(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& pooled,
                              const at::Tensor& z1, const at::Tensor& z2, const at::Tensor& w1,
                              const std::optional<at::Tensor>& w2, const std::string& activation,
                              const std::string& gate, bool want_db1, bool want_db2,
                              const std::string& excitation, bool residual,
                              const std::vector<int64_t>& regions, bool separate) {
  const SEProblem p = check_backward(dy, x, pooled, z1, z2, w1, w2,
                                     {activation, gate, excitation, residual});
  const BackwardAlloc a = plan_backward(dense_in_format(x, p), w1, w2, want_db1, want_db2, p,
                                        regions, separate);
  return py::make_tuple(a.dx, a.dw1, a.db1, a.dw2, a.db2, workspace_list(a.workspace));
}

}  // namespace
}  // namespace se_fused

extern "C" {
// `import se_fused._C` loads this library, which runs the registrations below.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) return nullptr;
  try {
    namespace py = pybind11;
    using namespace se_fused;
    py::module_ m = py::reinterpret_borrow<py::module_>(module);
    m.def("cuda_build_info", &cuda_build_info);
    m.def("cuda_device_support", &cuda_device_support, py::arg("index"));
    m.def("last_cuda_path", &last_path, py::arg("direction"));
    m.def("cuda_path_counts", &path_counts, py::arg("reset") = false);
    m.def("cuda_auto_path", &auto_path, py::arg("direction"), py::arg("N"), py::arg("C"),
          py::arg("HW"), py::arg("hidden"), py::arg("dtype"), py::arg("channels_last"));
    m.def("_cuda_plan_forward", &plan_forward_debug);
    m.def("_cuda_plan_backward", &plan_backward_debug);
  } catch (const std::exception& e) {
    Py_DECREF(module);
    PyErr_SetString(PyExc_ImportError, e.what());
    return nullptr;
  }
  return module;
}
}

TORCH_LIBRARY(se_fused, m) {
  // y = x * gate(z2) per (sample, channel), z2 = excitation(mean over the map
  // of x): y has x's shape, dtype and memory format. The excitation
  // (se_math.h Excitation):
  //   "two_fc"        z2 = w2 @ activation(w1 @ pooled + b1) + b2   (SE)
  //   "one_fc"        z2 = w1 @ pooled + b1, w1 [C, C]; activation "none",
  //                   w2 and b2 None                                (eSE)
  //   "eca"           z2 = conv1d over the channels of pooled with kernel
  //                   w1 [k] (k odd, zero padding k // 2) + b1 [1]; activation
  //                   "none", w2 and b2 None                        (ECA-Net)
  //   "eca_circular"  the same with circular padding
  // residual: y = x * gate(z2) + x (one rounding).
  // The op users call: differentiable (csrc/se_autograd.cpp); without a
  // gradient to record it writes only y.
  m.def(
      "squeeze_excite(Tensor x, Tensor w1, Tensor? b1, Tensor? w2, Tensor? b2, "
      "str activation, str gate, str excitation=\"two_fc\", bool residual=False) -> Tensor");
  // The forward that keeps what the backward needs: y and the excitation's state
  // in the accumulation dtype (float64 for float32/float64 x, float32 for
  // float16/bfloat16): the pooled means [N, C], the hidden pre-activations
  // z1 = w1 @ pooled + b1 [N, hidden] ([N, 0] without a hidden layer) and the
  // gate's pre-activations z2 [N, C].
  m.def(
      "_squeeze_excite_forward(Tensor x, Tensor w1, Tensor? b1, Tensor? w2, Tensor? b2, "
      "str activation, str gate, str excitation=\"two_fc\", bool residual=False) "
      "-> (Tensor y, Tensor pooled, Tensor z1, Tensor z2)");
  // dx, dw1, db1, dw2, db2 from the forward's saved state (nothing is
  // recomputed from the biases, so they are not needed). db1 and db2 are
  // computed only when asked for, dw2 and db2 only with a w2; the others are
  // returned empty ([0]).
  m.def(
      "_squeeze_excite_backward(Tensor dy, Tensor x, Tensor pooled, Tensor z1, Tensor z2, "
      "Tensor w1, Tensor? w2, str activation, str gate, bool want_db1, bool want_db2, "
      "str excitation=\"two_fc\", bool residual=False) "
      "-> (Tensor dx, Tensor dw1, Tensor db1, Tensor dw2, Tensor db2)");
}
