// The CUDA kernels of the SE block behind a plain C++ interface: raw
// pointers, int64 sizes and the enums of se_math.h. No torch headers here;
// se_block_launcher.cpp does the torch interop (checks, the one allocation,
// the stream). docs/cuda.md describes the design.
//
// Every tensor is dense: x, dy, y and dx in the problem's layout (NCHW, or
// NHWC when channels_last), the weights contiguous ([hidden, C] and
// [C, hidden]), the gate MLP's state contiguous in the accumulation type
// acc_t<T> (double for float/double tensors, float for half/bfloat16).
//
// The workspace (se_*_workspace_bytes) comes from the caller (the torch
// caching allocator, so launches can be captured in CUDA graphs). It holds no
// counters: nothing is zeroed per call, no memset.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "se_math.h"

namespace se_fused {
namespace cuda_kernels {

// Which kernels run (docs/cuda.md, se_heuristics.h). Every path gives the
// same bits.
enum class SEPath : int32_t {
  Auto = 0,         // se_heuristics.h choose_path: today always TwoPass
  TwoPass = 1,      // no block ever waits on another: forward 2 launches, backward 3
  OnePass = 2,      // one cooperative launch, one unit per block whose tile of x (backward:
                    // dy) is staged in shared memory by the squeeze and scaled from there
                    // after the grid barrier: x read once. Only when the tile fits the
                    // shared-memory budget and a sample's units are resident at once
                    // (se_heuristics.h onepass_applies; more samples run in rounds);
                    // else TwoPass
  Cluster = 3,      // sm_90+: one sample per thread-block cluster, its tiles staged in
                    // the cluster's shared memory and scaled from there after the
                    // cluster barrier: x read once, no grid-wide barrier (se_heuristics.h
                    // cluster_plan); where it does not apply, TwoPass
};

// The forward problem. The backward (SEBackwardParams) extends it.
struct SEForwardParams {
  const void* x = nullptr;   // [N, C, H, W], T, dense in the problem's layout
  // The excitation's weights (se_math.h Excitation), T, contiguous:
  const void* w1 = nullptr;  // [hidden, C] two FCs; [C, C] one FC; [k] ECA
  const void* b1 = nullptr;  // w1's rows ([hidden], [C]) or [1] (ECA), or nullptr (forward only)
  const void* w2 = nullptr;  // [C, hidden], two FCs only (else nullptr)
  const void* b2 = nullptr;  // [C], or nullptr (forward only; two FCs only)
  void* y = nullptr;         // forward output, like x (unused by the backward)
  // The gate MLP's state, acc_t<T>: written by the forward (into the
  // workspace when the caller does not keep it), read by the backward.
  void* pooled = nullptr;  // [N, C]: mean over H*W of x
  void* z1 = nullptr;      // [N, hidden]: w1 pooled + b1
  void* z2 = nullptr;      // [N, C]: w2 activation(z1) + b2
  int64_t N = 0;           // samples (the launch functions return at once for N == 0)
  int64_t C = 0;           // channels
  int64_t HW = 0;          // H * W
  int64_t hidden = 0;      // w1.size(0) for two FCs, else 0 (z1 is [N, 0])
  bool channels_last = false;  // x, y (dy, dx) are [N, H, W, C] in memory
  Activation activation = Activation::ReLU;  // two FCs only
  Gate gate = Gate::Sigmoid;
  Excitation excitation = Excitation::TwoFC;
  int64_t kernel_size = 0;  // ECA: k (odd); else 0
  bool residual = false;    // y = x * s + x
  SEPath path = SEPath::Auto;  // the launcher sets it from SE_FUSED_CUDA_PATH
  SEPath* path_taken = nullptr;  // if set, receives the path that ran (tests)
  // Bytes per work unit; 0: se_heuristics.h kUnitBytes. Tests set small
  // values (which also drop the NHWC kMinRowBytes floor) to get many chunks
  // per sample on small shapes; the results depend on it as on the shape.
  int64_t unit_bytes = 0;
  // Tests: the cluster path reads this many of each block's units from global
  // memory instead of staging them, where a block has more units than that
  // (se_heuristics.h cluster_plan); 0: only what the shared-memory budget does
  // not hold. Never changes the bits.
  int64_t cluster_unstaged = 0;
  // Tests: the cluster forward's samples per cluster round (se_heuristics.h
  // cluster_plan), tried first and else 1; 0: the device rule (cluster_fit).
  // Never changes the bits.
  int64_t cluster_samples = 0;
  void* workspace = nullptr;     // se_*_workspace_bytes bytes, 256-byte aligned
  size_t workspace_bytes = 0;
  // When set, region i of the workspace (se_*_workspace_regions) is
  // workspace_regions[i], an allocation of its own (nullptr for a region of 0
  // bytes), instead of workspace + its offset; workspace is then unused. The
  // launcher sets it under SE_FUSED_CUDA_SEPARATE_WORKSPACE=1, so that
  // compute-sanitizer memcheck sees an overrun from one region into the next.
  void* const* workspace_regions = nullptr;
};

// The workspace's regions, in the order of se_forward.cuh fwd_layout
// (part, hscratch, psum) and se_backward.cuh bwd_layout (part, dz2, dz1, act,
// hscratch, psum): bytes[i] is region i's size (a multiple of 256, 0 when the
// call does not use it); their sum is se_*_workspace_bytes.
constexpr int kMaxWorkspaceRegions = 6;
struct SEWorkspaceRegions {
  int count = 0;
  size_t bytes[kMaxWorkspaceRegions] = {};
};

// Host: the regions of a layout whose offsets are `offsets` (in order) and
// whose end is `total`, as se_*_workspace_regions reports them.
template <int kCount>
SEWorkspaceRegions ws_regions(const size_t (&offsets)[kCount], size_t total) {
  static_assert(kCount <= kMaxWorkspaceRegions, "more regions than SEWorkspaceRegions holds");
  SEWorkspaceRegions r;
  r.count = kCount;
  for (int i = 0; i < kCount; ++i) r.bytes[i] = (i + 1 < kCount ? offsets[i + 1] : total) - offsets[i];
  return r;
}
// Host: region i's address, at `offset` in the one workspace or its own
// allocation (p.workspace_regions); nullptr when the workspace is missing.
inline char* ws_region(const SEForwardParams& p, int i, size_t offset) {
  if (p.workspace_regions != nullptr) return static_cast<char*>(p.workspace_regions[i]);
  return p.workspace != nullptr ? static_cast<char*>(p.workspace) + offset : nullptr;
}
// Host: whether the call's workspace can hold a layout of `total` bytes.
inline bool ws_ok(const SEForwardParams& p, size_t total) {
  return p.workspace_regions != nullptr || (p.workspace != nullptr && p.workspace_bytes >= total);
}

// The backward problem: the forward's fields (y, b1 and b2 unused; pooled,
// z1 and z2 are the forward's, read only) plus these.
struct SEBackwardParams : SEForwardParams {
  const void* dy = nullptr;  // like x, T
  void* dx = nullptr;        // like x, T
  void* dw1 = nullptr;       // like w1, T
  void* db1 = nullptr;       // like b1, T, or nullptr: not computed
  void* dw2 = nullptr;       // [C, hidden], T (nullptr without w2)
  void* db2 = nullptr;       // [C], T, or nullptr: not computed
};

// Bytes of workspace a call needs (T: float, double, __half, __nv_bfloat16).
template <typename T>
size_t se_forward_workspace_bytes(const SEForwardParams& p);
template <typename T>
size_t se_backward_workspace_bytes(const SEBackwardParams& p);
template <typename T>
SEWorkspaceRegions se_forward_workspace_regions(const SEForwardParams& p);
template <typename T>
SEWorkspaceRegions se_backward_workspace_regions(const SEBackwardParams& p);

// Whether this build has kernels (or PTX the driver can compile) for the
// current device: cudaSuccess, or the error that asking for a kernel's
// attributes gave (cudaErrorNoKernelImageForDevice, ...; cleared).
// se_device.cu.
cudaError_t se_kernel_image_status();
// The path SEPath::Auto takes for this problem (se_heuristics.h
// choose_path), without launching (se_device.cu; T as for the workspace).
template <typename T>
SEPath se_auto_path(const SEForwardParams& p, bool backward);

// Forward: two launches (TwoPass) or one (OnePass, Cluster). Stream-ordered, no
// host synchronisation, no memset.
template <typename T>
cudaError_t launch_se_forward(const SEForwardParams& p, cudaStream_t stream);

// Backward: three launches (TwoPass: squeeze + partial da; gate backward +
// dx; weight gradients) or one (OnePass; Cluster: two, one at batch 1).
template <typename T>
cudaError_t launch_se_backward(const SEBackwardParams& p, cudaStream_t stream);

}  // namespace cuda_kernels
}  // namespace se_fused
