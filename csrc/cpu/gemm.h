// The gate MLP's matrix products, with a fixed order for every sum.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cpu/vec.h"

namespace se_fused::cpu {

// The gate MLP's products (small matrices: [G, C] x [C, hidden] and back).
// Register tiles of Vec<A> accumulators, sized for the target's vector
// registers (32 zmm with AVX-512, else 16 ymm, each Vec<A> two of them).
// Tiling changes which sums run side by side, never the order within a sum.

// A single sample (batch 1) takes taller tiles of linear, kDotM1 rows, for as
// many independent sums as a full tile.
#if defined(__AVX512F__)
constexpr int kDotM = 4, kDotG = 4;      // linear: rows of w x samples per tile
constexpr int kDotM1 = 8;                // linear: rows of w per tile of one sample
constexpr int kOuterG = 4, kOuterV = 4;  // outer_sums: rows x vectors of columns per tile
#else
constexpr int kDotM = 2, kDotG = 2;
constexpr int kDotM1 = 4;
constexpr int kOuterG = 2, kOuterV = 2;
#endif
constexpr int64_t kDotK = 256;            // k per block: a tile's inputs stay in L1
constexpr int64_t kOuterK = 64;           // outer_sums: k per block of a sum
constexpr int64_t kDotPanel = 4 * kDotM;  // rows of w per task of linear
static_assert(kDotPanel % kDotM1 == 0, "a panel is whole tiles of one sample");

// A matrix operand: element (r, c) at data[r * row_stride + c * col_stride].
template <typename T>
struct MatView {
  const T* data;
  int64_t rows, cols;
  int64_t row_stride, col_stride;

  const T& operator()(int64_t r, int64_t c) const { return data[r * row_stride + c * col_stride]; }
  const T* row(int64_t r) const { return data + r * row_stride; }
  MatView t() const { return {data, cols, rows, col_stride, row_stride}; }
};

// A row-major [rows, cols] matrix.
template <typename T>
MatView<T> matrix(const T* data, int64_t rows, int64_t cols) {
  return {data, rows, cols, cols, 1};
}

// acc[m * ld + g] += the lanes of sum_{k0 <= k < k1} w[m, k] *
// in[g, k] for m < kM, g < kG: lane l sums the k = l (mod kLanes) in order.
// w's rows are ldw apart, in's ldi; k0 and k1 are multiples of kLanes. The
// loops are fully unrolled so that r stays in registers.
template <int kM, int kG, typename A, typename T>
inline void dot_tile(const T* w, int64_t ldw, const A* in, int64_t ldi, int64_t k0, int64_t k1,
                     Vec<A>* acc, int64_t ld) {
  Vec<A> r[kM][kG];
#pragma GCC unroll 8
  for (int m = 0; m < kM; ++m)
#pragma GCC unroll 8
    for (int g = 0; g < kG; ++g) r[m][g] = acc[m * ld + g];
  for (int64_t k = k0; k < k1; k += kLanes<A>) {
    Vec<A> wv[kM];
#pragma GCC unroll 8
    for (int m = 0; m < kM; ++m) wv[m] = load_lanes<A>(w + m * ldw + k);
#pragma GCC unroll 8
    for (int g = 0; g < kG; ++g) {
      const Vec<A> iv = load_lanes<A>(in + g * ldi + k);
#pragma GCC unroll 8
      for (int m = 0; m < kM; ++m) r[m][g] = fma_lanes<A>(wv[m], iv, r[m][g]);
    }
  }
#pragma GCC unroll 8
  for (int m = 0; m < kM; ++m)
#pragma GCC unroll 8
    for (int g = 0; g < kG; ++g) acc[m * ld + g] = r[m][g];
}

// dot_tile for gn <= kDotG (4 or 2) samples, in tiles of kDotG, 2 and 1;
// acc's rows are gn apart.
template <int kM, typename A, typename T>
inline void dot_tiles(const T* w, int64_t ldw, const A* in, int64_t ldi, int64_t k0, int64_t k1,
                      Vec<A>* acc, int64_t gn) {
  static_assert(kDotG == 4 || kDotG == 2, "the remainder tiles below cover kDotG <= 4");
  if (gn == kDotG) return dot_tile<kM, kDotG>(w, ldw, in, ldi, k0, k1, acc, gn);
  int64_t g = 0;
  if constexpr (kDotG > 2) {
    if (gn - g >= 2) dot_tile<kM, 2>(w, ldw, in + g * ldi, ldi, k0, k1, acc + g, gn), g += 2;
  }
  if (gn - g >= 1) dot_tile<kM, 1>(w, ldw, in + g * ldi, ldi, k0, k1, acc + g, gn);
}

// For g < G, m < M: out(g, m, bias[m] + sum_k w(m, k) * in(g, k)) for in
// [G, K] and w [M, K], both with contiguous rows. Each sum: kLanes partial
// sums over the full blocks of kLanes (lane l takes k = l mod kLanes, in
// order), added in sum_lanes' tree, then the tail in order. A task is a
// panel of kDotPanel rows of w; it walks K in blocks of kDotK so that the
// block of in and of the panel's w stay in L1 while its tiles run. `out` is
// the epilogue that stores the value.
template <typename A, typename T, typename Out>
void linear(const MatView<A>& in, const MatView<T>& w, const T* bias, const Out& out) {
  constexpr int64_t kSlots = kDotPanel * kDotG;  // a panel's accumulators
  static_assert(kSlots % kFoldRows<A> == 0, "the lanes' sums below run kFoldRows at a time");
  const int64_t G = in.rows, M = w.rows, K = w.cols;
  const int64_t ldi = in.row_stride, ldw = w.row_stride;
  const int64_t kfull = K / kLanes<A> * kLanes<A>;
  const int64_t panels = (M + kDotPanel - 1) / kDotPanel;
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(kDotPanel * G * K, 1));
  at::parallel_for(0, panels, grain, [&](int64_t first, int64_t last) {
    Vec<A> acc[kSlots];  // acc[m * gn + g]: row m0 + m of w, sample g0 + g
    A sums[kSlots];
    for (int64_t p = first; p < last; ++p) {
      const int64_t m0 = p * kDotPanel, mn = std::min(kDotPanel, M - m0);
      for (int64_t g0 = 0; g0 < G; g0 += kDotG) {
        const int64_t gn = std::min<int64_t>(kDotG, G - g0), slots = mn * gn;
        const A* ig0 = in.row(g0);
        std::fill(acc, acc + slots, Vec<A>{});
        for (int64_t k0 = 0; k0 < kfull; k0 += kDotK) {
          const int64_t k1 = std::min(k0 + kDotK, kfull);
          int64_t m = 0;
          if (gn == 1) {
            for (; m + kDotM1 <= mn; m += kDotM1)
              dot_tile<kDotM1, 1>(w.row(m0 + m), ldw, ig0, ldi, k0, k1, acc + m, 1);
          }
          for (; m + kDotM <= mn; m += kDotM)
            dot_tiles<kDotM>(w.row(m0 + m), ldw, ig0, ldi, k0, k1, acc + m * gn, gn);
          for (; m < mn; ++m) dot_tiles<1>(w.row(m0 + m), ldw, ig0, ldi, k0, k1, acc + m * gn, gn);
        }
        // The lanes' sums, kFoldRows accumulators at a time (the last padded with 0).
        for (int64_t i0 = 0; i0 < slots; i0 += kFoldRows<A>) {
          Vec<A> rows[kFoldRows<A>];
          for (int64_t i = 0; i < kFoldRows<A>; ++i)
            rows[i] = i0 + i < slots ? acc[i0 + i] : Vec<A>{};
          sum_lanes_rows<A>(rows, sums + i0);
        }
        for (int64_t m = 0; m < mn; ++m) {
          const T* wm = w.row(m0 + m);
          const A b = bias == nullptr ? A(0) : to_acc<A>(bias[m0 + m]);
          for (int64_t g = 0; g < gn; ++g) {
            const A* ig = in.row(g0 + g);
            A tail = 0;
            for (int64_t k = kfull; k < K; ++k) tail = std::fma(to_acc<A>(wm[k]), ig[k], tail);
            out(g0 + g, m0 + m, b + (sums[m * gn + g] + tail));
          }
        }
      }
    }
  });
}

// For g < kG, m < kV * kLanes: the sums s(g0 + g, m0 + m) = sum_k a(g0 + g, k) *
// b(k, m0 + m) over k < K, in blocks of kOuterK in order (each block summed
// in order from 0, then added to the total), handed out a row at a time:
// out(g, m, &s(g, m), count).
template <int kG, int kV, typename A, typename T, typename Out>
inline void outer_tile(const MatView<A>& a, const MatView<T>& b, int64_t g0, int64_t m0,
                       const Out& out) {
  // The loops are fully unrolled, or GCC keeps the tiles in memory (a
  // store-to-load chain per load and per FMA, or a rep stos per zeroing).
  const int64_t K = a.cols;
  Vec<A> total[kG][kV];
#pragma GCC unroll 16
  for (int g = 0; g < kG; ++g)
#pragma GCC unroll 16
    for (int v = 0; v < kV; ++v) total[g][v] = Vec<A>{};
  for (int64_t k0 = 0; k0 < K; k0 += kOuterK) {
    Vec<A> acc[kG][kV];
#pragma GCC unroll 16
    for (int g = 0; g < kG; ++g)
#pragma GCC unroll 16
      for (int v = 0; v < kV; ++v) acc[g][v] = Vec<A>{};
    for (int64_t k = k0; k < std::min(k0 + kOuterK, K); ++k) {
      const T* bk = b.row(k) + m0;
      Vec<A> bv[kV];
#pragma GCC unroll 16
      for (int v = 0; v < kV; ++v) bv[v] = load_lanes<A>(bk + v * kLanes<A>);
#pragma GCC unroll 16
      for (int g = 0; g < kG; ++g) {
        const Vec<A> s = splat<A>(a(g0 + g, k));
#pragma GCC unroll 16
        for (int v = 0; v < kV; ++v) acc[g][v] = fma_lanes<A>(s, bv[v], acc[g][v]);
      }
    }
#pragma GCC unroll 16
    for (int g = 0; g < kG; ++g)
#pragma GCC unroll 16
      for (int v = 0; v < kV; ++v) total[g][v] = total[g][v] + acc[g][v];
  }
  for (int g = 0; g < kG; ++g) out(g0 + g, m0, &total[g][0].part[0][0], kV * kLanes<A>);
}

// fn(std::integral_constant<int, n>) for 1 <= n <= kMax: a tile's vector
// count as a compile-time constant.
template <int kMax, typename Fn>
inline void with_vectors(int64_t n, const Fn& fn) {
  if constexpr (kMax > 1) {
    if (n < kMax) return with_vectors<kMax - 1>(n, fn);
  }
  fn(std::integral_constant<int, kMax>{});
}

// For g < G, m < M: s(g, m) = sum_k a(g, k) * b(k, m) over k < K in order,
// for a [G, K] (any strides) and b [K, M] (contiguous rows), handed to
// out(g, m, &s(g, m), count) for count consecutive m (so that the epilogue's
// loop vectorises). The backward's transposed products (a = the gradient
// [G, K], b = a weight [K, M] as stored) and the weight gradients (a = a
// gradient's transpose [G, K = N], b = the layer's input [N, M], summed over
// samples); b is converted to A as it is loaded. Sums run in blocks of
// kOuterK in order (see outer_tile). A task is kOuterV vectors of columns
// (or the columns past the last full vector) for kOuterG rows.
template <typename A, typename T, typename Out>
void outer_sums(const MatView<A>& a, const MatView<T>& b, const Out& out) {
  constexpr int64_t L = kLanes<A>;
  const int64_t G = a.rows, K = a.cols, M = b.cols;
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
                acc = std::fma(a(g, k), to_acc<A>(b.row(k)[m]), acc);
              total += acc;
            }
            out(g, m, &total, 1);
          }
        continue;
      }
      const int64_t nv = std::min<int64_t>(kOuterV, vecs - v0);
      for (int64_t g = g0; g < g0 + gn;) {
        const bool rows = g0 + gn - g >= kOuterG;
        // One tile of all nv vectors: their sums run side by side (nv at a
        // time, not one after another: at batch 1 a sum is a chain of K
        // dependent multiply-adds).
        with_vectors<kOuterV>(nv, [&](auto v) {
          if (rows) {
            outer_tile<kOuterG, decltype(v)::value>(a, b, g, v0 * L, out);
          } else {
            outer_tile<1, decltype(v)::value>(a, b, g, v0 * L, out);
          }
        });
        g += rows ? kOuterG : 1;
      }
    }
  });
}

}  // namespace se_fused::cpu
