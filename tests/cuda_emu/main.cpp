// Runs the CUDA kernels of csrc/cuda/ on the CPU (emu.h, through
// include/cuda/se_sync.h which the include path puts before the real one),
// forward and backward, against a float64 reference, and checks bit for bit
// that the results do not depend on the path (TwoPass, OnePass, Cluster,
// refused launches, requests that fall back), the number of resident blocks,
// the alignment of x and dy (offset by one element), or the other samples of
// the batch; then that three concurrent launch sequences, each with more
// units per sample than the device has block slots, and a one-pass launch
// beside them complete with the bits of a serial run.
//
//   main [quick|full|big] [SUBSTRING]   (default: quick; SUBSTRING filters cases by name)
//
// One line per case ("ok ..." or "FAIL ..."; with EMU_DIGEST=1 ending in
// "digest=<16 hex>", cases.h digest_of the two-pass outputs, which
// tests/test_cuda_emulation.py compares with digests/quick.txt), then
// "N passed, M failed". Exit status 0 iff all passed. The cases, their inputs
// and the digest are cases.h's (shared with gpu_digest.cu). EMU_CASE_TIMEOUT (seconds, default 60) bounds
// each case: a hang prints "TIMEOUT <case>" and exits 2.
#include "cuda/se_forward_f32.cu"
#include "cuda/se_forward_f64.cu"
#include "cuda/se_forward_f16.cu"
#include "cuda/se_forward_bf16.cu"
#include "cuda/se_backward_f32.cu"
#include "cuda/se_backward_f64.cu"
#include "cuda/se_backward_f16.cu"
#include "cuda/se_backward_bf16.cu"


#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <string>

#include "cases.h"  // the case sets, their inputs and the digest (shared with gpu_digest.cu)

using namespace se_fused;
using namespace se_fused::cuda_kernels;
using namespace se_cases;

template <typename T> double tol() {
  return std::is_same_v<T, double> ? 1e-11 : std::is_same_v<T, float> ? 2e-6 : std::is_same_v<T, __half> ? 2e-3 : 1.6e-2;
}

struct Result {
  std::vector<std::string> errors;
  long chunks = 0;
  long parts_f = 1, parts_b = 1;  // Geometry::parts, forward and backward
  uint64_t digest = 0;  // cases.h digest_of the two-pass outputs (printed under EMU_DIGEST=1)
};

// x, dy in logical [n][c][hw] order; stored per layout, x and dy offset by `off` elements.
// The cluster path's units per block read from global memory instead of
// staged (SEForwardParams::cluster_unstaged; 0: only what the budget does
// not hold), for the runs that set it.
int64_t g_cluster_unstaged = 0;
// The cluster forward's samples per round (SEForwardParams::cluster_samples;
// 0: the device rule, which the small quick batches rarely move past 1).
int64_t g_cluster_samples = 0;
// Cluster runs (either direction) whose plan stages the unit's weight slice
// (se_heuristics.h cluster_plan's weight_bytes): the quick set must have some,
// or the staged weights' waits go unchecked (tests/test_cuda_emulation.py).
std::atomic<long> g_weight_plans{0};
// ... and those that take several samples per round (g_cluster_samples).
std::atomic<long> g_sample_plans{0};

template <typename T>
Run<T> run_kernels(const Case& k, const std::vector<T>& xl, const std::vector<T>& dyl, const std::vector<T>& w1,
                   const std::vector<T>& b1, const std::vector<T>& w2, const std::vector<T>& b2, int off, int resident,
                   SEPath path, Result& res, SEPath expect_taken = SEPath::Auto,
                   SEPath expect_b = SEPath::Auto) {  // the backward's, if not expect_taken
  using A = acc_t<T>;
  const int64_t N = k.N, C = k.C, HW = k.H * k.W, H = k.hidden;
  std::vector<T> xbuf(N * C * HW + off), dybuf(N * C * HW + off), ybuf(N * C * HW), dxbuf(N * C * HW);
  T* x = xbuf.data() + off; T* dy = dybuf.data() + off;
  to_memory(k, xl, x);
  to_memory(k, dyl, dy);
  Run<T> r = unwritten_outputs<T>(k);
  if (resident > 0) emu::g_resident = resident;
  SEPath taken_f = SEPath::Auto, taken_b = SEPath::Auto;
  const bool fc2 = k.ex == Excitation::TwoFC;
  SEForwardParams f = case_params(k, path);
  f.cluster_unstaged = g_cluster_unstaged;
  f.cluster_samples = g_cluster_samples;
  f.x = x; f.w1 = w1.data(); f.b1 = k.bias ? b1.data() : nullptr;
  f.w2 = fc2 ? w2.data() : nullptr; f.b2 = fc2 && k.bias ? b2.data() : nullptr;
  f.y = ybuf.data(); f.pooled = r.pooled.data(); f.z1 = r.z1.data(); f.z2 = r.z2.data(); f.path_taken = &taken_f;
  const size_t fwb = se_forward_workspace_bytes<T>(f);
  std::vector<A> ws((fwb + sizeof(A) - 1) / sizeof(A), A(-555));
  f.workspace = ws.data(); f.workspace_bytes = fwb;
  if (launch_se_forward<T>(f, nullptr) != cudaSuccess) res.errors.push_back("launch_se_forward failed");
  SEBackwardParams b;
  static_cast<SEForwardParams&>(b) = case_params(k, path);
  b.cluster_unstaged = g_cluster_unstaged;
  b.dy = dy; b.x = x; b.pooled = r.pooled.data(); b.z1 = r.z1.data(); b.z2 = r.z2.data(); b.w1 = w1.data();
  b.dx = dxbuf.data(); b.dw1 = r.dw1.data(); b.db1 = r.db1.data(); b.path_taken = &taken_b;
  if (fc2) { b.w2 = w2.data(); b.dw2 = r.dw2.data(); b.db2 = r.db2.data(); }
  const size_t bwb = se_backward_workspace_bytes<T>(b);
  std::vector<A> wsb((bwb + sizeof(A) - 1) / sizeof(A), A(-555));
  b.workspace = wsb.data(); b.workspace_bytes = bwb;
  if (launch_se_backward<T>(b, nullptr) != cudaSuccess) res.errors.push_back("launch_se_backward failed");
  r.y = from_memory(k, ybuf.data());
  r.dx = from_memory(k, dxbuf.data());
  r.chunks = make_geometry<T>(f, false).chunks;
  if (expect_b == SEPath::Auto) expect_b = expect_taken;
  if (expect_taken != SEPath::Auto && (taken_f != expect_taken || taken_b != expect_b))
    res.errors.push_back("path taken " + std::to_string((int)taken_f) + "/" + std::to_string((int)taken_b) +
                         ", expected " + std::to_string((int)expect_taken) + "/" + std::to_string((int)expect_b));
  return r;
}

template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

template <typename T>
// Relative error against max(|ref|, mag) + 1e-3 max|ref|, where mag (if given)
// is the size of the terms that cancel in ref (rounding is relative to them).
void check(const char* what, const std::vector<T>& got, const std::vector<double>& ref, double rtol, Result& res,
           const std::vector<double>* mag = nullptr) {
  double scale = 0; for (double v : ref) scale = std::max(scale, std::fabs(v));
  double worst = 0; int64_t wi = -1;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double g = tod(got[i]);
    const double m = std::max(std::fabs(ref[i]), mag ? (*mag)[i] : 0.0);
    const double err = std::fabs(g - ref[i]) / (m + 1e-3 * scale + 1e-300);
    if (!(err <= worst)) { worst = err; wi = i; }
  }
  if (!(worst <= rtol)) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s rel err %.3g > %.3g at %ld (got %.9g, ref %.9g)", what, worst, rtol, (long)wi,
             tod(got[wi]), ref[wi]);
    res.errors.push_back(buf);
  }
}

// The geometry a case's forward (bwd false) or backward gets, as run_kernels sets it up.
template <typename T>
Geometry geometry_of(const Case& k, bool bwd, SEForwardParams* fp = nullptr) {
  SEForwardParams f;
  f.N = k.N; f.C = k.C; f.HW = k.H * k.W; f.hidden = k.hidden;
  f.channels_last = k.nhwc && k.C > 1 && f.HW > 1;
  f.excitation = k.ex; f.kernel_size = is_eca(k) ? k.k : 0; f.unit_bytes = k.unit_bytes;
  if (fp) *fp = f;
  return make_geometry<T>(f, bwd);
}
// A one-pass request with every unit resident: OnePass where the tile fits
// the shared-memory budget, else the two-pass fallback.
template <typename T>
SEPath onepass_expected(const Case& k, bool bwd) {
  SEForwardParams f;
  const Geometry g = geometry_of<T>(k, bwd, &f);
  return onepass_smem_bytes<T>(f, g) <= kOnePassSmemBytes ? SEPath::OnePass : SEPath::TwoPass;
}
template <typename T>
int64_t units_of(const Case& k, bool bwd) { return geometry_of<T>(k, bwd).units; }
// A sample's units (chunks x row parts): one-pass needs that many resident blocks.
template <typename T>
int64_t sample_units_of(const Case& k, bool bwd) { return units_per_sample(geometry_of<T>(k, bwd)); }
// One-pass on `slots` resident blocks: OnePass where a sample's units fit the
// slots (rounds of whole samples when the call's do not) and the tile fits
// the shared-memory budget, else the two-pass fallback.
template <typename T>
SEPath onepass_on(const Case& k, bool bwd, int64_t slots) {
  return sample_units_of<T>(k, bwd) <= slots ? onepass_expected<T>(k, bwd) : SEPath::TwoPass;
}
// A cluster request on a device of `slots` block slots (one GPC): Cluster
// where the sample's units fit a cluster of at most that many blocks
// (se_heuristics.h cluster_plan), else the two-pass fallback.
template <typename T>
SEPath cluster_on(const Case& k, bool bwd, int64_t slots) {
  SEForwardParams f;
  const Geometry g = geometry_of<T>(k, bwd, &f);
  f.cluster_unstaged = g_cluster_unstaged;
  const StagedPlan sp = cluster_plan<T>(f, g, std::min<int64_t>(slots, kMaxCluster), true);
  if (sp.weight_bytes > 0) g_weight_plans++;
  if (!bwd && g_cluster_samples > 1 && g_cluster_samples <= k.N &&
      cluster_plan<T>(f, g, std::min<int64_t>(slots, kMaxCluster), true, g_cluster_samples).slots > 0)
    g_sample_plans++;
  return sp.slots > 0 ? SEPath::Cluster : SEPath::TwoPass;
}
// One OS thread (and 256 fibers) per block of a grid here: past this many
// units the one-pass checks run on 4 block slots (rounds, or the two-pass
// fallback) instead of one round of all units (a 175-unit grid took 80 s
// under ASan on 2 cores).
constexpr int64_t kEmuOnePassMaxUnits = 72;

template <typename T>
Result test(const Case& k, uint32_t seed) {
  using A = acc_t<T>;
  Result res;
  const int64_t N = k.N, C = k.C, HW = k.H * k.W, H = k.hidden;
  const bool fc2 = k.ex == Excitation::TwoFC, eca = is_eca(k);
  const bool circ = k.ex == Excitation::ECACircular;
  const int64_t KS = eca ? k.k : 0;
  const Inputs<T> in = make_inputs<T>(k, seed);
  const std::vector<T>&x = in.x, &dy = in.dy, &w1 = in.w1, &b1 = in.b1, &w2 = in.w2, &b2 = in.b2;
  // float64 reference (se_math.h's activation/gate functions in double: their NaN
  // and Inf behaviour is PyTorch's, which tests/test_nan_inf.py checks on the CPU).
  std::vector<double> p(N * C), pmag(N * C), dxmag(N * C * HW), s(N * C), y(N * C * HW), dx(N * C * HW), dw1(w1.size(), 0), db1(b1.size(), 0), dw2(C * H, 0), db2(b2.size(), 0);
  std::vector<double> rz1(N * H), rz1mag(N * H), rz2(N * C), rz2mag(N * C);  // the forward's saved z1, z2
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t c = 0; c < C; ++c) { double t = 0; for (int64_t hw = 0; hw < HW; ++hw) t += tod(x[(n*C+c)*HW+hw]); p[n*C+c] = t / HW;
      double m = 0; for (int64_t hw = 0; hw < HW; ++hw) m += std::fabs(tod(x[(n*C+c)*HW+hw])); pmag[n*C+c] = m / HW; }
    std::vector<double> z1(H), a(H), z2(C), dz2(C), dz1(H);
    for (int64_t j = 0; j < H; ++j) { double t = k.bias ? tod(b1[j]) : 0, m = std::fabs(t);
      for (int64_t c = 0; c < C; ++c) { t += tod(w1[j*C+c]) * p[n*C+c]; m += std::fabs(tod(w1[j*C+c]) * p[n*C+c]); }
      z1[j] = rz1[n*H+j] = t; rz1mag[n*H+j] = m; a[j] = activation_fwd(k.act, t); }
    // the residual gate: x * s + x (an infinite x where s is 0 gives NaN, as the plain block)
    auto gated = [&](double v, double sc) { return k.residual ? v * sc + v : v * sc; };
    for (int64_t c = 0; c < C; ++c) {
      double t, m;
      if (fc2) { t = k.bias ? tod(b2[c]) : 0; m = std::fabs(t);
        for (int64_t j = 0; j < H; ++j) { t += tod(w2[c*H+j]) * a[j]; m += std::fabs(tod(w2[c*H+j]) * a[j]); }
      } else if (!eca) { t = k.bias ? tod(b1[c]) : 0; m = std::fabs(t);
        for (int64_t j = 0; j < C; ++j) { t += tod(w1[c*C+j]) * p[n*C+j]; m += std::fabs(tod(w1[c*C+j]) * p[n*C+j]); }
      } else { t = k.bias ? tod(b1[0]) : 0; m = std::fabs(t);
        for (int64_t q = 0; q < KS; ++q) { const int64_t src = eca_source(c, q, KS, C, circ);
          if (src >= 0) { t += tod(w1[q]) * p[n*C+src]; m += std::fabs(tod(w1[q]) * p[n*C+src]); } }
      }
      z2[c] = rz2[n*C+c] = t; rz2mag[n*C+c] = m; s[n*C+c] = gate_fwd(k.gate, t); }
    for (int64_t c = 0; c < C; ++c) for (int64_t hw = 0; hw < HW; ++hw) y[(n*C+c)*HW+hw] = gated(tod(x[(n*C+c)*HW+hw]), s[n*C+c]);
    for (int64_t c = 0; c < C; ++c) { double t = 0; for (int64_t hw = 0; hw < HW; ++hw) t += tod(dy[(n*C+c)*HW+hw]) * tod(x[(n*C+c)*HW+hw]); dz2[c] = gate_backward(k.gate, z2[c], gate_fwd(k.gate, z2[c]), t); }
    for (int64_t j = 0; j < H; ++j) { double t = 0; for (int64_t c = 0; c < C; ++c) t += tod(w2[c*H+j]) * dz2[c]; dz1[j] = activation_backward(k.act, z1[j], t); }
    for (int64_t c = 0; c < C; ++c) { double t = 0;
      if (fc2) { for (int64_t j = 0; j < H; ++j) t += tod(w1[j*C+c]) * dz1[j]; }
      else if (!eca) { for (int64_t j = 0; j < C; ++j) t += tod(w1[j*C+c]) * dz2[j]; }
      else { for (int64_t q = 0; q < KS; ++q) { const int64_t d = eca_source(c, KS - 1 - q, KS, C, circ); if (d >= 0) t += tod(w1[q]) * dz2[d]; } }
      for (int64_t hw = 0; hw < HW; ++hw) {
        const double a1 = gated(tod(dy[(n*C+c)*HW+hw]), s[n*C+c]), a2 = t / HW;
        dx[(n*C+c)*HW+hw] = a1 + a2; dxmag[(n*C+c)*HW+hw] = std::fabs(a1) + std::fabs(a2); } }
    if (fc2) {
      for (int64_t j = 0; j < H; ++j) { db1[j] += dz1[j]; for (int64_t c = 0; c < C; ++c) dw1[j*C+c] += dz1[j] * p[n*C+c]; }
      for (int64_t c = 0; c < C; ++c) { db2[c] += dz2[c]; for (int64_t j = 0; j < H; ++j) dw2[c*H+j] += dz2[c] * a[j]; }
    } else if (!eca) {
      for (int64_t j = 0; j < C; ++j) { db1[j] += dz2[j]; for (int64_t c = 0; c < C; ++c) dw1[j*C+c] += dz2[j] * p[n*C+c]; }
    } else {
      for (int64_t c = 0; c < C; ++c) { db1[0] += dz2[c];
        for (int64_t q = 0; q < KS; ++q) { const int64_t src = eca_source(c, q, KS, C, circ); if (src >= 0) dw1[q] += dz2[c] * p[n*C+src]; } }
    }
  }
  Run<T> r = run_kernels<T>(k, x, dy, w1, b1, w2, b2, 0, k.resident, SEPath::TwoPass, res, SEPath::TwoPass);
  res.chunks = r.chunks;
  res.parts_f = geometry_of<T>(k, false).parts;
  res.parts_b = geometry_of<T>(k, true).parts;
  res.digest = digest_of(r);
  if (k.specials) {  // the NaN and Inf masks of y and dx are the reference's, on both paths
    auto masks = [&](const char* what, const std::vector<T>& got, const std::vector<double>& ref, const char* how) {
      for (size_t i = 0; i < ref.size(); ++i) {
        const double g = tod(got[i]);
        if (std::isnan(g) != std::isnan(ref[i]) || std::isinf(g) != std::isinf(ref[i]) ||
            (std::isinf(g) && (g > 0) != (ref[i] > 0))) {
          char buf[160];
          snprintf(buf, sizeof buf, "%s NaN/Inf mask differs %s at %ld (got %g, ref %g)", what, how, (long)i, g, ref[i]);
          res.errors.push_back(buf);
          return;
        }
      }
    };
    masks("y", r.y, y, "(two-pass)");
    masks("dx", r.dx, dx, "(two-pass)");
    const int64_t uf = units_of<T>(k, false), ub = units_of<T>(k, true);
    const int op_res = (int)(std::max(uf, ub) <= kEmuOnePassMaxUnits ? std::max(uf, ub) : 4);
    const Run<T> ro = run_kernels<T>(k, x, dy, w1, b1, w2, b2, 1, op_res, SEPath::OnePass, res,
                                     onepass_on<T>(k, false, op_res), onepass_on<T>(k, true, op_res));
    masks("y", ro.y, y, "(one-pass)");
    masks("dx", ro.dx, dx, "(one-pass)");
    const Run<T> rk = run_kernels<T>(k, x, dy, w1, b1, w2, b2, 1, 4, SEPath::Cluster, res,
                                     cluster_on<T>(k, false, 4), cluster_on<T>(k, true, 4));
    masks("y", rk.y, y, "(cluster)");
    masks("dx", rk.dx, dx, "(cluster)");
    // The same bits but for NaN payloads (which g++ may give either operand's:
    // it commutes additions).
    auto same_but_nan = [](const auto& a, const auto& b) {
      if (a.size() != b.size()) return false;
      for (size_t i = 0; i < a.size(); ++i)
        if (std::memcmp(&a[i], &b[i], sizeof(a[i])) && !(std::isnan(tod(a[i])) && std::isnan(tod(b[i])))) return false;
      return true;
    };
    if (!same_but_nan(r.y, ro.y) || !same_but_nan(r.dx, ro.dx) || !same_but_nan(r.z2, ro.z2) ||
        !same_but_nan(r.pooled, ro.pooled) || !same_but_nan(r.dw1, ro.dw1))
      res.errors.push_back("y, dx, z2, pooled or dw1 differ beyond NaN payloads on the one-pass path");
    if (!same_but_nan(r.y, rk.y) || !same_but_nan(r.dx, rk.dx) || !same_but_nan(r.z2, rk.z2) ||
        !same_but_nan(r.pooled, rk.pooled) || !same_but_nan(r.dw1, rk.dw1))
      res.errors.push_back("y, dx, z2, pooled or dw1 differ beyond NaN payloads on the cluster path");
    emu::g_resident = k.resident;
    return res;
  }
  if (k.unit_bytes > 0 && r.chunks < 2)
    res.errors.push_back("expected >= 2 chunks per sample (unit_bytes set) but K = " + std::to_string(r.chunks));
  if (k.ex != Excitation::TwoFC && k.hidden != 0)
    res.errors.push_back("case error: hidden must be 0 without two FCs");
  if (k.split && (res.parts_f < 2 || res.parts_b < 2))
    res.errors.push_back("expected the rows split into parts, got P = " + std::to_string(res.parts_f) + "/" +
                         std::to_string(res.parts_b));
  const double t = tol<T>();
  const double tacc = std::is_same_v<A, double> ? 1e-12 : 2e-5;
  check("pooled", r.pooled, p, tacc * 10, res, &pmag);
  check("z1", r.z1, rz1, tacc * 10, res, &rz1mag);
  check("z2", r.z2, rz2, tacc * 10, res, &rz2mag);
  check("y", r.y, y, t, res);
  check("dx", r.dx, dx, t * 2, res, &dxmag);
  const double tw = std::is_same_v<A, double> ? t * 2 : t * 4;
  check("dw1", r.dw1, dw1, tw, res); check("db1", r.db1, db1, tw, res);
  check("dw2", r.dw2, dw2, tw, res); check("db2", r.db2, db2, tw, res);
  // Determinism: the same bits on every path, with x and dy misaligned by one
  // element, with another number of resident blocks.
  const char* names[] = {"y", "pooled", "z1", "z2", "dx", "dw1", "db1", "dw2", "db2"};
  auto same_as_r = [&](const Run<T>& r2, const std::string& how) {
    const bool eq[] = {same_bits(r.y, r2.y), same_bits(r.pooled, r2.pooled), same_bits(r.z1, r2.z1), same_bits(r.z2, r2.z2),
                       same_bits(r.dx, r2.dx), same_bits(r.dw1, r2.dw1), same_bits(r.db1, r2.db1), same_bits(r.dw2, r2.dw2),
                       same_bits(r.db2, r2.db2)};
    for (int i = 0; i < 9; ++i)
      if (!eq[i]) res.errors.push_back(std::string(names[i]) + " bits differ " + how);
  };
  same_as_r(run_kernels<T>(k, x, dy, w1, b1, w2, b2, 1, 4, SEPath::TwoPass, res, SEPath::TwoPass),
            "on the two-pass path (x/dy misaligned by 1, 4 resident)");
  // OnePass: one block per unit, every unit resident (one round: the tile
  // stays in the block's shared memory across the barrier), x/dy aligned and misaligned
  // by one element (NCHW: the staged span keeps the misalignment; NHWC: the
  // scalar staging and scale). Where the tile exceeds the budget, the
  // two-pass fallback.
  const int64_t uf = units_of<T>(k, false), ub = units_of<T>(k, true);
  const int64_t sf = sample_units_of<T>(k, false), sb = sample_units_of<T>(k, true);
  const int op_res = (int)(std::max(uf, ub) <= kEmuOnePassMaxUnits ? std::max(uf, ub) : 4);
  const SEPath op_f = onepass_on<T>(k, false, op_res), op_b = onepass_on<T>(k, true, op_res);
  same_as_r(run_kernels<T>(k, x, dy, w1, b1, w2, b2, 0, op_res, SEPath::OnePass, res, op_f, op_b),
            "on the one-pass path (" + std::to_string(op_res) + " resident)");
  if (std::max(uf, ub) <= kEmuOnePassMaxUnits)
    same_as_r(run_kernels<T>(k, x, dy, w1, b1, w2, b2, 1, op_res, SEPath::OnePass, res, op_f, op_b),
              "on the one-pass path (x/dy misaligned by 1)");
  // Rounds: as many slots as the larger direction's sample has units, so that
  // a round holds one sample (or a few in the other direction).
  const int64_t per_sample = std::max(sf, sb);
  if (N > 1 && per_sample < std::max(uf, ub) && per_sample <= kEmuOnePassMaxUnits)
    same_as_r(run_kernels<T>(k, x, dy, w1, b1, w2, b2, 1, (int)per_sample, SEPath::OnePass, res,
                             onepass_on<T>(k, false, per_sample), onepass_on<T>(k, true, per_sample)),
              "on the one-pass path in rounds of whole samples (" + std::to_string(per_sample) + " resident)");
  // Cluster: one sample per cluster. 16 block slots (where a sample has more
  // than 4 units; else the plan is the next run's): a cluster of up to 16
  // blocks, a unit each where the sample has at most 16; 4 slots (x/dy
  // misaligned by one element): clusters of at most 4 blocks, so a block
  // stages several units in slots of its shared memory. Where a sample does
  // not fit, the two-pass fallback.
  if (std::max(sf, sb) > 4)
    same_as_r(run_kernels<T>(k, x, dy, w1, b1, w2, b2, 0, 16, SEPath::Cluster, res, cluster_on<T>(k, false, 16),
                             cluster_on<T>(k, true, 16)),
              "on the cluster path (16 resident)");
  same_as_r(run_kernels<T>(k, x, dy, w1, b1, w2, b2, 1, 4, SEPath::Cluster, res, cluster_on<T>(k, false, 4),
                           cluster_on<T>(k, true, 4)),
            "on the cluster path (clusters of at most 4, x/dy misaligned by 1)");
  // ... and with one unit per block read from global memory where a block
  // has 2 or more (as when its tiles pass the shared-memory budget by one),
  // the others staged.
  g_cluster_unstaged = 1;
  same_as_r(run_kernels<T>(k, x, dy, w1, b1, w2, b2, 0, 4, SEPath::Cluster, res, cluster_on<T>(k, false, 4),
                           cluster_on<T>(k, true, 4)),
            "on the cluster path (clusters of at most 4, one unit per block unstaged)");
  g_cluster_unstaged = 0;
  // ... and with rounds of 2 and of 3 whole samples per cluster (the forward:
  // a block takes a chunk of each sample in turn, its staged weight slice read
  // by all of them; the last round short where N is not a multiple; one per
  // round where the plan allows no more).
  for (const int64_t samples : {2, 3}) {
    g_cluster_samples = samples;
    same_as_r(run_kernels<T>(k, x, dy, w1, b1, w2, b2, 0, 4, SEPath::Cluster, res, cluster_on<T>(k, false, 4),
                             cluster_on<T>(k, true, 4)),
              "on the cluster path (clusters of at most 4, " + std::to_string(samples) + " samples per round)");
  }
  g_cluster_samples = 0;
  if (k.unit_bytes > 0) {  // the refused-launch fallbacks, on the multi-chunk cases
    // Fewer resident blocks than a sample has units (one fewer; 4 past
    // kEmuOnePassMaxUnits): the two-pass fallback.
    const int64_t fewer = std::min(sf, sb) - 1;
    if (fewer >= 1)
      same_as_r(run_kernels<T>(k, x, dy, w1, b1, w2, b2, 0, (int)(fewer <= kEmuOnePassMaxUnits ? fewer : 4),
                               SEPath::OnePass, res, SEPath::TwoPass),
                "when one-pass has more units per sample than resident blocks (two-pass fallback)");
    emu::g_coop_supported = false;
    same_as_r(run_kernels<T>(k, x, dy, w1, b1, w2, b2, 1, op_res, SEPath::OnePass, res, SEPath::TwoPass),
              "when the cooperative launch is refused (two-pass fallback)");
    emu::g_coop_supported = true;
    // Before sm_90 (no cluster launch) and with a pre-sm_90 image of the
    // kernels on an sm_90 device: the cluster request runs two-pass.
    emu::g_cc = 80;
    same_as_r(run_kernels<T>(k, x, dy, w1, b1, w2, b2, 0, 16, SEPath::Cluster, res, SEPath::TwoPass),
              "when the device has no cluster launch (sm_80: two-pass fallback)");
    emu::g_cc = 90;
    emu::g_binary_version = 80;
    same_as_r(run_kernels<T>(k, x, dy, w1, b1, w2, b2, 0, 16, SEPath::Cluster, res, SEPath::TwoPass),
              "when the kernels' image predates sm_90 (two-pass fallback)");
    emu::g_binary_version = 90;
  }
  emu::g_resident = k.resident;
  // Batch invariance: the last sample alone gives the bits it has inside the batch.
  if (N > 1) {
    Case k1 = k; k1.N = 1;
    std::vector<T> x1(x.end() - C * HW, x.end()), dy1(dy.end() - C * HW, dy.end());
    Run<T> r1 = run_kernels<T>(k1, x1, dy1, w1, b1, w2, b2, 0, k.resident, SEPath::TwoPass, res);
    if (std::memcmp(r1.y.data(), r.y.data() + (N - 1) * C * HW, C * HW * sizeof(T)))
      res.errors.push_back("y of the last sample alone differs from inside the batch");
    if (std::memcmp(r1.pooled.data(), r.pooled.data() + (N - 1) * C, C * sizeof(A)))
      res.errors.push_back("pooled of the last sample alone differs from inside the batch");
    if ((H > 0 && std::memcmp(r1.z1.data(), r.z1.data() + (N - 1) * H, H * sizeof(A))) ||
        std::memcmp(r1.z2.data(), r.z2.data() + (N - 1) * C, C * sizeof(A)))
      res.errors.push_back("z1 or z2 of the last sample alone differs from inside the batch");
    if (std::memcmp(r1.dx.data(), r.dx.data() + (N - 1) * C * HW, C * HW * sizeof(T)))
      res.errors.push_back("dx of the last sample alone differs from inside the batch");
  }
  return res;
}

// Per-case watchdog: a hung spin-wait (or barrier) ends the run with the case's name.
struct Watchdog {
  std::mutex m;
  std::condition_variable cv;
  std::string current;
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  bool stop = false;
  int seconds;
  std::thread th;
  explicit Watchdog(int s) : seconds(s), th([this] { loop(); }) {}
  ~Watchdog() { { std::lock_guard<std::mutex> g(m); stop = true; } cv.notify_all(); th.join(); }
  void start(const std::string& name) {
    std::lock_guard<std::mutex> g(m);
    current = name; deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  }
  void loop() {
    std::unique_lock<std::mutex> g(m);
    while (!stop) {
      if (std::chrono::steady_clock::now() > deadline) {
        printf("TIMEOUT %s: no result after %d s (hung spin-wait or barrier?)\n", current.c_str(), seconds);
        fflush(stdout);
        _Exit(2);
      }
      cv.wait_for(g, std::chrono::milliseconds(200));
    }
  }
};

// Three host threads (streams) run forward + backward at once on a device of
// 2 block slots, each with more units per sample than slots: a design whose
// blocks wait for a sample's other units (the old spin-wait) hangs here; the
// two-pass kernels must finish with the bits of a serial run. One of the three
// uses the cluster path (clusters of 2 blocks, each staging several units:
// a cluster takes both slots at once, or waits for them, and clusters run
// one after another); a fourth sequence (2 units, the extra case) runs the
// one-pass path beside them (all its units resident at once, its tiles in
// shared memory).
template <typename T>
Result concurrent_test(const std::vector<Case>& ks) {
  Result res;
  const std::vector<Inputs<T>> ins = concurrent_inputs<T>(ks);
  emu::g_resident = 2;
  std::vector<Run<T>> serial, conc(ks.size());
  std::vector<Result> rs(ks.size());
  for (size_t i = 0; i < ks.size(); ++i)
    serial.push_back(run_kernels<T>(ks[i], ins[i].x, ins[i].dy, ins[i].w1, ins[i].b1, ins[i].w2, ins[i].b2, 0, 0, SEPath::TwoPass, res));
  for (size_t i = 0; i < ks.size() && i < 3; ++i)
    if (serial[i].chunks <= emu::g_resident)
      res.errors.push_back("case " + std::to_string(i) + ": K = " + std::to_string(serial[i].chunks) +
                           " chunks per sample, not more than the 2 slots");
  std::vector<std::thread> th;
  const char* c = emu::g_case;
  for (size_t i = 0; i < ks.size(); ++i)
    th.emplace_back([&, i, c] {
      emu::g_case = c;
      const SEPath path = i == 2 ? SEPath::Cluster : i == 3 ? SEPath::OnePass : SEPath::TwoPass;
      const SEPath want_f = i == 2 ? cluster_on<T>(ks[i], false, 2) : path;
      const SEPath want_b = i == 2 ? cluster_on<T>(ks[i], true, 2) : path;
      conc[i] = run_kernels<T>(ks[i], ins[i].x, ins[i].dy, ins[i].w1, ins[i].b1, ins[i].w2, ins[i].b2, 0, 0, path, rs[i],
                               want_f, want_b);
    });
  for (auto& t : th) t.join();
  for (size_t i = 0; i < ks.size(); ++i) {
    for (auto& e : rs[i].errors) res.errors.push_back(e);
    if (!same_bits(conc[i].y, serial[i].y) || !same_bits(conc[i].dx, serial[i].dx) ||
        !same_bits(conc[i].dw1, serial[i].dw1) || !same_bits(conc[i].dw2, serial[i].dw2) ||
        !same_bits(conc[i].z2, serial[i].z2))
      res.errors.push_back("concurrent launch " + std::to_string(i) + " differs from its serial run");
  }
  res.chunks = serial[0].chunks;
  res.digest = kFnvOffset;  // the serial (two-pass) runs' outputs, in order
  for (const Run<T>& r : serial) res.digest = digest_of(r, res.digest);
  return res;
}

// `emu geometry`: for each stdin line "C HW hidden dtype_bytes nhwc backward",
// prints "chunk chunks parts part_rows" of make_geometry (two FCs, the library's
// unit bytes; NHWC with C or HW 1 runs as NCHW, as in the launcher), for
// tests/test_cuda_emulation.py to compare benchmarks/gpu_model.py against.
static int print_geometries() {
  long long C, HW, hidden, bytes, nhwc, bwd;
  while (scanf("%lld %lld %lld %lld %lld %lld", &C, &HW, &hidden, &bytes, &nhwc, &bwd) == 6) {
    SEForwardParams f;
    f.N = 1; f.C = C; f.HW = HW; f.hidden = hidden; f.channels_last = nhwc && C > 1 && HW > 1;
    const Geometry g = bytes == 2 ? make_geometry<__nv_bfloat16>(f, bwd != 0)
                       : bytes == 8 ? make_geometry<double>(f, bwd != 0) : make_geometry<float>(f, bwd != 0);
    printf("%lld %lld %lld %lld\n", (long long)g.chunk, (long long)g.chunks, (long long)g.parts,
           (long long)g.part_rows);
  }
  return 0;
}

int main(int argc, char** argv) {
  const std::string which = argc > 1 ? argv[1] : "quick";
  const std::string filter = argc > 2 ? argv[2] : "";
  if (which == "geometry") return print_geometries();
  std::vector<Case> cases;
  if (!case_set(which, cases)) { fprintf(stderr, "usage: %s [quick|full|big] [SUBSTRING]\n", argv[0]); return 64; }

  const char* to = getenv("EMU_CASE_TIMEOUT");
  Watchdog dog(to ? atoi(to) : 60);
  int passed = 0, failed = 0;
  auto report = [&](const std::string& tag, const Result& r, double secs) {
    printf("%s %-60s K=%ld P=%ld/%ld %.2fs", r.errors.empty() ? "ok  " : "FAIL", tag.c_str(), r.chunks, r.parts_f,
           r.parts_b, secs);
    if (getenv("EMU_DIGEST")) printf(" digest=%016llx", (unsigned long long)r.digest);
    printf("\n");
    for (const auto& e : r.errors) printf("     %s\n", e.c_str());
    fflush(stdout);
    (r.errors.empty() ? passed : failed)++;
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& k = cases[i];
    const std::string tag = case_name(k);
    const uint32_t seed = case_seed(i);
    if (!filter.empty() && tag.find(filter) == std::string::npos) continue;
    dog.start(tag);
    emu::g_case = tag.c_str();
    const auto t0 = std::chrono::steady_clock::now();
    Result r;
    switch (k.dt) {
      case DT::F32: r = test<float>(k, seed); break;
      case DT::F64: r = test<double>(k, seed); break;
      case DT::F16: r = test<__half>(k, seed); break;
      case DT::BF16: r = test<__nv_bfloat16>(k, seed); break;
    }
    report(tag, r, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  if (which == "quick" && (filter.empty() || std::string("concurrent").find(filter) != std::string::npos)) {
    const std::string tag = kConcurrentName;
    dog.start(tag);
    emu::g_case = tag.c_str();
    const auto t0 = std::chrono::steady_clock::now();
    const Result r = concurrent_test<float>(concurrent_cases());
    report(tag, r, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  printf("launches: %ld (cooperative %ld, refused %ld; cluster %ld, refused %ld), blocks run: %ld, peak slots in use: %d\n",
         emu::g_launches.load(), emu::g_coop_launches.load(), emu::g_coop_refused.load(),
         emu::g_cluster_launches.load(), emu::g_cluster_refused.load(), emu::g_blocks.load(), emu::g_peak_slots.load());
  printf("cluster plans staging the weight slice: %ld, forward ones taking several samples per round: %ld\n",
         g_weight_plans.load(), g_sample_plans.load());
  printf("row parts' sums stored into another block's shared memory: %ld\n", emu::g_cluster_stores.load());
  printf("%d passed, %d failed\n", passed, failed);
  return failed || passed == 0 ? 1 : 0;
}
