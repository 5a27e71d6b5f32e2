// backward kernels for __half tensors (one file per dtype and direction: nvcc
// compiles them in parallel). The code is in se_backward.cuh.
#include "se_backward.cuh"

namespace se_fused {
namespace cuda_kernels {
SE_FUSED_INSTANTIATE_BACKWARD(__half)
}  // namespace cuda_kernels
}  // namespace se_fused
