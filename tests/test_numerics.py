"""Forward and gradient accuracy against the float64 oracle (SEBlock in float64)."""
import pytest
import torch

import se_fused
from se_fused import FusedSEBlock, SEBlock
from _reference import (ALL_VARIANTS, DEVICES, LAYOUTS, LOW_DTYPES, VARIANTS,
                        assert_close, assert_max_ulp, block_weights, dtype_id, fused,
                        make_block, make_weights, make_x, reference_block, reference_forward, requires_cuda,
                        seed_of, ulp, ulp_distance, variant_id)

# (N, C, H, W, r): odd channel counts, hidden 1, maps from 1x1 to 112x112.
# The big maps keep N and C small: the CPU suite must stay fast.
SHAPES = [
    (2, 1, 7, 7, 1),        # one channel, hidden 1
    (3, 3, 1, 31, 1),       # 1 x 31 map
    (2, 17, 17, 13, 4),     # odd C and map
    (2, 16, 7, 7, 16),      # hidden 1
    (4, 64, 1, 1, 4),       # 1 x 1 map
    (2, 100, 17, 13, 8),    # C not a multiple of 8, hidden 12
    (2, 256, 7, 7, 16),
    (1, 2048, 7, 7, 16),    # SE-ResNet-50 last stage, hidden 128
    (2, 960, 7, 7, 4),      # MobileNetV3 late block, hidden 240
    (2, 64, 56, 56, 4),
    (1, 24, 112, 112, 4),   # MobileNetV3 first SE map
]


def shape_id(s):
    n, c, h, w, r = s
    return f"{n}x{c}x{h}x{w}-r{r}"


def _case_variant(i):
    # Each shape gets one variant; across the list every variant appears.
    return VARIANTS[i % len(VARIANTS)]


FORWARD_CASES = [pytest.param(s, _case_variant(i), id=f"{shape_id(s)}-{variant_id(_case_variant(i))}")
                 for i, s in enumerate(SHAPES)]


def _inputs(shape, variant, dtype, device, layout, tag=""):
    n, c, h, w, r = shape
    seed = seed_of(shape, variant, dtype_id(dtype), layout, tag)
    x = make_x((n, c, h, w), dtype, device, layout, seed=seed)
    wts = make_weights(c, c // r, variant[0], dtype, device, seed=seed)
    return x, wts


# ---------------------------------------------------------------------------
# forward: 1 ULP in the low precisions, ~1e-12 relative in float64
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", LOW_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape,variant", FORWARD_CASES)
@pytest.mark.parametrize("device", DEVICES)
def test_forward_within_one_ulp(device, shape, variant, dtype, layout):
    x, wts = _inputs(shape, variant, dtype, device, layout)
    y = fused(x, wts, variant)
    assert y.dtype == dtype and y.device == x.device
    ref = reference_forward(x, wts, variant)
    assert_max_ulp(y, ref, dtype, 1.0, what=f"y ({device}, {layout}, {variant_id(variant)})", x=x)


@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=variant_id)
@pytest.mark.parametrize("dtype", LOW_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("device", DEVICES)
def test_forward_within_one_ulp_all_variants(device, dtype, variant):
    shape = (3, 40, 9, 11, 4)
    x, wts = _inputs(shape, variant, dtype, device, "nchw", "variants")
    y = fused(x, wts, variant)
    assert_max_ulp(y, reference_forward(x, wts, variant), dtype, 1.0,
                   what=f"y ({device}, {variant_id(variant)})", x=x)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape,variant", FORWARD_CASES)
@pytest.mark.parametrize("device", DEVICES)
def test_forward_float64(device, shape, variant, layout):
    x, wts = _inputs(shape, variant, torch.float64, device, layout)
    y = fused(x, wts, variant)
    assert y.dtype == torch.float64
    assert_close(y, reference_forward(x, wts, variant), rtol=1e-12, atol=1e-300,
                 what=f"y float64 ({device}, {layout})")


@pytest.mark.parametrize("dtype", [torch.float64, *LOW_DTYPES], ids=dtype_id)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("device", DEVICES)
def test_saved_state_outputs(device, layout, dtype):
    """The op's outputs past y, the state the backward reads, in the
    accumulation dtype: the means over H x W and the pre-activations z1, z2."""
    variant = (True, "silu", "sigmoid")
    x, wts = _inputs((3, 20, 13, 7, 4), variant, dtype, device, layout, "pooled")
    _, pooled, z1, z2 = torch.ops.se_fused._squeeze_excite_forward(
        x, wts["w1"], wts["b1"], wts["w2"], wts["b2"], "silu", "sigmoid")
    acc = se_fused.accumulation_dtype(dtype)
    assert acc == (torch.float32 if dtype in (torch.float16, torch.bfloat16) else torch.float64)
    for name, t, shape in (("pooled", pooled, (3, 20)), ("z1", z1, (3, 5)), ("z2", z2, (3, 20))):
        assert t.dtype == acc and t.shape == shape, f"{name}: {t.dtype} {tuple(t.shape)}"
    w = {k: (v.double().cpu() if v is not None else None) for k, v in wts.items()}
    ref = x.double().cpu().mean(dim=(2, 3))
    ref_z1 = ref @ w["w1"].T + w["b1"]
    ref_z2 = torch.nn.functional.silu(ref_z1) @ w["w2"].T + w["b2"]
    rtol = 1e-14 if acc == torch.float64 else 1e-6
    assert_close(pooled, ref, rtol=rtol, atol=rtol, what="pooled")
    # Sums of 20 and 5 products: the tolerance scales with the terms' magnitude.
    assert_close(z1, ref_z1, rtol=0, atol=20 * rtol * (ref.abs() @ w["w1"].abs().T).max().item(),
                 what="z1")
    mag2 = torch.nn.functional.silu(ref_z1).abs() @ w["w2"].abs().T
    assert_close(z2, ref_z2, rtol=0, atol=20 * rtol * mag2.max().item(), what="z2")


@pytest.mark.parametrize("dtype", LOW_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("device", DEVICES)
def test_forward_error_against_eager(device, dtype):
    """Not a contract on eager: shows (run with -s) the eager block's error next
    to the fused one's, and checks the fused op is never the less accurate."""
    variant = (False, "relu", "sigmoid")
    shape = (4, 256, 14, 14, 16)
    x, wts = _inputs(shape, variant, dtype, device, "nchw", "eager")
    ref = reference_forward(x, wts, variant)
    eager = make_block(SEBlock, 256, 16, variant, wts, dtype, device)
    with torch.no_grad():
        y_eager = eager(x)
    y_fused = fused(x, wts, variant)
    e_ulp = ulp_distance(y_eager.cpu(), ref, dtype).max().item()
    f_ulp = ulp_distance(y_fused.cpu(), ref, dtype).max().item()
    print(f"\n{device} {dtype_id(dtype)} {shape}: max ULP eager {e_ulp:.3f}, fused {f_ulp:.3f}")
    assert f_ulp <= max(e_ulp, 1.0), f"fused {f_ulp:.3f} ULP, eager {e_ulp:.3f} ULP"


# ---------------------------------------------------------------------------
# gradients: at least as accurate as the plain block in the same dtype
# ---------------------------------------------------------------------------
GRAD_SHAPES = [
    (2, 1, 7, 7, 1),
    (3, 17, 17, 13, 4),
    (2, 16, 1, 31, 16),
    (4, 64, 1, 1, 4),
    (2, 100, 9, 9, 8),
    (1, 2048, 7, 7, 16),
    (2, 64, 56, 56, 4),
    (1, 16, 112, 112, 4),
]
GRAD_CASES = [pytest.param(s, VARIANTS[(3 * i + 1) % len(VARIANTS)],
                           id=f"{shape_id(s)}-{variant_id(VARIANTS[(3 * i + 1) % len(VARIANTS)])}")
              for i, s in enumerate(GRAD_SHAPES)]
GRAD_MARGIN = {torch.float32: 2.0, torch.bfloat16: 1.0, torch.float16: 1.0}


def _grads(cls, c, r, variant, wts, x, dy, dtype, device):
    if cls is None:  # the float64 oracle
        block = reference_block(c, r, variant, wts)
    else:
        block = make_block(cls, c, r, variant, wts, dtype, device)
    xx = x.detach().to(dtype).requires_grad_(True)
    y = block(xx)
    y.backward(dy.to(dtype))
    p = block_weights(block)
    grads = {"dx": xx.grad, "dw1": p["w1"].grad, "dw2": p["w2"].grad}
    if variant[0]:
        grads.update(db1=p["b1"].grad, db2=p["b2"].grad)
    return y, grads


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", LOW_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape,variant", GRAD_CASES)
@pytest.mark.parametrize("device", DEVICES)
def test_gradients_as_accurate_as_eager(device, shape, variant, dtype, layout):
    n, c, h, w, r = shape
    x, wts = _inputs(shape, variant, dtype, device, layout, "grad")
    gen = torch.Generator().manual_seed(seed_of(shape, "dy"))
    dy = torch.randn((n, c, h, w), generator=gen, dtype=torch.float64).to(dtype).to(device)
    if layout == "channels_last":
        dy = dy.contiguous(memory_format=torch.channels_last)

    _, g_eager = _grads(SEBlock, c, r, variant, wts, x, dy, dtype, device)
    _, g_fused = _grads(FusedSEBlock, c, r, variant, wts, x, dy, dtype, device)
    _, g_ref = _grads(None, c, r, variant, wts, x.double().cpu(), dy.double().cpu(),
                      torch.float64, "cpu")

    report, failed = [], []
    for name, ref in g_ref.items():
        ref = ref.double()
        assert g_fused[name].dtype == dtype, f"{name} has dtype {g_fused[name].dtype}"
        assert g_fused[name].shape == ref.shape
        err_f = (g_fused[name].double().cpu() - ref).abs().max().item()
        err_e = (g_eager[name].double().cpu() - ref).abs().max().item()
        one_ulp = ulp(ref.abs().max(), dtype).item()
        line = (f"{name}: err fused {err_f:.3g}, eager {err_e:.3g}, 1 ulp at max|grad| "
                f"{one_ulp:.3g} (max|grad| {ref.abs().max().item():.3g})")
        report.append(line)
        if not (err_f <= GRAD_MARGIN[dtype] * err_e or err_f <= one_ulp):
            failed.append(line)
    assert not failed, (f"{device} {dtype_id(dtype)} {layout} {shape} {variant_id(variant)}: "
                        f"fused gradients less accurate than eager:\n  " + "\n  ".join(failed)
                        + "\nall:\n  " + "\n  ".join(report))


@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=variant_id)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("device", DEVICES)
def test_gradients_float64(device, layout, variant):
    """float64 fused gradients match the float64 plain block to rounding."""
    shape = (3, 24, 6, 5, 4)
    n, c, h, w, r = shape
    x, wts = _inputs(shape, variant, torch.float64, device, layout, "grad64")
    dy = torch.randn_like(x)
    _, g_fused = _grads(FusedSEBlock, c, r, variant, wts, x, dy, torch.float64, device)
    _, g_ref = _grads(None, c, r, variant, wts, x.cpu(), dy.cpu(), torch.float64, "cpu")
    for name, ref in g_ref.items():
        scale = ref.abs().max().item()
        assert_close(g_fused[name], ref, rtol=1e-12, atol=1e-13 * scale, what=name)


# ---------------------------------------------------------------------------
# past 2^31 elements (CUDA only)
# ---------------------------------------------------------------------------
@pytest.mark.large
@requires_cuda
@pytest.mark.parametrize("layout", LAYOUTS)
def test_cuda_past_2_31_elements(layout):
    """x with more than 2^31 elements: samples whose offsets pass 2^31 are
    scaled correctly (64-bit indexing). Checked per sample against the float64
    oracle on a few samples, the last included."""
    dtype = torch.bfloat16
    n, c, h, w, r = 33, 264, 512, 512, 16  # 2.28e9 elements, 4.6 GB per tensor in bf16;
    # sample 31 straddles element 2^31 and sample 32 lies wholly past it
    numel = n * c * h * w
    assert numel > 2 ** 31
    need = 2 * numel * 2 + (4 << 30)  # x, y, and headroom for the per-sample oracle
    free, _ = torch.cuda.mem_get_info()
    if free < need:
        pytest.skip(f"needs {need / 2**30:.1f} GiB free on the GPU, {free / 2**30:.1f} GiB free")
    variant = (True, "relu", "sigmoid")
    torch.manual_seed(1234)
    x = torch.empty((n, c, h, w), dtype=dtype, device="cuda",
                    memory_format=torch.channels_last if layout == "channels_last"
                    else torch.contiguous_format)
    x.normal_()
    wts = make_weights(c, c // r, True, dtype, "cuda", seed=99)
    with torch.no_grad():
        y = fused(x, wts, variant)
    assert y.shape == x.shape
    assert_layout_ok = y.is_contiguous(memory_format=torch.channels_last) if layout == \
        "channels_last" else y.is_contiguous()
    assert assert_layout_ok, f"y strides {y.stride()} for a {layout} x"
    per_sample = c * h * w
    first_past = (2 ** 31) // per_sample  # the sample that straddles or follows 2^31
    for i in sorted({0, first_past - 1, first_past, first_past + 1, n - 1}):
        if not 0 <= i < n:
            continue
        ref = reference_forward(x[i:i + 1], wts, variant)
        assert_max_ulp(y[i:i + 1], ref, dtype, 1.0, what=f"y sample {i} of {n} ({layout})")
