"""Converted SE modules under torch.autocast (CPU bfloat16; CUDA bfloat16 and float16):
they return the dtype the original module returns, with at least its accuracy."""
import copy

import pytest
import torch
from torch import nn

import se_fused
from se_fused import FusedSEBlock, SEBlock
from _reference import requires_cuda

torchvision = pytest.importorskip("torchvision")
from torchvision.ops import SqueezeExcitation  # noqa: E402


def _torchvision_se():
    return SqueezeExcitation(64, 16, scale_activation=nn.Hardsigmoid)


def _timm_se_module():
    from_ = pytest.importorskip("timm.layers.squeeze_excite")
    return from_.SEModule(64)


def _timm_squeeze_excite():
    from_ = pytest.importorskip("timm.models._efficientnet_blocks")
    return from_.SqueezeExcite(64, act_layer=nn.SiLU)


SOURCES = {
    "torchvision": _torchvision_se,
    "timm-SEModule": _timm_se_module,
    "timm-SqueezeExcite": _timm_squeeze_excite,
    "SEBlock": lambda: SEBlock(64, 4, bias=True, activation="silu"),
}
# (device, autocast dtype)
AUTOCASTS = [
    ("cpu", torch.bfloat16),
    pytest.param("cuda", torch.bfloat16, marks=requires_cuda),
    pytest.param("cuda", torch.float16, marks=requires_cuda),
]


def _max_rel_error(t, ref):
    return ((t.double().cpu() - ref).abs().max() / ref.abs().max()).item()


@pytest.mark.parametrize("x_low", [False, True], ids=["x-float32", "x-autocast-dtype"])
@pytest.mark.parametrize("device,dtype", AUTOCASTS, ids=lambda v: str(v).replace("torch.", ""))
@pytest.mark.parametrize("source", list(SOURCES))
def test_module_dtype_and_accuracy(source, device, dtype, x_low):
    """x reaches an SE module in float32 (a float32 branch) or in the autocast dtype
    (after an autocast convolution): the original returns float32 for float32 x (the
    16-bit gate times x promotes) and the 16-bit dtype for 16-bit x. The fused module
    returns the same dtypes and is at least as accurate against float64 (float32 weights),
    in the output and, for float32 x, in every gradient."""
    for seed in range(3):
        torch.manual_seed(seed)
        original = SOURCES[source]()
        with torch.no_grad():  # spread the weights so that the gate covers its range
            for p in original.parameters():
                p.mul_(3.0)
        reference = copy.deepcopy(original).double()
        original = original.to(device)
        fused = FusedSEBlock.from_module(copy.deepcopy(original))
        x_dtype = dtype if x_low else torch.float32
        x0 = (torch.randn(4, 64, 9, 9) * 2).to(x_dtype)
        dy = torch.randn(4, 64, 9, 9).to(x_dtype)

        results = {}
        for tag, module in (("original", original), ("fused", fused), ("reference", reference)):
            exact = tag == "reference"
            x = x0.to(torch.float64 if exact else device).requires_grad_(True)
            with torch.autocast(device, dtype=dtype, enabled=not exact):
                y = module(x)
            grads = torch.autograd.grad(y, [x, *module.parameters()], dy.to(y))
            results[tag] = [y, *grads]

        for i, (a, b) in enumerate(zip(results["fused"], results["original"])):
            assert a.dtype == b.dtype, f"seed {seed}, result {i}: {a.dtype} != {b.dtype}"
        ref = [t.detach().double() for t in results["reference"]]
        err_fused = [_max_rel_error(t, r) for t, r in zip(results["fused"], ref)]
        err_orig = [_max_rel_error(t, r) for t, r in zip(results["original"], ref)]
        what = f"seed {seed}: fused errors {err_fused}, original's {err_orig} (y, dx, dparams)"
        assert err_fused[0] <= err_orig[0], what
        if not x_low:
            assert all(f <= o for f, o in zip(err_fused, err_orig)), what
        else:
            # With 16-bit x both compute from 16-bit weights, and a hidden activation
            # within their rounding of 0 can fall on either side of the ReLU: the weight
            # gradients are then only 16-bit-weight accurate, in either module.
            assert all(f <= max(2 * o, 2.0 ** -3) for f, o in zip(err_fused, err_orig)), what


@pytest.mark.parametrize("device,dtype", AUTOCASTS, ids=lambda v: str(v).replace("torch.", ""))
def test_converted_model_under_autocast(device, dtype):
    """mobilenet_v3_small, channels_last, under autocast: same output dtype as the
    original, close to its output; a training step gives float32 gradients."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny input: threads only add barrier waits
    try:
        torch.manual_seed(0)
        original = torchvision.models.mobilenet_v3_small(weights=None).to(device)
        original = original.to(memory_format=torch.channels_last).eval()
        converted = se_fused.convert(copy.deepcopy(original))
        x = torch.randn(2, 3, 64, 64, device=device).to(memory_format=torch.channels_last)
        with torch.no_grad(), torch.autocast(device, dtype=dtype):
            y_orig, y_conv = original(x), converted(x)
        with torch.no_grad():
            y_exact = original(x)
        assert y_conv.dtype == y_orig.dtype
        # both are 16-bit networks: compare to the float32 output at the 16-bit scale
        scale = y_exact.abs().max().item()
        err_conv = (y_conv.float() - y_exact).abs().max().item() / scale
        err_orig = (y_orig.float() - y_exact).abs().max().item() / scale
        assert err_conv <= max(2 * err_orig, 2.0 ** -6), (err_conv, err_orig)

        converted.train()
        with torch.autocast(device, dtype=dtype):
            loss = converted(x).float().square().mean()
        loss.backward()
        for name, p in converted.named_parameters():
            assert p.grad is not None and p.grad.dtype == torch.float32, name
            assert torch.isfinite(p.grad).all(), name
    finally:
        torch.set_num_threads(threads)

