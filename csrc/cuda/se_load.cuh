// Loads, stores, 16-byte packs and conversions between the tensor type T and
// the accumulation type acc_t<T> (se_math.h), plus the epilogue that forms
// y = x * s or dx = dy * s + g rounded once to T. Nothing here synchronises.
#pragma once

#include <cuda/se_sync.h>  // first: the emulator's wraps it (CUDA keywords)

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "se_math.h"

namespace se_fused {
namespace cuda_kernels {

constexpr int kThreads = 256;  // every kernel: 8 warps
constexpr int kWarps = kThreads / 32;

template <typename T>
struct Vec {
  static constexpr int V = 16 / static_cast<int>(sizeof(T));  // elements per 16 bytes
};

// ---------------------------------------------------------------- scalars

__device__ __forceinline__ double to_acc(float v) { return static_cast<double>(v); }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_acc(acc_t<T> v);
template <>
__device__ __forceinline__ float from_acc<float>(double v) { return static_cast<float>(v); }
template <>
__device__ __forceinline__ double from_acc<double>(double v) { return v; }
template <>
__device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

__device__ __forceinline__ float fma_acc(float a, float b, float c) { return fmaf(a, b, c); }
__device__ __forceinline__ double fma_acc(double a, double b, double c) { return fma(a, b, c); }

// v / d for the mean over HW (d = HW, r = its reciprocal rounded to A, both
// from the host): q = v r, then one Newton correction with the exact
// remainder fma(-q, d, v). Correctly rounded but for rare ties, and without
// the division's slow-path call (a call's saved registers showed up as
// spills on sm_80). The same code on every path, so the same bits.
template <typename A>
__device__ __forceinline__ A div_by(A v, A d, A r) {
  const A q = v * r;
  return fma_acc(fma_acc(-q, d, v), r, q);
}

// div_by for the squeeze's mean, where an element of x may be infinite: the
// remainder is NaN only where q is infinite (or NaN), and there q stays as it
// is, so that the mean of a map holding +Inf is +Inf, as in PyTorch (the
// correction alone would make it NaN). The backward's dp / HW keeps the plain
// div_by: dp is infinite only past float64 overflow, and the select there cost
// the bf16/fp16 NCHW backward kernel a 20-byte spill on sm_90.
template <typename A>
__device__ __forceinline__ A mean_div(A v, A d, A r) {
  const A q = v * r;
  const A e = fma_acc(-q, d, v);
  return fma_acc(e == e ? e : A(0), r, q);
}

// ------------------------------------------------------- 16-byte packs

__device__ __forceinline__ unsigned word_of(const uint4& u, int k) {
  return k == 0 ? u.x : (k == 1 ? u.y : (k == 2 ? u.z : u.w));
}
__device__ __forceinline__ void set_word(uint4& u, int k, unsigned v) {
  if (k == 0) u.x = v;
  else if (k == 1) u.y = v;
  else if (k == 2) u.z = v;
  else u.w = v;
}

// Element i of a 16-byte pack (i is a compile-time constant after unrolling).
template <typename T>
struct PackIO;
template <>
struct PackIO<float> {
  static __device__ __forceinline__ float get(const uint4& u, int i) {
    return __uint_as_float(word_of(u, i));
  }
  static __device__ __forceinline__ void set(uint4& u, int i, float v) {
    set_word(u, i, __float_as_uint(v));
  }
};
template <>
struct PackIO<double> {
  static __device__ __forceinline__ double get(const uint4& u, int i) {
    return __hiloint2double(static_cast<int>(word_of(u, 2 * i + 1)),
                            static_cast<int>(word_of(u, 2 * i)));
  }
  static __device__ __forceinline__ void set(uint4& u, int i, double v) {
    set_word(u, 2 * i, static_cast<unsigned>(__double2loint(v)));
    set_word(u, 2 * i + 1, static_cast<unsigned>(__double2hiint(v)));
  }
};
__device__ __forceinline__ unsigned short half_word(const uint4& u, int i) {
  const unsigned w = word_of(u, i >> 1);
  return static_cast<unsigned short>((i & 1) ? (w >> 16) : (w & 0xffffu));
}
__device__ __forceinline__ void set_half_word(uint4& u, int i, unsigned short b) {
  const unsigned w = word_of(u, i >> 1);
  set_word(u, i >> 1,
           (i & 1) ? ((w & 0x0000ffffu) | (static_cast<unsigned>(b) << 16))
                   : ((w & 0xffff0000u) | static_cast<unsigned>(b)));
}
template <>
struct PackIO<__half> {
  static __device__ __forceinline__ __half get(const uint4& u, int i) {
    return __ushort_as_half(half_word(u, i));
  }
  static __device__ __forceinline__ void set(uint4& u, int i, __half v) {
    set_half_word(u, i, __half_as_ushort(v));
  }
};
template <>
struct PackIO<__nv_bfloat16> {
  static __device__ __forceinline__ __nv_bfloat16 get(const uint4& u, int i) {
    return __ushort_as_bfloat16(half_word(u, i));
  }
  static __device__ __forceinline__ void set(uint4& u, int i, __nv_bfloat16 v) {
    set_half_word(u, i, __bfloat16_as_ushort(v));
  }
};

__device__ __forceinline__ bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}
// The 16 bytes that start byte_shift bytes into p (then into q, the next
// aligned pack): two aligned loads realigned in registers, for rows that do
// not start on a 16-byte boundary (odd planes such as 7x7). Q: the first
// word, a compile-time index so the words stay in registers.
template <int Q>
__device__ __forceinline__ uint4 realign_words(const uint4& p, const uint4& q, unsigned bits) {
  const unsigned w[8] = {p.x, p.y, p.z, p.w, q.x, q.y, q.z, q.w};
  return make_uint4(__funnelshift_r(w[Q], w[Q + 1], bits), __funnelshift_r(w[Q + 1], w[Q + 2], bits),
                    __funnelshift_r(w[Q + 2], w[Q + 3], bits), __funnelshift_r(w[Q + 3], w[Q + 4], bits));
}
__device__ __forceinline__ uint4 realign16(const uint4& p, const uint4& q, int byte_shift) {
  const unsigned bits = static_cast<unsigned>(byte_shift & 3) * 8u;
  switch (byte_shift >> 2) {
    case 0: return realign_words<0>(p, q, bits);
    case 1: return realign_words<1>(p, q, bits);
    case 2: return realign_words<2>(p, q, bits);
    default: return realign_words<3>(p, q, bits);
  }
}
// Elements by which p is past a 16-byte boundary, or -1 when p is not even
// element-aligned.
template <typename T>
__device__ __forceinline__ int misalign(const T* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  return (a % sizeof(T)) ? -1 : static_cast<int>((a & 15u) / sizeof(T));
}

// Every plain 16-byte load or store (global or shared memory) is ld16 / st16,
// the cache-hinted global ones ld16_last / st16_stream. The CPU emulator
// defines SE_CHECK_ALIGNED16 to check the address (a misaligned one faults on
// a GPU); here it is nothing.
#ifndef SE_CHECK_ALIGNED16
#define SE_CHECK_ALIGNED16(p) ((void)0)
#endif
template <typename T>
__device__ __forceinline__ uint4 ld16(const T* p) {
  SE_CHECK_ALIGNED16(p);
  return *reinterpret_cast<const uint4*>(p);
}
template <typename T>
__device__ __forceinline__ void st16(T* p, uint4 v) {
  SE_CHECK_ALIGNED16(p);
  *reinterpret_cast<uint4*>(p) = v;
}
// Last use of the data: evict-first, keep L2 for what is still to be read.
template <typename T>
__device__ __forceinline__ uint4 ld16_last(const T* p) {
  return __ldcs(reinterpret_cast<const uint4*>(p));
}
template <typename T>
__device__ __forceinline__ void st16_stream(T* p, uint4 v) {
  __stcs(reinterpret_cast<uint4*>(p), v);
}

// ------------------------------------------------------------ epilogues
// y = x * s (forward) or dx = dy * s + g (backward), rounded once to T; with
// the residual gate y = x * s + x and dx = dy * s + (dy + g) (se_math.h
// residual_product: an infinite x where s is 0 gives NaN, as in the plain
// block). Without it the addend is -0 (forward) or g, so that the fma gives
// the product's bits exactly, signed zeros included.

template <typename T, bool kBwd, bool kRes>
struct Epi {  // __half, __nv_bfloat16: float math
  float s = 0.f, g = 0.f;
  __device__ __forceinline__ void init(float s_, float g_) {
    s = s_;
    g = g_;
  }
  __device__ __forceinline__ T apply(T v) const {
    const float a = to_acc(v);
    const float add = kBwd ? (kRes ? a + g : g) : (kRes ? a : -0.f);
    return from_acc<T>(fmaf(a, s, add));
  }
};
template <bool kBwd, bool kRes>
struct Epi<float, kBwd, kRes> {
  SplitGate sg{0.f, 0.f};
  float g = 0.f;
  __device__ __forceinline__ void init(double s_, double g_) {
    sg = split_gate(s_);
    g = static_cast<float>(g_);
  }
  // se_math.h scale_float / scale_add_float, with v clamped to the finite
  // range in the lo term: for finite v the same bits; for an infinite v the
  // plain v * lo would be NaN (lo 0: s 0 or 1, common with saturated gates)
  // or of the sign opposite to v * hi, and the result NaN where the CPU's
  // double product gives the infinity. The residual gate's x is added to the
  // lo term: v * hi + (vf * lo + v), within 1 ULP (the inner rounding is at
  // most half an ULP of x, and |x| <= |y|); v * 0 + v is NaN for infinite v.
  __device__ __forceinline__ float apply(float v) const {
    const float vf = fminf(fmaxf(v, -3.40282347e+38f), 3.40282347e+38f);
    const float add = kBwd ? (kRes ? v + g : g) : (kRes ? v : -0.f);
    return fmaf(v, sg.hi, fmaf(vf, sg.lo, add));
  }
};
template <bool kBwd, bool kRes>
struct Epi<double, kBwd, kRes> {
  double s = 0.0, g = 0.0;
  __device__ __forceinline__ void init(double s_, double g_) {
    s = s_;
    g = g_;
  }
  __device__ __forceinline__ double apply(double v) const {
    return fma(v, s, kBwd ? (kRes ? v + g : g) : (kRes ? v : -0.0));
  }
};

template <typename T, typename E>
__device__ __forceinline__ uint4 apply_pack(const E& e, uint4 u) {
  uint4 o = make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
  for (int i = 0; i < Vec<T>::V; ++i) PackIO<T>::set(o, i, e.apply(PackIO<T>::get(u, i)));
  return o;
}

// out[i] = e(in[i]) for one contiguous plane of len elements, by a G-lane
// group: scalar head up to the first 16-byte boundary, 16-byte body, scalar
// tail; all scalar when in and out are not equally aligned.
template <typename T, typename E>
__device__ __forceinline__ void scale_plane(const T* in, T* out, int64_t len, int gl, int G,
                                            const E& e) {
  constexpr int V = Vec<T>::V;
  const uintptr_t ai = reinterpret_cast<uintptr_t>(in);
  const uintptr_t ao = reinterpret_cast<uintptr_t>(out);
  int64_t head = len;
  if (((ai ^ ao) & 15u) == 0 && (ai % sizeof(T)) == 0) {
    head = static_cast<int64_t>(((16u - (ai & 15u)) & 15u) / sizeof(T));
    if (head > len) head = len;
  }
  for (int64_t i = gl; i < head; i += G) out[i] = e.apply(in[i]);
  const int64_t nvec = (len - head) / V;
  const T* vin = in + head;
  T* vout = out + head;
  const int64_t step = static_cast<int64_t>(G) * V;  // elements between a lane's vectors
  int64_t k = gl;
  for (; k + 3 * G < nvec; k += 4 * G) {
    const T* src = vin + k * V;
    T* dst = vout + k * V;
    const uint4 u0 = ld16_last(src);
    const uint4 u1 = ld16_last(src + step);
    const uint4 u2 = ld16_last(src + 2 * step);
    const uint4 u3 = ld16_last(src + 3 * step);
    st16_stream(dst, apply_pack<T>(e, u0));
    st16_stream(dst + step, apply_pack<T>(e, u1));
    st16_stream(dst + 2 * step, apply_pack<T>(e, u2));
    st16_stream(dst + 3 * step, apply_pack<T>(e, u3));
  }
  for (; k < nvec; k += G) st16_stream(vout + k * V, apply_pack<T>(e, ld16_last(vin + k * V)));
  for (int64_t i = head + nvec * V + gl; i < len; i += G) out[i] = e.apply(in[i]);
}

}  // namespace cuda_kernels
}  // namespace se_fused
