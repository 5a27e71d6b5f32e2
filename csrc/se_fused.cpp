// The se_fused operators: one schema for every backend. Kernels register
// per dispatch key in csrc/cpu/ and csrc/cuda/; fake kernels and autograd
// are registered from Python (se_fused/_ops.py).
#include <Python.h>
#include <torch/library.h>

extern "C" {
// `import se_fused._C` loads this library, which runs the registrations below.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(se_fused, m) {
  // y = x * gate(w2 @ activation(w1 @ mean_hw(x) + b1) + b2), per (sample, channel).
  // Returns y (x's shape, dtype and memory format) and, for the backward, the
  // gate MLP's state in the accumulation dtype (float64 for float32/float64 x,
  // float32 for float16/bfloat16): the pooled means [N, C] and the
  // pre-activations z1 = w1 @ pooled + b1 [N, hidden] and z2 [N, C].
  m.def(
      "squeeze_excite(Tensor x, Tensor w1, Tensor? b1, Tensor w2, Tensor? b2, "
      "str activation, str gate) -> (Tensor y, Tensor pooled, Tensor z1, Tensor z2)");
  // Returns dx, dw1, db1, dw2, db2 from the forward's saved state (no MLP is
  // recomputed, so the biases are not needed; their gradients are computed
  // whether or not they exist: they are cheap).
  m.def(
      "_squeeze_excite_backward(Tensor dy, Tensor x, Tensor pooled, Tensor z1, Tensor z2, "
      "Tensor w1, Tensor w2, str activation, str gate) "
      "-> (Tensor dx, Tensor dw1, Tensor db1, Tensor dw2, Tensor db2)");
}
