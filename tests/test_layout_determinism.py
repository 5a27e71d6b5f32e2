"""Memory layouts (NCHW, channels_last, strided views) and bitwise determinism:
run to run, batch invariance, thread-count invariance, the CPU digest."""
import os
import sys
import threading

import pytest
import torch

import se_fused

from _reference import (DEVICES, LAYOUTS, LOW_DTYPES, STRIDED_LAYOUTS, VARIANTS,
                        assert_bitwise_equal, assert_close, assert_layout, assert_max_ulp,
                        dtype_id, fused, make_weights, make_x, reference_block,
                        reference_forward, seed_of, variant_id)

OPS = torch.ops.se_fused


def _problem(shape, hidden, variant, dtype, device, layout, tag=""):
    seed = seed_of(tag, shape, hidden, variant, dtype_id(dtype), layout)
    x = make_x(shape, dtype, device, layout, seed=seed)
    wts = make_weights(shape[1], hidden, variant[0], dtype, device, seed=seed)
    gen = torch.Generator().manual_seed(seed + 7)
    dy = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype).to(device)
    return x, wts, dy


def _fwd_bwd(x, wts, variant, dy):
    """y, dx, dw1, dw2 (and db1, db2) through autograd."""
    leaves = {k: (None if v is None else v.detach().clone().requires_grad_(True))
              for k, v in wts.items()}
    xx = x.detach().clone(memory_format=torch.preserve_format) if x.is_contiguous(
        memory_format=torch.channels_last) or x.is_contiguous() else x.detach()
    xx.requires_grad_(True)
    y = fused(xx, leaves, variant)
    y.backward(dy)
    out = {"y": y.detach(), "dx": xx.grad}
    out.update({"d" + k: v.grad for k, v in leaves.items() if v is not None})
    return out


# ---------------------------------------------------------------------------
# layouts
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=dtype_id)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("device", DEVICES)
def test_output_and_dx_keep_the_layout(device, layout, dtype):
    variant = (True, "relu", "sigmoid")
    shape, hidden = (2, 24, 7, 5), 6
    x, wts, dy = _problem(shape, hidden, variant, dtype, device, layout)
    if layout == "channels_last":
        dy = dy.contiguous(memory_format=torch.channels_last)
    y, *state = OPS._squeeze_excite_forward(x, wts["w1"], wts["b1"], wts["w2"], wts["b2"], "relu", "sigmoid")
    assert_layout(y, layout, "y")
    dx, *_ = OPS._squeeze_excite_backward(dy, x, *state, wts["w1"], wts["w2"], "relu", "sigmoid",
                                          True, True)
    assert_layout(dx, layout, "dx from the backward op")
    got = _fwd_bwd(x, wts, variant, dy)
    assert_layout(got["y"], layout, "y through autograd")
    assert_layout(got["dx"], layout, "x.grad")


@pytest.mark.parametrize("dy_layout", LAYOUTS)
@pytest.mark.parametrize("device", DEVICES)
def test_dy_in_the_other_layout(device, dy_layout):
    """dy need not share x's layout (autograd hands whatever the next op made)."""
    variant = (False, "silu", "hardsigmoid")
    shape, hidden = (2, 16, 6, 6), 4
    x_layout = "channels_last" if dy_layout == "nchw" else "nchw"
    x, wts, dy = _problem(shape, hidden, variant, torch.float32, device, x_layout, "dylayout")
    dy = dy.contiguous(memory_format=torch.channels_last) if dy_layout == "channels_last" \
        else dy.contiguous()
    got = _fwd_bwd(x, wts, variant, dy)
    ref = _fwd_bwd(x.contiguous(), wts, variant, dy.contiguous())
    for k in got:
        assert_close(got[k], ref[k], rtol=1e-6, atol=1e-6, what=k)


def _dy_form(form, shape, dtype, device, fmt):
    """A dy of `shape` (any rank) that is not dense: a view of random values in memory
    format fmt, seeded by form."""
    n, c, *spatial = shape
    gen = torch.Generator().manual_seed(seed_of("dyform", form))

    def rand(*size):
        t = torch.randn(size, generator=gen, dtype=torch.float64).to(dtype).to(device)
        return t.contiguous(memory_format=fmt) if len(size) == len(shape) else t

    if form == "one value":  # the gradient of y.sum() (or y.mean()): all strides 0
        return rand(1).reshape(()).expand(shape)
    if form == "samples repeat":
        return rand(1, c, *spatial).expand(shape)
    if form == "positions repeat":
        return rand(n, c, *(1 for _ in spatial)).expand(shape)
    if form == "channel slice":
        return rand(n, 2 * c, *spatial)[:, :c]
    assert form == "column slice"
    return rand(n, c, *spatial[:-1], 2 * spatial[-1])[..., ::2]


@pytest.mark.parametrize("form", ["one value", "samples repeat", "positions repeat",
                                  "channel slice", "column slice"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=dtype_id)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("device", DEVICES)
def test_expanded_and_strided_dy(device, layout, dtype, form):
    """y.sum().backward() hands the backward a stride-0 (expanded) dy; other
    views (samples or positions repeated, a slice) are not dense either. The
    CPU backward reads such a dy in place where its rows are contiguous (or from
    one row, for one value) and copies it otherwise: every form gives the dense
    dy's gradients bit for bit."""
    variant = (True, "relu", "sigmoid")
    shape = (3, 16, 5, 7)
    x, wts, _ = _problem(shape, 4, variant, dtype, device, layout, "dy")
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    dy = _dy_form(form, shape, dtype, device, fmt)
    assert not dy.is_contiguous() and not dy.is_contiguous(memory_format=torch.channels_last)
    dense = _fwd_bwd(x, wts, variant, dy.contiguous(memory_format=fmt))
    got = _fwd_bwd(x, wts, variant, dy)
    for k in dense:
        assert_bitwise_equal(got[k], dense[k], what=f"{k} with dy as a {form}")


@pytest.mark.parametrize("shape,fmt", [((3, 16, 4, 5, 6), torch.channels_last_3d),
                                       ((3, 16, 4, 5, 6), torch.contiguous_format),
                                       ((3, 16, 37), torch.contiguous_format)],
                         ids=["ndhwc", "ncdhw", "nct"])
def test_expanded_dy_other_ranks(shape, fmt):
    """The same for 3-D and 1-D maps, whose rows span several dims (CPU)."""
    gen = torch.Generator().manual_seed(seed_of("dyrank", shape, str(fmt)))
    x = torch.randn(shape, generator=gen).contiguous(memory_format=fmt)
    m = se_fused.FusedSEBlock(16, 4)
    forms = {f: _dy_form(f, shape, torch.float32, "cpu", fmt)
             for f in ("one value", "samples repeat", "positions repeat", "channel slice")}

    def grads(dy):
        xx = x.clone(memory_format=torch.preserve_format).requires_grad_(True)
        m.zero_grad(set_to_none=True)
        m(xx).backward(dy)
        return [xx.grad] + [p.grad for p in m.parameters()]

    for form, dy in forms.items():
        for got, ref in zip(grads(dy), grads(dy.contiguous(memory_format=fmt))):
            assert_bitwise_equal(got, ref, what=f"a gradient with dy as a {form}")


@pytest.mark.parametrize("layout", STRIDED_LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=dtype_id)
@pytest.mark.parametrize("device", DEVICES)
def test_strided_inputs(device, dtype, layout):
    """Views that are neither dense NCHW nor dense NHWC give correct y and dx,
    and leave the input untouched."""
    variant = (True, "silu", "sigmoid")
    shape, hidden = (3, 20, 9, 7), 5
    x, wts, dy = _problem(shape, hidden, variant, dtype, device, layout, "strided")
    assert not x.is_contiguous() or layout == "permuted"
    x_before = x.clone()
    got = _fwd_bwd(x, wts, variant, dy)
    assert torch.equal(x, x_before), "the op wrote into its input"
    assert got["y"].is_contiguous() or got["y"].is_contiguous(memory_format=torch.channels_last)
    assert_max_ulp(got["y"], reference_forward(x, wts, variant), dtype, 1.0,
                   what=f"y for a {layout} x", x=x)
    # dx against the float64 oracle: a few ULPs of the largest |dx|.
    block = reference_block(shape[1], shape[1] // hidden, variant, wts)
    x64 = x.detach().double().cpu().requires_grad_(True)
    block(x64).backward(dy.double().cpu())
    tol = 4 * torch.finfo(dtype).eps * x64.grad.abs().max().item()
    assert_close(got["dx"], x64.grad, rtol=0, atol=tol, what=f"dx for a {layout} x")
    # and the same values as the dense copy, to rounding
    dense = _fwd_bwd(x.contiguous(), wts, variant, dy)
    for k in got:
        assert_close(got[k], dense[k], rtol=0, atol=2 * tol + 1e-30 if k == "dx" else
                     4 * torch.finfo(dtype).eps * dense[k].abs().max().item(), what=k)


@pytest.mark.parametrize("shape", [(3, 1, 6, 5), (3, 8, 1, 1)], ids=["C1", "map1x1"])
@pytest.mark.parametrize("device", DEVICES)
def test_ambiguous_channels_last(device, shape):
    """C == 1 or H * W == 1: NCHW and NHWC describe the same memory."""
    variant = (True, "relu", "sigmoid")
    x, wts, dy = _problem(shape, 1, variant, torch.float32, device, "channels_last", "ambig")
    got = _fwd_bwd(x, wts, variant, dy)
    assert_max_ulp(got["y"], reference_forward(x, wts, variant), torch.float32, 1.0)
    dense = _fwd_bwd(x.contiguous(), wts, variant, dy.contiguous())
    for k in got:
        assert_bitwise_equal(got[k], dense[k], what=k)


@pytest.mark.parametrize("dtype", LOW_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("device", DEVICES)
def test_layouts_agree(device, dtype):
    """NCHW and channels_last copies of one x: both within 1 ULP, and dx close."""
    variant = (False, "relu", "sigmoid")
    x, wts, dy = _problem((2, 100, 13, 11), 12, variant, dtype, device, "nchw", "agree")
    a = _fwd_bwd(x, wts, variant, dy)
    b = _fwd_bwd(x.contiguous(memory_format=torch.channels_last), wts, variant,
                 dy.contiguous(memory_format=torch.channels_last))
    ref = reference_forward(x, wts, variant)
    assert_max_ulp(a["y"], ref, dtype, 1.0, what="y NCHW")
    assert_max_ulp(b["y"], ref, dtype, 1.0, what="y channels_last")
    for k in a:
        tol = 2 * torch.finfo(dtype).eps * a[k].abs().max().item()
        assert_close(b[k], a[k], rtol=0, atol=tol, what=f"{k}: channels_last vs NCHW")


# ---------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------
DET_CASES = [((4, 64, 14, 14), 16), ((2, 17, 17, 13), 4), ((3, 2048, 7, 7), 128),
             ((1, 24, 56, 56), 6)]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", LOW_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape,hidden", DET_CASES, ids=lambda v: "x".join(map(str, v))
                         if isinstance(v, tuple) else f"h{v}")
@pytest.mark.parametrize("device", DEVICES)
def test_run_to_run_bitwise(device, shape, hidden, dtype, layout):
    variant = (True, "silu", "sigmoid")
    x, wts, dy = _problem(shape, hidden, variant, dtype, device, layout, "det")
    first = _fwd_bwd(x, wts, variant, dy)
    for run in range(2):
        again = _fwd_bwd(x, wts, variant, dy)
        for k in first:
            assert_bitwise_equal(again[k], first[k], what=f"{k}, run {run + 2} vs run 1")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", LOW_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("variant", [VARIANTS[0], VARIANTS[7]], ids=variant_id)
@pytest.mark.parametrize("device", DEVICES)
def test_batch_invariance(device, variant, dtype, layout):
    """Sample i gives the same bits alone, in the full batch and in a batch of
    another size (forward y, and dx, which depends only on its own sample)."""
    n, c, h, w, hidden = 7, 48, 9, 10, 12
    x, wts, dy = _problem((n, c, h, w), hidden, variant, dtype, device, layout, "batch")

    def in_layout(t):
        return t.contiguous(memory_format=torch.channels_last) if layout == "channels_last" \
            else t.contiguous()

    full = _fwd_bwd(x, wts, variant, dy)
    for i in (0, 3, n - 1):
        alone = _fwd_bwd(in_layout(x[i:i + 1]), wts, variant, dy[i:i + 1])
        assert_bitwise_equal(alone["y"], full["y"][i:i + 1], what=f"y of sample {i} alone vs in N={n}")
        assert_bitwise_equal(alone["dx"], full["dx"][i:i + 1],
                             what=f"dx of sample {i} alone vs in N={n}")
    lo, hi = 2, 5  # a batch of 3 whose sample 1 is sample 3 of the full batch
    part = _fwd_bwd(in_layout(x[lo:hi]), wts, variant, dy[lo:hi])
    assert_bitwise_equal(part["y"], full["y"][lo:hi], what=f"y of samples {lo}:{hi} in N=3 vs N={n}")
    assert_bitwise_equal(part["dx"], full["dx"][lo:hi], what=f"dx of samples {lo}:{hi}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=dtype_id)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(6, 64, 15, 15), (5, 96, 28, 28)], ids=["1tile", "5tiles"])
def test_thread_count_invariance_cpu(shape, layout, dtype):
    """CPU results do not depend on how many threads run them. 5tiles: five squeeze tiles per
    sample, so that 2 and 3 threads split some samples' tiles between threads (their partials
    are added after the parallel loop) and take others whole (added as the thread goes)."""
    variant = (True, "relu", "hardsigmoid")
    x, wts, dy = _problem(shape, 8, variant, dtype, "cpu", layout, "threads")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _fwd_bwd(x, wts, variant, dy)
        for threads in sorted({2, 3, max(2, before)}):
            torch.set_num_threads(threads)
            many = _fwd_bwd(x, wts, variant, dy)
            for k in one:
                assert_bitwise_equal(many[k], one[k], what=f"{k}: {threads} threads vs 1")
    finally:
        torch.set_num_threads(before)


# benchmarks/digest.py's CPU digest (y and every gradient of 448 cases, bit for bit). The same
# for builds with -march=x86-64-v4, x86-64-v3 and the compiler's default (SE_FUSED_CPU_ARCH=none),
# at 1, 2, 3 and 5 threads (checked 2026-12-07). A change that moves it changes some result's
# bits: update it only in a commit that says which and why.
CPU_DIGEST = "8aba4cbfa42f76b86cfa4a388534e538531ef15725b299bf99d843ac44ff8528"


def test_cpu_digest_pinned():
    """The CPU kernels' results are the pinned bits, on one thread and on three."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                    "benchmarks"))
    try:
        import digest
    finally:
        sys.path.pop(0)
    before = torch.get_num_threads()
    try:
        for threads in (1, 3):
            torch.set_num_threads(threads)
            count, value = digest.digest("cpu")
            assert (count, value) == (448, CPU_DIGEST), f"{threads} thread(s): {count} cases, {value}"
    finally:
        torch.set_num_threads(before)


def test_concurrent_callers_cpu():
    """The CPU kernels keep scratch memory per calling thread, from call to call, uninitialised:
    calls from several threads, each alternating between problems of other shapes, layouts and
    dtypes (so that each call gets a block last written by a different problem), give the bits
    of each problem run alone."""
    variant = (True, "silu", "sigmoid")
    problems = [
        _problem((5, 48, 7, 7), 12, variant, torch.float32, "cpu", "nchw", "concurrent"),
        _problem((3, 96, 9, 5), 6, variant, torch.bfloat16, "cpu", "channels_last", "concurrent"),
        _problem((9, 40, 4, 4), 10, variant, torch.float64, "cpu", "nchw", "concurrent"),
        _problem((2, 200, 3, 3), 50, variant, torch.float32, "cpu", "channels_last", "concurrent"),
    ]
    alone = [_fwd_bwd(x, wts, variant, dy) for x, wts, dy in problems]
    results, errors = {}, []

    def worker(t):
        try:
            for rep in range(3):
                for i in range(len(problems)):
                    k = (i + t) % len(problems)
                    results[(t, rep, k)] = _fwd_bwd(*problems[k][:2], variant, problems[k][2])
        except Exception as e:  # reported below: an exception in a thread does not fail the test
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, f"a calling thread raised: {errors[0]!r}"
    assert len(results) == 3 * 3 * len(problems)
    for (t, rep, k), out in results.items():
        for name in alone[k]:
            assert_bitwise_equal(out[name], alone[k][name],
                                 what=f"{name} of problem {k}, thread {t}, repeat {rep}")
