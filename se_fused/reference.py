"""SEBlock: the Squeeze-and-Excitation block as written in plain PyTorch (Hu et al.),
the oracle and the baseline. Importable without the compiled extension."""
from typing import Optional

import torch
from torch import nn

from ._variants import (ACTIVATION_MODULES, GATE_MODULES, check_options, eca_kernel_size,
                        resolve_activation)


def hidden_size(channels: int, reduction: int) -> int:
    if channels < 1:
        raise ValueError(f"SE block: channels must be >= 1, got {channels}")
    if reduction < 1:
        raise ValueError(f"SE block: reduction r must be >= 1, got {reduction}")
    hidden = channels // reduction
    if hidden == 0:
        raise ValueError(
            f"SE block: channels // r = {channels} // {reduction} = 0 leaves no hidden "
            f"channels; use r <= {channels}")
    return hidden


class SEBlock(nn.Module):
    """The Squeeze-and-Excitation block as written in plain PyTorch (Hu et al.):
    squeeze = AdaptiveAvgPool2d(1); excitation = Linear, activation, Linear, gate;
    y = x * excitation(squeeze(x)). x is [N, C, H, W]; [N, C, L] and [N, C, D, H, W]
    are squeezed by the mean over their spatial dims.

    The variants: excitation="one_fc" (eSE: excitation = Linear(C, C), gate),
    "eca" / "eca_circular" (ECA-Net: excitation = Conv1d(1, 1, kernel_size) across the
    channels of the pooled vector, zero or circular padding, then the gate; kernel_size
    defaults to ECA-Net's choice for C); residual=True gives y = x * s + x (MONAI's
    add_residual). r and activation belong to the two-FC excitation only."""

    def __init__(self, channels: int, r: int = 16, *, bias: bool = False,
                 activation: Optional[str] = None, gate: str = "sigmoid",
                 excitation: str = "two_fc", residual: bool = False,
                 kernel_size: Optional[int] = None):
        super().__init__()
        activation = resolve_activation(activation, excitation)
        check_options(activation, gate, excitation)
        if channels < 1:
            raise ValueError(f"SE block: channels must be >= 1, got {channels}")
        self.channels, self.r, self.activation, self.gate = channels, r, activation, gate
        self.excitation_kind, self.residual = excitation, bool(residual)
        self.squeeze = nn.AdaptiveAvgPool2d(1)
        if excitation == "two_fc":
            if kernel_size is not None:
                raise ValueError("SE block: kernel_size is the ECA excitation's")
            hidden = hidden_size(channels, r)
            layers = [nn.Linear(channels, hidden, bias=bias), ACTIVATION_MODULES[activation](),
                      nn.Linear(hidden, channels, bias=bias)]
        elif excitation == "one_fc":
            if kernel_size is not None:
                raise ValueError("SE block: kernel_size is the ECA excitation's")
            layers = [nn.Linear(channels, channels, bias=bias)]
        else:
            k = eca_kernel_size(channels) if kernel_size is None else kernel_size
            if k < 1 or k % 2 == 0:
                raise ValueError(f"SE block: the ECA kernel size must be odd, got {k}")
            mode = "circular" if excitation == "eca_circular" else "zeros"
            layers = [nn.Conv1d(1, 1, k, padding=k // 2, bias=bias, padding_mode=mode)]
        self.excitation = nn.Sequential(*layers, GATE_MODULES[gate]())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # written so that torch.jit.script compiles it
        n, c = x.shape[0], x.shape[1]
        spatial = [d for d in range(2, x.dim())]
        pooled = self.squeeze(x) if x.dim() == 4 else x.mean(dim=spatial)
        eca = self.excitation_kind.startswith("eca")
        s = self.excitation(pooled.view(n, 1, c) if eca else pooled.view(n, c))
        s = s.view([n, c] + [1 for _ in spatial])
        return x * s + x if self.residual else x * s
