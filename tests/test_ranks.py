"""1-D and 3-D inputs, [N, C, L] and [N, C, D, H, W], contiguous or channels last
([N, L, C] strides; channels_last_3d): the same guarantees as 2-D. y within 1 ULP
of the float64 plain block, y and dx keeping x's layout, bitwise deterministic,
batch-invariant, float64 gradcheck, NaN/Inf masks as the plain block's."""
import pytest
import torch

from _reference import (DEVICES, LOW_DTYPES, VARIANTS, assert_bitwise_equal, assert_max_ulp,
                        dtype_id, fused, make_weights, reference_block, reference_forward,
                        seed_of, variant_id)

# (shape, hidden); float64 is held to ~1e-12 relative (its oracle is float64 too),
# the others to 1 ULP of the float64 result.
SHAPES = [((3, 16, 37), 4), ((2, 40, 1), 10), ((2, 24, 3, 5, 7), 6), ((3, 8, 1, 2, 1), 2),
          ((2, 130, 4, 3, 2), 1)]
LAYOUTS = ["contiguous", "channels_last"]


def _shape_id(case):
    shape, hidden = case
    return "x".join(map(str, shape)) + f"-h{hidden}"


def _channels_last(t):
    """t in [N, *spatial, C] memory, as channels_last(_3d) lays it out."""
    return t.movedim(1, -1).contiguous().movedim(-1, 1)


def _is_channels_last(t):
    return t.movedim(1, -1).is_contiguous()


def _make(shape, dtype, device, layout, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    x = _channels_last(x) if layout == "channels_last" else x
    return x.to(device)


def _check_layout(t, x, what):
    if x.shape[1] > 1 and x.shape[2:].numel() > 1:
        want = _is_channels_last(x)
        assert _is_channels_last(t) == want and (want or t.is_contiguous()), (
            f"{what}: strides {t.stride()} do not keep x's layout (x strides {x.stride()})")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", SHAPES, ids=_shape_id)
@pytest.mark.parametrize("dtype", [torch.float64, *LOW_DTYPES], ids=dtype_id)
@pytest.mark.parametrize("device", DEVICES)
def test_forward_one_ulp_layout_determinism(device, dtype, case, layout):
    shape, hidden = case
    variant = VARIANTS[len(shape) % len(VARIANTS)]
    seed = seed_of("ranks", shape, dtype, layout)
    x = _make(shape, dtype, device, layout, seed)
    wts = make_weights(shape[1], hidden, variant[0], dtype, device, seed=seed)
    y = fused(x, wts, variant)
    _check_layout(y, x, "y")
    ref = reference_forward(x, wts, variant)
    if dtype == torch.float64:  # the oracle rounds as often as the kernels: compare to rounding
        torch.testing.assert_close(y.cpu(), ref, rtol=1e-12, atol=1e-14)
    else:
        assert_max_ulp(y, ref, dtype, max_ulp=1.0, x=x)
    assert_bitwise_equal(fused(x, wts, variant), y, "y on a second run")
    # The last sample alone: the same bits as its slice of the batch.
    assert_bitwise_equal(fused(x[-1:].clone(), wts, variant), y[-1:], "y of the last sample")


@pytest.mark.parametrize("variant", VARIANTS[::3], ids=variant_id)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(2, 6, 5), (2, 6, 2, 3, 2)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck(device, shape, layout, variant):
    bias, act, gate = variant
    seed = seed_of("ranks-grad", shape, layout, variant)
    x = _make(shape, torch.float64, device, layout, seed).requires_grad_(True)
    wts = make_weights(shape[1], 3, bias, torch.float64, device, seed=seed)
    args = [x] + [t.requires_grad_(True) for t in wts.values() if t is not None]

    def fn(x, w1, w2, *b):
        return fused(x, dict(w1=w1, w2=w2, b1=b[0] if b else None, b2=b[1] if b else None),
                     variant)

    ordered = [x, wts["w1"], wts["w2"]] + ([wts["b1"], wts["b2"]] if bias else [])
    assert torch.autograd.gradcheck(fn, tuple(ordered), eps=1e-6, atol=1e-7, rtol=1e-5)
    y = fn(*ordered)
    (dx,) = torch.autograd.grad(y.sum(), x)
    _check_layout(dx, x, "dx")
    assert len(args) == len(ordered)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(3, 8, 7), (3, 8, 2, 3, 4)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("device", DEVICES)
def test_nan_inf_masks(device, shape, layout):
    variant = (True, "relu", "sigmoid")
    x = _make(shape, torch.float32, "cpu", layout, seed_of("ranks-nan", shape, layout))
    x[(0, 0) + (0,) * (len(shape) - 2)] = float("nan")  # sample 0
    x[(1, 5) + (1,) * (len(shape) - 2)] = float("inf")  # sample 1
    x, wts = x.to(device), make_weights(shape[1], 2, True, torch.float32, device, seed=3)
    ref = reference_block(shape[1], 4, variant, wts)(x.double().cpu())
    y = fused(x, wts, variant).cpu()
    for name, mask in (("nan", torch.isnan), ("inf", torch.isinf)):
        assert torch.equal(mask(y), mask(ref)), f"the {name} mask of y differs from the plain block's"
    assert torch.isnan(y[0]).all() and torch.isfinite(y[2]).all()
