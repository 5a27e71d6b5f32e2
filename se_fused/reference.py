"""SEBlock: the Squeeze-and-Excitation block as written in plain PyTorch (Hu et al.),
the oracle and the baseline. Importable without the compiled extension."""
import torch
from torch import nn

from ._variants import ACTIVATION_MODULES, GATE_MODULES, check_options


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
    are squeezed by the mean over their spatial dims."""

    def __init__(self, channels: int, r: int = 16, *, bias: bool = False,
                 activation: str = "relu", gate: str = "sigmoid"):
        super().__init__()
        hidden = hidden_size(channels, r)
        check_options(activation, gate)
        self.channels, self.r, self.activation, self.gate = channels, r, activation, gate
        self.squeeze = nn.AdaptiveAvgPool2d(1)
        self.excitation = nn.Sequential(
            nn.Linear(channels, hidden, bias=bias),
            ACTIVATION_MODULES[activation](),
            nn.Linear(hidden, channels, bias=bias),
            GATE_MODULES[gate](),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        spatial = tuple(range(2, x.dim()))
        pooled = self.squeeze(x) if x.dim() == 4 else x.mean(dim=spatial)
        s = self.excitation(pooled.view(n, c)).view(n, c, *(1 for _ in spatial))
        return x * s
