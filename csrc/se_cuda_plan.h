// The CUDA launcher's host-side seams that need no CUDA to build, compiled in
// every build so that the CPU tests exercise them (tests/test_cuda_seams.py):
//   - the allocation plan: one allocation per returned tensor, the workspace
//     apart (one allocation, or one per region);
//   - the record of which path each call took (thread-local last path,
//     process-wide counts);
//   - the hooks by which the CUDA part of the build (se_block_launcher.cpp)
//     answers se_fused._C's questions about itself (nullptr in a CPU build).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "se_checks.h"

namespace se_fused {

// ------------------------------------------------------------ allocation plan

// The forward's outputs and workspace. workspace: one byte tensor for the
// whole workspace, or (separate) one per region, undefined for a region of 0
// bytes; empty when there is nothing to launch (N == 0).
struct ForwardAlloc {
  at::Tensor y, pooled, z1, z2;
  std::vector<at::Tensor> workspace;
};
struct BackwardAlloc {
  at::Tensor dx, dw1, db1, dw2, db2;
  std::vector<at::Tensor> workspace;
};

// y has xd's sizes and strides (xd: dense in the problem's layout) and dtype;
// pooled, z1 and z2 are contiguous [N, C], [N, hidden], [N, C] in the
// accumulation dtype. regions: the workspace's region sizes in bytes
// (cuda_kernels::SEWorkspaceRegions), all in one allocation unless separate.
ForwardAlloc plan_forward(const at::Tensor& xd, const SEProblem& p,
                          const std::vector<int64_t>& regions, bool separate);
// dx like xd; dw1 and dw2 contiguous like w1 and w2; db1 [w1's rows] (ECA:
// [1]) and db2 [C] when asked for; the ones not computed are empty [0].
BackwardAlloc plan_backward(const at::Tensor& xd, const at::Tensor& w1,
                            const std::optional<at::Tensor>& w2, bool want_db1, bool want_db2,
                            const SEProblem& p, const std::vector<int64_t>& regions,
                            bool separate);

// SE_FUSED_CUDA_SEPARATE_WORKSPACE=1 (read once): each workspace region its
// own allocation, so that compute-sanitizer memcheck sees an overrun from one
// region into the next (a debugging setting: more allocations per call).
bool separate_workspace();

// ------------------------------------------------------------ path record

enum class Direction : int { Forward = 0, Backward = 1 };
// The paths as cuda_kernels::SEPath numbers them (1..3; 0: none).
constexpr int kCudaPaths = 4;
constexpr const char* kCudaPathNames[kCudaPaths] = {"", "twopass", "onepass", "cluster"};
// The profiler's names: the launch ("se_fused::cuda_forward") and, inside it,
// a marker for the path that ran ("se_fused::cuda_forward.cluster").
const char* cuda_launch_event(Direction d);
const char* cuda_path_event(Direction d, int path);

void record_cuda_path(Direction d, int path);  // path 1..3
int last_cuda_path(Direction d);               // this thread's last, 0 if none
// counts[d][path] for path 1..3 (index 0 unused); reset: zero them after reading.
void cuda_path_counts(int64_t counts[2][kCudaPaths], bool reset);

// ------------------------------------------------------------ CUDA hooks

struct CudaHooks {
  const char* archs;    // TORCH_CUDA_ARCH_LIST at build
  const char* nvcc;     // nvcc's version at build
  int runtime_version;  // CUDART_VERSION at build (13000: 13.0)
  // Whether this build's kernels run on CUDA device `index`; *message says
  // what the device is and, if not, why and how to rebuild.
  bool (*device_support)(int index, std::string* message);
  // The path Auto takes (a kCudaPathNames index) for the problem; dtype: x's.
  int (*auto_path)(Direction d, int64_t N, int64_t C, int64_t HW, int64_t hidden,
                   at::ScalarType dtype, bool channels_last);
};
// Called once at load time by the CUDA part of the build.
void register_cuda_hooks(const CudaHooks* hooks);
const CudaHooks* cuda_hooks();  // nullptr in a CPU-only build

}  // namespace se_fused
