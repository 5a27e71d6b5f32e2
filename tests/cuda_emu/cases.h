// What the emulator (main.cpp, g++) and the GPU digest driver (gpu_digest.cu,
// nvcc) share, so that both run the same cases on the same inputs and hash
// the outputs with the same code: the case sets (quick, full, big, and the
// concurrent case's four problems), their names, the seeded inputs, the
// outputs of one forward + backward (Run, every buffer preset to a marker
// value so that an element no kernel writes hashes alike on both), and the
// digest (FNV-1a over the bytes of every output, every NaN hashed alike).
// Plain C++17 host code: no kernels, no emulator.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda/se_block.h"

namespace se_cases {

using se_fused::acc_t;
using se_fused::Activation;
using se_fused::Excitation;
using se_fused::Gate;

template <typename T> float tof(T v);
template <> inline float tof(float v) { return v; }
template <> inline float tof(double v) { return (float)v; }
template <> inline float tof(__half v) { return __half2float(v); }
template <> inline float tof(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> double tod(T v) { return (double)tof(v); }
template <> inline double tod(double v) { return v; }
template <typename T> T fromd(double v);
template <> inline float fromd(double v) { return (float)v; }
template <> inline double fromd(double v) { return v; }
template <> inline __half fromd(double v) { return __float2half_rn((float)v); }
template <> inline __nv_bfloat16 fromd(double v) { return __float2bfloat16_rn((float)v); }
template <typename T> const char* tname();
template <> inline const char* tname<float>() { return "fp32"; }
template <> inline const char* tname<double>() { return "fp64"; }
template <> inline const char* tname<__half>() { return "fp16"; }
template <> inline const char* tname<__nv_bfloat16>() { return "bf16"; }

enum class DT { F32, F64, F16, BF16 };
struct Case {
  DT dt;
  int64_t N, C, H, W, hidden;
  bool nhwc, bias;
  Activation act;
  Gate gate;
  int resident;       // blocks the emulated GPU holds at once (emulator only)
  int64_t unit_bytes;  // SEForwardParams::unit_bytes (small: several chunks per sample)
  bool specials = false;  // NaN, +Inf, -Inf in samples 0, 1, 2: NaN/Inf masks checked
  Excitation ex = Excitation::TwoFC;  // the others: hidden 0 (w1 [C, C] one FC, [k] ECA)
  int64_t k = 0;                      // ECA kernel size
  bool residual = false;              // y = x * s + x
  bool split = false;                 // NHWC rows split into parts (Geometry::parts > 1) in both directions
};

inline bool is_eca(const Case& k) { return k.ex == Excitation::ECA || k.ex == Excitation::ECACircular; }
// w1 and b1 sizes by excitation (w2, b2: [C, hidden], [C] for two FCs, else empty).
inline int64_t w1_size(const Case& k) { return is_eca(k) ? k.k : k.ex == Excitation::OneFC ? k.C * k.C : k.hidden * k.C; }
inline int64_t b1_size(const Case& k) { return is_eca(k) ? 1 : k.ex == Excitation::OneFC ? k.C : k.hidden; }
// As the launcher: NHWC with C 1 or HW 1 runs as NCHW.
inline bool channels_last(const Case& k) { return k.nhwc && k.C > 1 && k.H * k.W > 1; }

// The launch parameters of a case on `path`: everything but the pointers,
// the workspace and path_taken.
inline se_fused::cuda_kernels::SEForwardParams case_params(const Case& k, se_fused::cuda_kernels::SEPath path) {
  se_fused::cuda_kernels::SEForwardParams f;
  f.N = k.N; f.C = k.C; f.HW = k.H * k.W; f.hidden = k.hidden; f.channels_last = channels_last(k);
  f.activation = k.act; f.gate = k.gate; f.excitation = k.ex; f.kernel_size = is_eca(k) ? k.k : 0;
  f.residual = k.residual; f.path = path; f.unit_bytes = k.unit_bytes;
  return f;
}

template <typename T>
std::string tag_of(const Case& k) {
  return std::string(tname<T>()) + " N" + std::to_string(k.N) + " C" + std::to_string(k.C) + " " + std::to_string(k.H) + "x" +
         std::to_string(k.W) + " h" + std::to_string(k.hidden) + (k.nhwc ? " NHWC" : " NCHW") + (k.bias ? " bias" : " nobias") +
         (k.act == Activation::SiLU ? " silu" : k.act == Activation::HardSwish ? " hswish" : " relu") + (k.gate == Gate::HardSigmoid ? " hsig" : " sig") + " res" +
         std::to_string(k.resident) + " u" + std::to_string(k.unit_bytes) + (k.specials ? " nan/inf" : "") +
         (k.ex == Excitation::OneFC ? " one_fc" : is_eca(k) ? (k.ex == Excitation::ECA ? " eca" : " eca_circ") + std::to_string(k.k) : "") +
         (k.residual ? " residual" : "");
}
// The case's name: its line in the output and in digests/quick.txt.
inline std::string case_name(const Case& k) {
  switch (k.dt) {
    case DT::F32: return tag_of<float>(k);
    case DT::F64: return tag_of<double>(k);
    case DT::F16: return tag_of<__half>(k);
    default: return tag_of<__nv_bfloat16>(k);
  }
}
// The seed of the i-th case of a set (counted before any name filter).
inline uint32_t case_seed(size_t i) { return (uint32_t)i + 2; }
inline const char* kConcurrentName = "concurrent: 3 launch sequences + 1 one-pass, 2 block slots";

// The inputs of a case, x and dy in logical [n][c][hw] order.
template <typename T>
struct Inputs {
  std::vector<T> x, dy, w1, b1, w2, b2;
};

template <typename T>
Inputs<T> make_inputs(const Case& k, uint32_t seed) {
  const int64_t N = k.N, C = k.C, HW = k.H * k.W, H = k.hidden;
  std::mt19937 gen(seed);
  std::normal_distribution<double> nd;
  auto fill = [&](int64_t n, double sc) { std::vector<T> v(n); for (auto& e : v) e = fromd<T>(nd(gen) * sc); return v; };
  const bool fc2 = k.ex == Excitation::TwoFC, eca = is_eca(k);
  Inputs<T> in;
  in.x = fill(N * C * HW, 1.0);
  in.dy = fill(N * C * HW, 1.0);
  in.w1 = fill(w1_size(k), eca ? 0.6 : 1.0 / std::sqrt((double)C));
  in.b1 = fill(b1_size(k), 0.5);
  in.w2 = fill(C * H, 1.0 / std::sqrt((double)std::max<int64_t>(H, 1)));
  in.b2 = fill(fc2 ? C : 0, 0.5);
  // Shift the channel means so that the gate sees a spread.
  for (int64_t n = 0; n < N; ++n) for (int64_t c = 0; c < C; ++c) {
    const double sh = nd(gen);
    for (int64_t hw = 0; hw < HW; ++hw) { auto& e = in.x[(n * C + c) * HW + hw]; e = fromd<T>(tod(e) + sh); } }
  if (k.specials) {  // one element each: NaN in sample 0, +Inf in 1, -Inf in 2
    const double v[] = {std::nan(""), INFINITY, -INFINITY};
    for (int64_t n = 0; n < std::min<int64_t>(N, 3); ++n) in.x[(n * C + n % C) * HW + HW / 2] = fromd<T>(v[n]);
  }
  return in;
}

// The concurrent case's inputs: one generator over its problems in turn.
template <typename T>
std::vector<Inputs<T>> concurrent_inputs(const std::vector<Case>& ks) {
  std::vector<Inputs<T>> ins;
  std::mt19937 gen(77);
  std::normal_distribution<double> nd;
  auto fill = [&](int64_t n) { std::vector<T> v(n); for (auto& e : v) e = fromd<T>(nd(gen) * 0.5); return v; };
  for (const Case& k : ks) {
    const int64_t HW = k.H * k.W;
    Inputs<T> in;
    in.x = fill(k.N * k.C * HW); in.dy = fill(k.N * k.C * HW);
    in.w1 = fill(k.hidden * k.C); in.b1 = fill(k.hidden);
    in.w2 = fill(k.C * k.hidden); in.b2 = fill(k.C);
    ins.push_back(std::move(in));
  }
  return ins;
}

// Index in memory (the case's layout) of logical element (n, c, hw).
inline int64_t mem_index(const Case& k, int64_t n, int64_t c, int64_t hw) {
  const int64_t C = k.C, HW = k.H * k.W;
  return channels_last(k) ? (n * HW + hw) * C + c : (n * C + c) * HW + hw;
}
// Logical [n][c][hw] -> the case's layout, and back.
template <typename T>
void to_memory(const Case& k, const std::vector<T>& logical, T* mem) {
  const int64_t HW = k.H * k.W;
  for (int64_t n = 0; n < k.N; ++n) for (int64_t c = 0; c < k.C; ++c) for (int64_t hw = 0; hw < HW; ++hw)
    mem[mem_index(k, n, c, hw)] = logical[(n * k.C + c) * HW + hw];
}
template <typename T>
std::vector<T> from_memory(const Case& k, const T* mem) {
  const int64_t HW = k.H * k.W;
  std::vector<T> v(k.N * k.C * HW);
  for (int64_t n = 0; n < k.N; ++n) for (int64_t c = 0; c < k.C; ++c) for (int64_t hw = 0; hw < HW; ++hw)
    v[(n * k.C + c) * HW + hw] = mem[mem_index(k, n, c, hw)];
  return v;
}

// The outputs of one forward + backward: y, dx in logical order; the weight
// gradients (dw2, db2 empty without two FCs); the forward's saved pooled, z1, z2.
template <typename T>
struct Run {
  std::vector<T> y, dx, dw1, db1, dw2, db2;
  std::vector<acc_t<T>> pooled, z1, z2;
  long chunks = 0;
};
// Every output buffer sized for the case and filled with the marker -777 (what
// an element no kernel writes keeps; y and dx are sized by the caller).
template <typename T>
Run<T> unwritten_outputs(const Case& k) {
  using A = acc_t<T>;
  const bool fc2 = k.ex == Excitation::TwoFC;
  Run<T> r;
  r.pooled.assign(k.N * k.C, A(-777));
  r.z1.assign(k.N * k.hidden, A(-777));
  r.z2.assign(k.N * k.C, A(-777));
  r.dw1.assign(w1_size(k), fromd<T>(-777));
  r.db1.assign(b1_size(k), fromd<T>(-777));
  r.dw2.assign(k.C * k.hidden, fromd<T>(-777));
  r.db2.assign(fc2 ? k.C : 0, fromd<T>(-777));
  return r;
}

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull;

// FNV-1a over the bytes of v's elements, continuing from h; every NaN hashes
// as one value (which NaN an operation returns depends on its operand order,
// which the host compiler may swap, and a GPU returns its canonical NaN:
// payloads are not results).
template <typename V>
uint64_t fnv1a(uint64_t h, const V& v) {
  for (const auto& e : v) {
    unsigned char b[sizeof(e)];
    std::memcpy(b, &e, sizeof(e));
    if (std::isnan(tod(e))) std::memset(b, 0xff, sizeof(e));
    for (unsigned char c : b) h = (h ^ c) * 0x100000001b3ull;
  }
  return h;
}

// The digest of a run: every output of the forward and the backward, in the
// order y, dx, dw1, db1, dw2, db2, pooled, z1, z2 (continuing from h: the
// concurrent case chains its four problems).
template <typename T>
uint64_t digest_of(const Run<T>& r, uint64_t h = kFnvOffset) {
  for (const auto* v : {&r.y, &r.dx, &r.dw1, &r.db1, &r.dw2, &r.db2}) h = fnv1a(h, *v);
  for (const auto* v : {&r.pooled, &r.z1, &r.z2}) h = fnv1a(h, *v);
  return h;
}

}  // namespace se_cases

#include "case_sets.h"
