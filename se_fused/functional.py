"""The functional form of the SE block."""
from typing import Optional

import torch

from ._ops import _ops

_squeeze_excite = _ops.squeeze_excite.default


def squeeze_excitation(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor,
                       b1: Optional[torch.Tensor] = None, b2: Optional[torch.Tensor] = None,
                       activation: str = "relu", gate: str = "sigmoid") -> torch.Tensor:
    """y = x * gate(w2 @ activation(w1 @ mean_hw(x) + b1) + b2), per (sample, channel).

    x: [N, C, H, W], [N, C, L] or [N, C, D, H, W], contiguous or channels last
    (channels_last, channels_last_3d, or [N, L, C] strides for 1-D); y keeps x's layout;
    w1: [hidden, C]; w2: [C, hidden]; b1: [hidden] or None; b2: [C] or None.
    All tensors share one device and dtype (float32, float64, float16, bfloat16);
    under torch.autocast the weights are cast to x's dtype (by the op itself,
    so torch.ops.se_fused.squeeze_excite callers get the same).
    """
    return _squeeze_excite(x, w1, b1, w2, b2, activation, gate)
