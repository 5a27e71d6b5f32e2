"""The variants of the SE block that the kernels compute, named once: the op takes
these strings, the modules build these layers, and convert recognises them."""
import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = ("relu", "silu", "hardswish")
GATES = ("sigmoid", "hardsigmoid")

# The plain block's layer for each name.
ACTIVATION_MODULES = {"relu": nn.ReLU, "silu": nn.SiLU, "hardswish": nn.Hardswish}
GATE_MODULES = {"sigmoid": nn.Sigmoid, "hardsigmoid": nn.Hardsigmoid}
# Functions that other libraries store in place of a layer (convert recognises them).
ACTIVATION_FUNCTIONS = {"relu": (F.relu, torch.relu), "silu": (F.silu,),
                        "hardswish": (F.hardswish,)}
GATE_FUNCTIONS = {"sigmoid": (torch.sigmoid, F.sigmoid, torch.Tensor.sigmoid),
                  "hardsigmoid": (F.hardsigmoid,)}


def check_options(activation: str, gate: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"SE block: activation must be one of {ACTIVATIONS}, got {activation!r}")
    if gate not in GATES:
        raise ValueError(f"SE block: gate must be one of {GATES}, got {gate!r}")
