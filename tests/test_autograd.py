"""Autograd and torch.compile integration: float64 gradcheck, torch.library.opcheck
on both ops, torch.compile(fullgraph=True), no double backward."""
import pytest
import torch
from torch import nn

import se_fused
from se_fused import FusedSEBlock
from _reference import (DEVICES, VARIANTS, assert_close, dtype_id, make_weights, make_x,
                        seed_of, variant_id)

OPS = torch.ops.se_fused


# ---------------------------------------------------------------------------
# gradcheck
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck(device, variant, layout):
    bias, act, gate = variant
    n, c, h, w, hidden = 2, 6, 3, 5, 3
    seed = seed_of("gradcheck", variant, layout)
    # Random inputs: the chance of landing within eps of the relu / hardsigmoid
    # kinks is ~0 (and the seed is fixed).
    x = make_x((n, c, h, w), torch.float64, device, layout, seed=seed).requires_grad_(True)
    wts = make_weights(c, hidden, bias, torch.float64, device, seed=seed)
    args = [x, wts["w1"], wts["w2"], wts["b1"], wts["b2"]]
    for t in args:
        if t is not None:
            t.requires_grad_(True)

    def fn(x, w1, w2, b1, b2):
        return se_fused.squeeze_excitation(x, w1, w2, b1, b2, activation=act, gate=gate)

    assert torch.autograd.gradcheck(fn, tuple(args), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_hidden_one_map_one(device):
    """C = 1, hidden = 1 and a 1 x 1 map: every reduction has one term."""
    x = make_x((3, 1, 1, 1), torch.float64, device, seed=7).requires_grad_(True)
    wts = make_weights(1, 1, True, torch.float64, device, seed=7)
    args = tuple(t.requires_grad_(True) for t in (x, wts["w1"], wts["w2"], wts["b1"], wts["b2"]))
    assert torch.autograd.gradcheck(
        lambda *a: se_fused.squeeze_excitation(*a, activation="silu", gate="sigmoid"), args)


def test_double_backward_raises():
    x = make_x((2, 8, 3, 3), torch.float64, seed=3).requires_grad_(True)
    wts = make_weights(8, 2, False, torch.float64, seed=3)
    w1, w2 = wts["w1"].requires_grad_(True), wts["w2"].requires_grad_(True)
    y = se_fused.squeeze_excitation(x, w1, w2)
    (gx,) = torch.autograd.grad(y.pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        gx.sum().backward()


# ---------------------------------------------------------------------------
# opcheck
# ---------------------------------------------------------------------------
# (dtype, layout, shape [N, C, H, W], hidden, variant)
OPCHECK_CASES = [
    (torch.float32, "nchw", (2, 8, 5, 3), 2, (False, "relu", "sigmoid")),
    (torch.float32, "channels_last", (2, 8, 5, 3), 2, (True, "silu", "hardsigmoid")),
    (torch.float64, "nchw", (3, 5, 4, 4), 5, (True, "relu", "hardsigmoid")),
    (torch.bfloat16, "channels_last", (2, 16, 3, 7), 1, (False, "silu", "sigmoid")),
    (torch.float16, "nchw", (1, 3, 1, 9), 1, (True, "relu", "sigmoid")),
    (torch.float32, "sliced_h", (2, 8, 3, 3), 4, (False, "relu", "sigmoid")),
    (torch.float32, "cl_sliced_w", (2, 8, 3, 3), 4, (True, "relu", "sigmoid")),
    (torch.float32, "channels_last", (2, 8, 1, 1), 2, (False, "relu", "sigmoid")),  # 1x1 map
]


def _opcheck_id(case):
    dtype, layout, shape, hidden, variant = case
    return f"{dtype_id(dtype)}-{layout}-{'x'.join(map(str, shape))}-h{hidden}-{variant_id(variant)}"


def _forward_args(case, device, requires_grad):
    dtype, layout, shape, hidden, variant = case
    bias, act, gate = variant
    seed = seed_of("opcheck", _opcheck_id(case))
    x = make_x(shape, dtype, device, layout, seed=seed)
    wts = make_weights(shape[1], hidden, bias, dtype, device, seed=seed)
    if requires_grad:
        x = x.detach().requires_grad_(True)  # keeps x's strides
        for t in wts.values():
            if t is not None:
                t.requires_grad_(True)
    return (x, wts["w1"], wts["b1"], wts["w2"], wts["b2"], act, gate)


@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
@pytest.mark.parametrize("case", OPCHECK_CASES, ids=_opcheck_id)
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_forward(device, case, requires_grad):
    args = _forward_args(case, device, requires_grad)
    torch.library.opcheck(OPS.squeeze_excite.default, args)


def _backward_args(case, device, requires_grad):
    x, w1, b1, w2, b2, act, gate = _forward_args(case, device, False)
    with torch.no_grad():
        _, pooled, z1, z2 = OPS._squeeze_excite_forward(x, w1, b1, w2, b2, act, gate)
    gen = torch.Generator().manual_seed(seed_of("dy", _opcheck_id(case)))
    dy = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(x.dtype).to(device)
    dy = dy.contiguous(memory_format=torch.channels_last) if case[1] == "channels_last" else dy
    args = [dy, x, pooled, z1, z2, w1, w2]
    if requires_grad:
        # pooled, z1 and z2 (the forward's saved state) are not differentiable;
        # everything else is.
        args = [a if i in (2, 3, 4) else a.detach().requires_grad_(True)
                for i, a in enumerate(args)]
    return (*args, act, gate, case[4][0], case[4][0])


@pytest.mark.parametrize("case", OPCHECK_CASES, ids=_opcheck_id)
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_backward(device, case):
    torch.library.opcheck(OPS._squeeze_excite_backward.default, _backward_args(case, device, False))


@pytest.mark.parametrize("case", OPCHECK_CASES[:3], ids=_opcheck_id)
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_backward_requires_grad(device, case):
    """The backward op with inputs that require grad: everything but the
    autograd-through-it checks must pass; those must fail only because
    double backward is refused."""
    args = _backward_args(case, device, True)
    results = torch.library.opcheck(OPS._squeeze_excite_backward.default, args,
                                    raise_exception=False)
    failed = {name: res for name, res in results.items() if res != "SUCCESS"}
    print(f"\nopcheck of the backward op with requires_grad: {results}")
    for name, res in failed.items():
        text = repr(res) + repr(getattr(res, "__cause__", ""))
        # Only the check that differentiates through the backward op may fail.
        assert name == "test_aot_dispatch_dynamic" and "double backward" in text, (
            f"opcheck {name} failed for another reason: {text}")


# ---------------------------------------------------------------------------
# fake kernels agree with the real ones on strides
# ---------------------------------------------------------------------------
def _dense_strides(t):
    # Strides of size-1 dims carry no meaning; compare the others.
    return tuple(s for s, n in zip(t.stride(), t.shape) if n > 1)


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "sliced_h", "sliced_c",
                                    "cl_sliced_w", "permuted"])
@pytest.mark.parametrize("shape", [(2, 8, 5, 3), (2, 1, 5, 3), (2, 8, 1, 1)],
                         ids=lambda s: "x".join(map(str, s)))
def test_fake_matches_real_layout(shape, layout):
    from torch._subclasses.fake_tensor import FakeTensorMode
    case = (torch.float32, layout, shape, 1, (True, "relu", "sigmoid"))
    real_fwd_args = _forward_args(case, "cpu", False)
    real_args = _backward_args(case, "cpu", False)
    real_fwd = OPS._squeeze_excite_forward(*real_fwd_args)
    real_bwd = OPS._squeeze_excite_backward(*real_args)
    mode = FakeTensorMode()
    fake = lambda args: [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args]
    fake_fwd_args, fake_args = fake(real_fwd_args), fake(real_args)
    with mode:
        fake_fwd = OPS._squeeze_excite_forward(*fake_fwd_args)
        fake_bwd = OPS._squeeze_excite_backward(*fake_args)
    names = ("y", "pooled", "z1", "z2", "dx", "dw1", "db1", "dw2", "db2")
    assert len(real_fwd) + len(real_bwd) == len(names) == len(fake_fwd) + len(fake_bwd)
    for name, r, f in zip(names, (*real_fwd, *real_bwd), (*fake_fwd, *fake_bwd)):
        assert r.shape == f.shape and r.dtype == f.dtype, (
            f"{name}: real {tuple(r.shape)} {r.dtype}, fake {tuple(f.shape)} {f.dtype}")
        assert _dense_strides(r) == _dense_strides(f), (
            f"{name} for a {layout} x with strides {real_args[1].stride()}: real strides "
            f"{r.stride()}, fake strides {f.stride()}")


# ---------------------------------------------------------------------------
# torch.compile
# ---------------------------------------------------------------------------
class _Net(nn.Module):
    def __init__(self, c, r, variant):
        super().__init__()
        bias, act, gate = variant
        self.conv_in = nn.Conv2d(3, c, 3, padding=1)
        self.se = FusedSEBlock(c, r, bias=bias, activation=act, gate=gate)
        self.conv_out = nn.Conv2d(c, 4, 1)

    def forward(self, x):
        return self.conv_out(torch.relu(self.se(self.conv_in(x))))


@pytest.mark.compile
@pytest.mark.parametrize("layout,variant", [
    ("nchw", (False, "relu", "sigmoid")),
    ("channels_last", (True, "silu", "hardsigmoid")),
], ids=["nchw-nobias-relu-sigmoid", "channels_last-bias-silu-hardsigmoid"])
@pytest.mark.parametrize("device", DEVICES)
def test_compile_fullgraph_matches_eager(device, layout, variant):
    torch._dynamo.reset()
    torch.manual_seed(seed_of("compile", layout, variant))
    net = _Net(24, 4, variant).to(device)
    if variant[0]:
        with torch.no_grad():  # nonzero biases, so their gradients mean something
            net.se.excitation[0].bias.normal_()
            net.se.excitation[2].bias.normal_()
    x = make_x((2, 3, 9, 7), torch.float32, device, layout, seed=5)
    if layout == "channels_last":
        net = net.to(memory_format=torch.channels_last)

    def run(model):
        net.zero_grad(set_to_none=True)  # the compiled module shares net's parameters
        xx = x.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
        out = model(xx)
        out.square().sum().backward()
        return out.detach(), xx.grad, {n: p.grad.clone() for n, p in net.named_parameters()}

    y_eager, gx_eager, gp_eager = run(net)
    compiled = torch.compile(net, fullgraph=True)
    y_comp, gx_comp, gp_comp = run(compiled)
    y_comp2, _, _ = run(compiled)  # second call reuses the graph

    assert_close(y_comp, y_eager, rtol=1e-5, atol=1e-5, what="compiled output")
    assert_close(y_comp2, y_eager, rtol=1e-5, atol=1e-5, what="compiled output, 2nd call")
    assert_close(gx_comp, gx_eager, rtol=1e-4, atol=1e-5, what="compiled dx")
    for name in gp_eager:
        assert_close(gp_comp[name], gp_eager[name], rtol=1e-4, atol=1e-5,
                     what=f"compiled grad of {name}")
