"""TorchScript forms of the fused modules.

torch.jit.script calls a module's __prepare_scriptable__ and scripts what it returns,
also putting it in the parent's place in the eager model. A fused module returns its
twin here: a module of a class whose forward TorchScript compiles, sharing the fused
module's children, parameters and buffers (the same dicts, so the same state_dict keys
and tensors) and calling the same fused op (so the same results, bit for bit). The
eager forwards read parameters through the modules' dicts for speed, which TorchScript
cannot compile; each twin class names its layers as its source does, one class per
layout of the layers (_CLASSES). A scripted model needs se_fused imported (the op's
library loaded) where it is loaded: `import se_fused` before torch.jit.load.
"""
from typing import Dict, Optional, Tuple

import torch
from torch import nn

Weights = Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor],
                Optional[torch.Tensor]]


def _matrix(w: torch.Tensor) -> torch.Tensor:
    # 1x1 Conv2d [out, in, 1, 1] -> [out, in]; ECA Conv1d [1, 1, k] -> [k] (views)
    if w.dim() == 4:
        return w.flatten(1)
    if w.dim() == 3:
        return w.reshape(-1)
    return w


class _Scripted(nn.Module):
    """What every twin shares: the op call. Subclasses say where the weights are."""
    _se_fused_scripted = True
    __jit_ignored_attributes__ = ["_se_fused_module"]
    # the op's options (names of their own: a source's children may be "gate", "act")
    se_activation: torch.jit.Final[str]
    se_gate: torch.jit.Final[str]
    se_excitation: torch.jit.Final[str]
    se_residual: torch.jit.Final[bool]

    def weights(self) -> Weights:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w1, b1, w2, b2 = self.weights()
        if w2 is not None:
            w2 = _matrix(w2)
        return torch.ops.se_fused.squeeze_excite(x, _matrix(w1), b1, w2, b2, self.se_activation,
                                                 self.se_gate, self.se_excitation,
                                                 self.se_residual)


class _SEBlockTwoFC(_Scripted):
    def weights(self) -> Weights:
        return (self.excitation[0].weight, self.excitation[0].bias,
                self.excitation[2].weight, self.excitation[2].bias)


class _SEBlockOne(_Scripted):
    def weights(self) -> Weights:
        return self.excitation[0].weight, self.excitation[0].bias, None, None


class _FC12(_Scripted):  # torchvision SqueezeExcitation, timm SEModule, legacy senet
    def weights(self) -> Weights:
        return self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias


class _FC12Norm(_Scripted):  # timm SEModule with a BatchNorm (rexnet)
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bn.training:  # timm's own forward
            s = self.fc2(self.act(self.bn(self.fc1(x.mean((2, 3), keepdim=True)))))
            return x * self.gate(s)
        # the eval BatchNorm folded into fc1, as modules._fold_norm does
        bn = self.bn
        w1, b1 = _matrix(self.fc1.weight), self.fc1.bias
        dt = torch.float64 if w1.dtype == torch.float64 else torch.float32
        k = torch.rsqrt(bn.running_var.to(dt) + bn.eps)
        if bn.weight is not None:
            k = k * bn.weight.to(dt)
        b = -bn.running_mean.to(dt)
        if b1 is not None:
            b = b1.to(dt) - bn.running_mean.to(dt)
        b = b * k
        if bn.bias is not None:
            b = b + bn.bias.to(dt)
        w1 = (w1.to(dt) * k.unsqueeze(1)).to(w1.dtype)
        return torch.ops.se_fused.squeeze_excite(
            x, w1, b.to(w1.dtype), _matrix(self.fc2.weight), self.fc2.bias, self.se_activation,
            self.se_gate, self.se_excitation, self.se_residual)


class _ReduceExpand(_Scripted):  # timm SqueezeExcite (EfficientNet, MobileNetV3)
    def weights(self) -> Weights:
        return (self.conv_reduce.weight, self.conv_reduce.bias, self.conv_expand.weight,
                self.conv_expand.bias)


class _FCOne(_Scripted):  # timm EffectiveSEModule (eSE)
    def weights(self) -> Weights:
        return self.fc.weight, self.fc.bias, None, None


class _Conv(_Scripted):  # timm EcaModule, CecaModule
    def weights(self) -> Weights:
        return self.conv.weight, self.conv.bias, None, None


class _FCSeq(_Scripted):  # MONAI ChannelSELayer
    def weights(self) -> Weights:
        return self.fc[0].weight, self.fc[0].bias, self.fc[2].weight, self.fc[2].bias


# (fc1, fc2, norm) of the spec -> the twin class
_CLASSES: Dict[Tuple[str, Optional[str], Optional[str]], type] = {
    ("excitation.0", "excitation.2", None): _SEBlockTwoFC,
    ("excitation.0", None, None): _SEBlockOne,
    ("fc1", "fc2", None): _FC12,
    ("fc1", "fc2", "bn"): _FC12Norm,
    ("conv_reduce", "conv_expand", None): _ReduceExpand,
    ("fc", None, None): _FCOne,
    ("conv", None, None): _Conv,
    ("fc.0", "fc.2", None): _FCSeq,
}


def scriptable(fused: nn.Module) -> nn.Module:
    """The twin of a FusedSEBlock or FusedSEAdapter (see the top)."""
    from .modules import FusedSEAdapter

    if isinstance(fused, FusedSEAdapter):
        spec = fused.spec
        key = (spec.fc1, spec.fc2, spec.norm)
        activation, excitation = fused._activation, spec.excitation
        gate, residual = spec.gate, spec.residual
    else:
        excitation = fused.excitation_kind
        key = ("excitation.0", "excitation.2" if excitation == "two_fc" else None, None)
        activation, gate, residual = fused.activation, fused.gate, fused.residual
    cls = _CLASSES.get(key)
    if cls is None:
        raise RuntimeError(f"se_fused: no TorchScript form for a fused module with layers "
                           f"{key}; se_fused.revert(model) before torch.jit.script")
    twin = cls.__new__(cls)
    nn.Module.__init__(twin)
    for name in ("_parameters", "_buffers", "_modules", "training"):
        twin.__dict__[name] = fused.__dict__[name]
    twin.se_activation, twin.se_gate = activation, gate
    twin.se_excitation, twin.se_residual = excitation, residual
    # what se_fused.revert goes back through; in a tuple, which torch.jit.script's walk
    # over the twin's attributes leaves alone
    twin.__dict__["_se_fused_module"] = (fused,)
    return twin
