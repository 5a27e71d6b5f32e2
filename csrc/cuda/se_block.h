// The CUDA kernels of the SE block, behind a plain C++ interface: raw
// pointers, int64 sizes and the enums of se_math.h. No torch headers here;
// se_block_launcher.cpp does the torch interop (checks, allocation, stream).
//
// Every tensor is dense: x, dy, y and dx in the problem's layout (NCHW, or
// NHWC when channels_last), the weights contiguous ([hidden, C] and
// [C, hidden]), and the gate MLP's state the forward writes and the backward
// reads, contiguous in the accumulation type (double for float/double tensors,
// float for half/bfloat16; se_math.h acc_t): pooled [N, C], z1 [N, hidden],
// z2 [N, C].
//
// The workspace (se_*_workspace_bytes) is owned by the caller and comes from
// the torch caching allocator, so the launches can be captured in CUDA graphs;
// its counters are reset by a cudaMemsetAsync inside each launch function.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "se_math.h"

namespace se_fused {
namespace cuda_kernels {

struct SEForwardParams {
  const void* x = nullptr;   // [N, C, H, W] dense, T
  const void* w1 = nullptr;  // [hidden, C], T
  const void* b1 = nullptr;  // [hidden], T, or nullptr
  const void* w2 = nullptr;  // [C, hidden], T
  const void* b2 = nullptr;  // [C], T, or nullptr
  void* y = nullptr;         // like x
  void* pooled = nullptr;    // [N, C], acc_t<T>: mean over H*W
  void* z1 = nullptr;        // [N, hidden], acc_t<T>: w1 pooled + b1
  void* z2 = nullptr;        // [N, C], acc_t<T>: w2 activation(z1) + b2
  int64_t N = 0, C = 0, HW = 0, hidden = 0;
  bool channels_last = false;  // x, y are [N, H, W, C] in memory
  Activation activation = Activation::ReLU;
  Gate gate = Gate::Sigmoid;
  void* workspace = nullptr;  // se_forward_workspace_bytes<T>(N, C, hidden) bytes, 16-byte aligned
  size_t workspace_bytes = 0;
};

struct SEBackwardParams {
  const void* dy = nullptr;      // like x, T
  const void* x = nullptr;       // [N, C, H, W] dense, T
  const void* pooled = nullptr;  // [N, C], acc_t<T>, from the forward
  const void* z1 = nullptr;      // [N, hidden], acc_t<T>, from the forward
  const void* z2 = nullptr;      // [N, C], acc_t<T>, from the forward
  const void* w1 = nullptr;
  const void* w2 = nullptr;
  void* dx = nullptr;        // like x, T
  void* dw1 = nullptr;       // [hidden, C], T
  void* db1 = nullptr;       // [hidden], T (always written)
  void* dw2 = nullptr;       // [C, hidden], T
  void* db2 = nullptr;       // [C], T (always written)
  int64_t N = 0, C = 0, HW = 0, hidden = 0;
  bool channels_last = false;
  Activation activation = Activation::ReLU;
  Gate gate = Gate::Sigmoid;
  void* workspace = nullptr;  // se_backward_workspace_bytes<T>(N, C, hidden) bytes, 16-byte aligned
  size_t workspace_bytes = 0;
};

// Bytes of workspace the launches need (T: float, double, __half, __nv_bfloat16).
template <typename T>
size_t se_forward_workspace_bytes(int64_t N, int64_t C, int64_t hidden);
template <typename T>
size_t se_backward_workspace_bytes(int64_t N, int64_t C, int64_t hidden);

// Forward: one cudaMemsetAsync (counters) and one kernel launch.
// Requires N >= 1 (the launcher returns early for N == 0).
template <typename T>
cudaError_t launch_se_forward(const SEForwardParams& p, cudaStream_t stream);

// Backward: one cudaMemsetAsync and two kernel launches (dx and the gate
// backward fused; then the weight gradients). Requires N >= 1.
template <typename T>
cudaError_t launch_se_backward(const SEBackwardParams& p, cudaStream_t stream);

}  // namespace cuda_kernels
}  // namespace se_fused
