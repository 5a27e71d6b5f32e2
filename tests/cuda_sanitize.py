"""Run the se_fused CUDA kernels on a small set of shapes and variants, forward
and backward, and compare them with se_fused.SEBlock in float64 on the CPU.

Meant to run under NVIDIA compute-sanitizer (it is not a pytest file):

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck python tests/cuda_sanitize.py
    compute-sanitizer --tool racecheck python tests/cuda_sanitize.py
    compute-sanitizer --tool synccheck python tests/cuda_sanitize.py

(PYTORCH_NO_CUDA_MEMORY_CACHING=1 gives every tensor its own allocation, so
memcheck sees an overrun instead of landing in a neighbour inside the caching
allocator's pool; SE_FUSED_CUDA_SEPARATE_WORKSPACE=1 does the same for the
workspace's regions.) Also a quick check on its own: python tests/cuda_sanitize.py
[--large] (--large adds shapes past the kernels' shared-memory staging sizes;
--few runs four cases only, for the slower sanitizer tools).

Every call's CUDA path (se_fused._cuda.last_cuda_path) is printed with its
case. --expect-path P (the path SE_FUSED_CUDA_PATH forces) fails the run when a
call ran another path: twopass must run as itself in every
call; onepass falls back by design where a tile does not fit its shared-memory
budget, and cluster (sm_90+) where a sample's units do not fit a cluster's
shared memory, so each of those must run in at least one forward and one
backward call, and each fallback is listed.

Besides the float64 comparison it checks, bit for bit: a second call gives the
same results (determinism), a sample alone gives the same y, pooled and dx as
inside its batch (batch invariance), and a misaligned view of x (storage
offset of one element) gives the same results as an aligned copy.

Exits 1 on any mismatch, 0 when all pass; prints "no GPU" and exits 0 when
CUDA is not available.
"""
import argparse
import sys

import torch

TOLERANCE = {  # max |got - ref| / max |ref|, per output
    torch.float64: 1e-10,
    torch.float32: 2e-5,
    torch.float16: 5e-3,
    torch.bfloat16: 3e-2,
}

# (N, C, H, W, r, dtype, channels_last, bias, activation, gate); hidden = C // r
CASES = [
    (1, 3, 1, 1, 3, torch.float32, False, True, "relu", "sigmoid"),          # HW 1, hidden 1
    (5, 37, 7, 7, 9, torch.float32, False, True, "silu", "hardsigmoid"),
    (5, 37, 7, 7, 9, torch.float32, True, False, "relu", "sigmoid"),
    (2, 3, 17, 13, 3, torch.bfloat16, True, True, "silu", "sigmoid"),        # hidden 1
    (2, 3, 17, 13, 3, torch.bfloat16, False, False, "relu", "hardsigmoid"),
    (5, 64, 7, 7, 4, torch.bfloat16, True, True, "relu", "sigmoid"),
    (5, 64, 7, 7, 4, torch.float16, False, True, "silu", "sigmoid"),
    (3, 40, 17, 13, 8, torch.float16, True, False, "silu", "hardsigmoid"),
    (2, 1, 5, 5, 1, torch.float64, False, True, "silu", "sigmoid"),          # C 1
    (5, 37, 7, 7, 37, torch.float64, True, True, "relu", "hardsigmoid"),     # hidden 1
    (2, 24, 56, 56, 8, torch.bfloat16, False, True, "relu", "sigmoid"),      # 56x56: multi-warp channels
    (2, 24, 56, 56, 8, torch.float32, True, True, "silu", "sigmoid"),       # NHWC rows in 10 / 19 parts
    (1, 16, 1, 1, 4, torch.bfloat16, True, True, "relu", "sigmoid"),          # HW 1, channels_last
]
FEW = (1, 5, 6, 11)  # fp32 NCHW, bf16 NHWC, fp16 NCHW, fp32 NHWC in row parts
LARGE_CASES = [
    (2, 2100, 1, 2, 700, torch.float32, False, True, "relu", "sigmoid"),     # C past the pooled staging
    (2, 4100, 2, 1, 1000, torch.bfloat16, True, True, "silu", "sigmoid"),
    (2, 1100, 2, 2, 1, torch.float32, True, True, "silu", "hardsigmoid"),    # hidden past shared memory
    (1, 2, 112, 112, 2, torch.float32, False, True, "relu", "sigmoid"),      # one block per channel
    (3, 2048, 7, 7, 16, torch.bfloat16, False, True, "relu", "sigmoid"),
    (1, 256, 56, 56, 16, torch.bfloat16, True, True, "relu", "sigmoid"),    # 4 chunks x 13 row parts
    (64, 2048, 7, 7, 16, torch.float32, False, True, "relu", "sigmoid"),    # cluster: rounds of samples (H200: 4)
]

failures = []
paths = []  # (tag, direction, path) of every fused call
digests = []  # (tag, sha256 of every output's bytes): --digest compares paths across processes


def digest_of(tensors):
    import hashlib
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().contiguous().cpu().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def fail(tag, message):
    failures.append(f"{tag}: {message}")
    print(f"FAIL {tag}: {message}", flush=True)


def compare(tag, name, got, ref, tol):
    got = got.detach().double().cpu()
    ref = ref.detach().double().cpu()
    if got.shape != ref.shape:
        fail(tag, f"{name} has shape {tuple(got.shape)}, expected {tuple(ref.shape)}")
        return
    if not torch.isfinite(got).all():
        fail(tag, f"{name} has non-finite values")
        return
    scale = ref.abs().max().item() if ref.numel() else 0.0
    err = (got - ref).abs()
    worst = err.max().item() if err.numel() else 0.0
    if worst > tol * max(scale, 1e-30):
        where = tuple(int(i) for i in torch.unravel_index(err.argmax(), err.shape))
        fail(tag, f"{name} off by {worst:.3g} (tolerance {tol:.1g} x max |ref| {scale:.3g}) at "
                  f"{where}: got {got[where].item():.6g}, expected {ref[where].item():.6g}")


def same_bits(tag, what, a, b):
    if not torch.equal(a, b):
        fail(tag, f"{what} differ bit for bit")


def fused(x, dy, w1, b1, w2, b2, activation, gate, tag="?"):
    from se_fused import _cuda

    ops = torch.ops.se_fused
    y, pooled, z1, z2 = ops._squeeze_excite_forward(x, w1, b1, w2, b2, activation, gate)
    paths.append((tag, "forward", _cuda.last_cuda_path("forward")))
    grads = ops._squeeze_excite_backward(dy, x, pooled, z1, z2, w1, w2, activation, gate,
                                       True, True)
    paths.append((tag, "backward", _cuda.last_cuda_path("backward")))
    return (y, pooled) + tuple(grads)


def check_paths(expect):
    """Per direction, how many calls ran each path; False (and FAIL lines) when a
    forced path did not run as itself (see the module docstring)."""
    counts = {}
    for _, direction, path in paths:
        counts.setdefault(direction, {}).setdefault(path or "none", 0)
        counts[direction][path or "none"] += 1
    print("paths: " + "; ".join(f"{d} " + ", ".join(f"{p} {n}" for p, n in sorted(c.items()))
                                for d, c in sorted(counts.items())), flush=True)
    if expect is None:
        return True
    others = [(t, d, p) for t, d, p in paths if p != expect]
    if expect in ("onepass", "cluster"):
        for t, d, p in others:
            print(f"note {t}: {d} ran as {p} ({expect} does not apply there)", flush=True)
        ran = {d for _, d, p in paths if p == expect}
        for d in ("forward", "backward"):
            if d not in ran:
                fail("paths", f"no {d} call ran the {expect} path")
        return {"forward", "backward"} <= ran
    for t, d, p in others:
        fail(t, f"{d} ran as {p or 'none'}, not the forced {expect}")
    return not others


def run_case(case, seed):
    import se_fused

    n, c, h, w, r, dtype, channels_last, bias, activation, gate = case
    tag = (f"{str(dtype).replace('torch.', '')} [{n},{c},{h},{w}] hidden {c // r} "
           f"{'NHWC' if channels_last else 'NCHW'} {'bias' if bias else 'no bias'} {activation}/{gate}")
    gen = torch.Generator().manual_seed(seed)
    ref = se_fused.SEBlock(c, r, bias=bias, activation=activation, gate=gate).double()
    with torch.no_grad():  # weights exactly representable in the test dtype
        for p in ref.parameters():
            p.copy_((torch.randn(p.shape, generator=gen, dtype=torch.float64) / p.shape[-1] ** 0.5)
                    .to(dtype).double())
    # x with a per-channel offset, so that the gate sees a spread of values.
    x_cpu = (torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
             + torch.randn(n, c, 1, 1, generator=gen, dtype=torch.float64)).to(dtype)
    dy_cpu = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64).to(dtype)

    x_ref = x_cpu.double().requires_grad_(True)
    y_ref = ref(x_ref)
    y_ref.backward(dy_cpu.double())
    fc1, fc2 = ref.excitation[0], ref.excitation[2]
    pooled_ref = x_cpu.double().mean(dim=(2, 3))

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = x_cpu.cuda().contiguous(memory_format=fmt)
    dy = dy_cpu.cuda().contiguous(memory_format=fmt)
    w1, w2 = fc1.weight.detach().to("cuda", dtype), fc2.weight.detach().to("cuda", dtype)
    b1 = fc1.bias.detach().to("cuda", dtype) if bias else None
    b2 = fc2.bias.detach().to("cuda", dtype) if bias else None

    out = fused(x, dy, w1, b1, w2, b2, activation, gate, tag)
    ran = f"path fwd={paths[-2][2] or 'none'} bwd={paths[-1][2] or 'none'}"
    torch.cuda.synchronize()
    digests.append((tag, digest_of(out)))
    y, pooled, dx, dw1, db1, dw2, db2 = out
    tol = TOLERANCE[dtype]
    acc_dtype = torch.float32 if dtype in (torch.float16, torch.bfloat16) else torch.float64
    if pooled.dtype != acc_dtype:
        fail(tag, f"pooled has dtype {pooled.dtype}, expected {acc_dtype}")
    if y.dtype != dtype or dx.dtype != dtype or dw1.dtype != dtype:
        fail(tag, "outputs do not have x's dtype")
    if channels_last and c > 1 and h * w > 1 and not (
            y.is_contiguous(memory_format=torch.channels_last)
            and dx.is_contiguous(memory_format=torch.channels_last)):
        fail(tag, "y / dx are not channels_last like x")
    compare(tag, "y", y, y_ref, tol)
    compare(tag, "pooled", pooled, pooled_ref, min(tol, 1e-5))
    # PyTorch's hardsigmoid backward uses float(1/6) even for float64 (relative
    # error 3e-8); the kernels use the exact 1/6 (se_math.h).
    grad_tol = max(tol, 1e-7) if gate == "hardsigmoid" else tol
    compare(tag, "dx", dx, x_ref.grad, grad_tol)
    compare(tag, "dw1", dw1, fc1.weight.grad, grad_tol)
    compare(tag, "dw2", dw2, fc2.weight.grad, grad_tol)
    # db1 / db2 are computed whether or not the biases exist.
    if bias:
        compare(tag, "db1", db1, fc1.bias.grad, grad_tol)
        compare(tag, "db2", db2, fc2.bias.grad, grad_tol)

    again = fused(x, dy, w1, b1, w2, b2, activation, gate, tag)
    for name, a, b in zip(("y", "pooled", "dx", "dw1", "db1", "dw2", "db2"), out, again):
        same_bits(tag, f"two calls: {name}", a, b)

    if n > 1:  # the last sample alone
        alone = fused(x[-1:].contiguous(memory_format=fmt), dy[-1:].contiguous(memory_format=fmt),
                      w1, b1, w2, b2, activation, gate, tag)
        same_bits(tag, "sample alone vs in batch: y", alone[0], y[-1:])
        same_bits(tag, "sample alone vs in batch: pooled", alone[1], pooled[-1:])
        same_bits(tag, "sample alone vs in batch: dx", alone[2], dx[-1:])

    # x and dy as views one element into a larger buffer (only element-aligned).
    def offset_view(t):
        dense = t.contiguous(memory_format=fmt)
        buf = torch.empty(dense.numel() + 1, dtype=dtype, device="cuda")
        view = buf[1:].as_strided(dense.shape, dense.stride())
        view.copy_(dense)
        return view

    shifted = fused(offset_view(x), offset_view(dy), w1, b1, w2, b2, activation, gate, tag)
    for name, a, b in zip(("y", "pooled", "dx", "dw1", "db1", "dw2", "db2"), out, shifted):
        same_bits(tag, f"misaligned x: {name}", a, b)
    torch.cuda.synchronize()
    print(f"ok   {tag} ({ran})", flush=True)


def run_streams():
    """Three calls at once on three streams, each with many more work units
    than one call needs (the design before issue 13 could hang here: blocks
    spin-waited for other blocks of their sample). Each must complete and
    give the bits of a serial run."""
    gen = torch.Generator().manual_seed(7)
    calls = []
    for n, c, hw in ((64, 256, 28), (32, 512, 14), (128, 128, 28)):
        x = torch.randn(n, c, hw, hw, generator=gen).cuda()
        w1 = (torch.randn(c // 8, c, generator=gen) / c ** 0.5).cuda()
        w2 = (torch.randn(c, c // 8, generator=gen) / (c // 8) ** 0.5).cuda()
        calls.append((x, torch.randn_like(x), w1, w2))
    serial = [fused(x, dy, w1, None, w2, None, "relu", "sigmoid", "streams")
              for x, dy, w1, w2 in calls]
    torch.cuda.synchronize()
    streams = [torch.cuda.Stream() for _ in calls]
    outs = [None] * len(calls)
    for rep in range(3):
        for i, (s, (x, dy, w1, w2)) in enumerate(zip(streams, calls)):
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                outs[i] = fused(x, dy, w1, None, w2, None, "relu", "sigmoid", f"stream {i}")
        torch.cuda.synchronize()
        for i in range(len(calls)):
            for name, a, b in zip(("y", "pooled", "dx", "dw1", "db1", "dw2", "db2"), serial[i], outs[i]):
                same_bits(f"stream {i} rep {rep}", f"concurrent vs serial: {name}", a, b)
    print("ok   three concurrent streams", flush=True)


def run_empty():
    x = torch.empty(0, 8, 3, 3, device="cuda")
    w1, w2 = torch.randn(2, 8, device="cuda"), torch.randn(8, 2, device="cuda")
    y, pooled, z1, z2 = torch.ops.se_fused._squeeze_excite_forward(x, w1, None, w2, None, "relu", "sigmoid")
    dx, dw1, db1, dw2, db2 = torch.ops.se_fused._squeeze_excite_backward(
        x, x, pooled, z1, z2, w1, w2, "relu", "sigmoid", True, True)
    if y.shape != x.shape or pooled.shape != (0, 8) or dx.shape != x.shape:
        fail("N=0", "wrong output shapes")
    if dw1.abs().sum().item() != 0 or dw2.abs().sum().item() != 0 or db1.abs().sum().item() != 0:
        fail("N=0", "weight gradients are not zero")
    print("ok   N=0", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--large", action="store_true", help="also run the larger shapes")
    parser.add_argument("--digest", metavar="FILE",
                        help="write one line per case: its tag and the sha256 of its outputs (compare "
                             "SE_FUSED_CUDA_PATH=twopass against onepass or cluster: the paths must agree bit for bit)")
    parser.add_argument("--few", action="store_true",
                        help="four cases only, no streams (for racecheck and synccheck)")
    parser.add_argument("--expect-path", choices=("twopass", "onepass", "cluster"),
                        help="fail when a call did not run this path (onepass, cluster: see above)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no GPU")
        return 0
    import se_fused

    if not se_fused.has_cuda_kernels():
        print("FAIL: this build of se_fused has no CUDA kernels (rebuild with nvcc present)")
        return 1
    print(f"device: {torch.cuda.get_device_name()}", flush=True)
    cases = CASES + (LARGE_CASES if args.large else [])
    if args.few:
        cases = [CASES[i] for i in FEW]
    for seed, case in enumerate(cases):
        try:
            run_case(case, seed)
        except Exception as e:  # noqa: BLE001  (report and go on)
            fail(str(case), f"raised {type(e).__name__}: {e}")
    extras = () if args.few else (("streams", run_streams), ("N=0", run_empty))
    for name, run in extras:
        try:
            run()
        except Exception as e:  # noqa: BLE001
            fail(name, f"raised {type(e).__name__}: {e}")
    check_paths(args.expect_path)
    if args.digest:
        with open(args.digest, "w") as f:
            for tag, d in digests:
                f.write(f"{d} {tag}\n")
    print(f"{len(failures)} failure(s) in {len(cases) + (0 if args.few else 2)} cases")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
