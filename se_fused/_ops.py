"""The Python side of the se_fused operators: the fake (meta) kernels that
torch.compile traces with. The schema, the kernels, autograd and autocast all
live in csrc/ (autograd and autocast in csrc/se_autograd.cpp); this file stays thin."""
import torch

from . import _C  # noqa: F401  (loads the library: schema, kernels, autograd, autocast)

_ops = torch.ops.se_fused

from . import _plain  # noqa: E402,F401  (the plain computation: fallbacks and exporters)


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """dtype of the pooled means and of every intermediate of the gate."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else torch.float64


def _output_like(x: torch.Tensor) -> torch.Tensor:
    """An empty tensor in the layout the C++ launchers give y and dx
    (csrc/se_checks.cpp): dense [N, *spatial, C] when x prefers channels last
    (suggest_memory_format for 4-D and 5-D, which goes by stride order; channels
    inner for [N, C, L]) and C and the map both exceed 1; else contiguous."""
    c, spatial = x.size(1), x.shape[2:]
    if x.dim() == 3:
        channels_last = x.stride(1) < x.stride(2)
    else:
        want = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
        channels_last = torch._prims_common.suggest_memory_format(x) == want
    if channels_last and c > 1 and spatial.numel() > 1:
        return x.new_empty((x.size(0), *spatial, c)).movedim(-1, 1)
    return x.new_empty(x.shape)


def _check_forward(x, w1, w2, excitation):
    torch._check(3 <= x.dim() <= 5,
                 lambda: f"se_fused: x must be [N, C, *spatial] with 1 to 3 spatial dims, "
                         f"got {x.dim()}-D")
    c = x.size(1)
    if excitation == "two_fc":
        torch._check(w2 is not None and w1.dim() == 2 and w2.dim() == 2,
                     lambda: "se_fused: w1 and w2 must be 2-D")
        torch._check(w1.size(1) == c and w2.size(0) == c,
                     lambda: f"se_fused: weights for {w1.size(1)} channels, x has {c}")
    elif excitation == "one_fc":
        torch._check(w1.dim() == 2 and w1.size(0) == c and w1.size(1) == c,
                     lambda: f"se_fused: w1 must be [C, C] = [{c}, {c}], got {list(w1.shape)}")
    else:
        torch._check(w1.dim() == 1, lambda: "se_fused: the ECA excitation's w1 must be 1-D [k]")


def _hidden(w1, excitation):
    return w1.size(0) if excitation == "two_fc" else 0


@torch.library.register_fake("se_fused::squeeze_excite")
def _squeeze_excite_fake(x, w1, b1, w2, b2, activation, gate, excitation="two_fc",
                         residual=False):
    _check_forward(x, w1, w2, excitation)
    return _output_like(x)


@torch.library.register_fake("se_fused::_squeeze_excite_forward")
def _squeeze_excite_forward_fake(x, w1, b1, w2, b2, activation, gate, excitation="two_fc",
                                 residual=False):
    _check_forward(x, w1, w2, excitation)
    y = _output_like(x)
    acc = accumulation_dtype(x.dtype)
    pooled = x.new_empty((x.size(0), x.size(1)), dtype=acc)
    z1 = x.new_empty((x.size(0), _hidden(w1, excitation)), dtype=acc)
    z2 = x.new_empty((x.size(0), x.size(1)), dtype=acc)
    return y, pooled, z1, z2


@torch.library.register_fake("se_fused::_squeeze_excite_backward")
def _squeeze_excite_backward_fake(dy, x, pooled, z1, z2, w1, w2, activation, gate,
                                  want_db1, want_db2, excitation="two_fc", residual=False):
    dx = _output_like(x)
    nb1 = 1 if w1.dim() == 1 else w1.size(0)
    want_db2 = want_db2 and w2 is not None
    return (dx, torch.empty_like(w1), w1.new_empty(nb1 if want_db1 else 0),
            torch.empty_like(w2) if w2 is not None else w1.new_empty(0),
            w1.new_empty(x.size(1) if want_db2 else 0))


def has_cuda_kernels() -> bool:
    """True when the CUDA kernels are compiled into this build (registered for
    the CUDA dispatch key). It says nothing about a particular GPU: whether the
    build runs on device i (its architecture among those compiled, or PTX the
    driver compiles) is se_fused._cuda.cuda_device_support(i)."""
    return torch._C._dispatch_has_kernel_for_dispatch_key("se_fused::squeeze_excite", "CUDA")

