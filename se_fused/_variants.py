"""The variants of the SE block that the kernels compute, named once: the op takes
these strings, the modules build these layers, and convert recognises them."""
import torch
import torch.nn.functional as F
from torch import nn

import math
from typing import Optional

ACTIVATIONS = ("relu", "silu", "hardswish")
GATES = ("sigmoid", "hardsigmoid")
# The excitation, pooled [N, C] -> the gate's pre-activation [N, C] (csrc/se_math.h):
#   two_fc        FC, activation, FC (SE)
#   one_fc        one FC, C -> C (eSE, CenterMask's VoVNet)
#   eca           1-D convolution of odd size k across the channels, zero padding (ECA-Net)
#   eca_circular  the same with circular padding (timm CecaModule)
EXCITATIONS = ("two_fc", "one_fc", "eca", "eca_circular")

# The plain block's layer for each name.
ACTIVATION_MODULES = {"relu": nn.ReLU, "silu": nn.SiLU, "hardswish": nn.Hardswish}
GATE_MODULES = {"sigmoid": nn.Sigmoid, "hardsigmoid": nn.Hardsigmoid}
# Functions that other libraries store in place of a layer (convert recognises them).
ACTIVATION_FUNCTIONS = {"relu": (F.relu, torch.relu), "silu": (F.silu,),
                        "hardswish": (F.hardswish,)}
GATE_FUNCTIONS = {"sigmoid": (torch.sigmoid, F.sigmoid, torch.Tensor.sigmoid),
                  "hardsigmoid": (F.hardsigmoid,)}


def resolve_activation(activation: Optional[str], excitation: str) -> str:
    """The op's activation string: the two-FC excitation's activation ("relu" when
    None), or "none" for the excitations without a hidden layer (which take none)."""
    if excitation not in EXCITATIONS:
        raise ValueError(f"SE block: excitation must be one of {EXCITATIONS}, got {excitation!r}")
    if excitation == "two_fc":
        return "relu" if activation is None else activation
    if activation not in (None, "none"):
        raise ValueError(f"SE block: the {excitation} excitation has no hidden layer and no "
                         f"activation; got activation={activation!r}")
    return "none"


def check_options(activation: str, gate: str, excitation: str = "two_fc") -> None:
    if excitation not in EXCITATIONS:
        raise ValueError(f"SE block: excitation must be one of {EXCITATIONS}, got {excitation!r}")
    if excitation == "two_fc" and activation not in ACTIVATIONS:
        raise ValueError(f"SE block: activation must be one of {ACTIVATIONS}, got {activation!r}")
    if gate not in GATES:
        raise ValueError(f"SE block: gate must be one of {GATES}, got {gate!r}")


def eca_kernel_size(channels: int, gamma: int = 2, beta: int = 1) -> int:
    """ECA-Net's kernel size for C channels: |log2(C) + beta| / gamma, made odd, at
    least 3 (as timm's EcaModule computes it)."""
    t = int(abs(math.log(channels, 2) + beta) / gamma)
    return max(t if t % 2 else t + 1, 3)
