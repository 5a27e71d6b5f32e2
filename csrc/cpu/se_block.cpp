// The SE block on the CPU: fused forward and backward kernels.
//
// The batch is processed in chunks of samples small enough to stay in the
// cores' caches. For each chunk the data path runs as three parallel phases
// (see se_math.h for the math):
//   forward : squeeze (x -> pooled)  | excite (pooled -> gate) | scale (x, gate -> y)
//   backward: squeeze (dy, x -> ds)  | excite backward         | dx = dy * s + dp / HW
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
// partial sums, and the weight gradients over samples in order.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
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
template <typename A>
struct VecType;  // (vector_size is ignored on a dependent alias: one typedef per type)
template <>
struct VecType<float> {
  typedef float type __attribute__((vector_size(64)));
};
template <>
struct VecType<double> {
  typedef double type __attribute__((vector_size(64)));
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

// row_sums over `rows` rows, 4 at a time.
template <bool kDot, typename A, typename T>
void row_sums(const T* a, const T* b, int64_t stride, int64_t n, int64_t rows, A* out) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4)
    row_sums<4, kDot>(a + r * stride, kDot ? b + r * stride : b, stride, n, out + r);
  for (; r < rows; ++r) row_sums<1, kDot>(a + r * stride, kDot ? b + r * stride : b, stride, n, out + r);
}

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
  template <typename Fn>
  void for_each_tile(int64_t g, const Fn& fn) const {
    at::parallel_for(0, g * ntiles, 1, [&](int64_t first, int64_t last) {
      for (int64_t t = first; t < last; ++t) {
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
    for (int64_t c = 0; c < C; ++c) acc[c] = A(0);
    for (int64_t hw = begin; hw < end; ++hw) {
      const T* ar = a + hw * C;
      if (b == nullptr) {
        for (int64_t c = 0; c < C; ++c) acc[c] += to_acc<A>(ar[c]);
      } else {
        const T* br = b + hw * C;
        for (int64_t c = 0; c < C; ++c)
          acc[c] = std::fma(to_acc<A>(ar[c]), to_acc<A>(br[c]), acc[c]);
      }
    }
  }

  // The sample's per-channel totals from its partial sums, times `factor`.
  template <typename A>
  void finish(const A* parts, A factor, A* out) const {
    for (int64_t c = 0; c < C; ++c) out[c] = parts[c];
    for (int64_t t = 1; t < nparts; ++t)
      for (int64_t c = 0; c < C; ++c) out[c] += parts[t * C + c];
    for (int64_t c = 0; c < C; ++c) out[c] *= factor;
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
// each) stay in the caches. When the gate MLP costs more than the sample's
// elements (2 * C * hidden multiply-adds against C * H * W), at least
// kMlpChunk samples, so that the MLP runs 8 rows at a time and reuses each
// weight it loads for all of them.
int64_t chunk_samples(const SEProblem& p, int64_t bytes_per_sample) {
  constexpr int64_t kMlpChunk = 8;
  const int64_t budget = kChunkBytesPerThread * at::get_num_threads();
  int64_t g = budget / std::max<int64_t>(bytes_per_sample, 1);
  if (2 * p.hidden >= p.HW) g = std::max(g, kMlpChunk);
  return std::clamp<int64_t>(g, 1, std::max<int64_t>(p.N, 1));
}

// sum_i w[i] * v_s[i] for kRows vectors v_s = v + s * stride at once: w is
// loaded (and converted) once for all of them. Each result has exactly the
// summation order of dot(w, v_s, n), so it does not depend on kRows.
template <int kRows, typename A, typename T>
void dot_rows(const T* w, const A* v, int64_t stride, int64_t n, A* out) {
  Vec<A> lanes[kRows] = {};
  int64_t i = 0;
  for (; i + kLanes<A> <= n; i += kLanes<A>) {
    const Vec<A> wl = load_lanes<A>(w + i);
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) lanes[r] = fma_lanes<A>(wl, load_lanes<A>(v + r * stride + i), lanes[r]);
  }
  A tail[kRows] = {};
  for (; i < n; ++i)
    for (int r = 0; r < kRows; ++r) tail[r] = std::fma(to_acc<A>(w[i]), v[r * stride + i], tail[r]);
  for (int r = 0; r < kRows; ++r) out[r] = sum_lanes<A>(lanes[r]) + tail[r];
}

// For g < G, m < M: out(g, m, bias[m] + sum_k w[m, k] * in[g, k]), w: [M, K].
// `out` is the epilogue that stores the value (and whatever follows from it).
template <typename A, typename T, typename Out>
void linear(const A* in, const T* w, const T* bias, int64_t G, int64_t M, int64_t K,
            const Out& out) {
  // 8 rows: 8 independent accumulator registers keep both FMA pipes busy.
  constexpr int kRows = 8;
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(G * K, 1));
  at::parallel_for(0, M, grain, [&](int64_t begin, int64_t end) {
    A v[kRows];
    for (int64_t m = begin; m < end; ++m) {
      const A b = bias == nullptr ? A(0) : to_acc<A>(bias[m]);
      const T* wm = w + m * K;
      int64_t g = 0;
      for (; g + kRows <= G; g += kRows) {
        dot_rows<kRows>(wm, in + g * K, K, K, v);
        for (int r = 0; r < kRows; ++r) out(g + r, m, b + v[r]);
      }
      for (; g + kRows / 2 <= G; g += kRows / 2) {
        dot_rows<kRows / 2>(wm, in + g * K, K, K, v);
        for (int r = 0; r < kRows / 2; ++r) out(g + r, m, b + v[r]);
      }
      for (; g < G; ++g) {
        dot_rows<1>(wm, in + g * K, K, K, v);
        out(g, m, b + v[0]);
      }
    }
  });
}

// For m < M, k < K: out(m, k, sum_n u[n, m] * v[n, k]), u: [N, M], v: [N, K],
// summed over n in order. Blocks of kM x kK sums stay in registers while
// the samples stream by.
template <typename A, typename Out>
void sum_outer(const A* u, int64_t M, const A* v, int64_t K, int64_t N, const Out& out) {
  constexpr int64_t kM = 4, kK = 32;
  at::parallel_for(0, (M + kM - 1) / kM, 1, [&](int64_t first, int64_t last) {
    for (int64_t mb = first; mb < last; ++mb) {
      const int64_t m0 = mb * kM, mn = std::min(kM, M - m0);
      for (int64_t k0 = 0; k0 < K; k0 += kK) {
        const int64_t kn = std::min(kK, K - k0);
        A acc[kM][kK] = {};
        if (mn == kM && kn == kK) {
          for (int64_t n = 0; n < N; ++n) {
            const A* vn = v + n * K + k0;
            for (int64_t m = 0; m < kM; ++m) {
              const A d = u[n * M + m0 + m];
              for (int64_t k = 0; k < kK; ++k) acc[m][k] = std::fma(d, vn[k], acc[m][k]);
            }
          }
        } else {
          for (int64_t n = 0; n < N; ++n) {
            const A* vn = v + n * K + k0;
            for (int64_t m = 0; m < mn; ++m) {
              const A d = u[n * M + m0 + m];
              for (int64_t k = 0; k < kn; ++k) acc[m][k] = std::fma(d, vn[k], acc[m][k]);
            }
          }
        }
        for (int64_t m = 0; m < mn; ++m)
          for (int64_t k = 0; k < kn; ++k) out(m0 + m, k0 + k, acc[m][k]);
      }
    }
  });
}

// out[m] = sum_n u[n, m] for u: [N, M], summed over n in order.
template <typename A, typename T>
void sum_over_samples(const A* u, int64_t N, int64_t M, T* out) {
  std::vector<A> acc(M, A(0));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < M; ++m) acc[m] += u[n * M + m];
  for (int64_t m = 0; m < M; ++m) out[m] = from_acc<T>(acc[m]);
}

// The transposed product, for the backward: for g < G, m < M:
// out(g, m, sum_k in[g, k] * w[k, m]), w: [K, M] as stored (no transpose).
// Blocks of kM outputs stay in registers while k runs in order.
template <typename A, typename T, typename Out>
void linear_t(const A* in, const T* w, int64_t G, int64_t M, int64_t K, const Out& out) {
  constexpr int64_t kM = 2 * kLanes<A>;
  const int64_t blocks = (M + kM - 1) / kM;
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(G * K * kM, 1));
  at::parallel_for(0, blocks, grain, [&](int64_t first, int64_t last) {
    for (int64_t b = first; b < last; ++b) {
      const int64_t m0 = b * kM, mn = std::min(kM, M - m0);
      for (int64_t g = 0; g < G; ++g) {
        A acc[kM] = {};
        const A* ig = in + g * K;
        if (mn == kM) {
          for (int64_t k = 0; k < K; ++k)
            for (int64_t m = 0; m < kM; ++m)
              acc[m] = std::fma(ig[k], to_acc<A>(w[k * M + m0 + m]), acc[m]);
        } else {
          for (int64_t k = 0; k < K; ++k)
            for (int64_t m = 0; m < mn; ++m)
              acc[m] = std::fma(ig[k], to_acc<A>(w[k * M + m0 + m]), acc[m]);
        }
        for (int64_t m = 0; m < mn; ++m) out(g, m0 + m, acc[m]);
      }
    }
  });
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

template <typename T>
void forward_kernel(const SEProblem& p, const at::Tensor& x, const at::Tensor& w1,
                    const std::optional<at::Tensor>& b1, const at::Tensor& w2,
                    const std::optional<at::Tensor>& b2, at::Tensor& y, at::Tensor& pooled) {
  using A = acc_t<T>;
  using Ops = GateOps<T>;
  const Tiling tiling(p);
  const int64_t sample = p.C * p.HW;
  const int64_t G = chunk_samples(p, sample * static_cast<int64_t>(sizeof(T)));
  const T* xd = storage_ptr<T>(x);
  T* yd = storage_ptr<T>(y);
  A* pd = pooled.data_ptr<A>();
  std::vector<A> parts(G * tiling.nparts * p.C), z1(G * p.hidden), a(G * p.hidden);
  std::vector<A> gate(G * p.C);

  for (int64_t n0 = 0; n0 < p.N; n0 += G) {
    const int64_t g = std::min(G, p.N - n0);
    const T* xs = xd + n0 * sample;
    A* ps = pd + n0 * p.C;
    // squeeze
    tiling.for_each_tile(g, [&](int64_t i, int64_t begin, int64_t end) {
      tiling.reduce<A, T>(xs + i * sample, nullptr, begin, end, parts.data() + i * tiling.nparts * p.C);
    });
    for (int64_t i = 0; i < g; ++i)
      tiling.finish(parts.data() + i * tiling.nparts * p.C, A(1) / static_cast<A>(p.HW), ps + i * p.C);
    // excite
    excite<T, A>(p, ps, storage_ptr<T>(w1), optional_data<T>(b1), storage_ptr<T>(w2),
                 optional_data<T>(b2), g, z1.data(), a.data(),
                 [&](int64_t i, int64_t c, A z2) { gate[i * p.C + c] = z2; });
    for_each_gate(p.gate, g * p.C, [&](auto gate_kind, int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) gate[i] = gate_fwd(gate_kind(), gate[i]);  // s
    });
    // scale
    tiling.for_each_tile(g, [&](int64_t i, int64_t begin, int64_t end) {
      const A* gi = gate.data() + i * p.C;
      tiling.map(xs + i * sample, yd + (n0 + i) * sample, begin, end,
                 [&](T v, int64_t c) { return Ops::scale(v, gi[c]); });
    });
  }
}

template <typename T>
void backward_kernel(const SEProblem& p, const at::Tensor& dy, const at::Tensor& x,
                     const at::Tensor& pooled, const at::Tensor& w1,
                     const std::optional<at::Tensor>& b1, const at::Tensor& w2,
                     const std::optional<at::Tensor>& b2, at::Tensor& dx, at::Tensor& dw1,
                     at::Tensor& db1, at::Tensor& dw2, at::Tensor& db2) {
  using A = acc_t<T>;
  using Ops = GateOps<T>;
  const Tiling tiling(p);
  const int64_t sample = p.C * p.HW;
  const int64_t N = p.N, C = p.C, H = p.hidden;
  const int64_t G = chunk_samples(p, 2 * sample * static_cast<int64_t>(sizeof(T)));
  const T* dyd = storage_ptr<T>(dy);
  const T* xd = storage_ptr<T>(x);
  T* dxd = storage_ptr<T>(dx);
  const A* pd = pooled.data_ptr<A>();

  // Kept for the weight gradients: dz1 and a [N, hidden], dz2 [N, C].
  std::vector<A> dz1(N * H), act(N * H), dz2(N * C);
  std::vector<A> parts(G * tiling.nparts * C), z1(G * H), ds(G * C), dp(G * C);
  std::vector<A> gate(G * C);

  for (int64_t n0 = 0; n0 < N; n0 += G) {
    const int64_t g = std::min(G, N - n0);
    const T* dys = dyd + n0 * sample;
    const T* xs = xd + n0 * sample;
    // squeeze: ds = sum_hw dy * x
    tiling.for_each_tile(g, [&](int64_t i, int64_t begin, int64_t end) {
      tiling.reduce<A, T>(dys + i * sample, xs + i * sample, begin, end,
                          parts.data() + i * tiling.nparts * C);
    });
    for (int64_t i = 0; i < g; ++i)
      tiling.finish(parts.data() + i * tiling.nparts * C, A(1), ds.data() + i * C);
    // excite backward: recompute the MLP from the pooled means, then go back through it.
    A* a = act.data() + n0 * H;
    A* dz1s = dz1.data() + n0 * H;
    A* dz2s = dz2.data() + n0 * C;
    excite<T, A>(p, pd + n0 * C, storage_ptr<T>(w1), optional_data<T>(b1), storage_ptr<T>(w2),
                 optional_data<T>(b2), g, z1.data(), a,
                 [&](int64_t i, int64_t c, A z2) { gate[i * C + c] = z2; });
    for_each_gate(p.gate, g * C, [&](auto gate_kind, int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {  // s and dz2 from z2
        A s, ds_dz;
        gate_fwd_grad(gate_kind(), gate[i], s, ds_dz);
        gate[i] = s;
        dz2s[i] = ds[i] * ds_dz;
      }
    });
    // da = w2^T dz2, dz1 = da * activation'(z1), dp = w1^T dz1 / HW
    linear_t<A, T>(dz2s, storage_ptr<T>(w2), g, H, C, [&](int64_t i, int64_t j, A da) {
      dz1s[i * H + j] = da * activation_grad(p.activation, z1[i * H + j]);
    });
    linear_t<A, T>(dz1s, storage_ptr<T>(w1), g, C, H, [&](int64_t i, int64_t c, A v) {
      dp[i * C + c] = v / static_cast<A>(p.HW);
    });
    // dx = dy * s + dp / HW
    tiling.for_each_tile(g, [&](int64_t i, int64_t begin, int64_t end) {
      const A* gi = gate.data() + i * C;
      const A* dpi = dp.data() + i * C;
      tiling.map(dys + i * sample, dxd + (n0 + i) * sample, begin, end,
                 [&](T v, int64_t c) { return Ops::scale_add(v, gi[c], dpi[c]); });
    });
  }

  // Weight and bias gradients, summed over samples in order.
  T* dw1d = storage_ptr<T>(dw1);
  T* dw2d = storage_ptr<T>(dw2);
  sum_outer(dz1.data(), H, pd, C, N, [&](int64_t j, int64_t c, A v) {
    dw1d[j * C + c] = from_acc<T>(v);  // dw1[j, c] = sum_n dz1[n, j] * pooled[n, c]
  });
  sum_outer(dz2.data(), C, act.data(), H, N, [&](int64_t c, int64_t j, A v) {
    dw2d[c * H + j] = from_acc<T>(v);  // dw2[c, j] = sum_n dz2[n, c] * a[n, j]
  });
  sum_over_samples(dz1.data(), N, H, storage_ptr<T>(db1));
  sum_over_samples(dz2.data(), N, C, storage_ptr<T>(db2));
}

// ---------------------------------------------------------------------------
// Launchers: checks, layout, allocation, dtype dispatch.

std::tuple<at::Tensor, at::Tensor> squeeze_excite_cpu(
    const at::Tensor& x_in, const at::Tensor& w1_in, const std::optional<at::Tensor>& b1_in,
    const at::Tensor& w2_in, const std::optional<at::Tensor>& b2_in, c10::string_view activation,
    c10::string_view gate) {
  const SEProblem p = check_forward(x_in, w1_in, b1_in, w2_in, b2_in, activation, gate);
  const at::Tensor x = dense_in_format(x_in, p);
  const at::Tensor w1 = w1_in.contiguous(), w2 = w2_in.contiguous();
  const std::optional<at::Tensor> b1 = b1_in ? std::optional(b1_in->contiguous()) : std::nullopt;
  const std::optional<at::Tensor> b2 = b2_in ? std::optional(b2_in->contiguous()) : std::nullopt;
  at::Tensor y = at::empty_like(x);
  at::Tensor pooled = at::empty({p.N, p.C}, x.options().dtype(accumulation_dtype(x.scalar_type())));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "squeeze_excite_cpu",
                                  [&] {
    forward_kernel<typename Storage<scalar_t>::type>(p, x, w1, b1, w2, b2, y, pooled);
  });
  return {y, pooled};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> squeeze_excite_backward_cpu(
    const at::Tensor& dy_in, const at::Tensor& x_in, const at::Tensor& pooled_in,
    const at::Tensor& w1_in, const std::optional<at::Tensor>& b1_in, const at::Tensor& w2_in,
    const std::optional<at::Tensor>& b2_in, c10::string_view activation, c10::string_view gate) {
  const SEProblem p =
      check_backward(dy_in, x_in, pooled_in, w1_in, b1_in, w2_in, b2_in, activation, gate);
  const at::Tensor x = dense_in_format(x_in, p);
  const at::Tensor dy = dense_in_format(dy_in, p);
  const at::Tensor pooled = pooled_in.contiguous();
  const at::Tensor w1 = w1_in.contiguous(), w2 = w2_in.contiguous();
  const std::optional<at::Tensor> b1 = b1_in ? std::optional(b1_in->contiguous()) : std::nullopt;
  const std::optional<at::Tensor> b2 = b2_in ? std::optional(b2_in->contiguous()) : std::nullopt;
  at::Tensor dx = at::empty_like(x);
  at::Tensor dw1 = at::empty_like(w1), dw2 = at::empty_like(w2);
  at::Tensor db1 = at::empty({p.hidden}, w1.options()), db2 = at::empty({p.C}, w2.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "squeeze_excite_backward_cpu", [&] {
    backward_kernel<typename Storage<scalar_t>::type>(p, dy, x, pooled, w1, b1, w2, b2, dx, dw1,
                                                      db1, dw2, db2);
  });
  return {dx, dw1, db1, dw2, db2};
}

}  // namespace

TORCH_LIBRARY_IMPL(se_fused, CPU, m) {
  m.impl("squeeze_excite", &squeeze_excite_cpu);
  m.impl("_squeeze_excite_backward", &squeeze_excite_backward_cpu);
}

}  // namespace se_fused
