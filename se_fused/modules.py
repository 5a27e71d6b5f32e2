"""The fused modules: FusedSEBlock, the drop-in replacement for SEBlock, and
FusedSEAdapter, which runs a torchvision, timm or MONAI SE module (read by _match) on
the fused operator with the original's own parameters. Their forwards reach the
parameters through the modules' dicts (no container indexing or attribute fallback
per call: at batch 1 the host time is the latency)."""
from typing import Optional

import torch
from torch import nn

from ._match import SOURCES_READ, SESpec, Unsupported, read_spec, reader, source_name
from .functional import _squeeze_excite
from .reference import SEBlock


class FusedSEBlock(SEBlock):
    """Drop-in replacement for SEBlock: same constructor, parameters and
    state_dict (excitation.0.weight [C // r, C], excitation.2.weight [C, C // r],
    and the biases when bias=True; the one-FC and ECA excitations' one layer as
    excitation.0), computed by the fused se_fused kernels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = self._modules["excitation"]._modules
        try:
            first = layers["0"]._parameters
            w1, b1 = first["weight"], first["bias"]
            if self.excitation_kind == "two_fc":
                second = layers["2"]._parameters
                w2, b2 = second["weight"], second["bias"]
            else:
                w2 = b2 = None
                if w1.dim() == 3:  # ECA: the Conv1d weight [1, 1, k] as [k] (a view)
                    w1 = w1.view(-1)
        except KeyError:  # a weight under a parametrization or pruning
            w1, b1 = layer_weights(layers["0"])
            w2, b2 = (None, None)
            if self.excitation_kind == "two_fc":
                w2, b2 = layer_weights(layers["2"])
            elif w1.dim() == 3:
                w1 = w1.view(-1)
        return _squeeze_excite(x, w1, b1, w2, b2, self.activation, self.gate,
                               self.excitation_kind, self.residual)

    def __prepare_scriptable__(self):
        """torch.jit.script's form of this module: see se_fused/_script.py."""
        from ._script import scriptable
        return scriptable(self)

    @classmethod
    def from_module(cls, module: nn.Module) -> nn.Module:
        """The fused module for one SE module, sharing its parameters: a FusedSEBlock
        for an SEBlock, a se_fused.FusedSEAdapter for a torchvision, timm or MONAI SE module
        (see se_fused.convert). ValueError when the module is not supported."""
        return from_module(module)


# ---------------------------------------------------------------------------
# the fused module for third-party SE blocks
# ---------------------------------------------------------------------------
def layer_weights(layer: nn.Module):
    """(weight, bias) of an FC or ECA layer whose weight is not a plain parameter: under
    torch.nn.utils.parametrize (weight_norm, spectral_norm, orthogonal, ...: computed on
    access) or pruning and the old weight_norm (recomputed by their forward pre-hooks,
    which run here since the fused forward never calls the layer)."""
    for hook in list(layer._forward_pre_hooks.values()):
        if type(hook).__module__.startswith("torch.nn.utils."):
            hook(layer, ())
    return layer.weight, getattr(layer, "bias", None)


def _as_matrix(weight: torch.Tensor) -> torch.Tensor:
    # Conv2d 1x1 weight [out, in, 1, 1] -> [out, in]: a view (also for channels_last
    # weights, whose size-1 dims carry no stride), so gradients land in the conv weight.
    return weight.flatten(1) if weight.dim() == 4 else weight


def _fold_norm(norm: nn.BatchNorm2d, w1: torch.Tensor, b1: Optional[torch.Tensor]):
    """fc1 followed by an eval BatchNorm as one affine map, computed per call (never
    stored): w1' = w1 * k, b1' = (b1 - mean) * k + beta, k = gamma / sqrt(var + eps),
    in float32 or wider, cast to the weights' dtype. Differentiable in every input."""
    dtype = torch.promote_types(w1.dtype, torch.float32)
    k = torch.rsqrt(norm.running_var.to(dtype) + norm.eps)
    if norm.weight is not None:
        k = k * norm.weight.to(dtype)
    b = -norm.running_mean.to(dtype) if b1 is None else b1.to(dtype) - norm.running_mean.to(dtype)
    b = b * k
    if norm.bias is not None:
        b = b + norm.bias.to(dtype)
    return (w1.to(dtype) * k[:, None]).to(w1.dtype), b.to(w1.dtype)


def _as_vector(weight: torch.Tensor) -> torch.Tensor:
    # ECA: the Conv1d weight [1, 1, k] -> [k], a view (only one dim is not 1).
    return weight.view(-1)


class FusedSEAdapter(nn.Module):
    """An SE module from torchvision, timm or MONAI run by the fused operator. It holds
    the original's children under their original names (same state_dict keys, shapes
    and parameter tensors); the children that the fused op replaces (pooling,
    activation, gate) are kept, unused, so the structure still prints and loads as
    before. The excitation is spec.excitation: two FCs (Conv2d 1x1 or Linear), one FC
    C -> C (eSE) or a Conv1d(1, 1, k) across the channels (ECA, zero or circular
    padding), the weights passed as views of the layers' own; spec.residual adds x.
    A BatchNorm between the FCs (spec.norm) is folded into the first FC per call while
    it is in eval mode; in training mode (batch statistics, running-stat updates) the
    original module's own forward runs, on the same children."""

    def __init__(self, original: nn.Module, spec: SESpec):
        super().__init__()
        for name, child in original.named_children():
            self.add_module(name, child)
        self.spec = spec
        self.source = source_name(original)
        self.training = original.training
        self._derive_from_spec()
        # Not a child (its children are this module's): for a norm in training, and what
        # se_fused.revert puts back.
        self.__dict__["_original"] = original

    def _derive_from_spec(self):
        # What forward needs per call, derived once from the spec.
        spec = self.spec
        self._fc1 = tuple(spec.fc1.split("."))
        self._fc2 = tuple(spec.fc2.split(".")) if spec.fc2 is not None else None
        # the op's strings: "none" where the excitation has no hidden layer
        self._activation = spec.activation if spec.activation is not None else "none"
        self._eca = spec.excitation in ("eca", "eca_circular")

    def __setstate__(self, state):
        # an adapter pickled before the variants came in lacks the per-call attributes
        super().__setstate__(state)
        if "_activation" not in self.__dict__:
            self._derive_from_spec()

    def _params(self, path):
        m = self
        for name in path:
            m = m._modules[name]
        return m._parameters

    def _layer(self, path):
        m = self
        for name in path:
            m = m._modules[name]
        return m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        try:
            fc1 = self._params(self._fc1)
            w1, b1 = fc1["weight"], fc1["bias"]
            if self._fc2 is None:
                w2 = b2 = None
            else:
                fc2 = self._params(self._fc2)
                w2, b2 = _as_matrix(fc2["weight"]), fc2["bias"]
        except KeyError:  # a weight under a parametrization or pruning
            w1, b1 = layer_weights(self._layer(self._fc1))
            w2 = b2 = None
            if self._fc2 is not None:
                w2, b2 = layer_weights(self._layer(self._fc2))
                w2 = _as_matrix(w2)
        w1 = _as_vector(w1) if self._eca else _as_matrix(w1)
        if spec.norm is not None:
            norm = self._modules[spec.norm]
            if norm.training:
                return self._original(x)
            w1, b1 = _fold_norm(norm, w1, b1)
        return _squeeze_excite(x, w1, b1, w2, b2, self._activation, spec.gate,
                               spec.excitation, spec.residual)

    def __prepare_scriptable__(self):
        """torch.jit.script's form of this module: see se_fused/_script.py."""
        from ._script import scriptable
        return scriptable(self)

    def extra_repr(self) -> str:
        spec = self.spec
        kind = (f"activation={spec.activation}" if spec.excitation == "two_fc"
                else f"excitation={spec.excitation}")
        residual = ", residual=True" if spec.residual else ""
        norm = f", norm={spec.norm} (folded in eval)" if spec.norm else ""
        return f"source={self.source}, {kind}, gate={spec.gate}{residual}{norm}"


def _fused_se_block(m: SEBlock, spec: SESpec) -> FusedSEBlock:
    # Build on the meta device (nothing allocated), then take the original's children:
    # the parameters are shared, not copied.
    first = m.excitation[0]
    eca = spec.excitation in ("eca", "eca_circular")
    with torch.device("meta"):
        fused = FusedSEBlock(m.channels, m.r, bias=first.bias is not None,
                             activation=spec.activation, gate=spec.gate,
                             excitation=spec.excitation, residual=spec.residual,
                             kernel_size=first.kernel_size[0] if eca else None)
    for name, child in m.named_children():
        setattr(fused, name, child)
    fused.training = m.training
    fused.__dict__["_original"] = m  # what se_fused.revert puts back (not a child)
    return fused


def fuse(module: nn.Module, spec: SESpec) -> nn.Module:
    """The fused module for a module read into spec (read_spec): a FusedSEBlock for an
    SEBlock, else a FusedSEAdapter."""
    if isinstance(module, SEBlock):
        return _fused_se_block(module, spec)
    return FusedSEAdapter(module, spec)


def from_module(module: nn.Module) -> nn.Module:
    """The fused module for one SE module: a FusedSEBlock for an se_fused.SEBlock (any
    excitation, residual), a FusedSEAdapter for a torchvision, timm or MONAI SE module
    (two-FC SE, eSE, ECA and circular ECA, MONAI's residual); either shares the
    original's parameters. An already fused module is returned as is. Raises ValueError
    for a module that is not a recognised SE module or whose configuration is
    unsupported."""
    if is_fused(module):
        return module
    read = reader(module)
    if read is None:
        raise ValueError(f"se_fused: {source_name(module)} is not a supported SE module "
                         f"({SOURCES_READ})")
    try:
        spec = read_spec(module, read)
    except Unsupported as e:
        raise ValueError(f"se_fused: cannot fuse {source_name(module)}: {e}") from None
    return fuse(module, spec)


def is_fused(module: nn.Module) -> bool:
    """A fused module, or the TorchScript form torch.jit.script left in its place."""
    return (isinstance(module, (FusedSEBlock, FusedSEAdapter))
            or getattr(type(module), "_se_fused_scripted", False))
