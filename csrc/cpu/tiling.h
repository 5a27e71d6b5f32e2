// How a chunk of samples is cut into tiles for the squeeze and scale phases,
// the per-channel sums over a tile, and how many samples a chunk holds.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/vec.h"
#include "se_checks.h"
#include "se_math.h"

namespace se_fused::cpu {

constexpr int64_t kTileElems = 16384;       // elements per squeeze/scale tile, about
constexpr int64_t kChunkBytesPerThread = 1 << 20;  // half of a core's L2

// For r < kRows: out[r] = sum_i a_r[i] (kDot: sum_i a_r[i] * b_r[i]), in A,
// with a_r = a + r * sa (b_r = b + r * sb). Rows run side by side for
// instruction-level parallelism on short rows; each row's order is the same
// whatever kRows is.
template <int kRows, bool kDot, typename A, typename T>
void row_sums(const T* a, int64_t sa, const T* b, int64_t sb, int64_t n, A* out) {
  Vec<A> lanes[kRows] = {};
  A tail[kRows] = {};
  int64_t i = 0;
  for (; i + kLanes<A> <= n; i += kLanes<A>) {
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) {
      const Vec<A> v = load_lanes<A>(a + r * sa + i);
      lanes[r] = kDot ? fma_lanes<A>(v, load_lanes<A>(b + r * sb + i), lanes[r]) : lanes[r] + v;
    }
  }
  for (; i < n; ++i)
    for (int r = 0; r < kRows; ++r) {
      const A v = to_acc<A>(a[r * sa + i]);
      tail[r] = kDot ? std::fma(v, to_acc<A>(b[r * sb + i]), tail[r]) : tail[r] + v;
    }
  for (int r = 0; r < kRows; ++r) out[r] = sum_lanes<A>(lanes[r]) + tail[r];
}

// channels_last: out[c] for the kVecs * kLanes channels at a (and b), whose
// rows are ra (rb) apart: the sum over n rows in order (kDot: of a * b), held
// in registers across the rows.
template <int kVecs, bool kDot, typename A, typename T>
inline void column_sums(const T* a, int64_t ra, const T* b, int64_t rb, int64_t n, A* out) {
  Vec<A> s[kVecs] = {};
  for (int64_t r = 0; r < n; ++r) {
#pragma GCC unroll 8
    for (int v = 0; v < kVecs; ++v) {
      const Vec<A> x = load_lanes<A>(a + r * ra + v * kLanes<A>);
      s[v] = kDot ? fma_lanes<A>(x, load_lanes<A>(b + r * rb + v * kLanes<A>), s[v]) : s[v] + x;
    }
  }
  __builtin_memcpy(out, s, sizeof(s));
}

// column_sums over the first `cols` channels: 4 vectors at a time, then one,
// then the channels past the last full vector.
template <bool kDot, typename A, typename T>
void column_sums(const T* a, int64_t ra, const T* b, int64_t rb, int64_t n, int64_t cols,
                 A* out) {
  constexpr int64_t L = kLanes<A>;
  int64_t c = 0;
  for (; c + 4 * L <= cols; c += 4 * L)
    column_sums<4, kDot>(a + c, ra, kDot ? b + c : b, rb, n, out + c);
  for (; c + L <= cols; c += L)
    column_sums<1, kDot>(a + c, ra, kDot ? b + c : b, rb, n, out + c);
  for (; c < cols; ++c) {
    A acc = 0;
    for (int64_t r = 0; r < n; ++r)
      acc = kDot ? std::fma(to_acc<A>(a[r * ra + c]), to_acc<A>(b[r * rb + c]), acc)
                 : acc + to_acc<A>(a[r * ra + c]);
    out[c] = acc;
  }
}

// row_sums over `rows` rows, 4 at a time.
template <bool kDot, typename A, typename T>
void row_sums(const T* a, int64_t sa, const T* b, int64_t sb, int64_t n, int64_t rows, A* out) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4)
    row_sums<4, kDot>(a + r * sa, sa, kDot ? b + r * sb : b, sb, n, out + r);
  for (; r < rows; ++r) row_sums<1, kDot>(a + r * sa, sa, kDot ? b + r * sb : b, sb, n, out + r);
}

// out[k] = f(in[k], k) for k < n, f on acc_t values: in[k] widened to
// acc_t<T>, the result rounded to T once.
template <typename T, typename F>
inline void map_row(const T* in, T* out, int64_t n, const F& f) {
  for (int64_t k = 0; k < n; ++k) out[k] = from_acc<T>(f(to_acc<acc_t<T>>(in[k]), k));
}

#if defined(__FLT16_MAX__) && defined(__F16C__)
// float16: the compiler converts a _Float16 one element at a time (no
// AVX512-FP16 in the target), which made the scale loops scalar. Here blocks
// of the row are widened with F16C into floats, mapped there (a loop the
// compiler vectorises), and narrowed with F16C's vcvtps2ph under the current
// rounding mode: the instruction the one-element conversion uses, so the
// same bits.
template <typename F>
inline void map_row(const _Float16* in, _Float16* out, int64_t n, const F& f) {
  constexpr int64_t kBlock = 256, R = kRegLanes<float>;
  alignas(64) float buf[kBlock];
  for (int64_t k0 = 0; k0 < n; k0 += kBlock) {
    const int64_t m = std::min(kBlock, n - k0), full = m / R * R;
    for (int64_t k = 0; k < full; k += R) {
      const Reg<float> v = load_reg<float>(in + k0 + k);
      __builtin_memcpy(buf + k, &v, sizeof(v));
    }
    for (int64_t k = full; k < m; ++k) buf[k] = to_acc<float>(in[k0 + k]);
    for (int64_t k = 0; k < m; ++k) buf[k] = f(buf[k], k0 + k);
    int64_t k = 0;
#if defined(__AVX512F__)
    for (; k + 16 <= m; k += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + k0 + k),
                          _mm512_cvtps_ph(_mm512_load_ps(buf + k), _MM_FROUND_CUR_DIRECTION));
#endif
    for (; k + 8 <= m; k += 8)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + k0 + k),
                       _mm256_cvtps_ph(_mm256_load_ps(buf + k), _MM_FROUND_CUR_DIRECTION));
    for (; k < m; ++k) out[k0 + k] = from_acc<_Float16>(buf[k]);
  }
}
#endif

// Tiles: a sample is cut into tiles of contiguous memory, about kTileElems
// each. NCHW: a tile is a block of whole channel planes, so a channel's sum
// is finished inside one tile. channels_last: a tile is a block of H x W rows
// of all C channels, each tile leaves a partial sum per channel, and the
// partials are added in tile order. Tile sizes depend only on C and H x W:
// sums do not change with the thread count or the batch.

// A tensor operand of the squeeze and scale passes, read as rows of
// contiguous elements: NCHW, a channel's H x W plane; channels_last, one
// position's C channels. Row r of sample i starts at data + i * sample +
// r * row. Dense in the problem's format, sample = C * H * W and row = H * W
// (NCHW) or C; the backward reads a dy whose samples or rows repeat in place,
// with stride 0 (launcher.cpp, dy_rows).
template <typename T>
struct Rows {
  const T* data;
  int64_t sample, row;
  Rows from(int64_t i) const { return {data + i * sample, sample, row}; }  // samples i, i + 1, ...
};

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

  // data as a dense tensor of the problem's format.
  template <typename T>
  Rows<T> dense(const T* data) const {
    return {data, C * HW, channels_last ? C : HW};
  }

  // Runs fn(sample_in_chunk, begin, end) over the tiles of g samples in
  // parallel, [begin, end) being the tile's channels or rows. Same g, same
  // partition over threads: the phases of a chunk reuse each thread's cache.
  // The second pass (newest_first) takes each thread's tiles in reverse
  // order: it starts with the tiles the first pass read last, the ones most
  // likely still in the cache when a chunk is a little larger than it. A
  // chunk far larger than the caches (chunk_fits false: one that
  // chunk_samples made large for the gate MLP's sake) gains nothing from
  // that, and the forward's scale pass then runs in order (measured faster,
  // docs/performance.md, issue 23; the backward's dx pass was not).
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

  // out[i, c] = factor * the sum over sample i's channel c of a (b: of a * b)
  // for g samples (b.data may be null): each tile's sums (tile_sums), a
  // channel's partials added in tile order, then the factor. NCHW: a tile's
  // channels are whole, so its sums are final. channels_last: a thread that
  // takes all of a sample's tiles adds each tile's partials to the total as it
  // goes, while they are in its cache; the tiles of a sample split between
  // threads leave their partials in `parts` ([g, nparts, C]), added after the
  // parallel loop in the same order. The sums are the same either way.
  template <typename A, typename T>
  void squeeze(int64_t g, const Rows<T>& a, const Rows<T>& b, A factor, A* parts, A* out) const {
    // split[i]: sample i's tiles were split between threads (set by the thread
    // with its first tile), so its partials are in parts.
    thread_local std::vector<char> flags;
    flags.assign(g, 0);
    char* const split = flags.data();
    // Tile k's partials (at part) into sample i's total: the first copied
    // (unless summed in place), the others added, the last then scaled.
    auto fold = [&](A* oi, const A* part, int64_t k) {
      for (int64_t c = 0; c < C; ++c) oi[c] = k == 0 ? part[c] : oi[c] + part[c];
      if (k == ntiles - 1)
        for (int64_t c = 0; c < C; ++c) oi[c] *= factor;
    };
    at::parallel_for(0, g * ntiles, 1, [&](int64_t first, int64_t last) {
      for (int64_t t = first; t < last; ++t) {
        const int64_t i = t / ntiles, k = t % ntiles;
        const Rows<T> ai = a.from(i), bi = b.data ? b.from(i) : b;
        A* oi = out + i * C;
        const int64_t begin = k * span, end = std::min(channels_last ? HW : C, begin + span);
        if (!channels_last) {
          tile_sums(ai, bi, begin, end, oi + begin);
          for (int64_t c = begin; c < end; ++c) oi[c] *= factor;
          continue;
        }
        A* pi = parts + i * nparts * C;
        if (t - k < first || t - k + ntiles > last) {
          if (k == 0) split[i] = 1;
          tile_sums(ai, bi, begin, end, pi + k * C);
          continue;
        }
        tile_sums(ai, bi, begin, end, k == 0 ? oi : pi);
        fold(oi, k == 0 ? oi : pi, k);
      }
    });
    for (int64_t i = 0; i < g; ++i)
      if (split[i])
        for (int64_t k = 0; k < nparts; ++k) fold(out + i * C, parts + (i * nparts + k) * C, k);
  }

  // The sums over one tile of a sample (a and b start at its first row; b's
  // data may be null): NCHW, of channels [begin, end) into dst[0, end -
  // begin); channels_last, of rows [begin, end), a partial for each of the C
  // channels into dst.
  template <typename A, typename T>
  void tile_sums(const Rows<T>& a, const Rows<T>& b, int64_t begin, int64_t end, A* dst) const {
    const T* a0 = a.data + begin * a.row;
    const T* b0 = b.data ? b.data + begin * b.row : nullptr;
    if (!channels_last) {
      if (b0 == nullptr) {
        row_sums<false>(a0, a.row, b0, 0, HW, end - begin, dst);
      } else {
        row_sums<true>(a0, a.row, b0, b.row, HW, end - begin, dst);
      }
    } else if (b0 == nullptr) {
      column_sums<false>(a0, a.row, b0, 0, end - begin, C, dst);
    } else {
      column_sums<true>(a0, a.row, b0, b.row, end - begin, C, dst);
    }
  }

  // out[c, hw] = fn(in[c, hw], c) over the tile of sample `in` (its first
  // row) into the dense sample `out`, fn on acc_t values: each element
  // widened to acc_t<T>, fn, rounded back to T once (map_row).
  template <typename T, typename Fn>
  void map(const Rows<T>& in, T* out, int64_t begin, int64_t end, const Fn& fn) const {
    if (!channels_last) {
      for (int64_t c = begin; c < end; ++c)
        map_row(in.data + c * in.row, out + c * HW, HW,
                [&](acc_t<T> v, int64_t) { return fn(v, c); });
      return;
    }
    for (int64_t hw = begin; hw < end; ++hw) map_row(in.data + hw * in.row, out + hw * C, C, fn);
  }
};

// Whether a chunk of g samples (bytes_per_sample each) is small enough that
// its newest tiles may still be in the cores' caches when the second pass
// starts: at most four times the chunk budget (twice a core's L2 per thread;
// 8x512x200 float32 on one thread, 3.2 MB, measured faster newest first).
inline bool chunk_fits(int64_t g, int64_t bytes_per_sample) {
  return g * bytes_per_sample <= 4 * kChunkBytesPerThread * at::get_num_threads();
}

// The gate MLP's multiply-adds per sample and channel: 2 * hidden for two
// FCs, C for one; ECA's few taps count as none.
inline int64_t mlp_products(const SEProblem& p) {
  if (p.excitation == Excitation::TwoFC) return 2 * p.hidden;
  return p.excitation == Excitation::OneFC ? p.C : 0;
}

// Samples per chunk: few enough that a chunk's tensors (bytes_per_sample
// each) stay in the caches. When the products with the weights, weighted by
// the caller (`products`, per sample and channel), reach the sample's
// elements per channel (H * W), at least kMlpChunk samples: the products then
// convert each weight once per kMlpChunk samples and run full register tiles
// of samples (a one-sample chunk takes one-sample tiles: at eSE's 512x512
// about 3.5x the time per multiply-add). See forward.cpp and backward.cpp for
// the weights and docs/performance.md for the measurements behind them.
inline int64_t chunk_samples(const SEProblem& p, int64_t bytes_per_sample, int64_t products) {
  constexpr int64_t kMlpChunk = 32;
  const int64_t budget = kChunkBytesPerThread * at::get_num_threads();
  int64_t g = budget / std::max<int64_t>(bytes_per_sample, 1);
  if (products >= p.HW) g = std::max(g, kMlpChunk);
  return std::clamp<int64_t>(g, 1, std::max<int64_t>(p.N, 1));
}

}  // namespace se_fused::cpu
