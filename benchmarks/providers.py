"""What bench.py times, built from one plain block so that all of them hold the same weights:
  fused    se_fused.FusedSEBlock (the plain block's state_dict loaded)
  eager    se_fused.SEBlock, the plain PyTorch block
  compile  torch.compile(SEBlock, fullgraph=True, dynamic=False)
and the memory-traffic floor beside them: x.clone() for a forward, x.clone() then x + dy for a
forward + backward (PERF.md's clone and add floors)."""
from typing import Callable, Dict, Tuple

import torch
from torch import nn

from cases import Block
from harness import short_error

PROVIDERS = ("fused", "eager", "compile")


def plain_block(se_fused, block: Block, device, dtype) -> nn.Module:
    """se_fused.SEBlock for this block, seeded weights, on device in dtype."""
    torch.manual_seed(0)
    plain = se_fused.SEBlock(block.c, block.r, **block_options(block))
    return plain.to(device=device, dtype=dtype)


def block_options(block: Block) -> dict:
    """SEBlock's keyword arguments for the block (the activation is the two-FC
    excitation's only)."""
    return dict(bias=block.bias, gate=block.gate, excitation=block.excitation,
                residual=block.residual, kernel_size=block.kernel_size,
                activation=block.activation if block.excitation == "two_fc" else None)


def _eager(se_fused, plain: nn.Module, block: Block, device) -> nn.Module:
    return plain


def _compile(se_fused, plain: nn.Module, block: Block, device) -> nn.Module:
    # dynamic=False: a compiled kernel specialised to this shape, as a user's model gets.
    return torch.compile(plain, fullgraph=True, dynamic=False)


def _fused(se_fused, plain: nn.Module, block: Block, device) -> nn.Module:
    if torch.device(device).type == "cuda" and not se_fused.has_cuda_kernels():
        raise RuntimeError("this se_fused build has no CUDA kernels")
    fused = se_fused.FusedSEBlock(block.c, block.r, **block_options(block))
    fused.load_state_dict(plain.state_dict())
    return fused.to(device=device, dtype=next(plain.parameters()).dtype)


_BUILD = {"fused": _fused, "eager": _eager, "compile": _compile}


def build(se_fused, names, plain: nn.Module, block: Block,
          device) -> Tuple[Dict[str, nn.Module], Dict[str, str]]:
    """(models by provider, errors by provider for those that could not be built). Resets
    dynamo first: a fresh compile cache, no recompile limit, no automatic dynamic shapes."""
    torch._dynamo.reset()
    models, errors = {}, {}
    for name in names:
        try:
            models[name] = _BUILD[name](se_fused, plain, block, device)
        except Exception as e:
            errors[name] = short_error(e)
    return models, errors


def floor(pass_: str, x: torch.Tensor, dy: torch.Tensor) -> Callable:
    """The least memory traffic of the pass, as one or two PyTorch ops."""
    if pass_ == "fwd":
        return lambda: x.clone()

    def clone_add():
        x.clone()
        return x + dy
    return clone_add


def max_rel_diff(y: torch.Tensor, y_ref: torch.Tensor) -> float:
    """A sanity figure, not a test: max |y - y_ref| / max |y_ref| in float32."""
    y_ref = y_ref.float()
    return float((y.float() - y_ref).abs().max() / y_ref.abs().max().clamp_min(1e-30))


def none_grads(tensors) -> None:
    for t in tensors:
        t.grad = None
