// What the launcher asks of the build without launching anything: whether
// this build carries code the current device runs (se_kernel_image_status),
// and the path Auto takes for a problem (se_auto_path).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "se_block.h"
#include "se_heuristics.h"

namespace se_fused {
namespace cuda_kernels {

// Built with the same -gencode list as every other kernel (setup.py,
// TORCH_CUDA_ARCH_LIST), so the driver finds an image (SASS, or PTX it can
// compile) for this kernel exactly when it finds one for the others.
__global__ void se_image_probe_kernel() {}

cudaError_t se_kernel_image_status() {
  cudaFuncAttributes attr;
  const cudaError_t pending = cudaPeekAtLastError();
  if (pending != cudaSuccess) return pending;  // not ours: reported, not cleared
  const cudaError_t err = cudaFuncGetAttributes(&attr, se_image_probe_kernel);
  if (err != cudaSuccess) (void)cudaGetLastError();  // our own query's error (not sticky)
  return err;
}

// choose_path decides from the request alone today (TwoPass); the problem is
// passed so that when the heuristic takes the shape (se_heuristics.h) this
// stays the one place that asks it.
template <typename T>
SEPath se_auto_path(const SEForwardParams& p, bool backward) {
  (void)p;
  (void)backward;
  return choose_path(SEPath::Auto);
}

template SEPath se_auto_path<float>(const SEForwardParams&, bool);
template SEPath se_auto_path<double>(const SEForwardParams&, bool);
template SEPath se_auto_path<__half>(const SEForwardParams&, bool);
template SEPath se_auto_path<__nv_bfloat16>(const SEForwardParams&, bool);

}  // namespace cuda_kernels
}  // namespace se_fused
