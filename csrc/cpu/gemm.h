// The gate MLP's matrix products, with a fixed order for every sum.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

#include "cpu/vec.h"

namespace se_fused::cpu {

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

}  // namespace se_fused::cpu
