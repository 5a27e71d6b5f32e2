// The SE block's scalar math, shared by the CPU and CUDA kernels.
//
// Data path, per sample n (x is [N, C, H, W], hidden = w1.size(0)):
//   squeeze : p[c]  = mean_hw x[c, hw]                      (pooled, acc_t)
//   excite  : z1[j] = b1[j] + sum_c w1[j, c] p[c]           (hidden pre-activation)
//             a[j]  = activation(z1[j])
//             z2[c] = b2[c] + sum_j w2[c, j] a[j]
//             s[c]  = gate(z2[c])                           (the gate, acc_t)
//   scale   : y[c, hw] = x[c, hw] * s[c]                    (rounded once to T)
// Backward (dy given):
//   ds[c]  = sum_hw dy[c, hw] x[c, hw]
//   dz2[c] = ds[c] * gate'(z2[c]);        db2 += dz2, dw2 += dz2 (x) a
//   da[j]  = sum_c w2[c, j] dz2[c];       dz1[j] = da[j] * activation'(z1[j])
//   db1 += dz1, dw1 += dz1 (x) p;         dp[c] = sum_j w1[j, c] dz1[j]
//   dx[c, hw] = dy[c, hw] * s[c] + dp[c] / HW
//
// Numerics: everything between the load of x and the store of y runs in acc_t
// (double for float and double tensors, float for half and bfloat16), so the
// output is rounded once. For float tensors the CUDA kernels form x * s from
// the double gate split into two floats (scale_float), which rounds like
// (float)((double)x * s) without double multiplies in the hot loop; the CPU
// kernels multiply in double (vectorisable without FMA hardware).
//
// This header includes no torch headers: nvcc compiles it for the kernels.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define SE_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define SE_HOST_DEVICE inline
#endif

namespace se_fused {

enum class Activation : int32_t { ReLU = 0, SiLU = 1 };
enum class Gate : int32_t { Sigmoid = 0, HardSigmoid = 1 };

// Accumulation type: double for float/double tensors, float for 16-bit ones.
template <typename T>
struct AccType {
  using type = float;
};
template <>
struct AccType<float> {
  using type = double;
};
template <>
struct AccType<double> {
  using type = double;
};
template <typename T>
using acc_t = typename AccType<T>::type;

SE_HOST_DEVICE float se_exp(float v) {
#if defined(__CUDA_ARCH__)
  return expf(v);
#else
  return std::exp(v);
#endif
}
SE_HOST_DEVICE double se_exp(double v) {
#if defined(__CUDA_ARCH__)
  return exp(v);
#else
  return std::exp(v);
#endif
}

template <typename A>
SE_HOST_DEVICE A sigmoid(A z) {
  return A(1) / (A(1) + se_exp(-z));
}

template <typename A>
SE_HOST_DEVICE A activation_fwd(Activation act, A z) {
  if (act == Activation::ReLU) return z > A(0) ? z : A(0);
  return z * sigmoid(z);  // SiLU
}

// d activation(z) / dz, with PyTorch's conventions (relu'(0) = 0).
template <typename A>
SE_HOST_DEVICE A activation_grad(Activation act, A z) {
  if (act == Activation::ReLU) return z > A(0) ? A(1) : A(0);
  const A sg = sigmoid(z);
  return sg * (A(1) + z * (A(1) - sg));
}

template <typename A>
SE_HOST_DEVICE A gate_fwd(Gate gate, A z) {
  if (gate == Gate::Sigmoid) return sigmoid(z);
  // hardsigmoid: relu6(z + 3) / 6
  const A t = z + A(3);
  return (t <= A(0) ? A(0) : (t >= A(6) ? A(6) : t)) / A(6);
}

// d gate(z) / dz, with PyTorch's conventions (hardsigmoid' = 1/6 on (-3, 3)).
template <typename A>
SE_HOST_DEVICE A gate_grad(Gate gate, A z) {
  if (gate == Gate::Sigmoid) {
    const A sg = sigmoid(z);
    return sg * (A(1) - sg);
  }
  return (z > A(-3) && z < A(3)) ? A(1) / A(6) : A(0);
}

// The gate of one (sample, channel) in the form the scale loop wants: for
// float tensors a double gate is split into hi + lo floats so that
// fma(x, hi, x * lo) rounds like (float)((double)x * s).
struct SplitGate {
  float hi;
  float lo;
};

SE_HOST_DEVICE SplitGate split_gate(double s) {
  const float hi = static_cast<float>(s);
  return SplitGate{hi, static_cast<float>(s - static_cast<double>(hi))};
}

SE_HOST_DEVICE float scale_float(float x, SplitGate g) {
#if defined(__CUDA_ARCH__)
  return fmaf(x, g.hi, x * g.lo);
#else
  return std::fma(x, g.hi, x * g.lo);
#endif
}

// dx for float tensors: dy * s + g (g = dp / HW), with the same split gate.
SE_HOST_DEVICE float scale_add_float(float dy, SplitGate s, float g) {
#if defined(__CUDA_ARCH__)
  return fmaf(dy, s.hi, fmaf(dy, s.lo, g));
#else
  return std::fma(dy, s.hi, std::fma(dy, s.lo, g));
#endif
}

}  // namespace se_fused
