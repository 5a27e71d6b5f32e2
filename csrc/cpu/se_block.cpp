// The SE block on the CPU: fused forward and backward kernels.
//
// The batch is processed in chunks of samples small enough to stay in the
// cores' caches. For each chunk the data path runs as three parallel phases
// (see se_math.h for the math):
//   forward : squeeze (x -> pooled)  | excite (pooled -> z1, z2, gate) | scale (x, gate -> y)
//   backward: squeeze (dy, x -> ds)  | excite backward (z1, z2 saved)  | dx = dy * s + dp / HW
// then the weight gradients are reduced over the batch. The squeeze and
// scale phases split the chunk into the same tiles (sample, channel block)
// with the same static partition, so each thread re-reads in its scale phase
// the tile it just read in its squeeze phase, from its own cache: x comes
// from memory about once.
//
// Multiply-adds in sums are explicit std::fma (the build turns off the
// compiler's own contraction, so no code path rounds differently from another).
//
// Determinism: every sum has a fixed order that depends on neither the thread
// count nor the batch size: a channel's mean or dot product runs over H x W
// in a fixed pattern (kLanes partial sums, then a fixed tree for NCHW; in
// order of hw for channels_last), the gate MLP's dot products over kLanes
// partial sums, the backward's products in blocks of 64 terms in order.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <type_traits>
#include <utility>
#if defined(__AVX512F__) || defined(__F16C__)
#include <immintrin.h>
#endif
#include <vector>

#include "se_checks.h"
#include "se_math.h"

namespace se_fused {
namespace {

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
constexpr int64_t kTileElems = 16384;       // elements per squeeze/scale tile, about
constexpr int64_t kChunkBytesPerThread = 1 << 20;  // half of a core's L2

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

template <typename S>
S* storage_ptr(const at::Tensor& t) {
  return reinterpret_cast<S*>(t.data_ptr());
}

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

// For r < kRows: out[r] = sum_i a_r[i] (kDot: sum_i a_r[i] * b_r[i]), in A,
// with a_r = a + r * stride (b likewise). Rows run side by side for
// instruction-level parallelism on short rows; each row's order is the same
// whatever kRows is.
template <int kRows, bool kDot, typename A, typename T>
void row_sums(const T* a, const T* b, int64_t stride, int64_t n, A* out) {
  Vec<A> lanes[kRows] = {};
  A tail[kRows] = {};
  int64_t i = 0;
  for (; i + kLanes<A> <= n; i += kLanes<A>) {
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) {
      const Vec<A> v = load_lanes<A>(a + r * stride + i);
      lanes[r] = kDot ? fma_lanes<A>(v, load_lanes<A>(b + r * stride + i), lanes[r]) : lanes[r] + v;
    }
  }
  for (; i < n; ++i)
    for (int r = 0; r < kRows; ++r) {
      const A v = to_acc<A>(a[r * stride + i]);
      tail[r] = kDot ? std::fma(v, to_acc<A>(b[r * stride + i]), tail[r]) : tail[r] + v;
    }
  for (int r = 0; r < kRows; ++r) out[r] = sum_lanes<A>(lanes[r]) + tail[r];
}

// channels_last: out[c] for the kVecs * kLanes channels at a (and b), whose
// rows are C apart: the sum over n rows in order (kDot: of a * b), held in
// registers across the rows.
template <int kVecs, bool kDot, typename A, typename T>
inline void column_sums(const T* a, const T* b, int64_t C, int64_t n, A* out) {
  Vec<A> s[kVecs] = {};
  for (int64_t r = 0; r < n; ++r) {
#pragma GCC unroll 8
    for (int v = 0; v < kVecs; ++v) {
      const Vec<A> x = load_lanes<A>(a + r * C + v * kLanes<A>);
      s[v] = kDot ? fma_lanes<A>(x, load_lanes<A>(b + r * C + v * kLanes<A>), s[v]) : s[v] + x;
    }
  }
  __builtin_memcpy(out, s, sizeof(s));
}

// column_sums over the first `cols` channels: 4 vectors at a time, then one,
// then the channels past the last full vector.
template <bool kDot, typename A, typename T>
void column_sums(const T* a, const T* b, int64_t C, int64_t n, int64_t cols, A* out) {
  constexpr int64_t L = kLanes<A>;
  int64_t c = 0;
  for (; c + 4 * L <= cols; c += 4 * L)
    column_sums<4, kDot>(a + c, kDot ? b + c : b, C, n, out + c);
  for (; c + L <= cols; c += L) column_sums<1, kDot>(a + c, kDot ? b + c : b, C, n, out + c);
  for (; c < cols; ++c) {
    A acc = 0;
    for (int64_t r = 0; r < n; ++r)
      acc = kDot ? std::fma(to_acc<A>(a[r * C + c]), to_acc<A>(b[r * C + c]), acc)
                 : acc + to_acc<A>(a[r * C + c]);
    out[c] = acc;
  }
}

// row_sums over `rows` rows, 4 at a time.
template <bool kDot, typename A, typename T>
void row_sums(const T* a, const T* b, int64_t stride, int64_t n, int64_t rows, A* out) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4)
    row_sums<4, kDot>(a + r * stride, kDot ? b + r * stride : b, stride, n, out + r);
  for (; r < rows; ++r) row_sums<1, kDot>(a + r * stride, kDot ? b + r * stride : b, stride, n, out + r);
}

// The backward's products past the gate (through the weights' transposes,
// and the weight gradients) run in grad_t: float for every tensor type but
// double, as in the plain block. Gradients need the plain block's accuracy
// in the tensor's dtype, not the forward's single rounding; the gate s that
// dx is scaled by, dx's sum and the bias gradients' sums stay in acc_t.
template <typename T>
using grad_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// ---------------------------------------------------------------------------
// How a gate is stored and applied, per tensor dtype: rounding happens once.

// The gate is kept in acc_t and the product formed in acc_t, then rounded
// once to T. (For float tensors that is a double multiply: exact enough for a
// single rounding, and vectorisable without hardware FMA.)
template <typename T>
struct GateOps {
  using A = acc_t<T>;
  static T scale(T x, A s) { return from_acc<T>(to_acc<A>(x) * s); }
  static T scale_add(T dy, A s, A g) { return from_acc<T>(to_acc<A>(dy) * s + g); }
};

// ---------------------------------------------------------------------------
// Tiles: a sample is cut into tiles of contiguous memory, about kTileElems
// each. NCHW: a tile is a block of whole channel planes, so a channel's sum
// is finished inside one tile. channels_last: a tile is a block of H x W rows
// of all C channels, each tile leaves a partial sum per channel, and the
// partials are added in tile order. Tile sizes depend only on C and H x W:
// sums do not change with the thread count or the batch.

struct Tiling {
  int64_t C, HW;
  bool channels_last;
  int64_t span;    // per tile: channels (NCHW) or H x W rows (channels_last)
  int64_t ntiles;  // tiles per sample
  int64_t nparts;  // partial sums per channel: 1 (NCHW) or ntiles

  explicit Tiling(const SEProblem& p) : C(p.C), HW(p.HW), channels_last(p.channels_last) {
    const int64_t extent = channels_last ? HW : C;
    // NCHW: a multiple of 4 channels, which row_sums runs side by side.
    const int64_t quantum = channels_last ? 1 : 4;
    const int64_t want = std::max<int64_t>(kTileElems / (channels_last ? C : HW), 1);
    span = std::min(extent, (want + quantum - 1) / quantum * quantum);
    ntiles = (extent + span - 1) / span;
    nparts = channels_last ? ntiles : 1;
  }

  // Runs fn(sample_in_chunk, begin, end) over the tiles of g samples in
  // parallel, [begin, end) being the tile's channels or rows. Same g, same
  // partition over threads: the phases of a chunk reuse each thread's cache.
  // The second pass (newest_first) takes each thread's tiles in reverse
  // order: it starts with the tiles the first pass read last, the ones most
  // likely still in the cache when a chunk is larger than it.
  template <typename Fn>
  void for_each_tile(int64_t g, bool newest_first, const Fn& fn) const {
    at::parallel_for(0, g * ntiles, 1, [&](int64_t first, int64_t last) {
      for (int64_t i = first; i < last; ++i) {
        const int64_t t = newest_first ? first + last - 1 - i : i;
        const int64_t begin = (t % ntiles) * span;
        fn(t / ntiles, begin, std::min(channels_last ? HW : C, begin + span));
      }
    });
  }

  // The tile's sums of a (or of a * b): parts is the sample's [nparts, C]
  // buffer. a and b point at the sample's first element.
  template <typename A, typename T>
  void reduce(const T* a, const T* b, int64_t begin, int64_t end, A* parts) const {
    if (!channels_last) {
      if (b == nullptr) {
        row_sums<false>(a + begin * HW, b, HW, HW, end - begin, parts + begin);
      } else {
        row_sums<true>(a + begin * HW, b + begin * HW, HW, HW, end - begin, parts + begin);
      }
      return;
    }
    A* acc = parts + (begin / span) * C;
    if (b == nullptr) {
      column_sums<false>(a + begin * C, b, C, end - begin, C, acc);
    } else {
      column_sums<true>(a + begin * C, b + begin * C, C, end - begin, C, acc);
    }
  }

  // Each of g samples' per-channel totals from its partial sums ([nparts, C]
  // per sample), times `factor`, in parallel over the samples.
  template <typename A>
  void finish(int64_t g, const A* parts, A factor, A* out) const {
    const int64_t grain = std::max<int64_t>(1, 32768 / (nparts * C + 1));
    at::parallel_for(0, g, grain, [&](int64_t first, int64_t last) {
      for (int64_t i = first; i < last; ++i) {
        const A* pi = parts + i * nparts * C;
        A* oi = out + i * C;
        for (int64_t c = 0; c < C; ++c) oi[c] = pi[c];
        for (int64_t t = 1; t < nparts; ++t)
          for (int64_t c = 0; c < C; ++c) oi[c] += pi[t * C + c];
        for (int64_t c = 0; c < C; ++c) oi[c] *= factor;
      }
    });
  }

  // out[c, hw] = fn(in[c, hw], c) over the tile.
  template <typename T, typename Fn>
  void map(const T* in, T* out, int64_t begin, int64_t end, const Fn& fn) const {
    if (!channels_last) {
      for (int64_t c = begin; c < end; ++c) {
        const T* i = in + c * HW;
        T* o = out + c * HW;
        for (int64_t k = 0; k < HW; ++k) o[k] = fn(i[k], c);
      }
      return;
    }
    for (int64_t hw = begin; hw < end; ++hw) {
      const T* i = in + hw * C;
      T* o = out + hw * C;
      for (int64_t c = 0; c < C; ++c) o[c] = fn(i[c], c);
    }
  }
};

// Samples per chunk: few enough that a chunk's tensors (bytes_per_sample
// each) stay in the caches. When the chunk's products with the weights cost
// more than the sample's elements (mlp_weight * 2 * C * hidden against
// C * H * W), at least kMlpChunk samples, so that they load the weights once
// per kMlpChunk samples. The forward passes mlp_weight 1; the backward 4: its
// per-chunk products take one sample per register tile below kOuterG samples,
// and larger chunks measured faster there down to hidden = H * W / 8
// (benchmarks/NOTES.md 20, 24).
int64_t chunk_samples(const SEProblem& p, int64_t bytes_per_sample, int64_t mlp_weight) {
  constexpr int64_t kMlpChunk = 32;
  const int64_t budget = kChunkBytesPerThread * at::get_num_threads();
  int64_t g = budget / std::max<int64_t>(bytes_per_sample, 1);
  if (2 * mlp_weight * p.hidden >= p.HW) g = std::max(g, kMlpChunk);
  return std::clamp<int64_t>(g, 1, std::max<int64_t>(p.N, 1));
}

// ---------------------------------------------------------------------------
// The gate MLP's products (small matrices: [G, C] x [C, hidden] and back).
// Register tiles of Vec<A> accumulators, sized for the target's vector
// registers (32 zmm with AVX-512, else 16 ymm, each Vec<A> two of them).
// Tiling changes which sums run side by side, never the order within a sum.

#if defined(__AVX512F__)
constexpr int kDotM = 4, kDotG = 4;      // linear: rows of w x samples per tile
constexpr int kOuterG = 4, kOuterV = 4;  // outer_sums: rows x vectors of columns per tile
#else
constexpr int kDotM = 2, kDotG = 2;
constexpr int kOuterG = 2, kOuterV = 2;
#endif
constexpr int64_t kDotK = 256;            // k per block: a tile's inputs stay in L1
constexpr int64_t kOuterK = 64;           // outer_sums: k per block of a sum
constexpr int64_t kDotPanel = 4 * kDotM;  // rows of w per task of linear

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

// acc[m][g] (rows kDotG apart; from 0 when k0 == 0) += the lanes of
// sum_{k0 <= k < k1} w[m, k] * in[g, k] for m < kM, g < kG: lane l sums the
// k = l (mod kLanes) in order. w and in have rows of K elements; k0 and k1
// are multiples of kLanes.
template <int kM, int kG, typename A, typename T>
inline void dot_tile(const T* w, const A* in, int64_t K, int64_t k0, int64_t k1, Vec<A>* acc) {
  Vec<A> r[kM][kG];
  for (int m = 0; m < kM; ++m)
    for (int g = 0; g < kG; ++g) r[m][g] = k0 == 0 ? Vec<A>{} : acc[m * kDotG + g];
  for (int64_t k = k0; k < k1; k += kLanes<A>) {
    Vec<A> wv[kM];
    for (int m = 0; m < kM; ++m) wv[m] = load_lanes<A>(w + m * K + k);
#pragma GCC unroll 8
    for (int g = 0; g < kG; ++g) {
      const Vec<A> iv = load_lanes<A>(in + g * K + k);
      for (int m = 0; m < kM; ++m) r[m][g] = fma_lanes<A>(wv[m], iv, r[m][g]);
    }
  }
  for (int m = 0; m < kM; ++m)
    for (int g = 0; g < kG; ++g) acc[m * kDotG + g] = r[m][g];
}

// dot_tile for gn <= kDotG (4 or 2) samples, in tiles of kDotG, 2 and 1.
template <int kM, typename A, typename T>
inline void dot_tiles(const T* w, const A* in, int64_t K, int64_t k0, int64_t k1, Vec<A>* acc,
                      int64_t gn) {
  static_assert(kDotG == 4 || kDotG == 2, "the remainder tiles below cover kDotG <= 4");
  if (gn == kDotG) return dot_tile<kM, kDotG>(w, in, K, k0, k1, acc);
  int64_t g = 0;
  if constexpr (kDotG > 2) {
    if (gn - g >= 2) dot_tile<kM, 2>(w, in + g * K, K, k0, k1, acc + g), g += 2;
  }
  if (gn - g >= 1) dot_tile<kM, 1>(w, in + g * K, K, k0, k1, acc + g);
}

// For g < G, m < M: out(g, m, bias[m] + sum_k w[m, k] * in[g, k]), w: [M, K].
// Each sum: kLanes partial sums over the full blocks of kLanes (lane l takes
// k = l mod kLanes, in order), added in sum_lanes' tree, then the tail in
// order. A task is a panel of kDotPanel rows of w; it walks K in blocks of
// kDotK so that the block of in and of the panel's w stay in L1 while its
// tiles run. `out` is the epilogue that stores the value.
template <typename A, typename T, typename Out>
void linear(const A* in, const T* w, const T* bias, int64_t G, int64_t M, int64_t K,
            const Out& out) {
  const int64_t kfull = K / kLanes<A> * kLanes<A>;
  const int64_t panels = (M + kDotPanel - 1) / kDotPanel;
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(kDotPanel * G * K, 1));
  at::parallel_for(0, panels, grain, [&](int64_t first, int64_t last) {
    Vec<A> acc[kDotPanel * kDotG];
    A sums[kDotPanel * kDotG];
    for (int64_t p = first; p < last; ++p) {
      const int64_t m0 = p * kDotPanel, mn = std::min(kDotPanel, M - m0);
      for (int64_t g0 = 0; g0 < G; g0 += kDotG) {
        const int64_t gn = std::min<int64_t>(kDotG, G - g0);
        for (int64_t k0 = 0; k0 < kfull; k0 += kDotK) {
          const int64_t k1 = std::min(k0 + kDotK, kfull);
          int64_t m = 0;
          for (; m + kDotM <= mn; m += kDotM)
            dot_tiles<kDotM>(w + (m0 + m) * K, in + g0 * K, K, k0, k1, acc + m * kDotG, gn);
          for (; m < mn; ++m)
            dot_tiles<1>(w + (m0 + m) * K, in + g0 * K, K, k0, k1, acc + m * kDotG, gn);
        }
        // The lanes' sums, kLanes accumulators at a time (unused ones are 0).
        for (int64_t i0 = 0; i0 < mn * kDotG; i0 += kLanes<A>) {
          Vec<A> rows[kLanes<A>];
          for (int64_t i = 0; i < kLanes<A>; ++i) {
            const int64_t m = (i0 + i) / kDotG, g = (i0 + i) % kDotG;
            rows[i] = kfull > 0 && m < mn && g < gn ? acc[i0 + i] : Vec<A>{};
          }
          sum_lanes_rows<A>(rows, sums + i0);
        }
        for (int64_t m = 0; m < mn; ++m) {
          const T* wm = w + (m0 + m) * K;
          const A b = bias == nullptr ? A(0) : to_acc<A>(bias[m0 + m]);
          for (int64_t g = 0; g < gn; ++g) {
            const A* ig = in + (g0 + g) * K;
            A tail = 0;
            for (int64_t k = kfull; k < K; ++k) tail = std::fma(to_acc<A>(wm[k]), ig[k], tail);
            out(g0 + g, m0 + m, b + (sums[m * kDotG + g] + tail));
          }
        }
      }
    }
  });
}

// For g < kG, m < kV * kLanes: the sums
// s(g0 + g, m0 + m) = sum_k a[(g0 + g) * sg + k * sk] * b[k * ldb + m0 + m]
// over k < K, in blocks of kOuterK in order (each block summed in order from
// 0, then added to the total), handed out a row at a time:
// out(g, m, &s(g, m), count).
template <int kG, int kV, typename A, typename T, typename Out>
inline void outer_tile(const A* a, int64_t sg, int64_t sk, const T* b, int64_t ldb, int64_t K,
                       int64_t g0, int64_t m0, const Out& out) {
  Vec<A> total[kG][kV] = {};
  for (int64_t k0 = 0; k0 < K; k0 += kOuterK) {
    Vec<A> acc[kG][kV] = {};
    for (int64_t k = k0; k < std::min(k0 + kOuterK, K); ++k) {
      // Fully unrolled, or GCC keeps bv and acc in memory (a store-to-load
      // chain per load and per FMA).
      Vec<A> bv[kV];
#pragma GCC unroll 16
      for (int v = 0; v < kV; ++v) bv[v] = load_lanes<A>(b + k * ldb + m0 + v * kLanes<A>);
#pragma GCC unroll 16
      for (int g = 0; g < kG; ++g) {
        const Vec<A> s = splat<A>(a[(g0 + g) * sg + k * sk]);
#pragma GCC unroll 16
        for (int v = 0; v < kV; ++v) acc[g][v] = fma_lanes<A>(s, bv[v], acc[g][v]);
      }
    }
#pragma GCC unroll 16
    for (int g = 0; g < kG; ++g)
#pragma GCC unroll 16
      for (int v = 0; v < kV; ++v) total[g][v] += acc[g][v];
  }
  for (int g = 0; g < kG; ++g) {
    A row[kV * kLanes<A>];
    __builtin_memcpy(row, total[g], sizeof(row));
    out(g0 + g, m0, row, kV * kLanes<A>);
  }
}

// For g < G, m < M: s(g, m) = sum_k a(g, k) * b[k * ldb + m] over k < K in
// order, with a(g, k) = a[g * sg + k * sk], handed to out(g, m, &s(g, m), count)
// for count consecutive m (so that the epilogue's loop vectorises). The
// backward's transposed products (a = the gradient [G, K], b = a weight
// [K, M] as stored) and the weight gradients (a = a gradient [K = N, G],
// b = the layer's input [N, M], summed over samples); b is converted to A as
// it is loaded. Sums run in blocks of kOuterK in order (see outer_tile). A
// task is kOuterV vectors of columns (or the columns past the last full
// vector) for kOuterG rows.
template <typename A, typename T, typename Out>
void outer_sums(const A* a, int64_t sg, int64_t sk, const T* b, int64_t ldb, int64_t G,
                int64_t M, int64_t K, const Out& out) {
  constexpr int64_t L = kLanes<A>;
  const int64_t vecs = M / L;
  const int64_t col_blocks = (vecs + kOuterV - 1) / kOuterV + (M % L != 0 ? 1 : 0);
  const int64_t row_blocks = (G + kOuterG - 1) / kOuterG;
  const int64_t tile_work = kOuterG * kOuterV * L * K;
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(tile_work, 1));
  at::parallel_for(0, col_blocks * row_blocks, grain, [&](int64_t first, int64_t last) {
    for (int64_t t = first; t < last; ++t) {
      const int64_t cb = t / row_blocks, g0 = t % row_blocks * kOuterG;
      const int64_t gn = std::min<int64_t>(kOuterG, G - g0);
      const int64_t v0 = cb * kOuterV;
      if (v0 >= vecs) {  // the columns past the last full vector
        for (int64_t g = g0; g < g0 + gn; ++g)
          for (int64_t m = vecs * L; m < M; ++m) {
            A total = 0;
            for (int64_t k0 = 0; k0 < K; k0 += kOuterK) {
              A acc = 0;
              for (int64_t k = k0; k < std::min(k0 + kOuterK, K); ++k)
                acc = std::fma(a[g * sg + k * sk], to_acc<A>(b[k * ldb + m]), acc);
              total += acc;
            }
            out(g, m, &total, 1);
          }
        continue;
      }
      const int64_t nv = std::min<int64_t>(kOuterV, vecs - v0);
      for (int64_t g = g0; g < g0 + gn;) {
        const bool rows = g0 + gn - g >= kOuterG;
        if (rows && nv == kOuterV) {
          outer_tile<kOuterG, kOuterV>(a, sg, sk, b, ldb, K, g, v0 * L, out);
        } else if (rows) {
          for (int64_t v = v0; v < v0 + nv; ++v)
            outer_tile<kOuterG, 1>(a, sg, sk, b, ldb, K, g, v * L, out);
        } else if (nv == kOuterV) {
          outer_tile<1, kOuterV>(a, sg, sk, b, ldb, K, g, v0 * L, out);
        } else {
          for (int64_t v = v0; v < v0 + nv; ++v)
            outer_tile<1, 1>(a, sg, sk, b, ldb, K, g, v * L, out);
        }
        g += rows ? kOuterG : 1;
      }
    }
  });
}

// out[m] = sum_n u[n, m] for u: [N, M], summed over n in order, in A.
template <typename A, typename U, typename T>
void sum_over_samples(const U* u, int64_t N, int64_t M, T* out) {
  std::vector<A> acc(M, A(0));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < M; ++m) acc[m] += u[n * M + m];
  for (int64_t m = 0; m < M; ++m) out[m] = from_acc<T>(acc[m]);
}

// Calls fn(gate_kind, begin, end) over [0, n) in parallel, with gate_kind a
// constant-returning functor for the gate, so the loop fn runs is compiled
// once per gate with the choice folded away (and vectorised).
template <typename Fn>
void for_each_gate(Gate gate, int64_t n, const Fn& fn) {
  constexpr int64_t kGrain = 2048;
  auto run = [&](auto gate_kind) {
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) { fn(gate_kind, begin, end); });
  };
  if (gate == Gate::Sigmoid) {
    run([] { return Gate::Sigmoid; });
  } else {
    run([] { return Gate::HardSigmoid; });
  }
}

// A call's scratch buffers of A, carved from one block per calling thread
// and slot that is kept from call to call: fresh pages cost a page fault each
// (about 2 us per 4 KB page on the 2-core dev machine, as much as the gate
// MLP's work at 32 x 2048 x 7 x 7). The block grows to the largest call a
// thread has made and is freed when the thread ends. Contents are not
// initialised. A call that needs two lists of buffers (of A and of another
// type that may be A) takes them from two slots.
template <typename A, int kSlot = 0>
class Scratch {
 public:
  explicit Scratch(std::initializer_list<int64_t> sizes) {
    int64_t total = 0;
    for (int64_t n : sizes) total += padded(n);
    std::vector<A>& block = storage();
    if (static_cast<int64_t>(block.size()) < total) block.resize(total);
    A* next = block.data();
    for (int64_t n : sizes) {
      buffers_.push_back(next);
      next += padded(n);
    }
  }
  A* operator[](size_t i) const { return buffers_[i]; }

 private:
  static int64_t padded(int64_t n) { return (n + kLanes<A> - 1) / kLanes<A> * kLanes<A>; }
  static std::vector<A>& storage() {
    thread_local std::vector<A> block;
    return block;
  }
  std::vector<A*> buffers_;
};

template <typename T>
const T* optional_data(const std::optional<at::Tensor>& t) {
  return t.has_value() ? storage_ptr<T>(*t) : nullptr;
}

// The gate MLP forward for G samples: pooled [G, C] -> z1, a [G, hidden], then
// out(g, c, z2) for the gate's pre-activation z2 [G, C].
template <typename T, typename A, typename Out>
void excite(const SEProblem& p, const A* pooled, const T* w1, const T* b1, const T* w2,
            const T* b2, int64_t G, A* z1, A* a, const Out& out) {
  linear(pooled, w1, b1, G, p.hidden, p.C, [&](int64_t g, int64_t j, A v) {
    z1[g * p.hidden + j] = v;
    a[g * p.hidden + j] = activation_fwd(p.activation, v);
  });
  linear(a, w2, b2, G, p.C, p.hidden, out);
}

// ---------------------------------------------------------------------------

// y = the block on x; when `saved` (the pooled means, z1 and z2 for the
// backward, [N, C], [N, hidden], [N, C]) is null they live in per-chunk scratch.
template <typename A>
struct SavedState {
  A* pooled;
  A* z1;
  A* z2;
};

template <typename T>
void forward_kernel(const SEProblem& p, const at::Tensor& x, const at::Tensor& w1,
                    const std::optional<at::Tensor>& b1, const at::Tensor& w2,
                    const std::optional<at::Tensor>& b2, at::Tensor& y,
                    const SavedState<acc_t<T>>* saved) {
  using A = acc_t<T>;
  using Ops = GateOps<T>;
  const Tiling tiling(p);
  const int64_t sample = p.C * p.HW;
  const int64_t G = chunk_samples(p, sample * static_cast<int64_t>(sizeof(T)), 1);
  const T* xd = storage_ptr<T>(x);
  T* yd = storage_ptr<T>(y);
  const int64_t chunk_state = saved ? 0 : 1;  // per-chunk scratch for the state, or none
  const Scratch<A> scratch({G * tiling.nparts * p.C, G * p.hidden, G * p.C,
                            chunk_state * G * p.C, chunk_state * G * p.hidden,
                            chunk_state * G * p.C});
  A* const parts = scratch[0];
  A* const a = scratch[1];
  A* const gate = scratch[2];

  for (int64_t n0 = 0; n0 < p.N; n0 += G) {
    const int64_t g = std::min(G, p.N - n0);
    const T* xs = xd + n0 * sample;
    A* ps = saved ? saved->pooled + n0 * p.C : scratch[3];
    A* z1s = saved ? saved->z1 + n0 * p.hidden : scratch[4];
    A* z2s = saved ? saved->z2 + n0 * p.C : scratch[5];
    // squeeze
    tiling.for_each_tile(g, false, [&](int64_t i, int64_t begin, int64_t end) {
      tiling.reduce<A, T>(xs + i * sample, nullptr, begin, end, parts + i * tiling.nparts * p.C);
    });
    tiling.finish(g, parts, A(1) / static_cast<A>(p.HW), ps);
    // excite
    excite<T, A>(p, ps, storage_ptr<T>(w1), optional_data<T>(b1), storage_ptr<T>(w2),
                 optional_data<T>(b2), g, z1s, a,
                 [&](int64_t i, int64_t c, A v) { z2s[i * p.C + c] = v; });
    for_each_gate(p.gate, g * p.C, [&](auto gate_kind, int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) gate[i] = gate_fwd(gate_kind(), z2s[i]);  // s
    });
    // scale
    tiling.for_each_tile(g, true, [&](int64_t i, int64_t begin, int64_t end) {
      const A* gi = gate + i * p.C;
      tiling.map(xs + i * sample, yd + (n0 + i) * sample, begin, end,
                 [&](T v, int64_t c) { return Ops::scale(v, gi[c]); });
    });
  }
}

template <typename T>
void backward_kernel(const SEProblem& p, const at::Tensor& dy, const at::Tensor& x,
                     const at::Tensor& pooled, const at::Tensor& z1, const at::Tensor& z2,
                     const at::Tensor& w1, const at::Tensor& w2, at::Tensor& dx,
                     at::Tensor& dw1, at::Tensor* db1, at::Tensor& dw2, at::Tensor* db2) {
  using A = acc_t<T>;
  using B = grad_t<T>;
  using Ops = GateOps<T>;
  const Tiling tiling(p);
  const int64_t sample = p.C * p.HW;
  const int64_t N = p.N, C = p.C, H = p.hidden;
  const int64_t G = chunk_samples(p, 2 * sample * static_cast<int64_t>(sizeof(T)), 4);
  const T* dyd = storage_ptr<T>(dy);
  const T* xd = storage_ptr<T>(x);
  T* dxd = storage_ptr<T>(dx);
  const A* pd = pooled.data_ptr<A>();
  const A* z1d = z1.data_ptr<A>();
  const A* z2d = z2.data_ptr<A>();

  const Scratch<A> scratch({G * tiling.nparts * C, G * C, G * C, G * C});
  A* const parts = scratch[0];
  A* const ds = scratch[1];
  A* const dp = scratch[2];
  A* const gate = scratch[3];
  // The weight gradients' operands, kept for the whole batch: dz1 and the
  // activations [N, hidden], dz2 [N, C] (and the pooled means, read as they are).
  const Scratch<B, 1> grads({N * H, N * H, N * C});
  B* const dz1 = grads[0];
  B* const act = grads[1];
  B* const dz2 = grads[2];
  for (int64_t i = 0; i < N * H; ++i) act[i] = static_cast<B>(activation_fwd(p.activation, z1d[i]));

  for (int64_t n0 = 0; n0 < N; n0 += G) {
    const int64_t g = std::min(G, N - n0);
    const T* dys = dyd + n0 * sample;
    const T* xs = xd + n0 * sample;
    // squeeze: ds = sum_hw dy * x
    tiling.for_each_tile(g, false, [&](int64_t i, int64_t begin, int64_t end) {
      tiling.reduce<A, T>(dys + i * sample, xs + i * sample, begin, end,
                          parts + i * tiling.nparts * C);
    });
    tiling.finish(g, parts, A(1), ds);
    // excite backward, from the forward's pre-activations.
    const A* z1s = z1d + n0 * H;
    const A* z2s = z2d + n0 * C;
    B* dz1s = dz1 + n0 * H;
    B* dz2s = dz2 + n0 * C;
    for_each_gate(p.gate, g * C, [&](auto gate_kind, int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {  // s and dz2 from z2
        const A s = gate_fwd(gate_kind(), z2s[i]);
        gate[i] = s;
        dz2s[i] = static_cast<B>(gate_backward(gate_kind(), z2s[i], s, ds[i]));
      }
    });
    // da = w2^T dz2, dz1 = activation's backward of da at z1, dp = w1^T dz1 / HW
    outer_sums(dz2s, C, 1, storage_ptr<T>(w2), H, g, H, C,
               [&](int64_t i, int64_t j, const B* da, int64_t n) {
                 for (int64_t l = 0; l < n; ++l)
                   dz1s[i * H + j + l] = static_cast<B>(activation_backward<A>(
                       p.activation, z1s[i * H + j + l], static_cast<A>(da[l])));
               });
    outer_sums(dz1s, H, 1, storage_ptr<T>(w1), C, g, C, H,
               [&](int64_t i, int64_t c, const B* v, int64_t n) {
                 for (int64_t l = 0; l < n; ++l)
                   dp[i * C + c + l] = static_cast<A>(v[l]) / static_cast<A>(p.HW);
               });
    // dx = dy * s + dp / HW
    tiling.for_each_tile(g, true, [&](int64_t i, int64_t begin, int64_t end) {
      const A* gi = gate + i * C;
      const A* dpi = dp + i * C;
      tiling.map(dys + i * sample, dxd + (n0 + i) * sample, begin, end,
                 [&](T v, int64_t c) { return Ops::scale_add(v, gi[c], dpi[c]); });
    });
  }

  // Weight and bias gradients, summed over samples in order.
  T* dw1d = storage_ptr<T>(dw1);
  T* dw2d = storage_ptr<T>(dw2);
  outer_sums(dz1, 1, H, pd, C, H, C, N, [&](int64_t j, int64_t c, const B* v, int64_t n) {
    // dw1[j, c] = sum_n dz1[n, j] * pooled[n, c]
    for (int64_t l = 0; l < n; ++l) dw1d[j * C + c + l] = from_acc<T>(v[l]);
  });
  outer_sums(dz2, 1, C, act, H, C, H, N, [&](int64_t c, int64_t j, const B* v, int64_t n) {
    // dw2[c, j] = sum_n dz2[n, c] * a[n, j]
    for (int64_t l = 0; l < n; ++l) dw2d[c * H + j + l] = from_acc<T>(v[l]);
  });
  if (db1) sum_over_samples<A>(dz1, N, H, storage_ptr<T>(*db1));
  if (db2) sum_over_samples<A>(dz2, N, C, storage_ptr<T>(*db2));
}

// ---------------------------------------------------------------------------
// Launchers: checks, layout, allocation, dtype dispatch.

// The forward, writing y and, when `saved`, the state for the backward.
at::Tensor forward_cpu(const at::Tensor& x_in, const at::Tensor& w1_in,
                       const std::optional<at::Tensor>& b1_in, const at::Tensor& w2_in,
                       const std::optional<at::Tensor>& b2_in, c10::string_view activation,
                       c10::string_view gate, at::Tensor* saved) {
  const SEProblem p = check_forward(x_in, w1_in, b1_in, w2_in, b2_in, activation, gate);
  const at::Tensor x = dense_in_format(x_in, p);
  const at::Tensor w1 = w1_in.contiguous(), w2 = w2_in.contiguous();
  const std::optional<at::Tensor> b1 = b1_in ? std::optional(b1_in->contiguous()) : std::nullopt;
  const std::optional<at::Tensor> b2 = b2_in ? std::optional(b2_in->contiguous()) : std::nullopt;
  at::Tensor y = at::empty_like(x);
  if (saved) {
    const auto acc = x.options().dtype(accumulation_dtype(x.scalar_type()));
    saved[0] = at::empty({p.N, p.C}, acc);
    saved[1] = at::empty({p.N, p.hidden}, acc);
    saved[2] = at::empty({p.N, p.C}, acc);
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "squeeze_excite_cpu",
                                  [&] {
    using T = typename Storage<scalar_t>::type;
    using A = acc_t<T>;
    if (saved) {
      const SavedState<A> state{saved[0].data_ptr<A>(), saved[1].data_ptr<A>(),
                                saved[2].data_ptr<A>()};
      forward_kernel<T>(p, x, w1, b1, w2, b2, y, &state);
    } else {
      forward_kernel<T>(p, x, w1, b1, w2, b2, y, nullptr);
    }
  });
  return y;
}

at::Tensor squeeze_excite_cpu(const at::Tensor& x, const at::Tensor& w1,
                              const std::optional<at::Tensor>& b1, const at::Tensor& w2,
                              const std::optional<at::Tensor>& b2, c10::string_view activation,
                              c10::string_view gate) {
  return forward_cpu(x, w1, b1, w2, b2, activation, gate, nullptr);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> squeeze_excite_forward_cpu(
    const at::Tensor& x, const at::Tensor& w1, const std::optional<at::Tensor>& b1,
    const at::Tensor& w2, const std::optional<at::Tensor>& b2, c10::string_view activation,
    c10::string_view gate) {
  at::Tensor saved[3];
  at::Tensor y = forward_cpu(x, w1, b1, w2, b2, activation, gate, saved);
  return {y, saved[0], saved[1], saved[2]};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> squeeze_excite_backward_cpu(
    const at::Tensor& dy_in, const at::Tensor& x_in, const at::Tensor& pooled_in,
    const at::Tensor& z1_in, const at::Tensor& z2_in, const at::Tensor& w1_in,
    const at::Tensor& w2_in, c10::string_view activation, c10::string_view gate, bool want_db1,
    bool want_db2) {
  const SEProblem p =
      check_backward(dy_in, x_in, pooled_in, z1_in, z2_in, w1_in, w2_in, activation, gate);
  const at::Tensor x = dense_in_format(x_in, p);
  const at::Tensor dy = dense_in_format(dy_in, p);
  const at::Tensor pooled = pooled_in.contiguous();
  const at::Tensor z1 = z1_in.contiguous(), z2 = z2_in.contiguous();
  const at::Tensor w1 = w1_in.contiguous(), w2 = w2_in.contiguous();
  at::Tensor dx = at::empty_like(x);
  at::Tensor dw1 = at::empty_like(w1), dw2 = at::empty_like(w2);
  at::Tensor db1 = at::empty({want_db1 ? p.hidden : 0}, w1.options());
  at::Tensor db2 = at::empty({want_db2 ? p.C : 0}, w2.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "squeeze_excite_backward_cpu", [&] {
    backward_kernel<typename Storage<scalar_t>::type>(p, dy, x, pooled, z1, z2, w1, w2, dx, dw1,
                                                      want_db1 ? &db1 : nullptr, dw2,
                                                      want_db2 ? &db2 : nullptr);
  });
  return {dx, dw1, db1, dw2, db2};
}

}  // namespace

TORCH_LIBRARY_IMPL(se_fused, CPU, m) {
  m.impl("squeeze_excite", &squeeze_excite_cpu);
  m.impl("_squeeze_excite_forward", &squeeze_excite_forward_cpu);
  m.impl("_squeeze_excite_backward", &squeeze_excite_backward_cpu);
}

}  // namespace se_fused
