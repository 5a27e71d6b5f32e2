// The plain computation of the block in ATen ops (se_fused::_squeeze_excite_plain,
// defined by se_fused/_plain.py), for what the fused kernels do not compute:
// forward-mode AD and torch.func transforms (se_autograd.cpp), and an empty
// spatial map, where the plain block returns an empty y (the backends' y-only
// kernels, which are what runs under torch.inference_mode).
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace se_fused {

at::Tensor call_plain(const at::Tensor& x, const at::Tensor& w1,
                      const std::optional<at::Tensor>& b1, const std::optional<at::Tensor>& w2,
                      const std::optional<at::Tensor>& b2, c10::string_view activation,
                      c10::string_view gate, c10::string_view excitation, bool residual);

// x is [N, C, *spatial] with a spatial size of 0 (symbolic sizes too: the
// autograd layer asks under tracing; the kernels, on concrete sizes).
inline bool has_empty_map(const at::Tensor& x) {
  for (int64_t d = 2; d < x.dim(); ++d)
    if (TORCH_GUARD_SIZE_OBLIVIOUS(x.sym_size(d).sym_eq(0))) return true;
  return false;
}

}  // namespace se_fused
