"""Reading the SE modules of other libraries: each recognised source is read into a
spec (where its FCs or its convolution and its norm are, which activation, gate,
excitation and residual it computes), and one place (not_computed) says which specs the
kernels compute; the rest are refused with the reason. Pure: builds nothing, imports no
library.

Sources recognised (torchvision, timm and MONAI stay optional: a class is only looked
for when its library is already imported, which it is whenever a model holds one):
  torchvision.ops.SqueezeExcitation          avgpool, fc1, activation, fc2, scale_activation
  timm.layers.squeeze_excite.SEModule        fc1, bn, act, fc2, gate (+ add_maxpool)
  timm.models._efficientnet_blocks.SqueezeExcite   conv_reduce, act1, conv_expand, gate
  timm.models.senet.SEModule (legacy SENets) fc1, relu, fc2, sigmoid
  timm.layers.squeeze_excite.EffectiveSEModule   fc (Conv2d 1x1, C -> C), gate: eSE
                                             (one_fc; + add_maxpool, refused)
  timm.layers.eca.EcaModule                  conv (Conv1d(1, 1, k), zero padding
                                             (k - 1) // 2), gate: eca (use_mlp refused)
  timm.layers.eca.CecaModule                 F.pad(circular, self.padding), conv
                                             (Conv1d(1, 1, k), padding 0), gate: eca_circular
  monai.networks.blocks.ChannelSELayer       avg_pool, fc = (Linear, act, Linear, act)
                                             (+ add_residual: residual; ResidualSELayer
                                             too; any spatial_dims)
  se_fused.SEBlock                           squeeze, excitation = (Linear, act, Linear,
                                             gate), (Linear(C, C), gate) or (Conv1d, gate);
                                             its residual
Any other module whose class name looks like an SE block is named by looks_like_se.
"""
import re
import sys
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

from torch import nn

from ._variants import (ACTIVATION_FUNCTIONS, ACTIVATION_MODULES, ACTIVATIONS, EXCITATIONS,
                        GATE_FUNCTIONS, GATE_MODULES, GATES)
from .reference import SEBlock


class SESpec(NamedTuple):
    """What an SE module computes, as the kernels would name it:
    fc1, fc2: the child names (dotted for nested children) of the reducing and the
        expanding FC (Conv2d 1x1 or Linear); for a one-FC or ECA excitation, fc1 is its
        one layer and fc2 None;
    activation, gate: the variant names (_variants.ACTIVATIONS and GATES); activation
        None when the excitation has none;
    norm: the child name of an eval-foldable BatchNorm between fc1 and the activation;
    excitation: "two_fc" (FC, act, FC), "one_fc" (eSE), "eca" or "eca_circular";
    residual: y = x * s + x instead of x * s."""
    fc1: str
    fc2: Optional[str]
    activation: Optional[str]
    gate: str
    norm: Optional[str] = None
    excitation: str = "two_fc"
    residual: bool = False


class Unsupported(ValueError):
    """An SE module whose configuration the fused kernels do not compute."""


# ---------------------------------------------------------------------------
# what the kernels compute: the one place a new kernel variant is admitted
# ---------------------------------------------------------------------------
# The variants the readers recognise, in the words of a refusal. An excitation or the
# residual is admitted when it is added to _COMPUTED and FusedSEAdapter runs it; since
# issue 15 the kernels compute all of them.
_VARIANT_WORDS = {
    "one_fc": "one-FC excitation (eSE)",
    "eca": "ECA excitation (1-D conv over channels)",
    "eca_circular": "circular ECA excitation (1-D conv over channels, circular padding)",
    "residual": "residual gate",
}
_COMPUTED = {"excitation": ("two_fc", "one_fc", "eca", "eca_circular"),
             "residual": (False, True)}


def not_computed(spec: SESpec) -> List[str]:
    """The reasons the kernels do not compute spec; empty when they do."""
    reasons = []
    if spec.excitation not in _COMPUTED["excitation"]:
        reasons.append(f"{_VARIANT_WORDS[spec.excitation]} not computed by the kernels")
    if spec.residual not in _COMPUTED["residual"]:
        reasons.append(f"{_VARIANT_WORDS['residual']} not computed by the kernels")
    return reasons


# ---------------------------------------------------------------------------
# activations and gates
# ---------------------------------------------------------------------------
# Keyed by module class (exact type: a subclass may change forward) or by function
# identity (a gate stored as a plain function, e.g. torch.sigmoid).
def _by_object(modules, functions) -> Dict[object, str]:
    table: Dict[object, str] = {cls: name for name, cls in modules.items()}
    table.update({fn: name for name, fns in functions.items() for fn in fns})
    return table


_ACTIVATIONS = _by_object(ACTIVATION_MODULES, ACTIVATION_FUNCTIONS)
_GATES = _by_object(GATE_MODULES, GATE_FUNCTIONS)
# Other libraries' own layers and functions for the same variants (timm's
# create_act_layer picks them for some names and export settings; MONAI's Act factory
# for "memswish"): module path -> {attribute: variant name}.
_LIBRARY_ACTIVATIONS = {
    "timm.layers.activations": {"Swish": "silu", "swish": "silu",
                                "HardSwish": "hardswish", "hard_swish": "hardswish"},
    "timm.layers.activations_me": {"SwishMe": "silu", "swish_me": "silu",
                                   "HardSwishMe": "hardswish", "hard_swish_me": "hardswish"},
    "monai.networks.blocks.activation": {"MemoryEfficientSwish": "silu"},
}
_LIBRARY_GATES = {
    "timm.layers.activations": {"Sigmoid": "sigmoid", "sigmoid": "sigmoid",
                                "HardSigmoid": "hardsigmoid", "hard_sigmoid": "hardsigmoid"},
    "timm.layers.activations_me": {"HardSigmoidMe": "hardsigmoid",
                                   "hard_sigmoid_me": "hardsigmoid"},
}


def _lookup(fn_or_module, table: Dict[object, str], library_table) -> Optional[str]:
    key = fn_or_module if not isinstance(fn_or_module, nn.Module) else type(fn_or_module)
    try:
        if key in table:
            return table[key]
    except TypeError:  # unhashable callable
        return None
    for mod_name, names in library_table.items():
        mod = sys.modules.get(mod_name)
        if mod is None:
            continue
        for attr, variant in names.items():
            if getattr(mod, attr, None) is key:
                return variant
    return None


def _describe(obj) -> str:
    if isinstance(obj, nn.Module):
        return type(obj).__name__
    return getattr(obj, "__qualname__", None) or repr(obj)


def _activation(obj, where: str) -> str:
    name = _lookup(obj, _ACTIVATIONS, _LIBRARY_ACTIVATIONS)
    monai = sys.modules.get("monai.networks.blocks.activation")
    if name is None and monai is not None and type(obj) is getattr(monai, "Swish", None):
        # MONAI's Swish is x * sigmoid(alpha * x): SiLU for alpha = 1 only
        if isinstance(obj.alpha, (int, float)) and obj.alpha == 1:
            name = "silu"
    if name is None:
        raise Unsupported(f"activation {_describe(obj)} ({where}); the kernels compute "
                          f"{', '.join(ACTIVATIONS)}")
    return name


def _gate(obj, where: str) -> str:
    name = _lookup(obj, _GATES, _LIBRARY_GATES)
    if name is None:
        raise Unsupported(f"gate {_describe(obj)} ({where}); the kernels compute "
                          f"{', '.join(GATES)}")
    return name


# ---------------------------------------------------------------------------
# structure
# ---------------------------------------------------------------------------
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


def _check_eca_conv(conv, where: str, padding: int, padding_mode: Optional[str]) -> None:
    """An ECA convolution: Conv1d(1, 1, k) with k odd, stride 1, dilation 1, groups 1,
    and padding `padding` on each side (with padding_mode; None: any, as when the
    padding is 0). The sizes the spec's kernel computes: k // 2 of zeros (eca) or of
    the channels at the other end (eca_circular)."""
    if type(conv) is not nn.Conv1d:
        raise Unsupported(f"{where} is {_describe(conv)}, not Conv1d")
    k = conv.kernel_size[0]
    pad = conv.padding
    if pad == "same":  # stride 1, odd k: k // 2 on each side
        pad = (k // 2,)
    if (conv.in_channels, conv.out_channels) != (1, 1) or k % 2 == 0 or conv.stride != (1,) \
            or conv.dilation != (1,) or conv.groups != 1 or pad != (padding,) \
            or (padding_mode is not None and conv.padding_mode != padding_mode):
        raise Unsupported(
            f"{where} is not an ECA convolution Conv1d(1, 1, k odd, stride 1, dilation 1, "
            f"padding {padding}{'' if padding_mode is None else ' ' + padding_mode}) "
            f"({conv.in_channels} -> {conv.out_channels} channels, kernel {conv.kernel_size}, "
            f"stride {conv.stride}, dilation {conv.dilation}, padding {conv.padding} "
            f"{conv.padding_mode}, groups {conv.groups})")


def _check_fc_pair(module: nn.Module, spec: SESpec) -> None:
    """The shapes of the excitation's layers agree with each other: two_fc's FCs map
    C -> hidden -> C (and the norm takes hidden); one_fc's FC maps C -> C; the ECA
    convolution's weight is [1, 1, k] and its bias [1] (the readers check the rest)."""
    fc1 = module.get_submodule(spec.fc1)
    if spec.excitation == "one_fc":
        out, inp = fc1.weight.shape[:2]
        if out != inp:
            raise Unsupported(f"{spec.fc1} maps {inp} -> {out} channels; the one-FC "
                              f"excitation maps C -> C")
    elif spec.excitation in ("eca", "eca_circular"):
        if fc1.weight.dim() != 3 or fc1.weight.shape[:2] != (1, 1) or (
                fc1.bias is not None and fc1.bias.shape != (1,)):
            raise Unsupported(f"{spec.fc1} holds a weight {tuple(fc1.weight.shape)}, not "
                              f"[1, 1, k]")
    if spec.excitation != "two_fc":
        if spec.fc2 is not None or spec.norm is not None:
            raise Unsupported(f"the {spec.excitation} excitation has one layer")
        return
    fc2 = module.get_submodule(spec.fc2)
    hidden, channels = fc1.weight.shape[:2]
    if fc2.weight.shape[:2] != (channels, hidden):
        raise Unsupported(f"{spec.fc1} maps {channels} -> {hidden} channels but {spec.fc2} "
                          f"maps {fc2.weight.shape[1]} -> {fc2.weight.shape[0]}")
    if spec.norm is not None:
        norm = module.get_submodule(spec.norm)
        if norm.num_features != hidden:
            raise Unsupported(f"{spec.norm} normalises {norm.num_features} channels, "
                              f"{spec.fc1} gives {hidden}")


def _norm(module: nn.Module, name: str) -> Optional[str]:
    """The child name of the norm between the FCs; None for an Identity. Only a
    BatchNorm2d with running statistics is taken: in eval it is an affine map, folded
    into fc1 per call (in training the original module runs)."""
    norm = getattr(module, name)
    if type(norm) is nn.Identity:
        return None
    if type(norm) is not nn.BatchNorm2d:
        raise Unsupported(f"a norm layer ({_describe(norm)}) between the FCs; convert folds "
                          f"a BatchNorm2d only")
    if norm.running_mean is None or norm.running_var is None:
        raise Unsupported(f"a norm layer ({_describe(norm)}) between the FCs without running "
                          f"statistics (it normalises by batch statistics in eval too)")
    return name


def _check_pool(pool, where: str, kinds: Tuple[type, ...]) -> None:
    size = pool.output_size if type(pool) in kinds else None
    if size is None or any(s != 1 for s in (size if isinstance(size, tuple) else (size,))):
        raise Unsupported(f"{where} is {pool!r}, not {' or '.join(k.__name__ for k in kinds)}"
                          f" with output size 1")


def _check_no_hooks(module: nn.Module) -> None:
    # The fused forward never calls the original's children, so hooks on them (or on
    # the module, which the replacement does not carry) would silently stop firing.
    for name, m in module.named_modules():
        if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks:
            raise Unsupported(f"{name or 'the module'} has forward or backward hooks")


def _forward_overridden(module: nn.Module, base: type, *methods: str) -> bool:
    return any(getattr(type(module), m) is not getattr(base, m) for m in methods)


def _check_forward(m: nn.Module, mod_name: str, cls_name: str, *methods: str) -> None:
    if _forward_overridden(m, getattr(sys.modules[mod_name], cls_name), *(methods or ("forward",))):
        raise Unsupported(f"{type(m).__name__} overrides {cls_name}'s forward")


# ---------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------
def _spec_torchvision(m) -> SESpec:
    _check_forward(m, "torchvision.ops.misc", "SqueezeExcitation", "forward", "_scale")
    _check_pool(m.avgpool, "avgpool", (nn.AdaptiveAvgPool2d,))
    for name in ("fc1", "fc2"):
        _check_fc(getattr(m, name), name, (nn.Conv2d,))
    return SESpec("fc1", "fc2", _activation(m.activation, "activation"),
                  _gate(m.scale_activation, "scale_activation"))


def _spec_timm_se_module(m) -> SESpec:
    _check_forward(m, "timm.layers.squeeze_excite", "SEModule")
    if m.add_maxpool:
        raise Unsupported("add_maxpool=True (the squeeze mixes in a max pool)")
    norm = _norm(m, "bn")
    for name in ("fc1", "fc2"):
        _check_fc(getattr(m, name), name, (nn.Conv2d,))
    return SESpec("fc1", "fc2", _activation(m.act, "act"), _gate(m.gate, "gate"), norm=norm)


def _spec_timm_squeeze_excite(m) -> SESpec:
    _check_forward(m, "timm.models._efficientnet_blocks", "SqueezeExcite")
    for name in ("conv_reduce", "conv_expand"):
        _check_fc(getattr(m, name), name, (nn.Conv2d,))
    return SESpec("conv_reduce", "conv_expand", _activation(m.act1, "act1"),
                  _gate(m.gate, "gate"))


def _spec_timm_legacy_se_module(m) -> SESpec:
    _check_forward(m, "timm.models.senet", "SEModule")
    for name in ("fc1", "fc2"):
        _check_fc(getattr(m, name), name, (nn.Conv2d,))
    return SESpec("fc1", "fc2", _activation(m.relu, "relu"), _gate(m.sigmoid, "sigmoid"))


def _spec_timm_effective_se(m) -> SESpec:
    _check_forward(m, "timm.layers.squeeze_excite", "EffectiveSEModule")
    if m.add_maxpool:
        raise Unsupported("add_maxpool=True (the squeeze mixes in a max pool)")
    _check_fc(m.fc, "fc", (nn.Conv2d,))
    return SESpec("fc", None, None, _gate(m.gate, "gate"), excitation="one_fc")


def _spec_timm_eca(m) -> SESpec:
    _check_forward(m, "timm.layers.eca", "EcaModule")
    if m.conv2 is not None:
        raise Unsupported(f"{_VARIANT_WORDS['eca']} with an MLP (use_mlp=True) not "
                          f"computed by the kernels")
    k = m.conv.kernel_size[0] if isinstance(m.conv, nn.Conv1d) else 0
    _check_eca_conv(m.conv, "conv", (k - 1) // 2, "zeros")
    return SESpec("conv", None, None, _gate(m.gate, "gate"), excitation="eca")


def _spec_timm_ceca(m) -> SESpec:
    # CecaModule pads by hand: F.pad(y, (self.padding, self.padding), mode="circular"),
    # then conv with padding 0 (its act_layer only gives the conv a bias; forward never
    # calls an activation).
    _check_forward(m, "timm.layers.eca", "CecaModule")
    _check_eca_conv(m.conv, "conv", 0, None)
    k = m.conv.kernel_size[0]
    if m.padding != (k - 1) // 2:
        raise Unsupported(f"circular padding {m.padding} for kernel size {k}; the kernels "
                          f"pad (k - 1) // 2 = {(k - 1) // 2}")
    return SESpec("conv", None, None, _gate(m.gate, "gate"), excitation="eca_circular")


def _spec_monai_channel_se(m) -> SESpec:
    # also ResidualSELayer (a ChannelSELayer with add_residual=True)
    _check_forward(m, "monai.networks.blocks.squeeze_and_excitation", "ChannelSELayer")
    _check_pool(m.avg_pool, "avg_pool",
                (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d))
    fc = m.fc
    if type(fc) is not nn.Sequential or len(fc) != 4:
        raise Unsupported("fc is not Sequential(Linear, activation, Linear, activation)")
    for i in (0, 2):
        _check_fc(fc[i], f"fc.{i}", (nn.Linear,))
    # forward adds x when add_residual is truthy
    return SESpec("fc.0", "fc.2", _activation(fc[1], "fc.1"), _gate(fc[3], "fc.3"),
                  residual=bool(m.add_residual))


def _spec_se_block(m: SEBlock) -> SESpec:
    """SEBlock's variants, by its excitation_kind and residual attributes; the layers
    in its excitation must be the ones that kind builds."""
    if _forward_overridden(m, SEBlock, "forward"):
        raise Unsupported(f"{type(m).__name__} overrides SEBlock's forward")
    _check_pool(m.squeeze, "squeeze", (nn.AdaptiveAvgPool2d,))
    kind, residual = m.excitation_kind, m.residual
    if kind not in EXCITATIONS:
        raise Unsupported(f"excitation_kind {kind!r}")
    if not isinstance(residual, bool):
        raise Unsupported(f"residual is {residual!r}, not a bool")
    ex = m.excitation
    want = {"two_fc": "Linear, activation, Linear, gate", "one_fc": "Linear, gate"}.get(
        kind, "Conv1d, gate")
    if type(ex) is not nn.Sequential or len(ex) != want.count(",") + 1:
        raise Unsupported(f"excitation is not Sequential({want}) ({kind})")
    gate = _gate(ex[len(ex) - 1], f"excitation.{len(ex) - 1}")
    if kind == "two_fc":
        for i in (0, 2):
            _check_fc(ex[i], f"excitation.{i}", (nn.Linear,))
        spec = SESpec("excitation.0", "excitation.2", _activation(ex[1], "excitation.1"),
                      gate, residual=residual)
    elif kind == "one_fc":
        _check_fc(ex[0], "excitation.0", (nn.Linear,))
        spec = SESpec("excitation.0", None, None, gate, excitation="one_fc", residual=residual)
    else:
        k = ex[0].kernel_size[0] if isinstance(ex[0], nn.Conv1d) else 0
        _check_eca_conv(ex[0], "excitation.0", k // 2,
                        "circular" if kind == "eca_circular" else "zeros")
        spec = SESpec("excitation.0", None, None, gate, excitation=kind, residual=residual)
    if kind != "eca" and kind != "eca_circular" and ex[0].in_features != m.channels:
        raise Unsupported(f"excitation.0 takes {ex[0].in_features} channels, the block "
                          f"{m.channels}")
    return spec


# (module path, class name, spec reader); looked up in sys.modules, never imported here.
_SOURCES: List[Tuple[str, str, Callable[[nn.Module], SESpec]]] = [
    ("torchvision.ops.misc", "SqueezeExcitation", _spec_torchvision),
    ("timm.layers.squeeze_excite", "SEModule", _spec_timm_se_module),
    ("timm.models._efficientnet_blocks", "SqueezeExcite", _spec_timm_squeeze_excite),
    ("timm.models.senet", "SEModule", _spec_timm_legacy_se_module),
    ("timm.layers.squeeze_excite", "EffectiveSEModule", _spec_timm_effective_se),
    ("timm.layers.eca", "EcaModule", _spec_timm_eca),
    ("timm.layers.eca", "CecaModule", _spec_timm_ceca),
    ("monai.networks.blocks.squeeze_and_excitation", "ChannelSELayer", _spec_monai_channel_se),
    ("se_fused.reference", "SEBlock", _spec_se_block),
]
SOURCES_READ = ("torchvision SqueezeExcitation, timm SEModule, SqueezeExcite, legacy senet "
                "SEModule, EffectiveSEModule, EcaModule and CecaModule, MONAI "
                "ChannelSELayer (and ResidualSELayer), se_fused.SEBlock")


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
    """The spec of a recognised module, or Unsupported with the reason(s) the kernels
    do not compute it."""
    spec = read(module)
    reasons = not_computed(spec)
    if reasons:
        raise Unsupported("; ".join(reasons))
    _check_fc_pair(module, spec)
    _check_no_hooks(module)
    if module._parameters or module._buffers:
        # The adapter carries children only; state of the module itself would be lost.
        raise Unsupported("the module holds parameters or buffers of its own")
    return spec


# ---------------------------------------------------------------------------
# SE-looking class names (for the warning about modules convert does not read)
# ---------------------------------------------------------------------------
# A class name is split into words (CamelCase, acronyms, snake_case, digits) and looks
# like an SE block when a word is one of these, or starts with Excit/excit: SEModule,
# ChannelSELayer, eSEModule, BlockESE, SCSEModule, SeModule, se_layer, SE3D, EcaModule,
# ECALayer, eca_layer, SqueezeExcite, GatherExcite. Words decide, not substrings, so
# Sequential, SelectAdaptivePool2d, SELU, MSELoss, SEMEION or SqueezeNet do not.
_SE_WORDS = frozenset({"SE", "Se", "se", "ESE", "Ese", "SCSE", "CSE", "ECA", "Eca", "eca",
                       "CECA", "Ceca", "ceca"})
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z]|[^A-Za-z]|$)|[A-Z]?[a-z]+|[0-9]+")


def looks_like_se(class_name: str) -> bool:
    return any(w in _SE_WORDS or w.startswith(("Excit", "excit"))
               for w in _WORD.findall(class_name))
