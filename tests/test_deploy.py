"""After training (issue 21): ONNX export (both exporters, run by onnxruntime), TorchScript
(script, save, load), se_fused.revert, torch.func and forward-mode AD, parametrizations
and pruning, the empty map; on FusedSEBlock and on converted torchvision, timm and MONAI
models."""
import copy
import io
import warnings

import pytest
import torch
from torch import nn

import se_fused
from se_fused import FusedSEAdapter, FusedSEBlock, SEBlock
from _reference import DEVICES

VARIANTS = [
    dict(),
    dict(bias=True, activation="silu", gate="hardsigmoid"),
    dict(bias=True, activation="hardswish"),
    dict(excitation="one_fc", bias=True, gate="hardsigmoid"),
    dict(excitation="eca"),
    dict(excitation="eca_circular", bias=True, kernel_size=5),
    dict(bias=True, residual=True),
]
SHAPES = [(2, 32, 9), (2, 32, 6, 5), (2, 32, 3, 4, 2)]


def _pair(device="cpu", dtype=torch.float32, **kw):
    """A plain SEBlock and a FusedSEBlock with the same (random, not default) weights."""
    torch.manual_seed(0)
    plain = SEBlock(32, r=4, **kw)
    with torch.no_grad():
        for p in plain.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    plain = plain.to(device, dtype)
    fused = FusedSEBlock(32, r=4, **kw).to(device, dtype)
    fused.load_state_dict(plain.state_dict())
    return plain, fused


def _x(shape, device="cpu", dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(device, dtype)


# ---------------------------------------------------------------------------
# real models (small inputs)
# ---------------------------------------------------------------------------
def _quiet_convert(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return se_fused.convert(model)


def _mobilenet():
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return tv.models.mobilenet_v3_small(num_classes=10).eval(), torch.randn(1, 3, 64, 64)


def _seresnet18():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("seresnet18", pretrained=False, num_classes=10,
                              zero_init_last=False)
    return model.eval(), torch.randn(1, 3, 64, 64)


def _monai(dims):
    nets = pytest.importorskip("monai.networks.nets")
    torch.manual_seed(0)
    model = nets.SEResNet50(spatial_dims=dims, in_channels=1, num_classes=3)
    size = (1, 1) + (32,) * dims
    return model.eval(), torch.randn(size)


MODELS = {"mobilenet_v3_small": _mobilenet, "seresnet18": _seresnet18,
          "monai_seresnet50_2d": lambda: _monai(2), "monai_seresnet50_3d": lambda: _monai(3)}


def _n_fused(model):
    return sum(isinstance(m, (FusedSEAdapter, FusedSEBlock)) for m in model.modules())


# ---------------------------------------------------------------------------
# ONNX
# ---------------------------------------------------------------------------
def _onnx_run(module, x, dynamo, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    path = str(tmp_path / "m.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), path, dynamo=dynamo, input_names=["x"])
    graph = onnx.load(path).graph
    ops = {n.op_type for n in graph.node}
    domains = {n.domain for n in graph.node}
    # onnxscript may leave standard ops inside local functions; none are se_fused's
    assert not any("se_fused" in d for d in domains), domains
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    return torch.from_numpy(out), ops, onnx.load(path)


def _all_ops(model_proto):
    ops = {n.op_type for n in model_proto.graph.node}
    for f in model_proto.functions:
        ops |= {n.op_type for n in f.node}
    return ops


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
@pytest.mark.parametrize("kw", VARIANTS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
def test_onnx_fused_block(kw, dynamo, tmp_path):
    _, fused = _pair(**kw)
    fused.eval()
    for shape in SHAPES if kw == {} else SHAPES[1:2]:
        x = _x(shape)
        y, _, proto = _onnx_run(fused, x, dynamo, tmp_path)
        with torch.no_grad():
            torch.testing.assert_close(y, fused(x), atol=1e-4, rtol=1e-4)
        ops = _all_ops(proto)
        assert "Mul" in ops
        assert ops & {"ReduceMean", "GlobalAveragePool"}
        if kw.get("excitation", "two_fc") in ("two_fc", "one_fc"):
            assert ops & {"Gemm", "MatMul"}
        else:
            assert "Conv" in ops
        assert ops & {"Sigmoid", "HardSigmoid"}


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
@pytest.mark.parametrize("name", list(MODELS))
def test_onnx_converted_model(name, dynamo, tmp_path):
    model, x = MODELS[name]()
    _quiet_convert(model)
    assert _n_fused(model) > 0
    y, _, _ = _onnx_run(model, x, dynamo, tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(y, model(x), atol=1e-4, rtol=1e-4)


def test_export_keeps_the_fused_op():
    # the ONNX decomposition is the ONNX exporter's: torch.export keeps the fused op
    _, fused = _pair()
    ep = torch.export.export(fused.eval(), (_x(SHAPES[1]),))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert "se_fused.squeeze_excite.default" in targets


# ---------------------------------------------------------------------------
# revert
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(MODELS))
def test_revert_real_models(name):
    model, x = MODELS[name]()
    classes = [(n, type(m)) for n, m in model.named_modules()]
    params = [(n, p) for n, p in model.named_parameters()]
    with torch.no_grad():
        before = model(x)
    assert _quiet_convert(model) is model
    assert _n_fused(model) > 0
    assert se_fused.revert(model) is model
    assert [(n, type(m)) for n, m in model.named_modules()] == classes
    assert all(p is q for (_, p), (_, q) in zip(params, model.named_parameters()))
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in params]
    with torch.no_grad():
        assert torch.equal(model(x), before)
    # and back again
    _quiet_convert(model)
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, atol=1e-4, rtol=1e-4)


def test_revert_se_block_root_and_training_mode():
    plain, _ = _pair(bias=True, excitation="one_fc")
    x = _x(SHAPES[1])
    before = plain(x)
    fused = se_fused.convert(plain)
    assert isinstance(fused, FusedSEBlock)
    fused.eval()
    back = se_fused.revert(fused)
    assert back is plain and type(back) is SEBlock and not back.training
    assert back.excitation[0].weight is plain.excitation[0].weight
    assert torch.equal(back(x), before)
    # a FusedSEBlock built directly becomes an SEBlock with the same children
    _, direct = _pair()
    layer = direct.excitation[0]
    reverted = se_fused.revert(direct)
    assert type(reverted) is SEBlock and reverted.excitation[0] is layer


# ---------------------------------------------------------------------------
# TorchScript
# ---------------------------------------------------------------------------
def _script_roundtrip(module, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(module)
        buf = io.BytesIO()
        torch.jit.save(scripted, buf)
        buf.seek(0)
        loaded = torch.jit.load(buf)
    with torch.no_grad():
        return scripted(x), loaded(x)


@pytest.mark.parametrize("kw", VARIANTS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
def test_script_blocks(kw):
    plain, fused = _pair(**kw)
    keys = list(fused.state_dict())
    for shape in SHAPES:
        x = _x(shape)
        with torch.no_grad():
            want_plain, want_fused = plain(x), fused(x)
        a, b = _script_roundtrip(plain, x)
        assert torch.equal(a, want_plain) and torch.equal(b, want_plain)
        a, b = _script_roundtrip(fused, x)
        assert torch.equal(a, want_fused) and torch.equal(b, want_fused)
    assert list(fused.state_dict()) == keys


@pytest.mark.parametrize("name", list(MODELS))
def test_script_converted_models(name):
    model, x = MODELS[name]()
    _quiet_convert(model)
    keys = list(model.state_dict())
    with torch.no_grad():
        want = model(x)
    a, b = _script_roundtrip(model, x)
    assert torch.equal(a, want) and torch.equal(b, want)
    # torch.jit.script put the fused modules' TorchScript forms in place: same keys,
    # tensors and bits, still fused, and revert still finds the originals
    assert list(model.state_dict()) == keys
    with torch.no_grad():
        assert torch.equal(model(x), want)
    se_fused.revert(model)
    assert _n_fused(model) == 0
    assert not any(getattr(type(m), "_se_fused_scripted", False) for m in model.modules())


def test_script_timm_flags():
    timm = pytest.importorskip("timm")
    from timm.layers import set_exportable, set_scriptable
    set_scriptable(True)
    set_exportable(True)
    try:
        model, x = _seresnet18()
    finally:
        set_scriptable(False)
        set_exportable(False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every SE module converts
        se_fused.convert(model)
    assert _n_fused(model) == 8
    with torch.no_grad():
        want = model(x)
    a, _ = _script_roundtrip(model, x)
    assert torch.equal(a, want)


# ---------------------------------------------------------------------------
# torch.func and forward-mode AD
# ---------------------------------------------------------------------------
def _close(a, b, dtype=torch.float32):
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(a, b, atol=tol, rtol=tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kw", VARIANTS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
def test_jvp_and_forward_ad(kw, device):
    plain, fused = _pair(device, torch.float64, **kw)
    x = _x(SHAPES[1], device, torch.float64)
    t = _x(SHAPES[1], device, torch.float64, seed=2)
    y_p, ty_p = torch.func.jvp(plain, (x,), (t,))
    y_f, ty_f = torch.func.jvp(fused, (x,), (t,))
    assert ty_p.norm() > 0.1
    _close(y_f, y_p, torch.float64)
    _close(ty_f, ty_p, torch.float64)
    import torch.autograd.forward_ad as fwAD
    with fwAD.dual_level():
        out = fwAD.unpack_dual(fused(fwAD.make_dual(x, t)))
    _close(out.tangent, ty_p, torch.float64)
    # a tangent on a weight (forward AD through the parameters)
    w = fused.excitation[0].weight
    tw = torch.randn_like(w)
    params = {k: v.detach() for k, v in fused.named_parameters()}
    name = "excitation.0.weight"

    def run(module, weight):
        return torch.func.functional_call(module, {**params, name: weight}, (x,))
    _, tw_f = torch.func.jvp(lambda wt: run(fused, wt), (w.detach(),), (tw,))
    _, tw_p = torch.func.jvp(lambda wt: run(plain, wt), (w.detach(),), (tw,))
    assert tw_p.norm() > 0
    _close(tw_f, tw_p, torch.float64)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kw", VARIANTS[:1] + VARIANTS[3:5] + VARIANTS[6:],
                         ids=["default", "one_fc", "eca", "residual"])
def test_grad_vmap_and_per_sample_grads(kw, device):
    plain, fused = _pair(device, torch.float64, **kw)
    x = _x((4,) + SHAPES[1][1:], device, torch.float64)
    params = {k: v.detach() for k, v in plain.named_parameters()}

    def loss(module):
        def f(p, xs):
            return torch.func.functional_call(module, p, (xs,)).square().sum()
        return f
    for module in (plain, fused):
        assert module.excitation[0].weight.requires_grad
    g_p = torch.func.grad(loss(plain))(params, x)
    g_f = torch.func.grad(loss(fused))(params, x)
    for k in g_p:
        assert g_p[k].norm() > 0
        _close(g_f[k], g_p[k], torch.float64)
    # grad with respect to x
    gx_p = torch.func.grad(lambda xs: plain(xs).square().sum())(x)
    gx_f = torch.func.grad(lambda xs: fused(xs).square().sum())(x)
    _close(gx_f, gx_p, torch.float64)
    # vmap over a leading dim (no fallback warning), and over a weight
    xb = torch.stack([x, 2 * x, -x])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y_f = torch.vmap(fused)(xb)
    with torch.no_grad():
        assert torch.equal(y_f, torch.stack([fused(xi) for xi in xb]))
    _close(y_f, torch.vmap(plain)(xb), torch.float64)
    # per-sample gradients: vmap(grad) over the samples
    def one(module):
        def f(p, xi):
            return torch.func.functional_call(module, p, (xi[None],)).square().sum()
        return torch.vmap(torch.func.grad(f), in_dims=(None, 0))
    ps_p = one(plain)(params, x)
    ps_f = one(fused)(params, x)
    for k in ps_p:
        assert ps_p[k].shape[0] == 4 and ps_p[k].norm() > 0
        _close(ps_f[k], ps_p[k], torch.float64)
    # vmap over batched weights (an ensemble)
    stacked = {k: torch.stack([v, 1.5 * v]) for k, v in params.items()}
    ens = lambda module: torch.vmap(lambda p: torch.func.functional_call(module, p, (x,)))
    _close(ens(fused)(stacked), ens(plain)(stacked), torch.float64)


def test_vmap_of_a_batch_with_grad_outside():
    plain, fused = _pair()
    xb = _x((3,) + SHAPES[0]).requires_grad_(True)
    y = torch.vmap(fused)(xb)
    y.square().sum().backward()
    g_f, w_f = xb.grad.clone(), fused.excitation[0].weight.grad.clone()
    xb.grad = None
    torch.vmap(plain)(xb).square().sum().backward()
    _close(g_f, xb.grad)
    _close(w_f, plain.excitation[0].weight.grad)


def test_jvp_converted_model():
    model, x = _mobilenet()
    reference = copy.deepcopy(model)
    _quiet_convert(model)
    t = torch.randn_like(x)
    _, want = torch.func.jvp(reference, (x,), (t,))
    _, got = torch.func.jvp(model, (x,), (t,))
    assert want.norm() > 0
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-3)


# ---------------------------------------------------------------------------
# parametrizations and pruning
# ---------------------------------------------------------------------------
def _apply(kind, layer):
    from torch.nn.utils import parametrizations, prune
    if kind == "prune":
        torch.manual_seed(3)
        prune.random_unstructured(layer, "weight", 0.5)
        prune.l1_unstructured(layer, "bias", 0.5) if layer.bias is not None else None
    elif kind == "weight_norm":
        parametrizations.weight_norm(layer, "weight")
    elif kind == "old_weight_norm":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.nn.utils.weight_norm(layer, "weight")
    else:
        parametrizations.spectral_norm(layer, "weight")


PARAMETRIZATIONS = ["prune", "weight_norm", "old_weight_norm", "spectral_norm"]


def _train_step(model, x):
    model.zero_grad()
    model(x).square().sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kind", PARAMETRIZATIONS)
@pytest.mark.parametrize("kw", [dict(bias=True), dict(excitation="eca", bias=True)],
                         ids=["two_fc", "eca"])
def test_parametrized_fused_block(kind, kw):
    plain, fused = _pair(**kw)
    for layer in (plain.excitation[0], fused.excitation[0]):
        _apply(kind, layer)
    if "excitation" not in kw:
        for layer in (plain.excitation[2], fused.excitation[2]):
            _apply(kind, layer)
    fused.load_state_dict(plain.state_dict())
    plain.eval(), fused.eval()  # spectral_norm: no power iteration, the same u, v
    x = _x(SHAPES[1])
    for _ in range(2):  # twice: a pre-hook's tensor is fresh each call
        _close(fused(x), plain(x))
        g_p, g_f = _train_step(plain, x), _train_step(fused, x)
        assert set(g_p) == set(g_f) and len(g_p) >= 2
        for k in g_p:
            _close(g_f[k], g_p[k])


@pytest.mark.parametrize("kind", ["prune", "weight_norm"])
@pytest.mark.parametrize("name", ["mobilenet_v3_small", "monai_seresnet50_2d"])
def test_parametrized_after_convert(kind, name):
    model, x = MODELS[name]()
    reference = copy.deepcopy(model)
    _quiet_convert(model)
    fcs = [(n, m) for n, m in model.named_modules() if n.endswith(("fc1", "fc.0"))]
    assert fcs
    for n, m in fcs:
        _apply(kind, m)
        _apply(kind, reference.get_submodule(n))
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-4, rtol=1e-4)
    g_m, g_r = _train_step(model, x), _train_step(reference, x)
    keys = [k for k in g_r if k.startswith(fcs[0][0]) and "orig" in k]  # weight_orig, original0
    assert keys
    for key in keys:
        torch.testing.assert_close(g_m[key], g_r[key], atol=1e-4, rtol=1e-3)


# ---------------------------------------------------------------------------
# the empty map
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(2, 32, 0), (2, 32, 0, 4), (2, 32, 3, 0, 2), (0, 32, 0, 3)])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_empty_map(shape, layout, device):
    plain, fused = _pair(device, bias=True)
    x = _x(shape, device)
    if layout == "channels_last" and x.dim() >= 4:
        x = x.to(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    outs = []
    for m in (plain, fused):
        m.zero_grad()
        xg = x.clone().requires_grad_(True)
        y = m(xg)
        y.sum().backward()
        outs.append((y, xg.grad, m.excitation[0].weight.grad))
        with torch.no_grad():
            y0 = m(x)
        assert y0.shape == x.shape and y0.dtype == x.dtype
    (yp, gp, wp), (yf, gf, wf) = outs
    assert yf.shape == yp.shape and yf.stride() == yp.stride() and yf.dtype == yp.dtype
    assert gf.shape == gp.shape and gf.stride() == gp.stride()
    torch.testing.assert_close(wf, wp, equal_nan=True)


def test_script_and_revert_norm_between_the_fcs():
    pytest.importorskip("timm")
    from timm.layers.squeeze_excite import SEModule
    torch.manual_seed(0)
    original = SEModule(32, rd_ratio=0.25, norm_layer=nn.BatchNorm2d)
    with torch.no_grad():
        original.bn.running_mean.uniform_(-0.5, 0.5)
        original.bn.running_var.uniform_(0.5, 2.0)
    x = _x(SHAPES[1])
    original.eval()
    with torch.no_grad():
        before = original(x)
    fused = se_fused.convert(original)
    assert isinstance(fused, FusedSEAdapter)
    state = copy.deepcopy(fused.state_dict())
    for training in (False, True):
        fused.train(training)
        with torch.no_grad():
            want = fused(x)
        a, b = _script_roundtrip(fused, x)
        assert torch.equal(a, want) and torch.equal(b, want)
    fused.load_state_dict(state)  # the running statistics from before training mode
    back = se_fused.revert(fused.eval())
    assert back is original and not back.training
    with torch.no_grad():
        assert torch.equal(back(x), before)


@pytest.mark.parametrize("device", DEVICES)
def test_script_on_device(device):
    plain, fused = _pair(device, bias=True, residual=True)
    x = _x(SHAPES[2], device)
    with torch.no_grad():
        want = fused(x)
    a, b = _script_roundtrip(fused, x)
    assert torch.equal(a, want) and torch.equal(b, want)


@pytest.mark.compile
def test_compile_dynamic_keeps_the_fused_op():
    # FakeTensorMode reads torch._decomp's table (where the ONNX decomposition is) before
    # an op's fake kernel under dynamic shapes: it must still see the fused op's layout
    import se_fused._plain as plain_module
    _, fused = _pair()
    compiled = torch.compile(fused, dynamic=True, fullgraph=True)
    calls = []
    real = plain_module.plain_squeeze_excite
    plain_module.plain_squeeze_excite = lambda *a: calls.append(a) or real(*a)
    try:
        for shape in [(2, 32, 5, 5), (3, 32, 7, 7), (3, 32, 1, 7)]:
            x = _x(shape).to(memory_format=torch.channels_last).requires_grad_(True)
            y = compiled(x)
            with torch.no_grad():
                want = fused(x)
            assert torch.equal(y, want) and y.stride() == want.stride()
            y.sum().backward()
    finally:
        plain_module.plain_squeeze_excite = real
    assert not calls
