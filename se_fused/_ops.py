"""The Python side of the se_fused operators: fake (meta) kernels for
torch.compile and the autograd wiring. The schema and the real kernels live
in csrc/; this file stays thin."""
import torch

from . import _C  # noqa: F401  (loads the library: schema + CPU/CUDA kernels)

_ops = torch.ops.se_fused


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """dtype of the pooled means and of every intermediate of the gate."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else torch.float64


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    # The layout the C++ launchers give y and dx: Tensor.suggest_memory_format(),
    # which goes by stride order (a sliced channels_last x gives a channels_last y).
    if x.dim() != 4:
        return torch.contiguous_format
    return torch._prims_common.suggest_memory_format(x)


@torch.library.register_fake("se_fused::squeeze_excite")
def _squeeze_excite_fake(x, w1, b1, w2, b2, activation, gate):
    torch._check(x.dim() == 4, lambda: f"se_fused: x must be 4-D [N, C, H, W], got {x.dim()}-D")
    torch._check(w1.dim() == 2 and w2.dim() == 2, lambda: "se_fused: w1 and w2 must be 2-D")
    torch._check(w1.size(1) == x.size(1) and w2.size(0) == x.size(1),
                 lambda: f"se_fused: weights for {w1.size(1)} channels, x has {x.size(1)}")
    y = torch.empty_like(x, memory_format=_memory_format(x))
    acc = accumulation_dtype(x.dtype)
    pooled = x.new_empty((x.size(0), x.size(1)), dtype=acc)
    z1 = x.new_empty((x.size(0), w1.size(0)), dtype=acc)
    z2 = x.new_empty((x.size(0), x.size(1)), dtype=acc)
    return y, pooled, z1, z2


@torch.library.register_fake("se_fused::_squeeze_excite_backward")
def _squeeze_excite_backward_fake(dy, x, pooled, z1, z2, w1, w2, activation, gate):
    dx = torch.empty_like(x, memory_format=_memory_format(x))
    return (dx, torch.empty_like(w1), w1.new_empty(w1.size(0)), torch.empty_like(w2),
            w2.new_empty(w2.size(0)))


def _setup_context(ctx, inputs, output):
    x, w1, b1, w2, b2, activation, gate = inputs
    _, pooled, z1, z2 = output
    ctx.save_for_backward(x, pooled, z1, z2, w1, w2)
    ctx.has_b1, ctx.has_b2 = b1 is not None, b2 is not None
    ctx.activation, ctx.gate = activation, gate


def _backward(ctx, dy, _dpooled, _dz1, _dz2):
    # pooled, z1 and z2 are the forward's saved state: no gradient flows into them.
    x, pooled, z1, z2, w1, w2 = ctx.saved_tensors
    dx, dw1, db1, dw2, db2 = _ops._squeeze_excite_backward(
        dy, x, pooled, z1, z2, w1, w2, ctx.activation, ctx.gate)
    return (dx, dw1, db1 if ctx.has_b1 else None, dw2, db2 if ctx.has_b2 else None, None, None)


torch.library.register_autograd("se_fused::squeeze_excite", _backward, setup_context=_setup_context)


def _no_double_backward(ctx, *grads):
    raise RuntimeError("se_fused: double backward (a gradient of the gradient) is not supported")


def _setup_backward_context(ctx, inputs, output):
    pass


torch.library.register_autograd("se_fused::_squeeze_excite_backward", _no_double_backward,
                                setup_context=_setup_backward_context)


def has_cuda_kernels() -> bool:
    """True when this build of se_fused carries the CUDA kernels."""
    return torch._C._dispatch_has_kernel_for_dispatch_key("se_fused::squeeze_excite", "CUDA")
