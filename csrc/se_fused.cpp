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
