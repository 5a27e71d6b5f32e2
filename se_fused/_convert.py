"""Model conversion: swap the Squeeze-and-Excitation modules of a model, in place, for
modules that run the fused se_fused operator.

Sources recognised (torchvision and timm stay optional: a class is only looked for when
its library is already imported, which it is whenever a model holds one of its modules):
  torchvision.ops.SqueezeExcitation          avgpool, fc1, activation, fc2, scale_activation
  timm.layers.squeeze_excite.SEModule        fc1, bn, act, fc2, gate (+ add_maxpool)
  timm.models._efficientnet_blocks.SqueezeExcite   conv_reduce, act1, conv_expand, gate
  se_fused.SEBlock                           squeeze, excitation = (Linear, act, Linear, gate)

One mechanism: each source is read into a spec (the names of its two FC children, the
activation and the gate as the kernels name them). A supported module becomes a
FusedSEAdapter that holds the original's own children under the same names (so the
state_dict keys and shapes, and the parameter tensors themselves, are unchanged) and whose
forward calls squeeze_excitation on those parameters (a 1x1 Conv2d weight as a [out, in]
view, no copy). An SEBlock becomes a FusedSEBlock that shares its children.
"""
import sys
import warnings
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .functional import squeeze_excitation
from .modules import FusedSEBlock, SEBlock


class SESpec(NamedTuple):
    """How an SE module maps onto squeeze_excitation: the child names of its reducing
    and expanding FCs (Conv2d 1x1 or Linear), the activation and the gate."""
    fc1: str
    fc2: str
    activation: str
    gate: str


class Unsupported(ValueError):
    """An SE module whose configuration the fused kernels do not compute."""


# ---------------------------------------------------------------------------
# activations and gates the kernels compute
# ---------------------------------------------------------------------------
# Keyed by module class (exact type: a subclass may change forward) or by function
# identity (a gate stored as a plain function, e.g. torch.sigmoid).
_ACTIVATIONS: Dict[object, str] = {
    nn.ReLU: "relu", nn.SiLU: "silu",
    F.relu: "relu", torch.relu: "relu", F.silu: "silu",
}
_GATES: Dict[object, str] = {
    nn.Sigmoid: "sigmoid", nn.Hardsigmoid: "hardsigmoid",
    torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", torch.Tensor.sigmoid: "sigmoid",
    F.hardsigmoid: "hardsigmoid",
}
# timm's own layers and functions that compute the same thing (create_act_layer picks
# them for some names and export settings): module path -> {attribute: kernel name}.
_TIMM_ACTIVATIONS = {
    "timm.layers.activations": {"Swish": "silu", "swish": "silu"},
    "timm.layers.activations_me": {"SwishMe": "silu", "swish_me": "silu"},
}
_TIMM_GATES = {
    "timm.layers.activations": {"Sigmoid": "sigmoid", "sigmoid": "sigmoid",
                                "HardSigmoid": "hardsigmoid", "hard_sigmoid": "hardsigmoid"},
    "timm.layers.activations_me": {"HardSigmoidMe": "hardsigmoid",
                                   "hard_sigmoid_me": "hardsigmoid"},
}


def _lookup(fn_or_module, table: Dict[object, str], timm_table) -> Optional[str]:
    key = fn_or_module if not isinstance(fn_or_module, nn.Module) else type(fn_or_module)
    try:
        if key in table:
            return table[key]
    except TypeError:  # unhashable callable
        return None
    for mod_name, names in timm_table.items():
        mod = sys.modules.get(mod_name)
        if mod is None:
            continue
        for attr, kernel_name in names.items():
            if getattr(mod, attr, None) is key:
                return kernel_name
    return None


def _describe(obj) -> str:
    if isinstance(obj, nn.Module):
        return type(obj).__name__
    return getattr(obj, "__qualname__", None) or repr(obj)


def _activation(obj, where: str) -> str:
    name = _lookup(obj, _ACTIVATIONS, _TIMM_ACTIVATIONS)
    if name is None:
        raise Unsupported(f"activation {_describe(obj)} ({where}); the kernels compute "
                          f"ReLU or SiLU")
    return name


def _gate(obj, where: str) -> str:
    name = _lookup(obj, _GATES, _TIMM_GATES)
    if name is None:
        raise Unsupported(f"gate {_describe(obj)} ({where}); the kernels compute "
                          f"Sigmoid or Hardsigmoid")
    return name


def _check_fc(fc, where: str, kinds: Tuple[type, ...]) -> None:
    if type(fc) not in kinds:
        raise Unsupported(f"{where} is {_describe(fc)}, not "
                          f"{' or '.join(k.__name__ for k in kinds)}")
    if isinstance(fc, nn.Conv2d):
        one = (1, 1)
        if (fc.kernel_size != one or fc.stride != one or fc.groups != 1
                or not (fc.padding == (0, 0) or isinstance(fc.padding, str))):
            raise Unsupported(
                f"{where} is not a plain 1x1 convolution (kernel {fc.kernel_size}, stride "
                f"{fc.stride}, padding {fc.padding}, groups {fc.groups})")


def _check_fc_pair(module: nn.Module, spec: SESpec) -> None:
    fc1, fc2 = module.get_submodule(spec.fc1), module.get_submodule(spec.fc2)
    hidden, channels = fc1.weight.shape[:2]
    if fc2.weight.shape[:2] != (channels, hidden):
        raise Unsupported(f"{spec.fc1} maps {channels} -> {hidden} channels but {spec.fc2} "
                          f"maps {fc2.weight.shape[1]} -> {fc2.weight.shape[0]}")


def _check_no_hooks(module: nn.Module) -> None:
    # The fused forward never calls the original's children, so hooks on them (or on
    # the module, which the replacement does not carry) would silently stop firing.
    for name, m in module.named_modules():
        if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks:
            raise Unsupported(f"{name or 'the module'} has forward or backward hooks")


def _forward_overridden(module: nn.Module, base: type, *methods: str) -> bool:
    return any(getattr(type(module), m) is not getattr(base, m) for m in methods)


# ---------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------
def _spec_torchvision(m) -> SESpec:
    base = sys.modules["torchvision.ops.misc"].SqueezeExcitation
    if _forward_overridden(m, base, "forward", "_scale"):
        raise Unsupported(f"{type(m).__name__} overrides SqueezeExcitation's forward")
    if type(m.avgpool) is not nn.AdaptiveAvgPool2d or m.avgpool.output_size not in (1, (1, 1)):
        raise Unsupported(f"avgpool is {m.avgpool!r}, not AdaptiveAvgPool2d(1)")
    for name in ("fc1", "fc2"):
        _check_fc(getattr(m, name), name, (nn.Conv2d,))
    return SESpec("fc1", "fc2", _activation(m.activation, "activation"),
                  _gate(m.scale_activation, "scale_activation"))


def _spec_timm_se_module(m) -> SESpec:
    base = sys.modules["timm.layers.squeeze_excite"].SEModule
    if _forward_overridden(m, base, "forward"):
        raise Unsupported(f"{type(m).__name__} overrides SEModule's forward")
    if m.add_maxpool:
        raise Unsupported("add_maxpool=True (the squeeze mixes in a max pool)")
    if type(m.bn) is not nn.Identity:
        raise Unsupported(f"a norm layer ({_describe(m.bn)}) between the FCs")
    for name in ("fc1", "fc2"):
        _check_fc(getattr(m, name), name, (nn.Conv2d,))
    return SESpec("fc1", "fc2", _activation(m.act, "act"), _gate(m.gate, "gate"))


def _spec_timm_squeeze_excite(m) -> SESpec:
    base = sys.modules["timm.models._efficientnet_blocks"].SqueezeExcite
    if _forward_overridden(m, base, "forward"):
        raise Unsupported(f"{type(m).__name__} overrides SqueezeExcite's forward")
    for name in ("conv_reduce", "conv_expand"):
        _check_fc(getattr(m, name), name, (nn.Conv2d,))
    return SESpec("conv_reduce", "conv_expand", _activation(m.act1, "act1"),
                  _gate(m.gate, "gate"))


def _spec_se_block(m: SEBlock) -> SESpec:
    if _forward_overridden(m, SEBlock, "forward"):
        raise Unsupported(f"{type(m).__name__} overrides SEBlock's forward")
    if type(m.squeeze) is not nn.AdaptiveAvgPool2d or m.squeeze.output_size not in (1, (1, 1)):
        raise Unsupported(f"squeeze is {m.squeeze!r}, not AdaptiveAvgPool2d(1)")
    ex = m.excitation
    if type(ex) is not nn.Sequential or len(ex) != 4:
        raise Unsupported("excitation is not Sequential(Linear, activation, Linear, gate)")
    for i in (0, 2):
        _check_fc(ex[i], f"excitation.{i}", (nn.Linear,))
    return SESpec("excitation.0", "excitation.2", _activation(ex[1], "excitation.1"),
                  _gate(ex[3], "excitation.3"))


# (module path, class name, spec reader); looked up in sys.modules, never imported here.
_SOURCES: List[Tuple[str, str, Callable[[nn.Module], SESpec]]] = [
    ("torchvision.ops.misc", "SqueezeExcitation", _spec_torchvision),
    ("timm.layers.squeeze_excite", "SEModule", _spec_timm_se_module),
    ("timm.models._efficientnet_blocks", "SqueezeExcite", _spec_timm_squeeze_excite),
    ("se_fused.modules", "SEBlock", _spec_se_block),
]


def _reader(module: nn.Module) -> Optional[Callable[[nn.Module], SESpec]]:
    """The spec reader for a recognised SE module; None for anything else, including
    modules that are already fused."""
    if isinstance(module, (FusedSEBlock, FusedSEAdapter)):
        return None
    for mod_name, cls_name, read in _SOURCES:
        cls = getattr(sys.modules.get(mod_name), cls_name, None)
        if cls is not None and isinstance(module, cls):
            return read
    return None


def _source_name(module: nn.Module) -> str:
    t = type(module)
    return f"{t.__module__}.{t.__qualname__}"


def _spec(module: nn.Module, read) -> SESpec:
    spec = read(module)
    _check_fc_pair(module, spec)
    _check_no_hooks(module)
    if module._parameters or module._buffers:
        # The adapter carries children only; state of the module itself would be lost.
        raise Unsupported("the module holds parameters or buffers of its own")
    return spec


# ---------------------------------------------------------------------------
# the fused module for third-party SE blocks
# ---------------------------------------------------------------------------
def _as_matrix(weight: torch.Tensor) -> torch.Tensor:
    # Conv2d 1x1 weight [out, in, 1, 1] -> [out, in]: a view (also for channels_last
    # weights, whose size-1 dims carry no stride), so gradients land in the conv weight.
    return weight.flatten(1) if weight.dim() == 4 else weight


class FusedSEAdapter(nn.Module):
    """An SE module from torchvision or timm run by the fused operator. It holds the
    original's children under their original names (same state_dict keys, shapes and
    parameter tensors); the children that the fused op replaces (pooling, activation,
    gate) are kept, unused, so the structure still prints and loads as before."""

    def __init__(self, original: nn.Module, spec: SESpec):
        super().__init__()
        for name, child in original.named_children():
            self.add_module(name, child)
        self.spec = spec
        self.source = _source_name(original)
        self.training = original.training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fc1 = self.get_submodule(self.spec.fc1)
        fc2 = self.get_submodule(self.spec.fc2)
        return squeeze_excitation(x, _as_matrix(fc1.weight), _as_matrix(fc2.weight),
                                  fc1.bias, fc2.bias, self.spec.activation, self.spec.gate)

    def extra_repr(self) -> str:
        return (f"source={self.source}, activation={self.spec.activation}, "
                f"gate={self.spec.gate}")


def _fused_se_block(m: SEBlock, spec: SESpec) -> FusedSEBlock:
    # Build on the meta device (nothing allocated), then take the original's children:
    # the parameters are shared, not copied.
    with torch.device("meta"):
        fused = FusedSEBlock(m.channels, m.r, bias=m.excitation[0].bias is not None,
                             activation=spec.activation, gate=spec.gate)
    fused.squeeze, fused.excitation = m.squeeze, m.excitation
    fused.training = m.training
    return fused


def _fuse(module: nn.Module, spec: SESpec) -> nn.Module:
    if isinstance(module, SEBlock):
        return _fused_se_block(module, spec)
    return FusedSEAdapter(module, spec)


def from_module(module: nn.Module) -> nn.Module:
    """The fused module for one SE module: a FusedSEBlock for an se_fused.SEBlock, a
    FusedSEAdapter for a torchvision or timm SE module; either shares the original's
    parameters. An already fused module is returned as is. Raises ValueError for a
    module that is not a recognised SE module or whose configuration is unsupported."""
    if isinstance(module, (FusedSEBlock, FusedSEAdapter)):
        return module
    read = _reader(module)
    if read is None:
        raise ValueError(f"se_fused: {_source_name(module)} is not a supported SE module "
                         f"(torchvision SqueezeExcitation, timm SEModule or SqueezeExcite, "
                         f"se_fused.SEBlock)")
    try:
        spec = _spec(module, read)
    except Unsupported as e:
        raise ValueError(f"se_fused: cannot fuse {_source_name(module)}: {e}") from None
    return _fuse(module, spec)


def convert(model: nn.Module) -> nn.Module:
    """Replace, in place, every supported SE module in model (torchvision
    SqueezeExcitation, timm SEModule and SqueezeExcite, se_fused.SEBlock) with its fused
    module, and return model (or, when model itself is an SE module, its replacement).

    state_dict keys and shapes are unchanged: a checkpoint of the original loads into the
    converted model and back. Parameters are shared, not copied. Modules whose
    configuration the kernels do not compute are left unchanged, with one warning that
    names them and says why. A module reached twice (shared) is replaced by one fused
    module in both places."""
    skipped: Dict[str, List[str]] = {}
    done: Dict[int, nn.Module] = {}

    def replacement(name: str, module: nn.Module) -> Optional[nn.Module]:
        if id(module) in done:
            return done[id(module)]
        read = _reader(module)
        if read is None:
            return None
        try:
            fused = _fuse(module, _spec(module, read))
        except Unsupported as e:
            skipped.setdefault(f"{type(module).__name__}: {e}", []).append(name or "<model>")
            fused = module
        done[id(module)] = fused
        return fused

    def visit(parent: nn.Module, prefix: str) -> None:
        # _modules, not named_children(): that skips a module met before, and a shared
        # SE module must be replaced in every place it appears.
        for child_name, child in list(parent._modules.items()):
            if child is None:
                continue
            name = f"{prefix}{child_name}"
            new = replacement(name, child)
            if new is None:
                visit(child, name + ".")
            elif new is not child:
                setattr(parent, child_name, new)

    root = replacement("", model)
    if root is None:
        visit(model, "")
        root = model
    if skipped:
        lines = []
        for reason, names in skipped.items():
            shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
            lines.append(f"  {len(names)} x {reason} [{shown}]")
        warnings.warn(
            f"se_fused.convert: left {sum(map(len, skipped.values()))} SE module(s) "
            f"unchanged, their configuration is not supported by the fused kernels:\n"
            + "\n".join(lines), UserWarning, stacklevel=2)
    return root
