"""The excitation variants (one FC, ECA with zero or circular padding) and the residual
gate, against the float64 plain block: 1 ULP forward, gradients as accurate as eager,
float64 gradients to rounding, bitwise determinism and batch invariance, NaN and Inf
masks, for 1-D, 2-D and 3-D x in both layouts."""
import pytest
import torch

import se_fused
from se_fused import FusedSEBlock, SEBlock
from _reference import (DEVICES, LOW_DTYPES, ExactHardsigmoid, assert_bitwise_equal,
                        assert_close, assert_layout, assert_max_ulp, dtype_id, seed_of, ulp)

# (excitation, residual, bias, gate, kernel_size)
VARIANTS = [
    ("one_fc", False, True, "hardsigmoid", None),    # timm EffectiveSEModule
    ("one_fc", True, False, "sigmoid", None),
    ("eca", False, False, "sigmoid", 3),             # timm EcaModule
    ("eca", True, True, "hardsigmoid", 5),
    ("eca_circular", False, False, "sigmoid", 5),    # timm CecaModule
    ("two_fc", True, True, "sigmoid", None),         # MONAI ChannelSELayer(add_residual)
]
# x shapes: 1-D, 2-D, 3-D maps; C odd and small enough that the ECA padding reaches
# past both ends (C = 2 with k = 5: every tap but the middle one is padding for some c).
SHAPES = [(3, 19, 11), (2, 24, 5, 7), (2, 13, 3, 4, 5), (4, 2, 6, 5)]
LAYOUTS = ["contiguous", "channels_last"]


def vid(v):
    exc, residual, bias, gate, k = v
    return f"{exc}{k or ''}-{'res-' if residual else ''}{'bias-' if bias else ''}{gate}"


def sid(s):
    return "x".join(map(str, s))


def _block(cls, c, v, dtype=torch.float64):
    exc, residual, bias, gate, k = v
    return cls(c, 2 if c >= 2 else 1, bias=bias, gate=gate, excitation=exc, residual=residual,
               kernel_size=k).to(dtype)


def _reference(block):
    """The block in float64 with an exact hardsigmoid gradient (see ExactHardsigmoid)."""
    ref = _block(SEBlock, block.channels, _variant_of(block))
    ref.load_state_dict({k: v.double() for k, v in block.state_dict().items()})
    last = str(len(ref.excitation) - 1)
    if block.gate == "hardsigmoid":
        ref.excitation._modules[last] = ExactHardsigmoid()
    return ref


def _variant_of(block):
    first = block.excitation[0]
    k = first.kernel_size[0] if isinstance(first, torch.nn.Conv1d) else None
    return (block.excitation_kind, block.residual, first.bias is not None, block.gate, k)


def _fused_block(c, v, dtype, device, seed):
    torch.manual_seed(seed)
    block = _block(FusedSEBlock, c, v)
    with torch.no_grad():  # weights wide enough that the gate spans its range
        for p in block.parameters():
            p.mul_(3.0)
    return block.to(dtype=dtype, device=device)


def _x(shape, dtype, device, layout, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * 2 + 0.3
    x = x.to(dtype)
    if layout == "channels_last":
        x = x.movedim(1, -1).contiguous().movedim(-1, 1)
    return x.to(device)


def _grads(block, x, dy):
    x = x.detach().requires_grad_(True)
    y = block(x)
    params = list(block.parameters())
    grads = torch.autograd.grad(y, [x, *params], dy)
    names = ["dx"] + [f"d{n}" for n, _ in block.named_parameters()]
    return y, dict(zip(names, grads))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=sid)
@pytest.mark.parametrize("v", VARIANTS, ids=vid)
@pytest.mark.parametrize("device", DEVICES)
def test_forward_within_one_ulp(device, v, shape, layout):
    for dtype in LOW_DTYPES:
        seed = seed_of("fwd", vid(v), shape, layout, dtype_id(dtype))
        block = _fused_block(shape[1], v, dtype, device, seed)
        x = _x(shape, dtype, device, layout, seed)
        with torch.no_grad():
            y = block(x)
            ref = _reference(block)(x.double().cpu())
        if layout == "channels_last" and shape[1] > 1:
            assert y.movedim(1, -1).is_contiguous(), "y must keep x's channels-last layout"
        assert_max_ulp(y, ref, dtype, 1.0, what=f"y {vid(v)}")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("v", VARIANTS, ids=vid)
@pytest.mark.parametrize("device", DEVICES)
def test_gradients_float64(device, v, layout):
    for shape in SHAPES[:3]:
        seed = seed_of("grad64", vid(v), shape, layout)
        block = _fused_block(shape[1], v, torch.float64, device, seed)
        x = _x(shape, torch.float64, device, layout, seed)
        dy = _x(shape, torch.float64, device, layout, seed + 1)
        y, g = _grads(block, x, dy)
        y_ref, g_ref = _grads(_reference(block), x.cpu(), dy.cpu())
        assert_close(y, y_ref, rtol=1e-14, atol=0, what="y")
        for name, ref in g_ref.items():
            scale = ref.abs().max().item()
            assert_close(g[name], ref, rtol=1e-12, atol=1e-13 * scale,
                         what=f"{name} {vid(v)} {sid(shape)}")


@pytest.mark.parametrize("dtype", LOW_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("v", VARIANTS, ids=vid)
@pytest.mark.parametrize("device", DEVICES)
def test_gradients_as_accurate_as_eager(device, v, dtype):
    shape = (4, 40, 6, 7)
    seed = seed_of("grad", vid(v), dtype_id(dtype))
    block = _fused_block(shape[1], v, dtype, device, seed)
    eager = _block(SEBlock, shape[1], v, dtype).to(device)
    eager.load_state_dict(block.state_dict())
    x = _x(shape, dtype, device, "contiguous", seed)
    dy = _x(shape, dtype, device, "contiguous", seed + 1)
    _, g = _grads(block, x, dy)
    _, g_eager = _grads(eager, x, dy)
    _, g_ref = _grads(_reference(block), x.double().cpu(), dy.double().cpu())
    failed = []
    for name, ref in g_ref.items():
        err_f = (g[name].double().cpu() - ref).abs().max().item()
        err_e = (g_eager[name].double().cpu() - ref).abs().max().item()
        one_ulp = ulp(ref.abs().max(), dtype).item()
        if not (err_f <= 1.5 * err_e or err_f <= one_ulp):
            failed.append(f"{name}: fused {err_f:.3g}, eager {err_e:.3g}, 1 ulp {one_ulp:.3g}")
    assert not failed, f"{vid(v)} {dtype_id(dtype)}: " + "; ".join(failed)


@pytest.mark.parametrize("v", VARIANTS, ids=vid)
@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck(device, v):
    block = _fused_block(7, v, torch.float64, device, seed_of("gc", vid(v)))
    x = _x((2, 7, 3, 2), torch.float64, device, "channels_last", 3).requires_grad_(True)
    params = tuple(block.parameters())

    def f(x, *ps):
        return torch.func.functional_call(block, dict(zip(
            [n for n, _ in block.named_parameters()], ps)), (x,))

    assert torch.autograd.gradcheck(f, (x, *params))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=dtype_id)
@pytest.mark.parametrize("v", VARIANTS, ids=vid)
@pytest.mark.parametrize("device", DEVICES)
def test_deterministic_batch_and_layout_invariant(device, v, dtype):
    """Run to run bitwise; each sample's y and dx the bits it gets alone; the same
    bits in both layouts."""
    shape = (5, 33, 4, 6)
    seed = seed_of("det", vid(v), dtype_id(dtype))
    block = _fused_block(shape[1], v, dtype, device, seed)
    x = _x(shape, dtype, device, "contiguous", seed)
    dy = _x(shape, dtype, device, "contiguous", seed + 1)
    y, g = _grads(block, x, dy)
    y2, g2 = _grads(block, x, dy)
    assert_bitwise_equal(y, y2, "y run to run")
    for name in g:
        assert_bitwise_equal(g[name], g2[name], f"{name} run to run")
    for i in (0, 3):
        yi, gi = _grads(block, x[i:i + 1], dy[i:i + 1])
        assert_bitwise_equal(yi[0], y[i], f"y of sample {i} alone vs in the batch")
        assert_bitwise_equal(gi["dx"][0], g["dx"][i], f"dx of sample {i} alone vs in the batch")
    xl = x.contiguous(memory_format=torch.channels_last)
    dyl = dy.contiguous(memory_format=torch.channels_last)
    yl, gl = _grads(block, xl, dyl)
    assert_layout(yl, "channels_last", "y")
    assert_bitwise_equal(yl.contiguous(), y, "y channels_last vs NCHW")
    assert_bitwise_equal(gl["dx"].contiguous(), g["dx"], "dx channels_last vs NCHW")


def _masks(t):
    t = t.detach().double().cpu()
    return torch.stack([torch.isnan(t), torch.isposinf(t), torch.isneginf(t)])


@pytest.mark.parametrize("special", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("v", VARIANTS, ids=vid)
@pytest.mark.parametrize("device", DEVICES)
def test_nan_inf_masks_follow_plain_block(device, v, special):
    for dtype in (torch.float32, torch.bfloat16):
        shape = (3, 9, 3, 5)
        block = _fused_block(shape[1], v, dtype, device, seed_of("nan", vid(v)))
        x = _x(shape, dtype, "cpu", "contiguous", 11)
        x[0, 4, 1, 2] = special
        x = x.to(device)
        dy = _x(shape, dtype, device, "contiguous", 12)
        y, g = _grads(block, x, dy)
        y_ref, g_ref = _grads(_reference(block), x.double().cpu(), dy.double().cpu())
        assert torch.equal(_masks(y), _masks(y_ref)), f"y's NaN/Inf masks {vid(v)} {special}"
        assert torch.equal(_masks(g["dx"]), _masks(g_ref["dx"])), f"dx's masks {vid(v)}"
        assert torch.isfinite(y[1:]).all() and torch.isfinite(g["dx"][1:]).all()


@pytest.mark.parametrize("v", VARIANTS, ids=vid)
def test_compile_fullgraph_and_opcheck(v):
    block = _fused_block(12, v, torch.float32, "cpu", 1)
    x = _x((2, 12, 5, 4), torch.float32, "cpu", "channels_last", 2).requires_grad_(True)
    eager_y = block(x)
    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    y = compiled(x)
    assert_bitwise_equal(y, eager_y, "compiled y")
    w1 = block.excitation[0].weight
    w1 = w1.view(-1) if w1.dim() == 3 else w1
    w2 = block.excitation[2].weight if v[0] == "two_fc" else None
    b2 = block.excitation[2].bias if v[0] == "two_fc" else None
    torch.library.opcheck(torch.ops.se_fused.squeeze_excite.default,
                          (x.detach(), w1.detach(), block.excitation[0].bias, w2, b2,
                           block.activation, v[3], v[0], v[1]))


def test_autocast_casts_the_variant_weights():
    block = _fused_block(12, VARIANTS[3], torch.float32, "cpu", 4)
    x = _x((2, 12, 5, 4), torch.bfloat16, "cpu", "contiguous", 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = block(x)
    ref = _block(FusedSEBlock, 12, VARIANTS[3], torch.bfloat16)
    ref.load_state_dict(block.state_dict())
    assert y.dtype == torch.bfloat16
    assert_bitwise_equal(y, ref(x), "autocast y vs the block cast to bfloat16")


ERRORS = [
    (dict(excitation="three_fc"), ValueError, "excitation must be one of"),
    (dict(excitation="eca", activation="relu"), ValueError, "no hidden layer"),
    (dict(excitation="eca", kernel_size=4), ValueError, "must be odd"),
    (dict(excitation="one_fc", kernel_size=3), ValueError, "kernel_size is the ECA"),
]


@pytest.mark.parametrize("kwargs,exc,match", ERRORS, ids=[str(e[0]) for e in ERRORS])
def test_module_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        SEBlock(16, 4, **kwargs)


def test_op_errors():
    op = torch.ops.se_fused.squeeze_excite
    x = torch.randn(2, 6, 3, 3)
    w = torch.randn(6, 6)
    k = torch.randn(3)
    cases = [
        (lambda: op(x, w, None, None, None, "none", "sigmoid", "four_fc", False),
         "excitation must be"),
        (lambda: op(x, w, None, w, None, "none", "sigmoid", "one_fc", False),
         "w2 and b2 must be None"),
        (lambda: op(x, w, None, None, None, "relu", "sigmoid", "one_fc", False),
         "activation must be 'none'"),
        (lambda: op(x, torch.randn(6, 5), None, None, None, "none", "sigmoid", "one_fc", False),
         r"w1 must have shape \[6, 6\]"),
        (lambda: op(x, torch.randn(4), None, None, None, "none", "sigmoid", "eca", False),
         "k odd"),
        (lambda: op(x, k, torch.randn(6), None, None, "none", "sigmoid", "eca", False),
         r"b1 must have shape \[1\]"),
        (lambda: op(x, torch.randn(15), None, None, None, "none", "sigmoid", "eca_circular",
                    False), "wraps around more than once"),
        (lambda: op(x, w, None, None, None, "relu", "sigmoid", "two_fc", False),
         "needs w2"),
    ]
    for call, match in cases:
        with pytest.raises((ValueError, RuntimeError), match=match):
            call()
    # k // 2 == C wraps once: allowed, as nn.Conv1d's circular padding allows it.
    assert op(x[:, :3], torch.randn(7), None, None, None, "none", "sigmoid", "eca_circular",
              False).shape == (2, 3, 3, 3)
