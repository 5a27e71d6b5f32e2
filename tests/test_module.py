"""FusedSEBlock as a drop-in for SEBlock: parameters, state_dict, results,
construction errors, dtype casts, autocast."""
import pytest
import torch

from se_fused import FusedSEBlock, SEBlock
from _reference import (DEVICES, VARIANTS, assert_close, assert_max_ulp, block_weights,
                        dtype_id, fused, make_block, make_weights, make_x, reference_forward,
                        seed_of, variant_id)


@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("channels,r", [(64, 16), (17, 4), (16, 16), (1, 1), (100, 8)])
def test_state_dict_keys_and_shapes(channels, r, bias):
    plain = SEBlock(channels, r, bias=bias)
    fused_block = FusedSEBlock(channels, r, bias=bias)
    sd_p, sd_f = plain.state_dict(), fused_block.state_dict()
    assert list(sd_p) == list(sd_f)
    hidden = channels // r
    expected = {"excitation.0.weight": (hidden, channels), "excitation.2.weight": (channels, hidden)}
    if bias:
        expected.update({"excitation.0.bias": (hidden,), "excitation.2.bias": (channels,)})
    assert {k: tuple(v.shape) for k, v in sd_f.items()} == expected
    assert [n for n, _ in plain.named_parameters()] == [n for n, _ in fused_block.named_parameters()]


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
@pytest.mark.parametrize("device", DEVICES)
def test_load_state_dict_both_ways(device, variant):
    bias, act, gate = variant
    c, r = 24, 4
    torch.manual_seed(seed_of("sd", variant))
    kwargs = dict(bias=bias, activation=act, gate=gate)
    plain = SEBlock(c, r, **kwargs).double().to(device)
    fused_block = FusedSEBlock(c, r, **kwargs).double().to(device)
    x = make_x((3, c, 5, 6), torch.float64, device, seed=seed_of("sdx", variant))

    # SEBlock -> FusedSEBlock
    fused_block.load_state_dict(plain.state_dict(), strict=True)
    with torch.no_grad():
        assert_close(fused_block(x), plain(x), rtol=1e-12, atol=1e-300, what="fused <- plain")
    # FusedSEBlock -> SEBlock (fresh weights on the fused side)
    torch.manual_seed(seed_of("sd2", variant))
    fused2 = FusedSEBlock(c, r, **kwargs).double().to(device)
    plain.load_state_dict(fused2.state_dict(), strict=True)
    with torch.no_grad():
        assert_close(plain(x), fused2(x), rtol=1e-12, atol=1e-300, what="plain <- fused")


def test_state_dict_bias_mismatch_is_an_error():
    with pytest.raises(RuntimeError, match="bias"):
        FusedSEBlock(16, 4, bias=False).load_state_dict(SEBlock(16, 4, bias=True).state_dict())
    with pytest.raises(RuntimeError, match="bias"):
        FusedSEBlock(16, 4, bias=True).load_state_dict(SEBlock(16, 4, bias=False).state_dict())


@pytest.mark.parametrize("cls", [SEBlock, FusedSEBlock], ids=lambda c: c.__name__)
def test_zero_hidden_is_a_value_error(cls):
    with pytest.raises(ValueError, match=r"channels // r = 8 // 16 = 0"):
        cls(8, 16)
    with pytest.raises(ValueError, match="channels must be >= 1"):
        cls(0, 1)
    with pytest.raises(ValueError, match="reduction r must be >= 1"):
        cls(8, 0)


@pytest.mark.parametrize("cls", [SEBlock, FusedSEBlock], ids=lambda c: c.__name__)
def test_bad_options_are_value_errors(cls):
    with pytest.raises(ValueError, match="activation"):
        cls(16, 4, activation="gelu")
    with pytest.raises(ValueError, match="gate"):
        cls(16, 4, gate="tanh")


def test_repr():
    text = repr(FusedSEBlock(64, 16, bias=True, activation="silu", gate="hardsigmoid"))
    assert text.startswith("FusedSEBlock(")
    for part in ("AdaptiveAvgPool2d", "Linear(in_features=64, out_features=4, bias=True)",
                 "SiLU", "Linear(in_features=4, out_features=64, bias=True)", "Hardsigmoid"):
        assert part in text, f"{part!r} not in {text}"


def test_hidden_one_and_defaults():
    block = FusedSEBlock(16)  # r = 16 by default: hidden 1
    assert block.excitation[0].weight.shape == (1, 16)
    assert block.excitation[0].bias is None and block.excitation[2].bias is None
    assert (block.activation, block.gate) == ("relu", "sigmoid")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=dtype_id)
@pytest.mark.parametrize("device", DEVICES)
def test_module_cast_and_backward(device, dtype):
    """.to(dtype) works; parameters get gradients of their own dtype and shape."""
    variant = (True, "silu", "sigmoid")
    c, r = 32, 8
    wts = make_weights(c, c // r, True, dtype, device, seed=11)
    block = make_block(FusedSEBlock, c, r, variant, wts, dtype, device)
    x = make_x((2, c, 6, 6), dtype, device, seed=12)
    y = block(x)
    assert_max_ulp(y, reference_forward(x, wts, variant), dtype, 1.0, what="module y")
    y.float().square().sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None, name
        assert p.grad.dtype == dtype and p.grad.shape == p.shape, name
        assert torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("device", DEVICES)
def test_module_in_eval_and_no_grad(device):
    block = FusedSEBlock(16, 4).to(device).eval()
    x = make_x((2, 16, 4, 4), torch.float32, device, seed=13)
    with torch.inference_mode():
        y = block(x)
    ref = reference_forward(x, block_weights(block), (False, "relu", "sigmoid"))
    assert_max_ulp(y, ref, torch.float32, 1.0)


@pytest.mark.parametrize("x_dtype", [torch.bfloat16, torch.float32], ids=dtype_id)
@pytest.mark.parametrize("device", DEVICES)
def test_autocast_casts_the_weights(device, x_dtype):
    """Under torch.autocast the float32 weights are cast to x's dtype."""
    variant = (True, "relu", "sigmoid")
    c, r = 32, 4
    wts32 = make_weights(c, c // r, True, torch.float32, device, seed=14)
    block = make_block(FusedSEBlock, c, r, variant, wts32, torch.float32, device)
    x = make_x((2, c, 5, 5), x_dtype, device, seed=15).requires_grad_(True)
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        y = block(x)
    assert y.dtype == x_dtype
    wts_cast = {k: v.to(x_dtype) for k, v in wts32.items()}
    assert torch.equal(y, fused(x.detach(), wts_cast, variant))
    y.float().sum().backward()
    assert block.excitation[0].weight.grad.dtype == torch.float32
    assert x.grad.dtype == x_dtype
