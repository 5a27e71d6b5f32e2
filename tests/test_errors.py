"""Bad input is refused with a message that names the tensor; NaN/Inf stay in
their sample; an empty batch works forward and backward."""
import pytest
import torch

import se_fused
from se_fused import FusedSEBlock
from _reference import (DEVICES, LAYOUTS, assert_bitwise_equal, dtype_id, fused, make_weights,
                        make_x, requires_cuda, seed_of)

OPS = torch.ops.se_fused
SE = se_fused.squeeze_excitation


def _args(device="cpu", dtype=torch.float32, c=8, hidden=2, bias=True):
    x = make_x((2, c, 3, 4), dtype, device, seed=1)
    w = make_weights(c, hidden, bias, dtype, device, seed=1)
    return x, w


# ---------------------------------------------------------------------------
# shapes, dtypes, options
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_rank_outside_3_to_5(device):
    x, w = _args(device)
    for bad in (x[0, :, 0], x.reshape(2, 8, 3, 2, 1, 2), x.flatten()):
        with pytest.raises(ValueError, match=r"x must be \[N, C, L\], \[N, C, H, W\] or"):
            SE(bad, w["w1"], w["w2"])


@pytest.mark.parametrize("device", DEVICES)
def test_wrong_shapes_name_the_tensor(device):
    x, w = _args(device)
    w1, w2, b1, b2 = w["w1"], w["w2"], w["b1"], w["b2"]
    x7 = make_x((2, 7, 3, 4), torch.float32, device, seed=2)  # channel count off by one
    with pytest.raises(ValueError, match=r"x has 7 channels .* w1 has shape"):
        SE(x7, w1, w2)
    with pytest.raises(ValueError, match="w1"):
        SE(x, w1.t().contiguous(), w2)  # [C, hidden] instead of [hidden, C]
    with pytest.raises(ValueError, match="w1"):
        SE(x, w1.reshape(-1), w2)  # 1-D
    with pytest.raises(ValueError, match="w2"):
        SE(x, w1, w2.t().contiguous())
    with pytest.raises(ValueError, match="w2"):
        SE(x, w1, w2[:, :1])  # hidden mismatch
    with pytest.raises(ValueError, match="b1"):
        SE(x, w1, w2, b1[:1], b2)
    with pytest.raises(ValueError, match="b2"):
        SE(x, w1, w2, b1, b2[:-1])
    with pytest.raises(ValueError, match="hidden"):
        SE(x, w1[:0], w2[:, :0])  # hidden size 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_empty_map_under_inference_mode_is_the_plain_blocks(device, layout):
    # inference_mode skips the autograd layer (which sends an empty map to the plain
    # computation, tests/test_deploy.py): the backend's y-only kernel does it itself
    x = torch.randn(2, 8, 0, 4, device=device)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    w = make_weights(8, 2, False, torch.float32, device)
    plain = x * torch.sigmoid(torch.randn(2, 8, 1, 1, device=device))
    with torch.inference_mode():
        y = SE(x, w["w1"], w["w2"])
    assert y.shape == plain.shape and y.stride() == plain.stride() and y.dtype == x.dtype


@pytest.mark.parametrize("device", DEVICES)
def test_dtype_mismatch_is_a_type_error(device):
    x, w = _args(device)
    with pytest.raises(TypeError, match="w1"):
        SE(x, w["w1"].double(), w["w2"])
    with pytest.raises(TypeError, match="w2"):
        SE(x, w["w1"], w["w2"].half())
    with pytest.raises(TypeError, match="b1"):
        SE(x, w["w1"], w["w2"], w["b1"].double(), w["b2"])
    with pytest.raises(TypeError, match="b2"):
        SE(x, w["w1"], w["w2"], w["b1"], w["b2"].bfloat16())
    # A module left in float32 fed bfloat16 outside autocast.
    with pytest.raises(TypeError, match="w1"):
        FusedSEBlock(8, 4).to(device)(x.bfloat16())


@pytest.mark.parametrize("int_dtype", [torch.int32, torch.int64, torch.uint8, torch.bool],
                         ids=dtype_id)
def test_integer_x_is_a_type_error(int_dtype):
    x = torch.ones(2, 8, 3, 3, dtype=int_dtype)
    w1, w2 = torch.ones(2, 8, dtype=int_dtype), torch.ones(8, 2, dtype=int_dtype)
    with pytest.raises(TypeError, match="x must be float32, float64, float16 or bfloat16"):
        SE(x, w1, w2)


@pytest.mark.parametrize("device", DEVICES)
def test_bad_option_strings(device):
    x, w = _args(device)
    with pytest.raises(ValueError, match="activation"):
        SE(x, w["w1"], w["w2"], activation="gelu")
    with pytest.raises(ValueError, match="gate"):
        SE(x, w["w1"], w["w2"], gate="tanh")
    with pytest.raises(ValueError, match="activation"):
        SE(x, w["w1"], w["w2"], activation="ReLU")  # case matters


@requires_cuda
def test_mixed_devices_are_a_runtime_error():
    x, w = _args("cuda")
    with pytest.raises(RuntimeError, match="w1 is on cpu"):
        SE(x, w["w1"].cpu(), w["w2"])
    with pytest.raises(RuntimeError, match="w2 is on cpu"):
        SE(x, w["w1"], w["w2"].cpu())
    with pytest.raises(RuntimeError, match="b2 is on cpu"):
        SE(x, w["w1"], w["w2"], w["b1"], w["b2"].cpu())
    with pytest.raises(RuntimeError, match="w1 is on cuda"):
        SE(x.cpu(), w["w1"], w["w2"].cpu())


def test_backward_op_checks():
    x, w = _args()
    y, pooled, z1, z2 = OPS._squeeze_excite_forward(x, w["w1"], w["b1"], w["w2"], w["b2"], "relu", "sigmoid")
    dy = torch.randn_like(y)
    rest = (w["w1"], w["w2"], "relu", "sigmoid", True, True)
    OPS._squeeze_excite_backward(dy, x, pooled, z1, z2, *rest)  # the good call
    with pytest.raises(ValueError, match="dy"):
        OPS._squeeze_excite_backward(dy[:1], x, pooled, z1, z2, *rest)
    with pytest.raises(TypeError, match="dy"):
        OPS._squeeze_excite_backward(dy.double(), x, pooled, z1, z2, *rest)
    with pytest.raises(ValueError, match="pooled"):
        OPS._squeeze_excite_backward(dy, x, pooled[:1], z1, z2, *rest)
    with pytest.raises(TypeError, match="pooled"):
        OPS._squeeze_excite_backward(dy, x, pooled.float(), z1, z2, *rest)
    with pytest.raises(ValueError, match=r"z1 must have shape \[2, 2\]"):
        OPS._squeeze_excite_backward(dy, x, pooled, z1[:, :1], z2, *rest)
    with pytest.raises(TypeError, match="z1 must have dtype"):
        OPS._squeeze_excite_backward(dy, x, pooled, z1.float(), z2, *rest)
    with pytest.raises(ValueError, match=r"z2 must have shape \[2, 8\]"):
        OPS._squeeze_excite_backward(dy, x, pooled, z1, z2.T.contiguous(), *rest)
    with pytest.raises(TypeError, match="z2 must have dtype"):
        OPS._squeeze_excite_backward(dy, x, pooled, z1, z2.float(), *rest)


# ---------------------------------------------------------------------------
# NaN / Inf stay in their sample
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=dtype_id)
@pytest.mark.parametrize("device", DEVICES)
def test_nonfinite_stays_in_its_sample(device, dtype, layout, bad):
    n, c, h, w, hidden = 4, 12, 5, 5, 3
    seed = seed_of("nonfinite", dtype_id(dtype), layout)
    x = make_x((n, c, h, w), dtype, device, layout, seed=seed)
    wts = make_weights(c, hidden, True, dtype, device, seed=seed)
    variant = (True, "silu", "sigmoid")
    dy = torch.randn_like(x)

    def run(inp):
        inp = inp.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
        y = fused(inp, wts, variant)
        y.backward(dy)
        return y.detach(), inp.grad

    y_clean, dx_clean = run(x)
    x_bad = x.clone(memory_format=torch.preserve_format)
    x_bad[2, 5, 1, 3] = bad
    y_bad, dx_bad = run(x_bad)
    assert not torch.isfinite(y_bad[2, 5, 1, 3]), "the non-finite element itself must stay so"
    for i in (0, 1, 3):
        assert torch.isfinite(y_bad[i]).all(), f"sample {i} of y became non-finite"
        assert_bitwise_equal(y_bad[i], y_clean[i], what=f"y sample {i}")
        assert torch.isfinite(dx_bad[i]).all(), f"sample {i} of dx became non-finite"
        assert_bitwise_equal(dx_bad[i], dx_clean[i], what=f"dx sample {i}")


# ---------------------------------------------------------------------------
# empty batch
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=dtype_id)
@pytest.mark.parametrize("device", DEVICES)
def test_empty_batch(device, dtype, layout, bias):
    c, hidden = 16, 4
    x = torch.empty(0, c, 7, 5, dtype=dtype, device=device)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    block = FusedSEBlock(c, c // hidden, bias=bias).to(device=device, dtype=dtype)
    y = block(x)
    assert y.shape == (0, c, 7, 5) and y.dtype == dtype and y.device == x.device
    y.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    for name, p in block.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert p.grad.shape == p.shape
        assert torch.all(p.grad == 0), f"{name}: gradient over an empty batch must be 0"
    _, pooled, z1, z2 = OPS._squeeze_excite_forward(
        x.detach(), block.excitation[0].weight, block.excitation[0].bias,
        block.excitation[2].weight, block.excitation[2].bias, "relu", "sigmoid")
    assert pooled.shape == (0, c) and z1.shape == (0, hidden) and z2.shape == (0, c)
