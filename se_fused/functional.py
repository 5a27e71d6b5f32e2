"""The functional form of the SE block."""
from typing import Optional

import torch

from ._ops import _ops

ACTIVATIONS = ("relu", "silu")
GATES = ("sigmoid", "hardsigmoid")


def squeeze_excitation(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor,
                       b1: Optional[torch.Tensor] = None, b2: Optional[torch.Tensor] = None,
                       activation: str = "relu", gate: str = "sigmoid") -> torch.Tensor:
    """y = x * gate(w2 @ activation(w1 @ mean_hw(x) + b1) + b2), per (sample, channel).

    x: [N, C, H, W] (NCHW or channels_last; y keeps x's memory format);
    w1: [hidden, C]; w2: [C, hidden]; b1: [hidden] or None; b2: [C] or None.
    All tensors share one device and dtype (float32, float64, float16, bfloat16);
    under torch.autocast the weights are cast to x's dtype.
    """
    if torch.is_autocast_enabled(x.device.type):
        # The gate is computed in float32 or better whatever the dtype, so casting
        # the (small) weights to x's dtype keeps the op in x's precision, as the
        # plain block's multiply does.
        w1, w2 = w1.to(x.dtype), w2.to(x.dtype)
        b1 = b1.to(x.dtype) if b1 is not None else None
        b2 = b2.to(x.dtype) if b2 is not None else None
    y, *_ = _ops.squeeze_excite(x, w1, b1, w2, b2, activation, gate)
    return y
