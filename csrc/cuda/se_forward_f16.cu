// forward kernels for __half tensors (one file per dtype and direction: nvcc
// compiles them in parallel). The code is in se_forward.cuh.
#include "se_forward.cuh"

namespace se_fused {
namespace cuda_kernels {
SE_FUSED_INSTANTIATE_FORWARD(__half)
}  // namespace cuda_kernels
}  // namespace se_fused
