// Runs the CUDA kernels of csrc/cuda/se_block.cu on the CPU (emu.h, via the
// se_block_emu.cpp that gen.py writes into the build directory), forward and
// backward, against a float64 reference, and checks bit for bit that the
// results do not depend on the tiling / number of resident blocks, on the
// alignment of x and dy (offset by one element), or on the other samples of
// the batch.
//
//   main [quick|full|big] [SUBSTRING]   (default: quick; SUBSTRING filters cases by name)
//
// One line per case ("ok ..." or "FAIL ..."), then "N passed, M failed".
// Exit status 0 iff all passed. EMU_CASE_TIMEOUT (seconds, default 60) bounds
// each case: a hung spin-wait prints "TIMEOUT <case>" and exits 2.
#include "se_block_emu.cpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <string>

using namespace se_fused;
using namespace se_fused::cuda_kernels;

template <typename T> float tof(T v);
template <> float tof(float v) { return v; }
template <> float tof(double v) { return (float)v; }
template <> float tof(__half v) { return __half2float(v); }
template <> float tof(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> double tod(T v) { return (double)tof(v); }
template <> double tod(double v) { return v; }
template <typename T> T fromd(double v);
template <> float fromd(double v) { return (float)v; }
template <> double fromd(double v) { return v; }
template <> __half fromd(double v) { return __float2half_rn((float)v); }
template <> __nv_bfloat16 fromd(double v) { return __float2bfloat16_rn((float)v); }
template <typename T> const char* tname();
template <> const char* tname<float>() { return "fp32"; }
template <> const char* tname<double>() { return "fp64"; }
template <> const char* tname<__half>() { return "fp16"; }
template <> const char* tname<__nv_bfloat16>() { return "bf16"; }
template <typename T> double tol() {
  return std::is_same_v<T, double> ? 1e-11 : std::is_same_v<T, float> ? 2e-6 : std::is_same_v<T, __half> ? 2e-3 : 1.6e-2;
}

enum class DT { F32, F64, F16, BF16 };
struct Case {
  DT dt;
  int64_t N, C, H, W, hidden;
  bool nhwc, bias;
  Activation act;
  Gate gate;
  int resident;  // blocks the emulated GPU holds at once
  bool spin;     // expect B >= 2 channel tiles per sample: blocks wait on each other's squeeze
};

struct Result {
  std::vector<std::string> errors;
  long tiles = 0, grid = 0, polls = 0;
};

template <typename T>
struct Run {
  std::vector<T> y, dx, dw1, db1, dw2, db2;
  std::vector<acc_t<T>> pooled, z1, z2;
};

// x, dy in logical [n][c][hw] order; stored per layout, x and dy offset by `off` elements.
template <typename T>
Run<T> run_kernels(const Case& k, const std::vector<T>& xl, const std::vector<T>& dyl, const std::vector<T>& w1,
                   const std::vector<T>& b1, const std::vector<T>& w2, const std::vector<T>& b2, int off, int resident,
                   Result& res) {
  using A = acc_t<T>;
  const int64_t N = k.N, C = k.C, HW = k.H * k.W, H = k.hidden;
  const bool cl = k.nhwc && C > 1 && HW > 1;  // as the launcher: NHWC with C 1 or HW 1 is NCHW
  auto mem = [&](int64_t n, int64_t c, int64_t hw) { return cl ? (n * HW + hw) * C + c : (n * C + c) * HW + hw; };
  std::vector<T> xbuf(N * C * HW + off), dybuf(N * C * HW + off), ybuf(N * C * HW), dxbuf(N * C * HW);
  T* x = xbuf.data() + off; T* dy = dybuf.data() + off;
  for (int64_t n = 0; n < N; ++n) for (int64_t c = 0; c < C; ++c) for (int64_t hw = 0; hw < HW; ++hw) {
    x[mem(n, c, hw)] = xl[(n * C + c) * HW + hw]; dy[mem(n, c, hw)] = dyl[(n * C + c) * HW + hw]; }
  Run<T> r;
  r.pooled.assign(N * C, A(-777));
  r.z1.assign(N * H, A(-777));
  r.z2.assign(N * C, A(-777));
  emu::g_resident = resident;
  SEForwardParams f;
  f.x = x; f.w1 = w1.data(); f.b1 = k.bias ? b1.data() : nullptr; f.w2 = w2.data(); f.b2 = k.bias ? b2.data() : nullptr;
  f.y = ybuf.data(); f.pooled = r.pooled.data(); f.z1 = r.z1.data(); f.z2 = r.z2.data(); f.N = N; f.C = C; f.HW = HW; f.hidden = H; f.channels_last = cl;
  f.activation = k.act; f.gate = k.gate;
  std::vector<A> ws((se_forward_workspace_bytes<T>(N, C, H) + sizeof(A) - 1) / sizeof(A), A(-555));
  f.workspace = ws.data(); f.workspace_bytes = se_forward_workspace_bytes<T>(N, C, H);
  if (launch_se_forward<T>(f, nullptr) != cudaSuccess) res.errors.push_back("launch_se_forward failed");
  SEBackwardParams b;
  std::vector<T> dw1(H * C, fromd<T>(-777)), db1(H, fromd<T>(-777)), dw2(C * H, fromd<T>(-777)), db2(C, fromd<T>(-777));
  b.dy = dy; b.x = x; b.pooled = r.pooled.data(); b.z1 = r.z1.data(); b.z2 = r.z2.data(); b.w1 = w1.data(); b.w2 = w2.data();
  b.dx = dxbuf.data(); b.dw1 = dw1.data(); b.db1 = db1.data(); b.dw2 = dw2.data(); b.db2 = db2.data();
  b.N = N; b.C = C; b.HW = HW; b.hidden = H; b.channels_last = cl; b.activation = k.act; b.gate = k.gate;
  std::vector<A> wsb((se_backward_workspace_bytes<T>(N, C, H) + sizeof(A) - 1) / sizeof(A), A(-555));
  b.workspace = wsb.data(); b.workspace_bytes = se_backward_workspace_bytes<T>(N, C, H);
  if (launch_se_backward<T>(b, nullptr) != cudaSuccess) res.errors.push_back("launch_se_backward failed");
  r.y.resize(N * C * HW); r.dx.resize(N * C * HW);
  for (int64_t n = 0; n < N; ++n) for (int64_t c = 0; c < C; ++c) for (int64_t hw = 0; hw < HW; ++hw) {
    r.y[(n * C + c) * HW + hw] = ybuf[mem(n, c, hw)]; r.dx[(n * C + c) * HW + hw] = dxbuf[mem(n, c, hw)]; }
  r.dw1 = dw1; r.db1 = db1; r.dw2 = dw2; r.db2 = db2;
  return r;
}

template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
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

template <typename T>
std::string tag_of(const Case& k) {
  return std::string(tname<T>()) + " N" + std::to_string(k.N) + " C" + std::to_string(k.C) + " " + std::to_string(k.H) + "x" +
         std::to_string(k.W) + " h" + std::to_string(k.hidden) + (k.nhwc ? " NHWC" : " NCHW") + (k.bias ? " bias" : " nobias") +
         (k.act == Activation::SiLU ? " silu" : " relu") + (k.gate == Gate::HardSigmoid ? " hsig" : " sig") + " res" +
         std::to_string(k.resident);
}

template <typename T>
Result test(const Case& k, uint32_t seed) {
  using A = acc_t<T>;
  Result res;
  const int64_t N = k.N, C = k.C, HW = k.H * k.W, H = k.hidden;
  std::mt19937 gen(seed);
  std::normal_distribution<double> nd;
  auto fill = [&](int64_t n, double sc) { std::vector<T> v(n); for (auto& e : v) e = fromd<T>(nd(gen) * sc); return v; };
  std::vector<T> x = fill(N * C * HW, 1.0), dy = fill(N * C * HW, 1.0), w1 = fill(H * C, 1.0 / std::sqrt((double)C)),
                 b1 = fill(H, 0.5), w2 = fill(C * H, 1.0 / std::sqrt((double)H)), b2 = fill(C, 0.5);
  // Shift the channel means so that the gate sees a spread.
  for (int64_t n = 0; n < N; ++n) for (int64_t c = 0; c < C; ++c) {
    const double sh = nd(gen);
    for (int64_t hw = 0; hw < HW; ++hw) { auto& e = x[(n * C + c) * HW + hw]; e = fromd<T>(tod(e) + sh); } }
  // float64 reference (se_math.h's activation/gate functions in double).
  std::vector<double> p(N * C), pmag(N * C), dxmag(N * C * HW), s(N * C), y(N * C * HW), dx(N * C * HW), dw1(H * C, 0), db1(H, 0), dw2(C * H, 0), db2(C, 0);
  std::vector<double> rz1(N * H), rz1mag(N * H), rz2(N * C), rz2mag(N * C);  // the forward's saved z1, z2
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t c = 0; c < C; ++c) { double t = 0; for (int64_t hw = 0; hw < HW; ++hw) t += tod(x[(n*C+c)*HW+hw]); p[n*C+c] = t / HW;
      double m = 0; for (int64_t hw = 0; hw < HW; ++hw) m += std::fabs(tod(x[(n*C+c)*HW+hw])); pmag[n*C+c] = m / HW; }
    std::vector<double> z1(H), a(H), z2(C), dz2(C), dz1(H);
    for (int64_t j = 0; j < H; ++j) { double t = k.bias ? tod(b1[j]) : 0, m = std::fabs(t);
      for (int64_t c = 0; c < C; ++c) { t += tod(w1[j*C+c]) * p[n*C+c]; m += std::fabs(tod(w1[j*C+c]) * p[n*C+c]); }
      z1[j] = rz1[n*H+j] = t; rz1mag[n*H+j] = m; a[j] = activation_fwd(k.act, t); }
    for (int64_t c = 0; c < C; ++c) { double t = k.bias ? tod(b2[c]) : 0, m = std::fabs(t);
      for (int64_t j = 0; j < H; ++j) { t += tod(w2[c*H+j]) * a[j]; m += std::fabs(tod(w2[c*H+j]) * a[j]); }
      z2[c] = rz2[n*C+c] = t; rz2mag[n*C+c] = m; s[n*C+c] = gate_fwd(k.gate, t); }
    for (int64_t c = 0; c < C; ++c) for (int64_t hw = 0; hw < HW; ++hw) y[(n*C+c)*HW+hw] = tod(x[(n*C+c)*HW+hw]) * s[n*C+c];
    for (int64_t c = 0; c < C; ++c) { double t = 0; for (int64_t hw = 0; hw < HW; ++hw) t += tod(dy[(n*C+c)*HW+hw]) * tod(x[(n*C+c)*HW+hw]); dz2[c] = t * gate_grad(k.gate, z2[c]); }
    for (int64_t j = 0; j < H; ++j) { double t = 0; for (int64_t c = 0; c < C; ++c) t += tod(w2[c*H+j]) * dz2[c]; dz1[j] = t * activation_grad(k.act, z1[j]); }
    for (int64_t c = 0; c < C; ++c) { double t = 0; for (int64_t j = 0; j < H; ++j) t += tod(w1[j*C+c]) * dz1[j];
      for (int64_t hw = 0; hw < HW; ++hw) {
        const double a1 = tod(dy[(n*C+c)*HW+hw]) * s[n*C+c], a2 = t / HW;
        dx[(n*C+c)*HW+hw] = a1 + a2; dxmag[(n*C+c)*HW+hw] = std::fabs(a1) + std::fabs(a2); } }
    for (int64_t j = 0; j < H; ++j) { db1[j] += dz1[j]; for (int64_t c = 0; c < C; ++c) dw1[j*C+c] += dz1[j] * p[n*C+c]; }
    for (int64_t c = 0; c < C; ++c) { db2[c] += dz2[c]; for (int64_t j = 0; j < H; ++j) dw2[c*H+j] += dz2[c] * a[j]; }
  }
  emu::g_max_tiles = emu::g_max_grid = 0;
  const long polls0 = emu::g_polls.load();
  Run<T> r = run_kernels<T>(k, x, dy, w1, b1, w2, b2, 0, k.resident, res);
  res.tiles = emu::g_max_tiles; res.grid = emu::g_max_grid;
  res.polls = emu::g_polls.load() - polls0;
  if (k.spin && res.tiles < 2)
    res.errors.push_back("expected >= 2 channel tiles per sample (spin-wait case) but B = " + std::to_string(res.tiles));
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
  // Determinism: the same bits with another tiling / resident count, and with x and dy misaligned.
  const int res2 = k.resident == 1 ? 5 : 1;
  Run<T> r2 = run_kernels<T>(k, x, dy, w1, b1, w2, b2, 1, res2, res);
  const char* names[] = {"y", "pooled", "z1", "z2", "dx", "dw1", "db1", "dw2", "db2"};
  const bool eq[] = {same_bits(r.y, r2.y), same_bits(r.pooled, r2.pooled), same_bits(r.z1, r2.z1), same_bits(r.z2, r2.z2),
                     same_bits(r.dx, r2.dx), same_bits(r.dw1, r2.dw1), same_bits(r.db1, r2.db1), same_bits(r.dw2, r2.dw2),
                     same_bits(r.db2, r2.db2)};
  for (int i = 0; i < 9; ++i)
    if (!eq[i]) res.errors.push_back(std::string(names[i]) + " bits differ with x/dy misaligned by 1 and res" + std::to_string(res2));
  // Batch invariance: the last sample alone gives the bits it has inside the batch.
  if (N > 1) {
    Case k1 = k; k1.N = 1;
    std::vector<T> x1(x.end() - C * HW, x.end()), dy1(dy.end() - C * HW, dy.end());
    Run<T> r1 = run_kernels<T>(k1, x1, dy1, w1, b1, w2, b2, 0, k.resident, res);
    if (std::memcmp(r1.y.data(), r.y.data() + (N - 1) * C * HW, C * HW * sizeof(T)))
      res.errors.push_back("y of the last sample alone differs from inside the batch");
    if (std::memcmp(r1.pooled.data(), r.pooled.data() + (N - 1) * C, C * sizeof(A)))
      res.errors.push_back("pooled of the last sample alone differs from inside the batch");
    if (std::memcmp(r1.z1.data(), r.z1.data() + (N - 1) * H, H * sizeof(A)) ||
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

int main(int argc, char** argv) {
  const std::string which = argc > 1 ? argv[1] : "quick";
  const std::string filter = argc > 2 ? argv[2] : "";
  using AC = Activation; using GT = Gate;
  const AC RL = AC::ReLU, SL = AC::SiLU;
  const GT SG = GT::Sigmoid, HS = GT::HardSigmoid;
  const DT F32 = DT::F32, F64 = DT::F64, F16 = DT::F16, BF = DT::BF16;
  // {dtype, N, C, H, W, hidden, nhwc, bias, act, gate, resident, spin}
  std::vector<Case> quick = {
    {F32, 1, 3, 1, 1, 1, false, true, RL, SG, 3, false},      // HW 1, N 1, hidden 1
    {F32, 5, 37, 7, 7, 4, false, true, SL, HS, 3, false},
    {F32, 5, 37, 17, 13, 3, false, false, RL, SG, 5, true},   // B = 2 tiles, 5 blocks: samples straddle blocks
    {F32, 5, 37, 17, 13, 4, true, true, SL, HS, 5, true},     // NHWC, B = 2
    {F32, 3, 72, 4, 4, 16, true, true, SL, SG, 3, false},     // NHWC 16-byte rows; 2 weight-gradient tiles
    {BF, 2, 3, 17, 13, 1, true, true, SL, SG, 4, false},      // hidden 1
    {BF, 5, 37, 17, 13, 4, false, true, RL, HS, 5, true},     // B = 2
    {BF, 18, 40, 3, 3, 5, true, false, SL, SG, 4, false},     // N > 16: weight gradients over 2 sample steps
    {F16, 5, 37, 7, 7, 4, true, false, RL, SG, 2, false},
    {F16, 5, 37, 17, 13, 1, false, true, SL, HS, 5, true},    // B = 2, hidden 1
    {F16, 1, 16, 1, 1, 4, true, true, RL, SG, 3, false},      // HW 1 channels_last (runs as NCHW)
    {F64, 2, 1, 5, 5, 1, false, true, SL, SG, 2, false},      // C 1
    {F64, 5, 37, 7, 7, 4, true, true, RL, HS, 5, true},       // NHWC, B = 2
    {F64, 1, 3, 17, 13, 1, false, false, RL, SG, 3, false},
  };
  // The earlier, wider set (all dtypes) and shapes past the shared-memory staging: for runs by hand.
  std::vector<Case> full;
  for (DT dt : {F32, BF, F16, F64}) {
    for (Case k : std::vector<Case>{
             {F32, 1, 3, 1, 1, 1, false, true, RL, SG, 3, false},
             {F32, 5, 37, 7, 7, 4, false, true, SL, HS, 3, false},
             {F32, 5, 37, 7, 7, 4, true, false, RL, SG, 2, false},
             {F32, 2, 3, 17, 13, 1, true, true, SL, SG, 4, false},
             {F32, 2, 3, 17, 13, 1, false, false, RL, HS, 1, false},
             {F32, 3, 64, 4, 4, 16, true, true, RL, SG, 3, false},
             {F32, 2, 1, 5, 5, 1, false, true, SL, SG, 2, false},
             {F32, 3, 40, 1, 1, 10, true, true, RL, HS, 2, false},
             {F32, 2, 5, 56, 56, 2, false, true, SL, SG, 3, false},
             {F32, 2, 24, 20, 20, 3, true, false, SL, HS, 3, false},
             {F32, 7, 100, 9, 9, 8, false, true, SL, SG, 6, true},
             {F32, 7, 100, 9, 9, 8, true, true, RL, HS, 6, true},
         }) { k.dt = dt; full.push_back(k); }
  }
  std::vector<Case> big = {
    {F32, 2, 2100, 1, 2, 3, false, true, RL, SG, 3, false},     // C beyond the pooled staging
    {F32, 2, 1100, 2, 1, 1100, true, true, SL, SG, 3, false},   // hidden beyond shared memory
    {F32, 1, 2, 112, 112, 1, false, true, RL, SG, 2, false},    // G = 256
    {BF, 2, 2100, 1, 2, 3, false, true, RL, SG, 3, false},
    {BF, 2, 1100, 2, 1, 1100, true, true, SL, SG, 3, false},
  };
  const std::vector<Case>* cases = which == "quick" ? &quick : which == "full" ? &full : which == "big" ? &big : nullptr;
  if (!cases) { fprintf(stderr, "usage: %s [quick|full|big] [SUBSTRING]\n", argv[0]); return 64; }

  const char* to = getenv("EMU_CASE_TIMEOUT");
  Watchdog dog(to ? atoi(to) : 60);
  int passed = 0, failed = 0;
  long spin_polls = 0; bool any_spin = false;
  uint32_t seed = 1;
  for (const Case& k : *cases) {
    std::string tag;
    switch (k.dt) {
      case DT::F32: tag = tag_of<float>(k); break;
      case DT::F64: tag = tag_of<double>(k); break;
      case DT::F16: tag = tag_of<__half>(k); break;
      case DT::BF16: tag = tag_of<__nv_bfloat16>(k); break;
    }
    ++seed;
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
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (k.spin) { any_spin = true; spin_polls += r.polls; }
    printf("%s %-52s B=%ld grid=%ld waits=%ld %.2fs\n", r.errors.empty() ? "ok  " : "FAIL", tag.c_str(), r.tiles, r.grid,
           r.polls, secs);
    for (const auto& e : r.errors) printf("     %s\n", e.c_str());
    fflush(stdout);
    (r.errors.empty() ? passed : failed)++;
  }
  // Whether a block found a sample's flag unset is timing; over all spin cases it
  // happens (blocks of a sample squeeze concurrently, one of them then runs the MLP).
  if (any_spin && spin_polls == 0) {
    printf("FAIL spin-wait: no block ever waited on another in the B >= 2 cases\n");
    failed++;
  }
  printf("peak threads at once: %d (+ main and watchdog)\n", emu::g_peak_threads);
  printf("%d passed, %d failed\n", passed, failed);
  return failed || passed == 0 ? 1 : 0;
}
