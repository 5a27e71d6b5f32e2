// The SE block's scalar math, shared by the CPU and CUDA kernels.
//
// Data path, per sample n (x is [N, C, H, W], hidden = w1.size(0)):
//   squeeze : p[c]  = mean_hw x[c, hw]                      (pooled, acc_t)
//   excite  : z1[j] = b1[j] + sum_c w1[j, c] p[c]           (hidden pre-activation)
//             a[j]  = activation(z1[j])
//             z2[c] = b2[c] + sum_j w2[c, j] a[j]
//             s[c]  = gate(z2[c])                           (the gate, acc_t)
//   scale   : y[c, hw] = x[c, hw] * s[c]                    (rounded once to T)
// (The excitation above is the two-FC one; Excitation below names the others,
// and the residual gate scales by s + 1.)
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

enum class Activation : int32_t { ReLU = 0, SiLU = 1, HardSwish = 2 };
enum class Gate : int32_t { Sigmoid = 0, HardSigmoid = 1 };

// The excitation: the one step between squeeze and scale, pooled [C] -> z2 [C]
// (the gate's pre-activation). Only TwoFC has a hidden layer (z1, activation).
enum class Excitation : int32_t {
  TwoFC = 0,        // z2 = w2 activation(w1 p + b1) + b2; w1 [hidden, C], w2 [C, hidden] (SE)
  OneFC = 1,        // z2 = w1 p + b1; w1 [C, C], b1 [C] (eSE)
  ECA = 2,          // z2[c] = b1 + sum_t w1[t] p[c + t - k/2], w1 [k], k odd, b1 [1]:
                    // a 1-D convolution over the channels, zero padding (ECA-Net)
  ECACircular = 3,  // the same, the channel index taken modulo C (timm CecaModule)
};

// The channel that tap t of a size-k ECA kernel reads for output channel c, or
// -1 where it reads the zero padding (never for ECACircular, whose k / 2 <= C).
// The taps are summed in order t = 0, 1, ..., k - 1; a padding tap adds nothing
// (not w * 0: non-finite weights at the edges do not spread NaN).
SE_HOST_DEVICE int64_t eca_source(int64_t c, int64_t t, int64_t k, int64_t C, bool circular) {
  int64_t i = c + t - k / 2;
  if (circular) return i < 0 ? i + C : (i >= C ? i - C : i);
  return (i < 0 || i >= C) ? -1 : i;
}

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

// The bits of a float (double) as an integer and back: memcpy on the host,
// the register moves on the device (no local-memory round trip).
SE_HOST_DEVICE int32_t se_bits(float v) {
#if defined(__CUDA_ARCH__)
  return __float_as_int(v);
#else
  int32_t b;
  __builtin_memcpy(&b, &v, sizeof(v));
  return b;
#endif
}
SE_HOST_DEVICE int64_t se_bits(double v) {
#if defined(__CUDA_ARCH__)
  return __double_as_longlong(v);
#else
  int64_t b;
  __builtin_memcpy(&b, &v, sizeof(v));
  return b;
#endif
}
SE_HOST_DEVICE float se_from_bits(int32_t b) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(b);
#else
  float v;
  __builtin_memcpy(&v, &b, sizeof(v));
  return v;
#endif
}
SE_HOST_DEVICE double se_from_bits(int64_t b) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(b);
#else
  double v;
  __builtin_memcpy(&v, &b, sizeof(v));
  return v;
#endif
}

// exp on the host and on the device alike (one function, so that the GPU's
// bits are the CPU kernels' and the emulator's): Cody-Waite reduction
// x = k ln2 + r, |r| <= ln2 / 2, a Taylor polynomial for exp(r) (degree 13 in
// double, 7 in float: truncation below the format's rounding), times 2^k built
// in the exponent bits. No branches and no library call, so the CPU kernels'
// loops over the gate vectorise (GCC if-converts the clamps only under
// -fno-trapping-math, which setup.py passes). Every step is one IEEE operation
// rounded to nearest: the host builds without contraction (-ffp-contract=off),
// the device with --fmad=false (setup.py), and the coefficients are constants
// (the loops unroll and fold). Accurate to a few ULP; NaN stays NaN; the input
// is clamped to where 2^k is a normal number (the gate saturates long before).
// ln2 = ln2_hi + ln2_lo with ln2_hi short enough that k * ln2_hi is exact.
template <typename F, typename I, int kMantissa, int kBias, int kDegree>
SE_HOST_DEVICE F exp_poly(F x, F lo, F hi, F ln2_hi, F ln2_lo) {
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const F shifter = F(1.5) * F(I(1) << kMantissa);  // rounds x / ln2 into the low bits
  const F kd = x * F(1.4426950408889634) + shifter;
  const F k = kd - shifter;
  const F r = (x - k * ln2_hi) - k * ln2_lo;
  F inv_fact = F(1);
  F coef[kDegree + 1];
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int i = 0; i <= kDegree; ++i) {
    coef[i] = inv_fact;
    inv_fact /= F(i + 1);
  }
  F poly = coef[kDegree];
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int i = kDegree - 1; i >= 0; --i) poly = poly * r + coef[i];
  const I scale_bits = (se_bits(kd) - se_bits(shifter) + I(kBias)) << kMantissa;
  return poly * se_from_bits(scale_bits);
}

// Past the format's overflow threshold exp is +Inf, as the library's is, so
// that sigmoid(-Inf) and sigmoid(z) for z below -88.7 (float) or -709.8
// (double) are exactly 0 as in PyTorch (x * 0 is NaN for an infinite x: the
// NaN and Inf masks follow the plain block's).
SE_HOST_DEVICE float se_exp(float v) {
  const float e = exp_poly<float, int32_t, 23, 127, 7>(v, -87.0f, 88.0f, 0.693145751953125f,
                                                       1.428606765330187045e-06f);
  return v > 88.72283905206835f ? INFINITY : e;
}
SE_HOST_DEVICE double se_exp(double v) {
  const double e = exp_poly<double, int64_t, 52, 1023, 13>(
      v, -708.0, 709.0, 6.93147180369123816490e-01, 1.90821492927058770002e-10);
  return v > 709.782712893384 ? static_cast<double>(INFINITY) : e;
}

template <typename A>
SE_HOST_DEVICE A sigmoid(A z) {
  return A(1) / (A(1) + se_exp(-z));
}

// NaN and Inf follow PyTorch's kernels, so that the fused block's NaN and Inf
// masks are the plain block's: relu(NaN) = NaN; the backward of relu and of
// hardsigmoid selects (threshold_backward: z <= 0 ? 0 : g, so a NaN gradient
// becomes 0 where the unit is off and passes where z is NaN), the backward of
// sigmoid and SiLU multiplies.
template <typename A>
SE_HOST_DEVICE A activation_fwd(Activation act, A z) {
  if (act == Activation::ReLU) return (z > A(0) || z != z) ? z : A(0);
  if (act == Activation::HardSwish) {  // z * relu6(z + 3) / 6, as PyTorch orders it
    const A t = z + A(3);
    return z * (t <= A(0) ? A(0) : (t >= A(6) ? A(6) : t)) / A(6);
  }
  return z * sigmoid(z);  // SiLU
}

// g * d activation(z) / dz, for the gradient g of activation(z) (relu'(0) = 0;
// hardswish' as PyTorch's hardswish_backward: 0 below -3, z / 3 + 1/2 up to 3,
// then 1, selected; z / 3 rounded through 1/3).
template <typename A>
SE_HOST_DEVICE A activation_backward(Activation act, A z, A g) {
  if (act == Activation::ReLU) return z <= A(0) ? A(0) : g;
  if (act == Activation::HardSwish) {
    // z / 3 as a multiply: on the GPU a division is a slow-path call, which cost
    // the backward kernels a spill.
    return z < A(-3) ? A(0) : (z <= A(3) ? g * (z * A(1.0 / 3.0) + A(0.5)) : g);
  }
  const A sg = sigmoid(z);
  return g * (sg * (A(1) + z * (A(1) - sg)));
}

template <typename A>
SE_HOST_DEVICE A gate_fwd(Gate gate, A z) {
  if (gate == Gate::Sigmoid) return sigmoid(z);
  // hardsigmoid: relu6(z + 3) / 6
  const A t = z + A(3);
  return (t <= A(0) ? A(0) : (t >= A(6) ? A(6) : t)) / A(6);
}

// g * d gate(z) / dz for the gradient g of s = gate(z), with PyTorch's
// conventions (hardsigmoid' = 1/6 on (-3, 3), selected; sigmoid' = s (1 - s)).
template <typename A>
SE_HOST_DEVICE A gate_backward(Gate gate, A z, A s, A g) {
  if (gate == Gate::Sigmoid) return g * (s * (A(1) - s));
  return (z > A(-3) && z < A(3)) ? g * (A(1) / A(6)) : A(0);
}

// The residual gate (MONAI's add_residual): y = x * s + x and dx = dy * s + dy
// + dp / HW, formed in that order in acc_t (one rounding to T at the end), so
// that an infinite x where s is exactly 0 gives NaN as in the plain block
// (x * (s + 1) would give the infinity); the gate's derivative uses s.
template <typename A>
SE_HOST_DEVICE A residual_product(A v, A s) {
  return v * s + v;
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
