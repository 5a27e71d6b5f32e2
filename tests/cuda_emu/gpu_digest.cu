// The emulator's cases on a real GPU: for each case of a set (cases.h, the
// same inputs as tests/cuda_emu/main.cpp) and each path (two-pass,
// one-pass, cluster: SEForwardParams::path, as main.cpp forces it), one
// forward + backward through the real launch functions of csrc/cuda/ (built
// by nvcc with --fmad=false, as setup.py builds them, against the real
// csrc/cuda/se_sync.h), the outputs copied back and hashed on the host with
// cases.h digest_of: the emulator's code. Prints one line per case and path:
//
//   <case name> <requested>:<taken forward>/<taken backward> <16-hex digest>
//
// (the concurrent case: its four problems run one after another, the taken
// paths of each joined by ','). tests/cuda_emu/gpu_digest.sh builds it and
// compares these with tests/cuda_emu/digests/quick.txt.
//
//   gpu_digest [quick|full|big] [SUBSTRING]
//
// Exit status 0 iff every case ran; 3 without a usable CUDA device.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cases.h"  // the case sets, inputs, Run and digest_of (shared with the emulator)

using namespace se_fused::cuda_kernels;
using namespace se_cases;

namespace {

const char* path_name(SEPath p) {
  switch (p) {
    case SEPath::TwoPass: return "twopass";
    case SEPath::OnePass: return "onepass";
    case SEPath::Cluster: return "cluster";
    default: return "auto";
  }
}

// One device allocation; freed on scope exit.
struct DevBuf {
  void* p = nullptr;
  size_t bytes = 0;
  DevBuf() = default;
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  ~DevBuf() { if (p) cudaFree(p); }
  cudaError_t alloc(size_t n) { bytes = n; return n ? cudaMalloc(&p, n) : cudaSuccess; }
  template <typename V>
  cudaError_t upload(const V& v) {
    cudaError_t e = alloc(v.size() * sizeof(v[0]));
    return e != cudaSuccess || v.empty() ? e : cudaMemcpy(p, v.data(), bytes, cudaMemcpyHostToDevice);
  }
  template <typename V>
  cudaError_t download(V& v) const {
    return v.empty() ? cudaSuccess : cudaMemcpy(v.data(), p, v.size() * sizeof(v[0]), cudaMemcpyDeviceToHost);
  }
};

#define GD_CHECK(call)                                                      \
  do {                                                                      \
    const cudaError_t e_ = (call);                                          \
    if (e_ != cudaSuccess) {                                                \
      err = std::string(#call) + ": " + cudaGetErrorString(e_);             \
      return false;                                                         \
    }                                                                       \
  } while (0)

// Forward + backward of case k on `path`, as main.cpp's run_kernels does on the
// emulator (x and dy aligned): every output buffer starts as cases.h's marker
// (y and dx as zeros, as main.cpp's), the workspace as -555.
// samples: SEForwardParams::cluster_samples (the cluster forward's rounds of
// several samples; 0: the device's rule).
template <typename T>
bool run_gpu(const Case& k, const Inputs<T>& in, SEPath path, Run<T>& r, SEPath& taken_f, SEPath& taken_b,
             std::string& err, int64_t samples) {
  using A = acc_t<T>;
  const int64_t n = k.N * k.C * k.H * k.W;
  const bool fc2 = k.ex == se_fused::Excitation::TwoFC;
  std::vector<T> xm(n), dym(n), zeros(n);
  to_memory(k, in.x, xm.data());
  to_memory(k, in.dy, dym.data());
  r = unwritten_outputs<T>(k);
  DevBuf x, dy, y, dx, w1, b1, w2, b2, pooled, z1, z2, dw1, db1, dw2, db2, wsf, wsb;
  GD_CHECK(x.upload(xm)); GD_CHECK(dy.upload(dym)); GD_CHECK(y.upload(zeros)); GD_CHECK(dx.upload(zeros));
  GD_CHECK(w1.upload(in.w1)); GD_CHECK(b1.upload(in.b1)); GD_CHECK(w2.upload(in.w2)); GD_CHECK(b2.upload(in.b2));
  GD_CHECK(pooled.upload(r.pooled)); GD_CHECK(z1.upload(r.z1)); GD_CHECK(z2.upload(r.z2));
  GD_CHECK(dw1.upload(r.dw1)); GD_CHECK(db1.upload(r.db1)); GD_CHECK(dw2.upload(r.dw2)); GD_CHECK(db2.upload(r.db2));
  SEForwardParams f = case_params(k, path);
  f.cluster_samples = samples;
  f.x = x.p; f.w1 = w1.p; f.b1 = k.bias ? b1.p : nullptr;
  f.w2 = fc2 ? w2.p : nullptr; f.b2 = fc2 && k.bias ? b2.p : nullptr;
  f.y = y.p; f.pooled = pooled.p; f.z1 = z1.p; f.z2 = z2.p; f.path_taken = &taken_f;
  const size_t fwb = se_forward_workspace_bytes<T>(f);
  GD_CHECK(wsf.upload(std::vector<A>((fwb + sizeof(A) - 1) / sizeof(A) + 1, A(-555))));
  f.workspace = wsf.p; f.workspace_bytes = fwb;
  GD_CHECK(launch_se_forward<T>(f, nullptr));
  GD_CHECK(cudaDeviceSynchronize());
  SEBackwardParams b;
  static_cast<SEForwardParams&>(b) = case_params(k, path);
  b.dy = dy.p; b.x = x.p; b.pooled = pooled.p; b.z1 = z1.p; b.z2 = z2.p; b.w1 = w1.p;
  b.dx = dx.p; b.dw1 = dw1.p; b.db1 = db1.p; b.path_taken = &taken_b;
  if (fc2) { b.w2 = w2.p; b.dw2 = dw2.p; b.db2 = db2.p; }
  const size_t bwb = se_backward_workspace_bytes<T>(b);
  GD_CHECK(wsb.upload(std::vector<A>((bwb + sizeof(A) - 1) / sizeof(A) + 1, A(-555))));
  b.workspace = wsb.p; b.workspace_bytes = bwb;
  GD_CHECK(launch_se_backward<T>(b, nullptr));
  GD_CHECK(cudaDeviceSynchronize());
  GD_CHECK(y.download(xm)); GD_CHECK(dx.download(dym));
  r.y = from_memory(k, xm.data());
  r.dx = from_memory(k, dym.data());
  GD_CHECK(pooled.download(r.pooled)); GD_CHECK(z1.download(r.z1)); GD_CHECK(z2.download(r.z2));
  GD_CHECK(dw1.download(r.dw1)); GD_CHECK(db1.download(r.db1)); GD_CHECK(dw2.download(r.dw2));
  GD_CHECK(db2.download(r.db2));
  return true;
}

// The digest of problems ks (inputs ins) run one after another on `path`,
// chained as main.cpp chains them; the taken paths into `taken`.
template <typename T>
bool digest_gpu(const std::vector<Case>& ks, const std::vector<Inputs<T>>& ins, SEPath path, int64_t samples,
                uint64_t& h, std::string& taken, std::string& err) {
  h = kFnvOffset;
  taken = std::string(path_name(path)) + (samples > 0 ? "-s" + std::to_string(samples) : "");
  for (size_t i = 0; i < ks.size(); ++i) {
    Run<T> r;
    SEPath tf = SEPath::Auto, tb = SEPath::Auto;
    if (!run_gpu<T>(ks[i], ins[i], path, r, tf, tb, err, samples)) return false;
    h = digest_of(r, h);
    taken += std::string(i ? "," : ":") + path_name(tf) + "/" + path_name(tb);
  }
  return true;
}

template <typename T>
bool one_case(const std::string& name, const std::vector<Case>& ks, const std::vector<Inputs<T>>& ins) {
  bool ok = true;
  // The paths, and the cluster path with rounds of 3 samples (the forward's
  // shared weight slice; the device's rule rarely picks it at these batches).
  const std::pair<SEPath, int64_t> runs[] = {
      {SEPath::TwoPass, 0}, {SEPath::OnePass, 0}, {SEPath::Cluster, 0}, {SEPath::Cluster, 3}};
  for (const auto& [path, samples] : runs) {
    uint64_t h = 0;
    std::string taken, err;
    if (digest_gpu<T>(ks, ins, path, samples, h, taken, err)) {
      printf("%s %s %016llx\n", name.c_str(), taken.c_str(), (unsigned long long)h);
    } else {
      fprintf(stderr, "FAIL %s %s: %s\n", name.c_str(), path_name(path), err.c_str());
      ok = false;
    }
    fflush(stdout);
    const cudaError_t sticky = cudaDeviceSynchronize();
    if (sticky != cudaSuccess) {  // a fault: the context is gone, nothing after it would run
      fprintf(stderr, "gpu_digest: device error after %s %s: %s; stopping\n", name.c_str(), path_name(path),
              cudaGetErrorString(sticky));
      exit(4);
    }
  }
  return ok;
}

template <typename T>
bool case_on_gpu(const Case& k, uint32_t seed) {
  return one_case<T>(case_name(k), {k}, {make_inputs<T>(k, seed)});
}

}  // namespace

int main(int argc, char** argv) {
  const std::string which = argc > 1 ? argv[1] : "quick";
  const std::string filter = argc > 2 ? argv[2] : "";
  std::vector<Case> cases;
  if (!case_set(which, cases)) {
    fprintf(stderr, "usage: %s [quick|full|big] [SUBSTRING]\n", argv[0]);
    return 64;
  }
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    fprintf(stderr, "gpu_digest: no usable CUDA device (cudaGetDeviceCount: %s, %d devices)\n",
            e != cudaSuccess ? cudaGetErrorString(e) : "ok", count);
    return 3;
  }
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
    fprintf(stderr, "gpu_digest: device 0: %s, sm_%d%d, %d SMs\n", prop.name, prop.major, prop.minor,
            prop.multiProcessorCount);
  bool ok = true;
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& k = cases[i];
    if (!filter.empty() && case_name(k).find(filter) == std::string::npos) continue;
    switch (k.dt) {
      case DT::F32: ok &= case_on_gpu<float>(k, case_seed(i)); break;
      case DT::F64: ok &= case_on_gpu<double>(k, case_seed(i)); break;
      case DT::F16: ok &= case_on_gpu<__half>(k, case_seed(i)); break;
      case DT::BF16: ok &= case_on_gpu<__nv_bfloat16>(k, case_seed(i)); break;
    }
  }
  const std::string conc = kConcurrentName;
  if (which == "quick" && (filter.empty() || conc.find(filter) != std::string::npos)) {
    const std::vector<Case> ks = concurrent_cases();
    ok &= one_case<float>(conc, ks, concurrent_inputs<float>(ks));
  }
  return ok ? 0 : 1;
}
