"""se_fused.convert and FusedSEBlock.from_module: every supported SE module of torchvision,
timm, MONAI and se_fused (two-FC SE, eSE, ECA, circular ECA, the residual gate) becomes a
fused module with the same state_dict and the same parameter tensors; whole models give
the same outputs and gradients; unsupported configurations are left alone with one warning
saying why."""
import copy
import functools
import pickle
import re
import warnings

import pytest
import torch
from torch import nn

import se_fused
from se_fused import FusedSEAdapter, FusedSEBlock, SEBlock
from _reference import assert_close

torchvision = pytest.importorskip("torchvision")
from torchvision.ops import SqueezeExcitation  # noqa: E402


def _timm():
    return pytest.importorskip("timm")


def _fused_types():
    return (FusedSEAdapter, FusedSEBlock)


def _se_types():
    """The original SE classes present (timm's when installed)."""
    types = [SqueezeExcitation, SEBlock]
    try:
        from timm.layers.squeeze_excite import SEModule
        from timm.models._efficientnet_blocks import SqueezeExcite
        from timm.models.senet import SEModule as LegacySEModule
        from timm.layers.squeeze_excite import EffectiveSEModule
        from timm.layers.eca import CecaModule, EcaModule
        types += [SEModule, SqueezeExcite, LegacySEModule, EffectiveSEModule, EcaModule,
                  CecaModule]
    except ImportError:
        pass
    try:
        from monai.networks.blocks import ChannelSELayer
        types.append(ChannelSELayer)
    except ImportError:
        pass
    return tuple(types)


def _count(model, types, exclude=()):
    return sum(isinstance(m, types) and not isinstance(m, exclude) for m in model.modules())


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny inputs gain nothing from intra-op threads, and on a loaded machine OpenMP's
    # barriers make the first calls of these models many times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _assert_close_to_scale(actual, expected, rtol, what):
    # atol at rtol of the largest |expected|: train-mode BatchNorm over a 2 x 2 x 2 map
    # amplifies rounding differences in the small outputs.
    assert_close(actual, expected, rtol=rtol, atol=rtol * expected.abs().max().item(), what=what)


def _assert_output_close(actual, expected, exact, rtol, what):
    """actual (the converted model's float32 output) within rtol of expected (the
    original's), to the scale of the largest |expected|; where it is not, float64 is the
    arbiter, as for the gradients below: train-mode BatchNorm over a few values, or the
    residual gate's growing activations, put the original's own float32 output 1e-4 off
    float64, and the converted model must then be within twice the original's distance
    from exact() (the original's output in float64, computed only then), both to the
    scale of max |exact()|."""
    try:
        _assert_close_to_scale(actual, expected, rtol, what)
    except AssertionError as e:
        exact = exact()
        scale = exact.abs().max().item()
        err_c = (actual.double() - exact).abs().max().item() / scale
        err_o = (expected.double() - exact).abs().max().item() / scale
        assert err_c <= max(rtol, 2 * err_o), (
            f"{e}\nand {err_c:.3g} (to scale) from float64 where the original is {err_o:.3g}")


def _convert_quietly(model):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a supported model converts without a warning
        return se_fused.convert(model)


def _grad_error(model, reference, rtol):
    """The largest |g - g_ref| / (rtol * |g_ref| + rtol * max|g_ref over the model|) and
    where: at most 1 when model's gradients match reference's within rtol. The atol at
    rtol of the model's largest gradient is there because some gradients (e.g. the bias
    of a BatchNorm that feeds another BatchNorm) cancel to rounding noise at the scale of
    the larger terms they sum, and relative to themselves can differ even in sign."""
    pairs = [(name, p.grad, q.grad) for (name, p), q in
             zip(reference.named_parameters(), model.parameters())]
    assert all((g is None) == (g_ref is None) for _, g_ref, g in pairs)
    pairs = [(n, g_ref.double(), g.double()) for n, g_ref, g in pairs if g_ref is not None]
    scale = max(g_ref.abs().max().item() for _, g_ref, _ in pairs)
    return max((((g - g_ref).abs() / (rtol * g_ref.abs() + rtol * scale)).max().item(), name)
               for name, g_ref, g in pairs)


# ---------------------------------------------------------------------------
# whole models: same outputs (eval) and gradients (train) as the original, fp32
# ---------------------------------------------------------------------------
def _torchvision_model(name):
    return getattr(torchvision.models, name)(weights=None)


def _timm_model(name):
    # timm's ResNets and RegNets zero the last BatchNorm of each block by default, which
    # zeroes the SE input there: the comparison would not see the SE at all.
    kwargs = (dict(zero_init_last=False)
              if name.startswith(("seresnet", "regnety", "ecaresnet")) else {})
    return _timm().create_model(name, pretrained=False, **kwargs)


MODELS = [
    ("torchvision", "mobilenet_v3_large"), ("torchvision", "mobilenet_v3_small"),
    ("torchvision", "efficientnet_b0"), ("torchvision", "regnet_y_400mf"),
    ("timm", "seresnet18"), ("timm", "efficientnet_b0"),
    ("timm", "mobilenetv3_large_100"), ("timm", "regnety_002"),
]


@pytest.mark.parametrize("source,name", MODELS, ids=[f"{s}-{n}" for s, n in MODELS])
def test_model_equivalence(source, name):
    torch.manual_seed(0)
    original = _torchvision_model(name) if source == "torchvision" else _timm_model(name)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    check_model_equivalence(original, x, name)


def check_model_equivalence(original, x, name):
    """convert(copy of original) converts every SE module without a warning, keeps the
    state_dict and the parameter tensors, and gives the original's eval outputs (rtol
    1e-4) and training outputs and gradients of every parameter (float64: rtol 1e-6;
    float32: 1e-4) and of the input (float64: rtol 1e-6)."""
    n_se = _count(original, _se_types())
    assert n_se > 0, f"{name} holds no SE module"
    converted = copy.deepcopy(original)
    params_before = dict(converted.named_parameters())
    assert _convert_quietly(converted) is converted

    # every SE module converted; state_dict keys, shapes and parameter tensors unchanged
    assert _count(converted, _se_types(), exclude=_fused_types()) == 0
    assert _count(converted, _fused_types()) == n_se
    sd_o, sd_c = original.state_dict(), converted.state_dict()
    assert list(sd_o) == list(sd_c)
    assert all(sd_o[k].shape == sd_c[k].shape for k in sd_o)
    params_after = dict(converted.named_parameters())
    assert params_after.keys() == params_before.keys()
    assert all(params_after[k] is params_before[k] for k in params_before), "parameters copied"

    original.eval(), converted.eval()
    with torch.no_grad():
        _assert_output_close(converted(x), original(x),
                             lambda: copy.deepcopy(original).double()(x.double()), 1e-4,
                             f"{name} eval output")

    # train mode: dropout / stochastic depth draw the same masks under the same seed
    inputs = {}

    def train_step(model, dtype=torch.float32):
        model.train()
        torch.manual_seed(2)
        inputs[id(model)] = x_in = x.to(dtype).requires_grad_(True)
        out = model(x_in)
        (out * torch.linspace(-1, 1, out.shape[-1], dtype=dtype)).sum().backward()
        return out.detach()

    # float64 first: the mapping and the backward exactly right, rounding aside
    # (rtol 1e-6: nn.Hardsigmoid's float64 backward uses a float32 1/6)
    exact, exact_converted = copy.deepcopy(original).double(), copy.deepcopy(converted).double()
    signs = {tag: _record_relu_signs(model) for tag, model in
             (("exact", exact), ("exact_converted", exact_converted),
              ("original", original), ("converted", converted))}
    exact_out = train_step(exact, torch.float64)
    _assert_close_to_scale(train_step(exact_converted, torch.float64), exact_out, 1e-10,
                           f"{name} float64 train output")
    error, where = _grad_error(exact_converted, exact, rtol=1e-6)
    assert error <= 1, f"{name}: float64 gradients differ by {error:.3g} x rtol 1e-6 at {where}"
    _assert_close_to_scale(inputs[id(exact_converted)].grad, inputs[id(exact)].grad, 1e-6,
                           f"{name} float64 input gradient")
    fused = [m for m in exact_converted.modules() if isinstance(m, _fused_types())]
    with_grad = [m for m in fused if any(p.grad.abs().max() > 0 for p in m.parameters())]
    # the SE modules take part (none zeroed out by the init; stochastic depth may drop some)
    assert len(with_grad) >= len(fused) / 2, f"{len(with_grad)} of {len(fused)} SE modules"

    # float32, as trained
    _assert_output_close(train_step(converted), train_step(original), lambda: exact_out, 1e-4,
                         f"{name} train output")
    error, where = _grad_error(converted, original, rtol=1e-4)
    if error <= 1:
        return
    # Train-mode BatchNorm over 2 x 2 maps amplifies fp32 rounding (regnet_y_400mf: the
    # original's own fp32 gradients are often 1-2 x rtol 1e-4 off float64), and a ReLU
    # input within rounding of 0 can then fall on either side: where either fp32 model
    # takes another ReLU branch than float64, the gradients are not comparable (the
    # original alone does so as often as the converted model); the float64 check above
    # stands for them. Otherwise float64 is the arbiter: the converted model must be
    # within the original's own distance from it (2x: the two runs' errors are draws of
    # the same size, from the convolutions' rounding).
    flips = {tag: _sign_flips(signs[tag], signs[ref]) for tag, ref in
             (("original", "exact"), ("converted", "exact_converted"))}
    if any(flips.values()):
        return
    error_c, where_c = _grad_error(converted, exact, rtol=1e-4)
    error_o, _ = _grad_error(original, exact, rtol=1e-4)
    assert error_c <= max(1.0, 2 * error_o), (
        f"{name}: gradients differ from the original's by {error:.3g} x rtol 1e-4 "
        f"(at {where}), and from float64 by {error_c:.3g} x (at {where_c}) where the "
        f"original is {error_o:.3g} x off")


def _record_relu_signs(model):
    """{module name: [input > 0, per call]} for the ReLUs outside the SE modules, filled
    by the forward passes that follow (a pre-hook: the ReLUs may work in place)."""
    signs = {}
    inside_se = set()
    for name, m in model.named_modules():
        if isinstance(m, _se_types() + _fused_types()):
            inside_se.update(f"{name}.{child}" for child, _ in m.named_modules() if child)
    for name, m in model.named_modules():
        if isinstance(m, nn.ReLU) and name not in inside_se:
            m.register_forward_pre_hook(
                lambda mod, args, name=name: signs.setdefault(name, []).append(args[0] > 0))
    return signs


def _sign_flips(signs, reference):
    return sum(int((a != b).sum()) for name in reference
               for a, b in zip(signs[name], reference[name]))


# ---------------------------------------------------------------------------
# each source, alone: float64, so any difference is a wrong mapping, not rounding
# ---------------------------------------------------------------------------
def _sources():
    """(id, factory) for SE modules of every source and the variants they are built with."""
    out = [
        ("tv-relu-sigmoid", lambda: SqueezeExcitation(24, 8)),
        ("tv-silu-hardsigmoid", lambda: SqueezeExcitation(
            24, 6, activation=nn.SiLU, scale_activation=nn.Hardsigmoid)),
        ("tv-gate-fn", lambda: SqueezeExcitation(24, 6, scale_activation=lambda: torch.sigmoid)),
        ("seblock", lambda: SEBlock(24, 4)),
        ("seblock-bias-silu-hard", lambda: SEBlock(24, 3, bias=True, activation="silu",
                                                   gate="hardsigmoid")),
        ("seblock-residual", lambda: SEBlock(24, 4, residual=True)),
        ("seblock-one-fc", lambda: SEBlock(24, excitation="one_fc", bias=True)),
        ("seblock-one-fc-residual-hard", lambda: SEBlock(24, excitation="one_fc",
                                                         gate="hardsigmoid", residual=True)),
        ("seblock-eca", lambda: SEBlock(24, excitation="eca")),
        ("seblock-eca-k5-bias-residual", lambda: SEBlock(24, excitation="eca", kernel_size=5,
                                                         bias=True, residual=True)),
        ("seblock-eca-circular-k7", lambda: SEBlock(24, excitation="eca_circular",
                                                    kernel_size=7, gate="hardsigmoid")),
    ]
    try:
        from timm.layers import activations, activations_me
        from timm.layers.squeeze_excite import SEModule
        from timm.models._efficientnet_blocks import SqueezeExcite
        from timm.models.senet import SEModule as LegacySEModule
    except ImportError:
        return out + _monai_sources(2)
    out += [(i, f) for i, f, _ in _timm_variant_sources()]
    out += [
        ("timm-se", lambda: SEModule(24)),
        ("timm-se-nobias-silu-hardsigmoid", lambda: SEModule(
            24, rd_channels=5, bias=False, act_layer="silu", gate_layer="hard_sigmoid")),
        ("timm-se-swish-str-sigmoid-cls", lambda: SEModule(
            24, rd_ratio=0.25, act_layer="swish", gate_layer=nn.Sigmoid)),
        ("timm-se-timm-classes", lambda: SEModule(
            24, act_layer=activations.Swish, gate_layer=activations.HardSigmoid)),
        ("timm-se-me-classes", lambda: SEModule(
            24, act_layer=activations_me.SwishMe, gate_layer=activations_me.HardSigmoidMe)),
        ("timm-se-identity-norm", lambda: SEModule(24, norm_layer=nn.Identity)),
        ("timm-sqe", lambda: SqueezeExcite(24)),
        ("timm-sqe-hardsigmoid", lambda: SqueezeExcite(
            24, act_layer=nn.SiLU, gate_layer="hard_sigmoid", force_act_layer=nn.ReLU)),
        ("timm-sqe-sigmoid-str", lambda: SqueezeExcite(24, rd_ratio=0.5, gate_layer="sigmoid",
                                                       act_layer="silu")),
        ("timm-legacy-se", lambda: LegacySEModule(24, 4)),
    ]
    return out + _monai_sources(2)


def _monai_sources(spatial_dims):
    try:
        from monai.networks.blocks import ChannelSELayer
    except ImportError:
        return []
    d = spatial_dims
    return [
        (f"monai-{d}d", lambda: ChannelSELayer(d, 24)),
        (f"monai-{d}d-r4-memswish", lambda: ChannelSELayer(d, 24, r=4, acti_type_1="memswish")),
        (f"monai-{d}d-swish", lambda: ChannelSELayer(d, 24, r=3,
                                                     acti_type_1=("swish", {"alpha": 1}))),
    ] + _monai_residual_sources(d)


def _monai_residual_sources(d):
    """MONAI's residual gate: ChannelSELayer(add_residual=True), and ResidualSELayer with
    activations the kernels compute (its defaults, LeakyReLU and a ReLU gate, are not)."""
    from monai.networks.blocks import ChannelSELayer
    out = [(f"monai-{d}d-residual", lambda: ChannelSELayer(d, 24, r=4, add_residual=True))]
    try:
        from monai.networks.blocks import ResidualSELayer
    except ImportError:
        return out
    return out + [(f"monai-{d}d-residual-layer", lambda: ResidualSELayer(
        d, 24, acti_type_1="relu", acti_type_2="sigmoid"))]


def _timm_variant_sources():
    """(id, factory, excitation) for timm's eSE and ECA modules (4-D input only: their
    forwards pool with x.mean((2, 3)))."""
    try:
        from timm.layers.eca import CecaModule, EcaModule
        from timm.layers.squeeze_excite import EffectiveSEModule
    except ImportError:
        return []
    return [
        ("timm-ese", lambda: EffectiveSEModule(24), "one_fc"),
        ("timm-ese-sigmoid", lambda: EffectiveSEModule(24, gate_layer="sigmoid"), "one_fc"),
        ("timm-eca", lambda: EcaModule(24), "eca"),
        ("timm-eca-k5-hard", lambda: EcaModule(kernel_size=5, gate_layer="hard_sigmoid"), "eca"),
        ("timm-eca-c256", lambda: EcaModule(256), "eca"),  # k = 5
        ("timm-ceca", lambda: CecaModule(24), "eca_circular"),
        ("timm-ceca-k7-bias", lambda: CecaModule(kernel_size=7, act_layer=nn.ReLU),
         "eca_circular"),
    ]


SOURCES = _sources()


@pytest.mark.parametrize("make", [f for _, f in SOURCES], ids=[i for i, _ in SOURCES])
def test_from_module_matches_original_float64(make):
    _check_from_module_float64(make, (3, 24, 5, 7))


MONAI_RANKS = _monai_sources(1)[:2] + _monai_sources(3)[:2]


@pytest.mark.parametrize("make,shape", [(f, (3, 24, 11) if "1d" in i else (2, 24, 3, 4, 5))
                                        for i, f in MONAI_RANKS],
                         ids=[i for i, _ in MONAI_RANKS])
def test_from_module_monai_any_spatial_dims_float64(make, shape):
    _check_from_module_float64(make, shape)


# ---------------------------------------------------------------------------
# the variants (eSE, ECA, circular ECA, residual): each reader against its module in
# float64, forward and backward, on every rank the module takes, both layouts
# ---------------------------------------------------------------------------
SHAPES = {1: (3, 24, 11), 2: (3, 24, 5, 7), 3: (2, 24, 3, 4, 5)}


def _variant_cases():
    cases = [(i, f, (2,)) for i, f, _ in _timm_variant_sources()]
    try:
        import monai  # noqa: F401
        cases += [(i, f, (d,)) for d in (1, 2, 3) for i, f in _monai_residual_sources(d)]
    except ImportError:
        pass
    cases += [(i, f, (1, 2, 3)) for i, f in SOURCES if i.startswith("seblock-")
              and ("residual" in i or "one-fc" in i or "eca" in i)]
    return [(f"{i}-{d}d-{layout}", f, d, layout) for i, f, ranks in cases for d in ranks
            for layout in ("contiguous", "channels_last")]


VARIANT_CASES = _variant_cases()


def _channels_last(x):
    if x.dim() == 3:  # [N, L, C] strides
        return x.transpose(1, 2).contiguous().transpose(1, 2)
    return x.contiguous(memory_format=torch.channels_last if x.dim() == 4
                        else torch.channels_last_3d)


@pytest.mark.parametrize("make,rank,layout", [c[1:] for c in VARIANT_CASES],
                         ids=[c[0] for c in VARIANT_CASES])
def test_variant_reader_matches_original_float64(make, rank, layout):
    fused = _check_from_module_float64(make, SHAPES[rank], layout == "channels_last")
    x = torch.randn(*SHAPES[rank])
    x = _channels_last(x) if layout == "channels_last" else x
    with torch.no_grad():
        y = fused.float()(x)
    assert y.stride() == x.stride(), "y keeps x's layout"


@pytest.mark.parametrize("make,excitation", [(f, e) for _, f, e in _timm_variant_sources()],
                         ids=[i for i, _, _ in _timm_variant_sources()])
def test_timm_variant_spec_and_repr(make, excitation):
    original = make()
    fused = FusedSEBlock.from_module(original)
    assert fused.spec.excitation == excitation and fused.spec.fc2 is None
    assert fused.spec.activation is None and not fused.spec.residual
    assert f"excitation={excitation}, gate=" in repr(fused)
    if excitation != "one_fc":  # the Conv1d weight [1, 1, k] reaches the op as a [k] view
        from se_fused.modules import _as_vector
        v = _as_vector(original.conv.weight)
        assert v._base is original.conv.weight and v.shape == (original.conv.kernel_size[0],)


def test_monai_residual_spec_and_repr():
    monai_blocks = pytest.importorskip("monai.networks.blocks")
    fused = FusedSEBlock.from_module(monai_blocks.ChannelSELayer(3, 16, add_residual=True))
    assert fused.spec.residual and fused.spec.excitation == "two_fc"
    assert "activation=relu, gate=sigmoid, residual=True" in repr(fused)


@pytest.mark.parametrize("kwargs", [dict(excitation="one_fc", residual=True),
                                    dict(excitation="eca", kernel_size=5, bias=True),
                                    dict(excitation="eca_circular", gate="hardsigmoid")])
def test_from_module_se_block_variant_shares_children(kwargs):
    plain = SEBlock(32, **kwargs)
    fused = FusedSEBlock.from_module(plain)
    assert type(fused) is FusedSEBlock
    assert (fused.excitation_kind, fused.residual, fused.gate, fused.activation) == (
        plain.excitation_kind, plain.residual, plain.gate, "none")
    assert fused.excitation is plain.excitation and fused.squeeze is plain.squeeze
    assert all(p.device.type == "cpu" for p in fused.parameters())


def _check_from_module_float64(make, shape, channels_last=False):
    torch.manual_seed(3)
    original = make().double()
    with torch.no_grad():  # spread the weights so that the gate covers its range
        for p in original.parameters():
            p.mul_(3.0)
    fused = FusedSEBlock.from_module(original)
    assert isinstance(fused, FusedSEBlock if isinstance(original, SEBlock) else FusedSEAdapter)
    assert list(fused.state_dict()) == list(original.state_dict())
    assert all(a is b for a, b in zip(fused.parameters(), original.parameters()))

    x = torch.randn(*shape, dtype=torch.float64)
    if channels_last:
        x = _channels_last(x)
    # nn.Hardsigmoid's float64 backward uses a float32 1/6 (see _reference.ExactHardsigmoid)
    _assert_same_float64(fused, original, x, 1e-7)
    return fused


def _assert_same_float64(fused, original, x, grad_rtol):
    """fused gives original's y (rtol 1e-12) and gradients with respect to x and every
    parameter (grad_rtol, atol at grad_rtol of the largest) for a random dy."""
    x = x.requires_grad_(True)
    y_ref = original(x)
    dy = torch.randn_like(y_ref)
    grads_ref = torch.autograd.grad(y_ref, [x, *original.parameters()], dy)
    y = fused(x)
    grads = torch.autograd.grad(y, [x, *fused.parameters()], dy)
    assert_close(y, y_ref, rtol=1e-12, atol=1e-14, what="y")
    names = ["x"] + [n for n, _ in original.named_parameters()]
    for name, g, g_ref in zip(names, grads, grads_ref):
        assert_close(g, g_ref, rtol=grad_rtol, atol=grad_rtol * g_ref.abs().max().item(),
                     what=f"grad {name}")


# ---------------------------------------------------------------------------
# checkpoints, sharing, idempotence
# ---------------------------------------------------------------------------
def _zoo():
    """A small model holding one SE module of each available source."""
    layers = [nn.Conv2d(3, 24, 3, padding=1), SqueezeExcitation(24, 8), nn.ReLU(),
              nn.Sequential(SEBlock(24, 4, bias=True), nn.Conv2d(24, 24, 1))]
    try:
        from timm.layers.squeeze_excite import SEModule
        from timm.models._efficientnet_blocks import SqueezeExcite
        layers += [SEModule(24, act_layer=nn.SiLU), SqueezeExcite(24, gate_layer="hard_sigmoid")]
    except ImportError:
        pass
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 5))


def test_checkpoint_loads_both_ways():
    torch.manual_seed(4)
    original = _zoo()
    converted = se_fused.convert(_zoo())  # other random weights
    x = torch.randn(2, 3, 9, 9)
    converted.load_state_dict(original.state_dict(), strict=True)
    with torch.no_grad():
        assert_close(converted(x), original(x), rtol=1e-5, atol=1e-6, what="converted <- original")
    fresh = _zoo()
    fresh.load_state_dict(converted.state_dict(), strict=True)
    with torch.no_grad():
        assert_close(fresh(x), converted(x), rtol=1e-5, atol=1e-6, what="original <- converted")


def test_conv_weights_are_views_and_get_the_gradients():
    se = SqueezeExcitation(16, 4)
    fused = se_fused.convert(nn.Sequential(se))[0]
    assert fused.fc1 is se.fc1 and fused.fc2 is se.fc2
    from se_fused.modules import _as_matrix
    for conv in (se.fc1, se.fc2):
        for fmt in (torch.contiguous_format, torch.channels_last):
            conv.weight.data = conv.weight.data.contiguous(memory_format=fmt)
            m = _as_matrix(conv.weight)
            assert m.data_ptr() == conv.weight.data_ptr() and m._base is conv.weight
    x = torch.randn(2, 16, 4, 4).contiguous(memory_format=torch.channels_last)
    fused(x).square().sum().backward()
    for conv in (se.fc1, se.fc2):
        assert conv.weight.grad is not None and conv.weight.grad.shape == conv.weight.shape
        assert conv.bias.grad is not None


def test_convert_is_idempotent_and_keeps_fused_modules():
    model = se_fused.convert(_zoo())
    fused_before = [m for m in model.modules() if isinstance(m, _fused_types())]
    fused_block = FusedSEBlock(24, 4)
    model.append(fused_block)
    model = _convert_quietly(model)
    fused_after = [m for m in model.modules() if isinstance(m, _fused_types())]
    assert fused_after == fused_before + [fused_block]
    assert FusedSEBlock.from_module(fused_block) is fused_block
    assert FusedSEBlock.from_module(fused_before[0]) is fused_before[0]


def test_from_module_se_block_shares_parameters():
    plain = SEBlock(32, 8, bias=True, activation="silu", gate="hardsigmoid")
    fused = FusedSEBlock.from_module(plain)
    assert type(fused) is FusedSEBlock
    assert (fused.activation, fused.gate, fused.channels, fused.r) == ("silu", "hardsigmoid", 32, 8)
    assert fused.excitation is plain.excitation
    for (n1, p1), (n2, p2) in zip(plain.named_parameters(), fused.named_parameters()):
        assert n1 == n2 and p1 is p2
    assert all(p.device.type == "cpu" for p in fused.parameters())
    x = torch.randn(2, 32, 5, 5)
    with torch.no_grad():
        assert_close(fused(x), plain(x), rtol=1e-5, atol=1e-6, what="y")


def test_shared_module_and_root_module():
    se = SqueezeExcitation(8, 2)
    model = nn.Sequential(se, nn.ReLU(), se)
    se_fused.convert(model)
    assert isinstance(model[0], FusedSEAdapter) and model[0] is model[2]
    root = SEBlock(8, 2)
    assert isinstance(se_fused.convert(root), FusedSEBlock)


def test_training_flag_repr_pickle():
    model = _zoo().eval()
    se_fused.convert(model)
    assert all(not m.training for m in model.modules())
    adapter = model[1]
    assert ("source=torchvision.ops.misc.SqueezeExcitation, activation=relu, gate=sigmoid"
            in repr(adapter))
    x = torch.randn(1, 3, 6, 6)
    clone = pickle.loads(pickle.dumps(model))
    with torch.no_grad():
        assert torch.equal(clone(x), model(x))


def test_not_an_se_module_is_a_value_error():
    with pytest.raises(ValueError, match="not a supported SE module"):
        FusedSEBlock.from_module(nn.Conv2d(3, 3, 1))


# ---------------------------------------------------------------------------
# unsupported configurations: left unchanged, one warning with the reason
# ---------------------------------------------------------------------------
def _bad_seblock():
    block = SEBlock(16, 4)
    block.excitation[1] = nn.GELU()
    return block


def _hooked():
    se = SqueezeExcitation(16, 4)
    se.register_forward_hook(lambda *args: None)
    return se


def _with(module, name, value):
    setattr(module, name, value)
    return module


def _seblock_with(layers, **kwargs):
    block = SEBlock(16, **kwargs)
    block.excitation = layers
    return block


def _unsupported():
    out = _monai_unsupported() + [
        ("tv-gelu", lambda: SqueezeExcitation(16, 4, activation=nn.GELU), "activation GELU"),
        ("tv-tanh", lambda: SqueezeExcitation(16, 4, scale_activation=nn.Tanh), "gate Tanh"),
        ("tv-subclass-gate", lambda: SqueezeExcitation(
            16, 4, scale_activation=type("MySigmoid", (nn.Sigmoid,), {})), "gate MySigmoid"),
        ("seblock-gelu", _bad_seblock, "activation GELU"),
        ("seblock-one-fc-not-square", lambda: _seblock_with(
            nn.Sequential(nn.Linear(16, 8), nn.Sigmoid()), excitation="one_fc"),
         r"SEBlock: excitation.0 maps 16 -> 8 channels; the one-FC excitation maps C -> C"),
        ("seblock-unknown-kind", lambda: _with(SEBlock(16, 4), "excitation_kind", "gather"),
         r"SEBlock: excitation_kind 'gather'"),
        ("seblock-kind-mismatch", lambda: _with(SEBlock(16, 4), "excitation_kind", "one_fc"),
         r"SEBlock: excitation is not Sequential\(Linear, gate\) \(one_fc\)"),
        ("seblock-eca-no-padding", lambda: _seblock_with(
            nn.Sequential(nn.Conv1d(1, 1, 3, bias=False), nn.Sigmoid()), excitation="eca"),
         r"SEBlock: excitation.0 is not an ECA convolution .*padding 1 zeros"),
        ("seblock-eca-circular-zeros", lambda: _seblock_with(
            nn.Sequential(nn.Conv1d(1, 1, 3, padding=1), nn.Sigmoid()), excitation="eca_circular"),
         r"SEBlock: excitation.0 is not an ECA convolution .*padding 1 circular"),
        ("seblock-eca-linear", lambda: _seblock_with(
            nn.Sequential(nn.Linear(16, 16), nn.Sigmoid()), excitation="eca"),
         r"SEBlock: excitation.0 is Linear, not Conv1d"),
        ("tv-hooked", _hooked, "hooks"),
    ]
    try:
        from timm.layers.eca import CecaModule, EcaModule
        from timm.layers.squeeze_excite import EffectiveSEModule, SEModule
        from timm.models._efficientnet_blocks import SqueezeExcite
    except ImportError:
        return out
    return out + [
        ("timm-se-groupnorm", lambda: SEModule(16, norm_layer=functools.partial(nn.GroupNorm, 1)),
         r"norm layer \(GroupNorm\) between the FCs; convert folds a BatchNorm2d only"),
        ("timm-se-bn-batch-stats", lambda: SEModule(16, norm_layer=functools.partial(
            nn.BatchNorm2d, track_running_stats=False)),
         r"norm layer \(BatchNorm2d\) between the FCs without running statistics"),
        ("timm-ese-maxpool", lambda: EffectiveSEModule(16, add_maxpool=True),
         r"EffectiveSEModule: add_maxpool=True"),
        ("timm-eca-mlp", lambda: EcaModule(16, use_mlp=True),
         r"EcaModule: ECA excitation \(1-D conv over channels\) with an MLP"),
        ("timm-eca-dilated", lambda: _with(EcaModule(16), "conv", nn.Conv1d(
            1, 1, 3, padding=2, dilation=2, bias=False)),
         r"EcaModule: conv is not an ECA convolution Conv1d\(1, 1, k odd, stride 1, "
         r"dilation 1, padding 1 zeros\) .*dilation \(2,\)"),
        ("timm-eca-circular-conv", lambda: _with(EcaModule(16), "conv", nn.Conv1d(
            1, 1, 3, padding=1, bias=False, padding_mode="circular")),
         r"EcaModule: conv is not an ECA convolution .*padding \(1,\) circular"),
        ("timm-ceca-padding", lambda: _with(CecaModule(16), "padding", 0),
         r"CecaModule: circular padding 0 for kernel size 3; the kernels pad \(k - 1\) // 2 = 1"),
        ("timm-ceca-conv-padded", lambda: _with(CecaModule(16), "conv", nn.Conv1d(
            1, 1, 3, padding=1, bias=False)),
         r"CecaModule: conv is not an ECA convolution Conv1d\(1, 1, k odd, stride 1, "
         r"dilation 1, padding 0\)"),
        ("timm-ceca-even-kernel", lambda: _with(CecaModule(16), "conv", nn.Conv1d(
            1, 1, 4, bias=False)), r"CecaModule: conv is not an ECA convolution .*kernel \(4,\)"),
        ("timm-ceca-two-channels", lambda: _with(CecaModule(16), "conv", nn.Conv1d(
            1, 2, 3, bias=False)), r"CecaModule: conv is not an ECA convolution .*1 -> 2 channels"),
        ("timm-se-maxpool", lambda: SEModule(16, add_maxpool=True), "add_maxpool"),
        ("timm-se-gelu", lambda: SEModule(16, act_layer="gelu"), "activation GELU"),
        ("timm-sqe-tanh", lambda: SqueezeExcite(16, gate_layer="tanh"), "gate Tanh"),
        ("timm-sqe-relu6", lambda: SqueezeExcite(16, act_layer=nn.ReLU6), "activation ReLU6"),
    ]


def _monai_unsupported():
    try:
        from monai.networks.blocks import ChannelSELayer, ResidualSELayer
    except ImportError:
        return []
    return [
        ("monai-residual-layer", lambda: ResidualSELayer(2, 16),
         r"ResidualSELayer: activation LeakyReLU \(fc.1\); the kernels compute relu, silu, "
         r"hardswish"),
        ("monai-residual-layer-relu-gate", lambda: ResidualSELayer(2, 16, acti_type_1="relu"),
         r"ResidualSELayer: gate ReLU \(fc.3\); the kernels compute sigmoid, hardsigmoid"),
        ("monai-swish-alpha", lambda: ChannelSELayer(3, 16, acti_type_1=("swish", {"alpha": 2.0})),
         r"ChannelSELayer: activation Swish \(fc.1\)"),
        ("monai-tanh", lambda: ChannelSELayer(1, 16, acti_type_2="tanh"), r"gate Tanh \(fc.3\)"),
    ]


UNSUPPORTED = _unsupported()


@pytest.mark.parametrize("make,reason", [(f, r) for _, f, r in UNSUPPORTED],
                         ids=[i for i, _, _ in UNSUPPORTED])
def test_unsupported_left_unchanged_with_one_warning(make, reason):
    bad, good = make(), SqueezeExcitation(16, 4)
    model = nn.Sequential(nn.Conv2d(3, 16, 1), nn.Sequential(bad, make()), good)
    with pytest.warns(UserWarning) as record:
        se_fused.convert(model)
    assert len(record) == 1, [str(w.message) for w in record]
    message = str(record[0].message)
    assert "left 2 SE module(s) unchanged" in message and "[1.0, 1.1]" in message, message
    assert re.search(reason, message), message
    assert model[1][0] is bad and type(model[1][1]) is type(bad)
    assert isinstance(model[2], FusedSEAdapter)
    with pytest.raises(ValueError, match=reason):
        FusedSEBlock.from_module(make())


# ---------------------------------------------------------------------------
# a BatchNorm between the FCs (timm SEModule, e.g. rexnet): folded in eval, per call;
# the original module's own forward in training
# ---------------------------------------------------------------------------
def _se_with_norm(dtype=torch.float64):
    SEModule = pytest.importorskip("timm.layers.squeeze_excite").SEModule
    torch.manual_seed(5)
    se = SEModule(24, rd_channels=6, norm_layer=nn.BatchNorm2d).to(dtype)
    with torch.no_grad():  # a norm that is far from the identity
        bn = se.bn
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.2, 3)
        bn.weight.uniform_(-2, 2), bn.bias.uniform_(-1, 1)
        for p in (se.fc1.weight, se.fc2.weight):
            p.mul_(3.0)
    return se


def test_norm_folded_in_eval_float64():
    original = _se_with_norm().eval()
    fused = FusedSEBlock.from_module(copy.deepcopy(original))
    assert isinstance(fused, FusedSEAdapter) and fused.spec.norm == "bn"
    assert list(fused.state_dict()) == list(original.state_dict())
    assert "norm=bn (folded in eval)" in repr(fused)
    stored = {k: v.clone() for k, v in fused.state_dict().items()}
    # the gradients of fc1, bn (weight, bias) and fc2 flow through the fold
    _assert_same_float64(fused, original, torch.randn(3, 24, 5, 7, dtype=torch.float64), 1e-9)
    # the fold is computed per call, never written into the stored weights
    assert all(torch.equal(v, stored[k]) for k, v in fused.state_dict().items())


def test_norm_runs_the_original_in_training():
    original = _se_with_norm()
    fused = FusedSEBlock.from_module(copy.deepcopy(original))
    assert fused.training
    x = torch.randn(4, 24, 3, 3, dtype=torch.float64)
    for _ in range(2):  # batch statistics, and the running statistics updated alike
        assert torch.equal(fused(x), original(x))
    assert torch.equal(fused.bn.running_mean, original.bn.running_mean)
    assert torch.equal(fused.bn.running_var, original.bn.running_var)
    assert fused.bn.num_batches_tracked.item() == 2
    fused.eval(), original.eval()  # the updated statistics are folded in eval
    with torch.no_grad():
        assert_close(fused(x), original(x), rtol=1e-12, atol=1e-14, what="y after training")
    # deepcopy and pickle keep the training path on the copy's own children
    clone = pickle.loads(pickle.dumps(copy.deepcopy(fused))).train()
    assert clone._original.bn is clone.bn
    assert torch.equal(clone(x), original.train()(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_norm_fold_in_float32_or_wider(dtype):
    original = _se_with_norm(torch.float64).eval()
    fused = FusedSEBlock.from_module(copy.deepcopy(original).to(dtype))
    x = torch.randn(2, 24, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        y_ref = original(x)
        y = fused(x.to(dtype))
    # the folded weights are rounded once to dtype: within a few ULP of float64
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    assert_close(y.double(), y_ref, rtol=tol, atol=tol * y_ref.abs().max().item(), what="y")


# ---------------------------------------------------------------------------
# SE-looking modules that no reader knows: named in the warning, never silent
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", [
    "SEModule", "ChannelSELayer", "eSEModule", "BlockESE", "SCSEModule", "SeModule", "se_layer",
    "SE_Block", "SE3D", "EcaModule", "ECALayer", "eca_layer", "CecaModule", "EseModule",
    "SqueezeExcite", "SqueezeExcitation", "SqueezeAndExcitation", "GatherExcite", "scSE"])
def test_looks_like_se(name):
    from se_fused._match import looks_like_se
    assert looks_like_se(name)


@pytest.mark.parametrize("name", [
    "Sequential", "SelectAdaptivePool2d", "SELU", "MSELoss", "MSEMetric", "SEMEION",
    "SqueezeNet", "SqueezeDim", "Select", "Sequence", "Session", "Seq2Seq", "Base",
    "CbamModule", "Conv2d", "ReLU", "Hardsigmoid", "AdaptiveAvgPool2d", "Res2NetBottleneck"])
def test_does_not_look_like_se(name):
    from se_fused._match import looks_like_se
    assert not looks_like_se(name)


class SELayer(nn.Module):
    """A hand-written SE block: no reader knows it."""

    def __init__(self, c):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(c, c // 4), nn.ReLU(), nn.Linear(c // 4, c), nn.Sigmoid())

    def forward(self, x):
        return x * self.fc(x.mean((2, 3))).view(*x.shape[:2], 1, 1)


class SEResNetBlock(nn.Module):
    """Named like an SE block, holds one: a container, not an SE block itself."""

    def __init__(self, se):
        super().__init__()
        self.conv, self.se = nn.Conv2d(16, 16, 3, padding=1), se

    def forward(self, x):
        return self.se(self.conv(x)) + x


class SqueezeNet(nn.Sequential):
    """Squeeze, but no excitation."""


def test_se_like_modules_are_named_in_the_one_warning():
    shared = SELayer(16)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 1),
        SEResNetBlock(SqueezeExcitation(16, 4)),  # converted; the block is not warned
        SEResNetBlock(SELayer(16)),               # the SELayer warned, its block not
        shared, nn.ReLU(), shared,                # once
        SqueezeNet(nn.Conv2d(16, 16, 1), nn.SELU()),
    )
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        expected = model(x)
    with pytest.warns(UserWarning) as record:
        assert se_fused.convert(model) is model
    assert len(record) == 1, [str(w.message) for w in record]
    message = str(record[0].message)
    assert "left 2 SE module(s) unchanged" in message, message
    assert re.search(r"2 x SELayer: an SE-like module that convert does not read \(it reads "
                     r"torchvision SqueezeExcitation, .*MONAI ChannelSELayer.*\) \[2.se, 3\]",
                     message), message
    for name in ("SEResNetBlock", "SqueezeNet", "SELU", "Sequential"):
        assert name not in message, message
    assert isinstance(model[1].se, FusedSEAdapter) and type(model[2].se) is SELayer
    assert model[3] is shared and model[5] is shared
    with torch.no_grad():
        assert_close(model(x), expected, rtol=1e-5, atol=1e-6, what="y")
    # the root itself; and a second convert warns again (nothing SE-like left silently)
    with pytest.warns(UserWarning, match=r"SELayer: an SE-like module .*\[<model>\]"):
        assert se_fused.convert(SELayer(8)) is not None
    with pytest.warns(UserWarning, match=r"1 x SELayer"):
        se_fused.convert(model[2])
    with pytest.raises(ValueError, match="not a supported SE module"):
        FusedSEBlock.from_module(SELayer(8))
