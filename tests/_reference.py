"""Shared helpers for the se_fused tests: the float64 oracle, ULP distances,
seeded inputs in every layout, the device list, and asserts that say where
and how far off a failure is."""
import itertools
import zlib

import pytest
import torch

import se_fused
from se_fused import SEBlock

# ---------------------------------------------------------------------------
# devices, dtypes, variants
# ---------------------------------------------------------------------------
CUDA_OK = torch.cuda.is_available() and se_fused.has_cuda_kernels()
requires_cuda = pytest.mark.skipif(
    not CUDA_OK, reason="needs a CUDA device and a se_fused build with CUDA kernels")

DEVICES = ["cpu", pytest.param("cuda", marks=requires_cuda)]
LOW_DTYPES = [torch.float32, torch.bfloat16, torch.float16]
ALL_DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]
LAYOUTS = ["nchw", "channels_last"]
# Layouts that are neither dense NCHW nor dense NHWC.
STRIDED_LAYOUTS = ["sliced_h", "sliced_c", "cl_sliced_w", "permuted"]

# (bias, activation, gate)
VARIANTS = list(itertools.product([False, True], ["relu", "silu"], ["sigmoid", "hardsigmoid"]))
# VARIANTS plus the hard-swish activation (fbnetv3's SE), for the tests that sweep
# every variant once.
ALL_VARIANTS = VARIANTS + [(True, "hardswish", "sigmoid"), (False, "hardswish", "hardsigmoid")]


def variant_id(v):
    bias, act, gate = v
    return f"{'bias' if bias else 'nobias'}-{act}-{gate}"


def dtype_id(d):
    return str(d).replace("torch.", "")


# Mantissa precision p (implicit bit included) and the exponent of the
# smallest subnormal spacing, per dtype.
PRECISION = {torch.float64: 53, torch.float32: 24, torch.bfloat16: 8, torch.float16: 11}
MIN_SPACING_EXP = {torch.float64: -1074, torch.float32: -149, torch.bfloat16: -133,
                   torch.float16: -24}


def seed_of(*parts) -> int:
    """A stable seed from the test's parameters (hash() is salted per process)."""
    return zlib.crc32(repr(parts).encode()) & 0x7FFFFFFF


# ---------------------------------------------------------------------------
# ULPs
# ---------------------------------------------------------------------------
def ulp(v: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """One unit in the last place of `dtype` at the float64 values v: for
    |v| in [2^e, 2^(e+1)) it is 2^(e - p + 1), floored at the dtype's smallest
    subnormal spacing."""
    v = v.double()
    p = PRECISION[dtype]
    _, exp = torch.frexp(v)  # |v| = m * 2^exp with m in [0.5, 1): e = exp - 1
    spacing = torch.ldexp(torch.ones_like(v), (exp - p).to(torch.int64))
    floor = torch.full_like(v, 2.0 ** MIN_SPACING_EXP[dtype])
    spacing = torch.where(v == 0, floor, torch.maximum(spacing, floor))
    return spacing


def ulp_distance(y: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """|y - ref| in ULPs of `dtype` at ref (both as float64)."""
    ref = ref.double()
    return (y.double() - ref).abs() / ulp(ref, dtype)


# ---------------------------------------------------------------------------
# asserts that say where and how far off
# ---------------------------------------------------------------------------
def _where(flat_index: int, shape) -> tuple:
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat_index), tuple(shape)))


def assert_max_ulp(y, ref, dtype, max_ulp=1.0, what="y", x=None):
    """Every element of y within max_ulp ULPs (of dtype) of the float64 ref."""
    assert y.shape == ref.shape, f"{what}: shape {tuple(y.shape)} != reference {tuple(ref.shape)}"
    y64, ref64 = y.detach().double().cpu(), ref.detach().double().cpu()
    assert torch.isfinite(ref64).all(), f"{what}: the reference itself is not finite"
    if y64.numel() == 0:
        return 0.0
    bad_finite = ~torch.isfinite(y64)
    if bad_finite.any():
        idx = _where(int(bad_finite.reshape(-1).nonzero()[0]), y64.shape)
        raise AssertionError(f"{what}: non-finite value {y64[idx].item()} at {idx} "
                             f"(reference {ref64[idx].item()!r})")
    dist = ulp_distance(y64, ref64, dtype)
    worst = int(dist.reshape(-1).argmax())
    idx = _where(worst, y64.shape)
    worst_ulp = dist[idx].item()
    n_over = int((dist > max_ulp).sum())
    msg = (f"{what} [{dtype_id(dtype)}, shape {tuple(y.shape)}]: max ULP distance "
           f"{worst_ulp:.3f} > {max_ulp} at index {idx}: got {y64[idx].item()!r}, "
           f"reference {ref64[idx].item()!r} (ulp there {ulp(ref64[idx], dtype).item():.3g}); "
           f"{n_over} of {dist.numel()} elements over")
    if x is not None:
        msg += f"; x there = {x.detach().double().cpu()[idx].item()!r}"
    assert worst_ulp <= max_ulp, msg
    return worst_ulp


def assert_close(actual, expected, rtol, atol, what="value"):
    """|actual - expected| <= atol + rtol * |expected| elementwise, in float64."""
    assert actual.shape == expected.shape, (
        f"{what}: shape {tuple(actual.shape)} != expected {tuple(expected.shape)}")
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    if a.numel() == 0:
        return
    err = (a - e).abs()
    over = err - (atol + rtol * e.abs())
    over = torch.where(torch.isnan(over), torch.full_like(over, float("inf")), over)
    worst = int(over.reshape(-1).argmax())
    idx = _where(worst, a.shape)
    assert over[idx].item() <= 0, (
        f"{what} [shape {tuple(a.shape)}]: at {idx} got {a[idx].item()!r}, expected "
        f"{e[idx].item()!r}: |diff| {err[idx].item():.3g} > atol {atol:.3g} + rtol {rtol:.3g} "
        f"* |expected|; max |diff| overall {err.max().item():.3g} "
        f"(max |expected| {e.abs().max().item():.3g})")


def _bits(t: torch.Tensor) -> torch.Tensor:
    int_type = {8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.int8}[t.element_size()]
    return t.detach().contiguous().view(int_type)


def assert_bitwise_equal(a, b, what="value"):
    """Identical bits (NaNs included), reporting the first differing element."""
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    assert a.dtype == b.dtype, f"{what}: dtype {a.dtype} != {b.dtype}"
    ba, bb = _bits(a.cpu()), _bits(b.cpu())
    diff = ba != bb
    if diff.any():
        flat = int(diff.reshape(-1).nonzero()[0])
        idx = _where(flat, a.shape)
        av, bv = a.detach().cpu()[idx].item(), b.detach().cpu()[idx].item()
        raise AssertionError(
            f"{what}: {int(diff.sum())} of {diff.numel()} elements differ bitwise; first at "
            f"{idx}: {av!r} vs {bv!r} (diff {abs(av - bv):.3g})")


def assert_layout(t: torch.Tensor, layout: str, what="tensor"):
    fmt = torch.channels_last if layout in ("channels_last", "cl_sliced_w") else torch.contiguous_format
    assert t.is_contiguous(memory_format=fmt), (
        f"{what}: expected dense {fmt} for a {layout} input, got shape {tuple(t.shape)} "
        f"strides {t.stride()}")


# ---------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------
def _randn(shape, gen):
    return torch.randn(shape, generator=gen, dtype=torch.float64)


def make_x(shape, dtype, device="cpu", layout="nchw", seed=0, scale=1.0, offset=0.0):
    """x of `shape` [N, C, H, W] in `layout`, values exactly representable in dtype
    (drawn in float64 on the CPU with a seeded generator, then cast). The
    strided layouts are views of a dense parent on the target device."""
    n, c, h, w = shape
    gen = torch.Generator().manual_seed(seed)
    parent_shape = {
        "nchw": (n, c, h, w),
        "channels_last": (n, c, h, w),
        "sliced_h": (n, c, 2 * h, w),       # NCHW, every other row
        "sliced_c": (n, c + 3, h, w),       # a channel window of a wider NCHW tensor
        "cl_sliced_w": (n, c, h, 2 * w),    # channels_last, every other column
        "permuted": (h, n, w, c),           # dense, but [H, N, W, C] in memory
    }[layout]
    parent = (_randn(parent_shape, gen) * scale + offset).to(dtype)
    if layout in ("channels_last", "cl_sliced_w"):
        parent = parent.contiguous(memory_format=torch.channels_last)
    parent = parent.to(device)
    x = {
        "nchw": lambda p: p,
        "channels_last": lambda p: p,
        "sliced_h": lambda p: p[:, :, ::2],
        "sliced_c": lambda p: p[:, 1:c + 1],
        "cl_sliced_w": lambda p: p[..., ::2],
        "permuted": lambda p: p.permute(1, 3, 0, 2),
    }[layout](parent)
    assert tuple(x.shape) == tuple(shape), (layout, tuple(x.shape), shape)
    return x


def make_weights(channels, hidden, bias, dtype, device="cpu", seed=0, scale=1.5):
    """w1 [hidden, C], w2 [C, hidden], b1 [hidden] or None, b2 [C] or None.
    Spread a little wider than nn.Linear's default init so that the gate
    takes values across its range."""
    gen = torch.Generator().manual_seed(seed + 1)
    w1 = _randn((hidden, channels), gen) * (scale / channels ** 0.5)
    w2 = _randn((channels, hidden), gen) * (scale / hidden ** 0.5)
    b1 = _randn((hidden,), gen) * 0.5 if bias else None
    b2 = _randn((channels,), gen) * 0.5 if bias else None
    cast = lambda t: None if t is None else t.to(dtype).to(device)  # noqa: E731
    return dict(w1=cast(w1), w2=cast(w2), b1=cast(b1), b2=cast(b2))


def load_weights(block, wts):
    with torch.no_grad():
        block.excitation[0].weight.copy_(wts["w1"])
        block.excitation[2].weight.copy_(wts["w2"])
        if wts["b1"] is not None:
            block.excitation[0].bias.copy_(wts["b1"])
            block.excitation[2].bias.copy_(wts["b2"])
    return block


def make_block(cls, channels, r, variant, wts=None, dtype=torch.float32, device="cpu"):
    """cls (SEBlock or FusedSEBlock) with the given variant, dtype and device,
    holding `wts` when given."""
    bias, act, gate = variant
    block = cls(channels, r, bias=bias, activation=act, gate=gate).to(device=device, dtype=dtype)
    if wts is not None:
        load_weights(block, wts)
    return block


def block_weights(block):
    fc1, fc2 = block.excitation[0], block.excitation[2]
    return dict(w1=fc1.weight, w2=fc2.weight, b1=fc1.bias, b2=fc2.bias)


class ExactHardsigmoid(torch.nn.Module):
    """relu6(z + 3) / 6 with an exact float64 gradient. nn.Hardsigmoid's backward
    multiplies by a float32 1/6 even for float64 tensors (torch 2.x:
    hardsigmoid_backward(0.5) = 0.1666666716...), a 3e-8 relative error that
    would make the oracle, not the kernel, the inaccurate one."""

    def forward(self, z):
        return torch.clamp(z + 3.0, 0.0, 6.0) / 6.0


def reference_block(channels, r, variant, wts):
    """SEBlock in float64 on the CPU holding wts (cast to float64), with the
    hardsigmoid gate's gradient made exact (see ExactHardsigmoid)."""
    w64 = {k: None if v is None else v.detach().double().cpu() for k, v in wts.items()}
    block = make_block(SEBlock, channels, r, variant, w64, torch.float64, "cpu")
    if variant[2] == "hardsigmoid":
        block.excitation[3] = ExactHardsigmoid()
    return block


def reference_forward(x, wts, variant):
    """The oracle: SEBlock in float64 on x.double() with the weights in float64,
    on the CPU."""
    c, hidden = x.shape[1], wts["w1"].shape[0]
    block = reference_block(c, c // hidden, variant, wts)
    assert block.excitation[0].weight.shape[0] == hidden
    with torch.no_grad():
        return block(x.detach().double().cpu())


def fused(x, wts, variant):
    bias, act, gate = variant
    return se_fused.squeeze_excitation(x, wts["w1"], wts["w2"], wts["b1"], wts["b2"],
                                       activation=act, gate=gate)
