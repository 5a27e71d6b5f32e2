"""The functional form of the SE block."""
from typing import Optional

import torch

from ._ops import _ops
from ._variants import resolve_activation

_squeeze_excite = _ops.squeeze_excite.default


def squeeze_excitation(x: torch.Tensor, w1: torch.Tensor, w2: Optional[torch.Tensor] = None,
                       b1: Optional[torch.Tensor] = None, b2: Optional[torch.Tensor] = None,
                       activation: Optional[str] = None, gate: str = "sigmoid",
                       excitation: str = "two_fc", residual: bool = False) -> torch.Tensor:
    """y = x * gate(z2) per (sample, channel) (+ x when residual), with z2 the
    excitation of the mean over the map of x:
      "two_fc" (SE): z2 = w2 @ activation(w1 @ pooled + b1) + b2, w1 [hidden, C],
          w2 [C, hidden], b1 [hidden], b2 [C]; activation "relu" (default), "silu",
          "hardswish";
      "one_fc" (eSE): z2 = w1 @ pooled + b1, w1 [C, C], b1 [C];
      "eca" / "eca_circular" (ECA-Net): z2 = the 1-D convolution of pooled across the
          channels with w1 [k] (k odd; a Conv1d weight [1, 1, k] flattened), padding
          k // 2 with zeros or circular, + b1 [1].
    The last two take no w2, b2 or activation. gate: "sigmoid" or "hardsigmoid".

    x: [N, C, H, W], [N, C, L] or [N, C, D, H, W], contiguous or channels last
    (channels_last, channels_last_3d, or [N, L, C] strides for 1-D); y keeps x's layout.
    All tensors share one device and dtype (float32, float64, float16, bfloat16);
    under torch.autocast the weights are cast to x's dtype (by the op itself,
    so torch.ops.se_fused.squeeze_excite callers get the same).
    """
    return _squeeze_excite(x, w1, b1, w2, b2, resolve_activation(activation, excitation), gate,
                           excitation, residual)
