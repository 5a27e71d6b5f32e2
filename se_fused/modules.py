"""SEBlock, the plain PyTorch SE block (the oracle and the baseline), and
FusedSEBlock, its drop-in replacement backed by the fused operators."""
import torch
from torch import nn

from .functional import ACTIVATIONS, GATES, _squeeze_excite

_ACTIVATION_MODULES = {"relu": nn.ReLU, "silu": nn.SiLU}
_GATE_MODULES = {"sigmoid": nn.Sigmoid, "hardsigmoid": nn.Hardsigmoid}


def _hidden_size(channels: int, reduction: int) -> int:
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


def _check_options(activation: str, gate: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"SE block: activation must be one of {ACTIVATIONS}, got {activation!r}")
    if gate not in GATES:
        raise ValueError(f"SE block: gate must be one of {GATES}, got {gate!r}")


class SEBlock(nn.Module):
    """The Squeeze-and-Excitation block as written in plain PyTorch (Hu et al.):
    squeeze = AdaptiveAvgPool2d(1); excitation = Linear, activation, Linear, gate;
    y = x * excitation(squeeze(x))."""

    def __init__(self, channels: int, r: int = 16, *, bias: bool = False,
                 activation: str = "relu", gate: str = "sigmoid"):
        super().__init__()
        hidden = _hidden_size(channels, r)
        _check_options(activation, gate)
        self.channels, self.r, self.activation, self.gate = channels, r, activation, gate
        self.squeeze = nn.AdaptiveAvgPool2d(1)
        self.excitation = nn.Sequential(
            nn.Linear(channels, hidden, bias=bias),
            _ACTIVATION_MODULES[activation](),
            nn.Linear(hidden, channels, bias=bias),
            _GATE_MODULES[gate](),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        s = self.excitation(self.squeeze(x).view(n, c)).view(n, c, 1, 1)
        return x * s


class FusedSEBlock(SEBlock):
    """Drop-in replacement for SEBlock: same constructor, parameters and
    state_dict (excitation.0.weight [C // r, C], excitation.2.weight [C, C // r],
    and the biases when bias=True), computed by the fused se_fused kernels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The layers by key: Sequential's integer indexing walks its modules.
        layers = self.excitation._modules
        fc1, fc2 = layers["0"], layers["2"]
        return _squeeze_excite(x, fc1.weight, fc1.bias, fc2.weight, fc2.bias,
                               self.activation, self.gate)

    @classmethod
    def from_module(cls, module: nn.Module) -> nn.Module:
        """The fused module for one SE module, sharing its parameters: a FusedSEBlock
        for an SEBlock, a se_fused.FusedSEAdapter for a torchvision or timm SE module
        (see se_fused.convert). ValueError when the module is not supported."""
        from ._convert import from_module
        return from_module(module)
