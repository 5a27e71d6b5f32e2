"""Model conversion: swap the Squeeze-and-Excitation modules of a model, in place, for
modules that run the fused se_fused operator.

One mechanism: each source is read into a spec (se_fused/_match.py). A supported module
becomes a FusedSEAdapter that holds the original's own children under the same names (so
the state_dict keys and shapes, and the parameter tensors themselves, are unchanged) and
whose forward calls the fused op on those parameters (a 1x1 Conv2d weight as a [out, in]
view, no copy, and an ECA Conv1d weight [1, 1, k] as a [k] view; a BatchNorm between
the FCs folded into the first per call in eval). An
SEBlock becomes a FusedSEBlock that shares its children. What the kernels do not compute
(and SE-like modules no reader knows) is left unchanged and named in one warning.
"""
import warnings
from typing import Dict, List, Optional

from torch import nn

from ._match import SOURCES_READ, Unsupported, looks_like_se, read_spec, reader
from .modules import FusedSEBlock, fuse, is_fused
from .reference import SEBlock


def convert(model: nn.Module) -> nn.Module:
    """Replace, in place, every supported SE module in model (torchvision
    SqueezeExcitation, timm SEModule, SqueezeExcite and legacy senet SEModule, timm
    EffectiveSEModule (eSE), EcaModule and CecaModule (ECA), MONAI ChannelSELayer (also
    with add_residual, and ResidualSELayer), se_fused.SEBlock (any excitation, residual))
    with its fused module, and return model (or, when model itself is an SE module, its
    replacement).

    state_dict keys and shapes are unchanged: a checkpoint of the original loads into the
    converted model and back. Parameters are shared, not copied. Modules whose
    configuration the kernels do not compute are left unchanged, with one warning that
    names them and says why; so are modules whose class name looks like an SE block
    (SE, Se, ESE, ECA, Eca, Excit... as a word of the name) that convert does not read
    and that hold no SE module of their own (a block or a network named SE... holding
    one is not an SE block itself). A module reached twice (shared) is replaced by one
    fused module in both places."""
    skipped: Dict[str, List[str]] = {}
    done: Dict[int, nn.Module] = {}
    holds_se: Dict[int, bool] = {}  # modules convert does not read: any SE inside?

    def skip(reason: str, name: str) -> None:
        skipped.setdefault(reason, []).append(name or "<model>")

    def replacement(name: str, module: nn.Module) -> Optional[nn.Module]:
        if id(module) in done:
            return done[id(module)]
        if is_fused(module):
            return None
        read = reader(module)
        if read is None:
            return None
        try:
            fused = fuse(module, read_spec(module, read))
        except Unsupported as e:
            skip(f"{type(module).__name__}: {e}", name)
            fused = module
        done[id(module)] = fused
        return fused

    def visit(parent: nn.Module, prefix: str) -> bool:
        """Convert parent's descendants; whether any is (or was) an SE module."""
        found = False
        # _modules, not named_children(): that skips a module met before, and a shared
        # SE module must be replaced in every place it appears.
        for child_name, child in list(parent._modules.items()):
            if child is None:
                continue
            name = f"{prefix}{child_name}"
            new = replacement(name, child)
            if new is None:
                found |= unread(child, name)
            else:
                found = True
                if new is not child:
                    setattr(parent, child_name, new)
        return found

    def unread(module: nn.Module, name: str) -> bool:
        """Visit a module convert does not replace; whether it is or holds an SE."""
        if is_fused(module):
            return True
        if id(module) not in holds_se:
            holds_se[id(module)] = True  # a module cycle ends here
            inside = visit(module, f"{name}." if name else "")
            se_like = looks_like_se(type(module).__name__)
            if se_like and not inside:
                skip(f"{type(module).__name__}: an SE-like module that convert does not "
                     f"read (it reads {SOURCES_READ})", name)
            holds_se[id(module)] = inside or se_like
        return holds_se[id(module)]

    root = replacement("", model)
    if root is None:
        unread(model, "")
        root = model
    if skipped:
        lines = []
        for reason, names in skipped.items():
            shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
            lines.append(f"  {len(names)} x {reason} [{shown}]")
        warnings.warn(
            f"se_fused.convert: left {sum(map(len, skipped.values()))} SE module(s) "
            f"unchanged; they run as before:\n"
            + "\n".join(lines), UserWarning, stacklevel=2)
    return root


def _original(fused: nn.Module) -> nn.Module:
    """The module convert replaced by fused, holding fused's children again (the same
    objects, so the same parameter tensors), in fused's training mode."""
    twin_of = fused.__dict__.get("_se_fused_module")  # a TorchScript twin (_script.py)
    if twin_of is not None:
        fused = twin_of[0]
    original = fused.__dict__.get("_original")
    if original is None:
        if not isinstance(fused, FusedSEBlock):
            raise ValueError(f"se_fused.revert: {type(fused).__name__} does not know the "
                             f"module it replaced (it was pickled by an older se_fused)")
        original = SEBlock.__new__(SEBlock)  # a FusedSEBlock built directly
        original.__dict__.update(fused.__dict__)
        original.__dict__["_modules"] = dict(fused._modules)
        return original
    for name, child in fused._modules.items():
        original._modules[name] = child
    original.training = fused.training
    return original


def revert(model: nn.Module) -> nn.Module:
    """The inverse of convert, in place: every fused module in model (FusedSEAdapter,
    FusedSEBlock, and the TorchScript form torch.jit.script leaves in a fused module's
    place) becomes the module convert replaced, holding the same children and parameter
    tensors, so that model computes what it did before convert, bit for bit. A
    FusedSEBlock built directly becomes an SEBlock. Returns model (or, when model itself
    is fused, the module it replaced)."""
    done: Dict[int, nn.Module] = {}
    seen = set()

    def visit(parent: nn.Module) -> None:
        if id(parent) in seen:
            return
        seen.add(id(parent))
        for name, child in list(parent._modules.items()):
            if child is None:
                continue
            if is_fused(child):
                if id(child) not in done:
                    done[id(child)] = _original(child)
                    visit(done[id(child)])
                parent._modules[name] = done[id(child)]
            else:
                visit(child)

    if is_fused(model):
        model = _original(model)
    visit(model)
    return model
