// Vector lanes for the CPU kernels' fixed-order sums, and how tensor elements
// are stored and converted to the accumulation type.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <utility>
#if defined(__AVX512F__) || defined(__F16C__)
#include <immintrin.h>
#endif

namespace se_fused::cpu {

// Independent partial sums per dot product: one 64-byte vector of A, held in
// a GCC/Clang vector type so the compiler keeps it in one register (a zmm,
// or two ymm) instead of choosing its own vectorisation across rows.
template <typename A>
constexpr int64_t kLanes = 64 / sizeof(A);
// `index`: integer lanes of A's width (the lane indices of __builtin_shuffle).
template <typename A>
struct VecType;  // (vector_size is ignored on a dependent alias: one typedef per type)
template <>
struct VecType<float> {
  typedef float type __attribute__((vector_size(64)));
  typedef int32_t index __attribute__((vector_size(64)));
};
template <>
struct VecType<double> {
  typedef double type __attribute__((vector_size(64)));
  typedef int64_t index __attribute__((vector_size(64)));
};
template <typename A>
using Vec = typename VecType<A>::type;

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
// Fixed-order reductions.

// kLanes<A> elements from p, converted to A (one vector load and convert).
template <typename A, typename T>
inline Vec<A> load_lanes(const T* p) {
  Vec<A> v;
  for (int64_t l = 0; l < kLanes<A>; ++l) v[l] = to_acc<A>(p[l]);
  return v;
}

// The same as one load (and one convert): built lane by lane, GCC assembles
// a 64-byte vector on AVX2 targets through general registers (vpinsrq).
template <>
inline Vec<float> load_lanes<float, float>(const float* p) {
  Vec<float> v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

template <>
inline Vec<double> load_lanes<double, double>(const double* p) {
  Vec<double> v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

template <>
inline Vec<double> load_lanes<double, float>(const float* p) {
  typedef float Float8 __attribute__((vector_size(32)));
  Float8 f;
  __builtin_memcpy(&f, p, sizeof(f));
  return __builtin_convertvector(f, Vec<double>);
}

// bfloat16 (its bits; accumulated in float): a float's bits are the bfloat16's
// shifted left by 16, done on a vector of integers so that it stays one.
template <typename A>
inline Vec<A> load_lanes(const uint16_t* p) {
  static_assert(sizeof(A) == 4, "bfloat16 accumulates in float");
  typedef uint32_t Bits __attribute__((vector_size(64)));
  Bits bits;
  for (int64_t l = 0; l < kLanes<A>; ++l) bits[l] = static_cast<uint32_t>(p[l]) << 16;
  Vec<A> v;
  __builtin_memcpy(&v, &bits, sizeof(v));
  return v;
}

#if defined(__FLT16_MAX__) && (defined(__AVX512F__) || defined(__F16C__))
// float16 (accumulated in float): the F16C conversion (the compiler does not
// find it for a vector's lanes by itself). Other targets take the general load.
template <typename A>
inline Vec<A> load_lanes(const _Float16* p) {
  static_assert(sizeof(A) == 4, "float16 accumulates in float");
  Vec<A> v;
#if defined(__AVX512F__)
  const __m512 f = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  __builtin_memcpy(&v, &f, sizeof(v));
#elif defined(__F16C__)
  const __m256 lo = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  const __m256 hi = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)));
  __builtin_memcpy(&v, &lo, sizeof(lo));
  __builtin_memcpy(reinterpret_cast<char*>(&v) + sizeof(lo), &hi, sizeof(hi));
#endif
  return v;
}
#endif

// fma(a, b, c) lane by lane (compiled to one vector FMA where the target has it).
template <typename A>
inline Vec<A> fma_lanes(const Vec<A>& a, const Vec<A>& b, const Vec<A>& c) {
  Vec<A> r;
#pragma omp simd
  for (int64_t l = 0; l < kLanes<A>; ++l) r[l] = std::fma(a[l], b[l], c[l]);
  return r;
}

// The sums below keep kLanes partial sums over the full blocks of kLanes
// elements, add them in a fixed tree, then add the tail in order. The tail
// has its own accumulator so that the lanes stay in registers.
template <typename A>
inline A sum_lanes(const Vec<A>& v) {
  A lanes[kLanes<A>];
  __builtin_memcpy(lanes, &v, sizeof(lanes));
  for (int64_t w = kLanes<A> / 2; w > 0; w /= 2)
    for (int64_t l = 0; l < w; ++l) lanes[l] += lanes[l + w];
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
inline Vec<A> fold_pair(const Vec<A>& a, const Vec<A>& b, std::index_sequence<O...>) {
  constexpr int V = kLanes<A>;
#if defined(__clang__) || __GNUC__ >= 12
  const Vec<A> lo = __builtin_shufflevector(a, b, fold_index(O, S, V, 0)...);
  const Vec<A> hi = __builtin_shufflevector(a, b, fold_index(O, S, V, 1)...);
#else  // GCC before 12 has only __builtin_shuffle
  using Index = typename VecType<A>::index;
  const Vec<A> lo = __builtin_shuffle(a, b, Index{fold_index(O, S, V, 0)...});
  const Vec<A> hi = __builtin_shuffle(a, b, Index{fold_index(O, S, V, 1)...});
#endif
  return lo + hi;
}

template <int S, typename A>
inline void fold_rows(Vec<A>* v) {  // S vectors of S-lane rows -> S / 2 of (S / 2)-lane rows
  if constexpr (S > 1) {
    for (int i = 0; i < S / 2; ++i)
      v[i] = fold_pair<S, A>(v[2 * i], v[2 * i + 1], std::make_index_sequence<kLanes<A>>());
    fold_rows<S / 2, A>(v);
  }
}

constexpr int bit_reverse(int o, int n) {  // o's bits in reverse order, for 0 <= o < n = 2^k
  int r = 0;
  for (int b = 1; b < n; b *= 2) r = 2 * r + (o & b ? 1 : 0);
  return r;
}

// sum_lanes of kLanes vectors at once, the same additions in the same tree:
// each step adds the upper half of every row's live lanes to the lower half,
// two rows per vector (shuffled side by side), so that the kLanes rows end in
// one vector, lane o holding row bit_reverse(o). out[r] = sum_lanes(v[r]).
template <typename A>
inline void sum_lanes_rows(Vec<A>* v, A* out) {  // v: kLanes vectors, overwritten
  fold_rows<kLanes<A>, A>(v);
#pragma GCC unroll 16
  for (int o = 0; o < kLanes<A>; ++o) out[bit_reverse(o, kLanes<A>)] = v[0][o];
}

// A vector of kLanes copies of s (written as an initializer list: one
// broadcast; a loop over the lanes compiles to masked inserts).
template <typename A, std::size_t... I>
inline Vec<A> splat(A s, std::index_sequence<I...>) {
  return Vec<A>{((void)I, s)...};
}

template <typename A>
inline Vec<A> splat(A s) {
  return splat<A>(s, std::make_index_sequence<kLanes<A>>());
}

}  // namespace se_fused::cpu
