"""Reading the SE modules of other libraries: each recognised source is read into a
spec (the names of its two FC children, the activation and the gate as the kernels
name them), or refused with the reason. Pure: builds nothing, imports no library.

Sources recognised (torchvision and timm stay optional: a class is only looked for when
its library is already imported, which it is whenever a model holds one of its modules):
  torchvision.ops.SqueezeExcitation          avgpool, fc1, activation, fc2, scale_activation
  timm.layers.squeeze_excite.SEModule        fc1, bn, act, fc2, gate (+ add_maxpool)
  timm.models._efficientnet_blocks.SqueezeExcite   conv_reduce, act1, conv_expand, gate
  se_fused.SEBlock                           squeeze, excitation = (Linear, act, Linear, gate)
"""
import sys
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

from torch import nn

from ._variants import ACTIVATION_FUNCTIONS, ACTIVATION_MODULES, GATE_FUNCTIONS, GATE_MODULES
from .reference import SEBlock


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
def _by_object(modules, functions) -> Dict[object, str]:
    table: Dict[object, str] = {cls: name for name, cls in modules.items()}
    table.update({fn: name for name, fns in functions.items() for fn in fns})
    return table


_ACTIVATIONS = _by_object(ACTIVATION_MODULES, ACTIVATION_FUNCTIONS)
_GATES = _by_object(GATE_MODULES, GATE_FUNCTIONS)
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
    ("se_fused.reference", "SEBlock", _spec_se_block),
]


def reader(module: nn.Module) -> Optional[Callable[[nn.Module], SESpec]]:
    """The spec reader for a recognised SE module; None for anything else."""
    for mod_name, cls_name, read in _SOURCES:
        cls = getattr(sys.modules.get(mod_name), cls_name, None)
        if cls is not None and isinstance(module, cls):
            return read
    return None


def source_name(module: nn.Module) -> str:
    t = type(module)
    return f"{t.__module__}.{t.__qualname__}"


def read_spec(module: nn.Module, read) -> SESpec:
    spec = read(module)
    _check_fc_pair(module, spec)
    _check_no_hooks(module)
    if module._parameters or module._buffers:
        # The adapter carries children only; state of the module itself would be lost.
        raise Unsupported("the module holds parameters or buffers of its own")
    return spec
