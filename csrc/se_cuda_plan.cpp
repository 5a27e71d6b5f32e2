#include "se_cuda_plan.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace se_fused {

namespace {

std::vector<at::Tensor> plan_workspace(const at::TensorOptions& device,
                                       const std::vector<int64_t>& regions, bool separate) {
  std::vector<at::Tensor> ws;
  const at::TensorOptions bytes = device.dtype(at::kByte);
  if (separate) {
    for (const int64_t b : regions) ws.push_back(b > 0 ? at::empty({b}, bytes) : at::Tensor());
    return ws;
  }
  int64_t total = 0;
  for (const int64_t b : regions) total += b;
  ws.push_back(at::empty({total}, bytes));
  return ws;
}

}  // namespace

ForwardAlloc plan_forward(const at::Tensor& xd, const SEProblem& p,
                          const std::vector<int64_t>& regions, bool separate) {
  const at::TensorOptions acc = xd.options().dtype(accumulation_dtype(xd.scalar_type()));
  ForwardAlloc a;
  a.y = at::empty_strided(xd.sizes(), xd.strides(), xd.options());
  a.pooled = at::empty({p.N, p.C}, acc);
  a.z1 = at::empty({p.N, p.hidden}, acc);
  a.z2 = at::empty({p.N, p.C}, acc);
  if (p.N > 0) a.workspace = plan_workspace(xd.options(), regions, separate);
  return a;
}

BackwardAlloc plan_backward(const at::Tensor& xd, const at::Tensor& w1,
                            const std::optional<at::Tensor>& w2, bool want_db1, bool want_db2,
                            const SEProblem& p, const std::vector<int64_t>& regions,
                            bool separate) {
  const at::TensorOptions wt = w1.options();
  const int64_t nb1 = p.kernel_size ? 1 : w1.size(0);  // ECA: one bias
  want_db2 = want_db2 && w2.has_value();
  BackwardAlloc a;
  a.dx = at::empty_strided(xd.sizes(), xd.strides(), xd.options());
  a.dw1 = at::empty(w1.sizes(), wt);
  a.db1 = at::empty({want_db1 ? nb1 : 0}, wt);
  a.dw2 = w2 ? at::empty(w2->sizes(), wt) : at::empty({0}, wt);
  a.db2 = at::empty({want_db2 ? p.C : 0}, wt);
  if (p.N > 0) a.workspace = plan_workspace(xd.options(), regions, separate);
  return a;
}

bool separate_workspace() {
  static const bool on = [] {
    const char* v = std::getenv("SE_FUSED_CUDA_SEPARATE_WORKSPACE");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  return on;
}

// ------------------------------------------------------------ path record

namespace {
thread_local int t_last[2] = {0, 0};
std::atomic<int64_t> g_counts[2][kCudaPaths];
constexpr const char* kLaunchEvents[2] = {"se_fused::cuda_forward", "se_fused::cuda_backward"};
constexpr const char* kPathEvents[2][kCudaPaths] = {
    {"se_fused::cuda_forward.none", "se_fused::cuda_forward.twopass",
     "se_fused::cuda_forward.onepass", "se_fused::cuda_forward.cluster"},
    {"se_fused::cuda_backward.none", "se_fused::cuda_backward.twopass",
     "se_fused::cuda_backward.onepass", "se_fused::cuda_backward.cluster"}};
int valid_path(int path) { return path > 0 && path < kCudaPaths ? path : 0; }
}  // namespace

const char* cuda_launch_event(Direction d) { return kLaunchEvents[static_cast<int>(d)]; }
const char* cuda_path_event(Direction d, int path) {
  return kPathEvents[static_cast<int>(d)][valid_path(path)];
}

void record_cuda_path(Direction d, int path) {
  const int i = static_cast<int>(d);
  path = valid_path(path);
  t_last[i] = path;
  if (path) g_counts[i][path].fetch_add(1, std::memory_order_relaxed);
}

int last_cuda_path(Direction d) { return t_last[static_cast<int>(d)]; }

void cuda_path_counts(int64_t counts[2][kCudaPaths], bool reset) {
  for (int d = 0; d < 2; ++d)
    for (int k = 0; k < kCudaPaths; ++k)
      counts[d][k] = reset ? g_counts[d][k].exchange(0, std::memory_order_relaxed)
                           : g_counts[d][k].load(std::memory_order_relaxed);
}

// ------------------------------------------------------------ CUDA hooks

namespace {
// Constant-initialised: safe whichever library initialiser runs first.
std::atomic<const CudaHooks*> g_hooks{nullptr};
}  // namespace

void register_cuda_hooks(const CudaHooks* hooks) { g_hooks.store(hooks, std::memory_order_release); }
const CudaHooks* cuda_hooks() { return g_hooks.load(std::memory_order_acquire); }

}  // namespace se_fused
