// forward kernels for __nv_bfloat16 tensors (one file per dtype and direction: nvcc
// compiles them in parallel). The code is in se_forward.cuh.
#include "se_forward.cuh"

namespace se_fused {
namespace cuda_kernels {
SE_FUSED_INSTANTIATE_FORWARD(__nv_bfloat16)
}  // namespace cuda_kernels
}  // namespace se_fused
