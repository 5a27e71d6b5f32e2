"""NaN and Inf follow the plain block: the NaN and Inf masks of y and of dx equal
those of SEBlock computed in float64, for every activation and gate, in both
layouts. One NaN in x makes its whole sample NaN (mean, then relu(NaN) = NaN,
then the gate), as in the plain block; the other samples stay finite."""
import itertools

import pytest
import torch

from _reference import (DEVICES, assert_layout, dtype_id, fused, make_weights, make_x,
                        reference_block, seed_of)

ACTS_GATES = list(itertools.product(["relu", "silu", "hardswish"], ["sigmoid", "hardsigmoid"]))
# What each sample of x carries at one element; the last sample is clean.
SPECIALS = [float("nan"), float("inf"), float("-inf"), None]


def _masks(t):
    t = t.detach().double().cpu()
    return {"nan": torch.isnan(t), "+inf": torch.isposinf(t), "-inf": torch.isneginf(t)}


def _assert_same_masks(got, ref, what):
    for kind, mask in _masks(ref).items():
        other = _masks(got)[kind]
        if not torch.equal(other, mask):
            first = tuple((other != mask).nonzero()[0].tolist())
            raise AssertionError(
                f"{what}: the {kind} mask differs from the plain block's at "
                f"{int((other != mask).sum())} element(s), first at {first}: fused "
                f"{got.detach()[first].item()}, plain {ref[first].item()}")


def _inputs(dtype, device, layout, act, gate, where):
    n, c, h, w, hidden = len(SPECIALS), 8, 3, 5, 2
    seed = seed_of("nan", dtype, layout, act, gate, where)
    x = make_x((n, c, h, w), dtype, "cpu", layout, seed=seed)
    for i, v in enumerate(SPECIALS):
        if v is not None:
            x[i, (where + i) % c, where % h, (2 * where) % w] = v
    gen = torch.Generator().manual_seed(seed + 7)
    dy = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(dtype)
    if layout == "channels_last":
        dy = dy.contiguous(memory_format=torch.channels_last)
    wts = make_weights(c, hidden, True, dtype, "cpu", seed=seed)
    return x.to(device), dy.to(device), {k: v.to(device) for k, v in wts.items()}


@pytest.mark.parametrize("where", [0, 3])
@pytest.mark.parametrize("act_gate", ACTS_GATES, ids=lambda v: "-".join(v))
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16],
                         ids=dtype_id)
@pytest.mark.parametrize("device", DEVICES)
def test_nan_inf_masks_follow_plain_block(device, dtype, layout, act_gate, where):
    act, gate = act_gate
    variant = (True, act, gate)
    x, dy, wts = _inputs(dtype, device, layout, act, gate, where)

    ref_block = reference_block(x.shape[1], x.shape[1] // wts["w1"].shape[0], variant, wts)
    x64 = x.detach().double().cpu().requires_grad_(True)
    y_ref = ref_block(x64)
    y_ref.backward(dy.double().cpu())

    xf = x.detach().requires_grad_(True)
    leaves = {k: v.detach().requires_grad_(True) for k, v in wts.items()}
    y = fused(xf, leaves, variant)
    y.backward(dy)
    assert_layout(y, layout, "y")

    _assert_same_masks(y, y_ref, "y")
    _assert_same_masks(xf.grad, x64.grad, "dx")
    # The statement users rely on: a NaN in x makes its sample's y all NaN with relu
    # (relu(NaN) = NaN), and the clean last sample stays finite.
    if act == "relu":
        assert torch.isnan(y[0]).all(), "one NaN in x must make its whole sample NaN"
    assert torch.isfinite(y[-1]).all() and torch.isfinite(xf.grad[-1]).all()


@pytest.mark.parametrize("device", DEVICES)
def test_nan_in_weights_follows_plain_block(device):
    """A NaN in w2 reaches only its channel's gate; one in w1 every channel."""
    variant = (True, "relu", "sigmoid")
    x = make_x((2, 8, 3, 3), torch.float32, device, seed=5)
    for name, index in (("w1", (1, 2)), ("w2", (3, 0))):
        wts = make_weights(8, 2, True, torch.float32, device, seed=5)
        wts[name][index] = float("nan")
        ref = reference_block(8, 4, variant, wts)(x.double().cpu())
        _assert_same_masks(fused(x, wts, variant), ref, f"y with a NaN in {name}")
