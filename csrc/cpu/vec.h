// Vector lanes for the CPU kernels' fixed-order sums, and how tensor elements
// are stored and converted to the accumulation type.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <utility>
#if defined(__AVX512F__) || defined(__FMA__) || defined(__F16C__)
#include <immintrin.h>
#endif

namespace se_fused::cpu {

// ---------------------------------------------------------------------------
// Element storage. The kernels see 16-bit tensors as plain scalars so that
// their loops vectorise (through c10::Half / c10::BFloat16, structs, the
// compiler assembles vectors one element at a time): float16 as _Float16
// (converted by the F16C instructions), bfloat16 as its uint16_t bits.

template <typename T>
struct Storage {
  using type = T;
};
template <>
struct Storage<c10::BFloat16> {
  using type = uint16_t;
};
#if defined(__FLT16_MAX__)
template <>
struct Storage<c10::Half> {
  using type = _Float16;
};
#endif

template <typename A, typename S>
inline A to_acc(S v) {
  return static_cast<A>(v);
}

template <typename A>
inline A to_acc(uint16_t bf16_bits) {
  const uint32_t bits = static_cast<uint32_t>(bf16_bits) << 16;
  float f;
  __builtin_memcpy(&f, &bits, sizeof(f));
  return static_cast<A>(f);
}

template <typename S, typename A>
inline S from_acc(A v) {
  return static_cast<S>(v);
}

template <>
inline uint16_t from_acc<uint16_t, float>(float v) {  // round to nearest even; NaN stays NaN
  uint32_t bits;
  __builtin_memcpy(&bits, &v, sizeof(bits));
  const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  return v != v ? uint16_t(0x7FC0) : static_cast<uint16_t>(rounded);
}


// ---------------------------------------------------------------------------
// Vector lanes. A sum keeps kLanes<A> independent partial sums (64 bytes of
// A), lane l taking the terms l, l + kLanes, ... The lanes are held in
// Vec<A>: kParts vectors of the target's register width (one zmm with
// AVX-512, two ymm with AVX2, four xmm otherwise), so that the compiler keeps
// each in a register. (A 64-byte GCC vector type has no register mode without
// AVX-512: GCC keeps it on the stack and lowers each operation to loads and
// stores of 16- or 32-byte pieces, with store-forwarding stalls where a value
// written in halves is read whole.) The lane structure, and so every sum's
// order, is the same on every target.

#if defined(__AVX512F__)
constexpr int kRegBytes = 64;
#elif defined(__AVX__)
constexpr int kRegBytes = 32;
#else
constexpr int kRegBytes = 16;
#endif
constexpr int kParts = 64 / kRegBytes;

template <typename A>
constexpr int64_t kLanes = 64 / sizeof(A);
template <typename A>
constexpr int kRegLanes = kRegBytes / sizeof(A);

// One register of A. `index`: integer lanes of A's width (the lane indices
// of __builtin_shuffle).
template <typename A>
struct RegType;  // (vector_size is ignored on a dependent alias: one typedef per type)
template <>
struct RegType<float> {
  typedef float type __attribute__((vector_size(kRegBytes)));
  typedef int32_t index __attribute__((vector_size(kRegBytes)));
};
template <>
struct RegType<double> {
  typedef double type __attribute__((vector_size(kRegBytes)));
  typedef int64_t index __attribute__((vector_size(kRegBytes)));
};
template <typename A>
using Reg = typename RegType<A>::type;

template <typename A>
struct Vec {
  Reg<A> part[kParts];  // lanes [i * kRegLanes, (i + 1) * kRegLanes) in part i
};

template <typename A>
inline Vec<A> operator+(const Vec<A>& a, const Vec<A>& b) {
  Vec<A> r;
#pragma GCC unroll 4
  for (int i = 0; i < kParts; ++i) r.part[i] = a.part[i] + b.part[i];
  return r;
}

// fma(a, b, c) lane by lane: one vector FMA per part where the target has it
// (written lane by lane, the vectorised loop's result is rebuilt in the
// register one lane at a time, through the stack).
template <typename A>
inline Reg<A> fma_reg(const Reg<A>& a, const Reg<A>& b, const Reg<A>& c) {
#if defined(__AVX512F__)
  if constexpr (sizeof(A) == 8) return (Reg<A>)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
  if constexpr (sizeof(A) == 4) return (Reg<A>)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#elif defined(__FMA__)
  if constexpr (sizeof(A) == 8) return (Reg<A>)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
  if constexpr (sizeof(A) == 4) return (Reg<A>)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#endif
  Reg<A> r;
  for (int l = 0; l < kRegLanes<A>; ++l) r[l] = std::fma(a[l], b[l], c[l]);
  return r;
}

template <typename A>
inline Vec<A> fma_lanes(const Vec<A>& a, const Vec<A>& b, const Vec<A>& c) {
  Vec<A> r;
#pragma GCC unroll 4
  for (int i = 0; i < kParts; ++i) r.part[i] = fma_reg<A>(a.part[i], b.part[i], c.part[i]);
  return r;
}

// A vector of copies of s (written as an initializer list: one broadcast; a
// loop over the lanes compiles to inserts).
template <typename A, std::size_t... I>
inline Reg<A> splat_reg(A s, std::index_sequence<I...>) {
  return Reg<A>{((void)I, s)...};
}

template <typename A>
inline Vec<A> splat(A s) {
  Vec<A> v;
  const Reg<A> r = splat_reg<A>(s, std::make_index_sequence<kRegLanes<A>>());
  for (int i = 0; i < kParts; ++i) v.part[i] = r;
  return v;
}

// kRegLanes<A> elements from p, converted to A: one load and one conversion
// where the target has one.
template <typename A, typename T>
inline Reg<A> load_reg(const T* p) {
  Reg<A> v;
  for (int l = 0; l < kRegLanes<A>; ++l) v[l] = to_acc<A>(p[l]);
  return v;
}

template <>
inline Reg<float> load_reg<float, float>(const float* p) {
  Reg<float> v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

template <>
inline Reg<double> load_reg<double, double>(const double* p) {
  Reg<double> v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

template <>
inline Reg<double> load_reg<double, float>(const float* p) {
// (GCC lowers the generic conversion to two halves, two conversions and an
// insert: five instructions where one conversion from memory does.)
#if defined(__AVX512F__)
  return (Reg<double>)_mm512_cvtps_pd(_mm256_loadu_ps(p));
#elif defined(__AVX__)
  return (Reg<double>)_mm256_cvtps_pd(_mm_loadu_ps(p));
#else
  typedef float Floats __attribute__((vector_size(kRegBytes / 2)));
  Floats f;
  __builtin_memcpy(&f, p, sizeof(f));
  return __builtin_convertvector(f, Reg<double>);
#endif
}

// Two registers of doubles, rounded to floats and concatenated.
template <std::size_t... I>
inline Reg<float> load_reg_rounded(const double* p, std::index_sequence<I...>) {
  typedef float Floats __attribute__((vector_size(kRegBytes / 2)));
  Reg<double> lo, hi;
  __builtin_memcpy(&lo, p, sizeof(lo));
  __builtin_memcpy(&hi, p + kRegLanes<double>, sizeof(hi));
  return __builtin_shufflevector(__builtin_convertvector(lo, Floats),
                                 __builtin_convertvector(hi, Floats), I...);
}

template <>
inline Reg<float> load_reg<float, double>(const double* p) {
  return load_reg_rounded(p, std::make_index_sequence<kRegLanes<float>>());
}

// bfloat16 (its bits; accumulated in float): a float's bits are the bfloat16's
// shifted left by 16, done on a vector of integers so that it stays one.
template <>
inline Reg<float> load_reg<float, uint16_t>(const uint16_t* p) {
  typedef uint16_t Bits16 __attribute__((vector_size(kRegBytes / 2)));
  typedef uint32_t Bits32 __attribute__((vector_size(kRegBytes)));
  Bits16 b;
  __builtin_memcpy(&b, p, sizeof(b));
  const Bits32 bits = __builtin_convertvector(b, Bits32) << 16;
  Reg<float> v;
  __builtin_memcpy(&v, &bits, sizeof(v));
  return v;
}

#if defined(__FLT16_MAX__) && defined(__F16C__)  // (F16C implies AVX: kRegBytes >= 32)
// float16 (accumulated in float): the F16C conversion (the compiler does not
// find it for a vector's lanes by itself). Other targets take the general load.
template <>
inline Reg<float> load_reg<float, _Float16>(const _Float16* p) {
#if defined(__AVX512F__)
  const __m512 f = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
#else
  const __m256 f = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
#endif
  Reg<float> v;
  __builtin_memcpy(&v, &f, sizeof(v));
  return v;
}
#endif

// kLanes<A> elements from p, converted to A.
template <typename A, typename T>
inline Vec<A> load_lanes(const T* p) {
  Vec<A> v;
#pragma GCC unroll 4
  for (int i = 0; i < kParts; ++i) v.part[i] = load_reg<A>(p + i * kRegLanes<A>);
  return v;
}

// ---------------------------------------------------------------------------
// Fixed-order reductions. The sums below keep kLanes partial sums over the
// full blocks of kLanes elements, add them in a fixed tree (lane l += lane
// l + w for w = kLanes / 2, ..., 2, 1), then add the tail in order. The tail
// has its own accumulator so that the lanes stay in registers.

// The tree's steps with w >= kRegLanes: whole parts added pairwise.
template <typename A>
inline Reg<A> fold_parts(const Vec<A>& v) {
  Reg<A> p[kParts];
  for (int i = 0; i < kParts; ++i) p[i] = v.part[i];
#pragma GCC unroll 4
  for (int w = kParts / 2; w > 0; w /= 2)
    for (int i = 0; i < w; ++i) p[i] = p[i] + p[i + w];
  return p[0];
}

template <typename A>
inline A sum_lanes(const Vec<A>& v) {
  A lanes[kRegLanes<A>];
  const Reg<A> r = fold_parts(v);
  __builtin_memcpy(lanes, &r, sizeof(lanes));
  for (int w = kRegLanes<A> / 2; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) lanes[l] += lanes[l + w];
  return lanes[0];
}

// Lane o of the fold step over S-lane segments: from a (or b, index >= V),
// the lower (hi = 0) or upper (hi = 1) half of its segment.
constexpr int fold_index(int o, int S, int V, int hi) {
  return (o % S < S / 2 ? 0 : V) + o / S * S + o % S % (S / 2) + hi * (S / 2);
}

// a and b hold rows in segments of S lanes; the result holds each segment's
// lower plus upper half, a's and b's segments alternately.
template <int S, typename A, std::size_t... O>
inline Reg<A> fold_pair(const Reg<A>& a, const Reg<A>& b, std::index_sequence<O...>) {
  constexpr int V = kRegLanes<A>;
#if defined(__clang__) || __GNUC__ >= 12
  const Reg<A> lo = __builtin_shufflevector(a, b, fold_index(O, S, V, 0)...);
  const Reg<A> hi = __builtin_shufflevector(a, b, fold_index(O, S, V, 1)...);
#else  // GCC before 12 has only __builtin_shuffle
  using Index = typename RegType<A>::index;
  const Reg<A> lo = __builtin_shuffle(a, b, Index{fold_index(O, S, V, 0)...});
  const Reg<A> hi = __builtin_shuffle(a, b, Index{fold_index(O, S, V, 1)...});
#endif
  return lo + hi;
}

template <int S, typename A>
inline void fold_rows(Reg<A>* v) {  // S registers of S-lane rows -> S / 2 of (S / 2)-lane rows
  if constexpr (S > 1) {
    for (int i = 0; i < S / 2; ++i)
      v[i] = fold_pair<S, A>(v[2 * i], v[2 * i + 1], std::make_index_sequence<kRegLanes<A>>());
    fold_rows<S / 2, A>(v);
  }
}

constexpr int bit_reverse(int o, int n) {  // o's bits in reverse order, for 0 <= o < n = 2^k
  int r = 0;
  for (int b = 1; b < n; b *= 2) r = 2 * r + (o & b ? 1 : 0);
  return r;
}

// Rows summed per sum_lanes_rows call.
template <typename A>
constexpr int kFoldRows = kRegLanes<A>;

// sum_lanes of kFoldRows vectors at once, the same additions in the same
// tree: after fold_parts, each step adds the upper half of every row's live
// lanes to the lower half, two rows per register (shuffled side by side), so
// that the rows end in one register, lane o holding row bit_reverse(o).
// out[r] = sum_lanes(v[r]).
template <typename A>
inline void sum_lanes_rows(const Vec<A>* v, A* out) {
  Reg<A> rows[kFoldRows<A>];
  for (int r = 0; r < kFoldRows<A>; ++r) rows[r] = fold_parts(v[r]);
  fold_rows<kFoldRows<A>, A>(rows);
#pragma GCC unroll 16
  for (int o = 0; o < kFoldRows<A>; ++o) out[bit_reverse(o, kFoldRows<A>)] = rows[0][o];
}

}  // namespace se_fused::cpu
