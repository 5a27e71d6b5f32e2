// The se_fused operators: one schema for every backend. Kernels register
// per dispatch key: the backends in csrc/cpu/ and csrc/cuda/, autograd and
// autocast in csrc/se_autograd.cpp; the fake (meta) kernels for
// torch.compile in Python (se_fused/_ops.py).
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
  // y = x * gate(w2 @ activation(w1 @ mean_hw(x) + b1) + b2), per (sample, channel):
  // y has x's shape, dtype and memory format. The op users call: differentiable
  // (csrc/se_autograd.cpp); without a gradient to record it writes only y.
  m.def(
      "squeeze_excite(Tensor x, Tensor w1, Tensor? b1, Tensor w2, Tensor? b2, "
      "str activation, str gate) -> Tensor");
  // The forward that keeps what the backward needs: y and the gate MLP's state
  // in the accumulation dtype (float64 for float32/float64 x, float32 for
  // float16/bfloat16): the pooled means [N, C] and the pre-activations
  // z1 = w1 @ pooled + b1 [N, hidden] and z2 [N, C].
  m.def(
      "_squeeze_excite_forward(Tensor x, Tensor w1, Tensor? b1, Tensor w2, Tensor? b2, "
      "str activation, str gate) -> (Tensor y, Tensor pooled, Tensor z1, Tensor z2)");
  // dx, dw1, db1, dw2, db2 from the forward's saved state (no MLP is recomputed,
  // so the biases themselves are not needed). db1 ([hidden]) and db2 ([C]) are
  // computed only when asked for; otherwise they are returned empty ([0]).
  m.def(
      "_squeeze_excite_backward(Tensor dy, Tensor x, Tensor pooled, Tensor z1, Tensor z2, "
      "Tensor w1, Tensor w2, str activation, str gate, bool want_db1, bool want_db2) "
      "-> (Tensor dx, Tensor dw1, Tensor db1, Tensor dw2, Tensor db2)");
}
