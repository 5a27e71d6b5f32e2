// backward kernels for __nv_bfloat16 tensors (one file per dtype and direction: nvcc
// compiles them in parallel). The code is in se_backward.cuh.
#include "se_backward.cuh"

namespace se_fused {
namespace cuda_kernels {
SE_FUSED_INSTANTIATE_BACKWARD(__nv_bfloat16)
}  // namespace cuda_kernels
}  // namespace se_fused
