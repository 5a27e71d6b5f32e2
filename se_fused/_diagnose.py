"""`python -m se_fused`: what this install is, what it runs on, and whether it computes
the SE block correctly here.

Prints the versions, the build settings, each visible GPU with whether the build runs on
it, the CUDA path Auto picks for a few typical shapes, then a self-check: a dozen cases
(dtypes, layouts, variants, batch 1, 1-D and 3-D maps) forward and backward against the
plain block in float64 on the CPU, on the CPU and on every GPU, each CUDA path in a
process of its own (the path is read once per process from SE_FUSED_CUDA_PATH). One line
per case; the exit status is 1 if any case failed, else 0.

    python -m se_fused              everything
    python -m se_fused --no-check   versions, build and devices only
    python -m se_fused --check DEV  the self-check on one device only (cpu, cuda:0, ...)
"""
import argparse
import os
import platform
import subprocess
import sys

import torch

CUDA_PATHS = ("twopass", "onepass", "cluster")

# Forward: y within 1 ULP of the float64 block (float64 x: within 1e-13 of it,
# relative to max |y|, since the reference rounds as often as the kernel). Gradients: max |got - ref| over
# max |ref|, per dtype (the tests bound them tighter, relative to eager's own error).
GRAD_TOLERANCE = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 5e-3,
                  torch.bfloat16: 3e-2}
PRECISION = {torch.float64: 53, torch.float32: 24, torch.bfloat16: 8, torch.float16: 11}
MIN_SPACING = {torch.float64: 2.0 ** -1074, torch.float32: 2.0 ** -149,
               torch.bfloat16: 2.0 ** -133, torch.float16: 2.0 ** -24}

# (shape, dtype, channels_last, options for SEBlock)
CASES = [
    ((4, 64, 7, 7), torch.float32, False, dict(r=16)),
    ((4, 64, 7, 7), torch.float32, True, dict(r=16)),
    ((2, 32, 5, 5), torch.float64, False, dict(r=4, bias=True, activation="silu")),
    ((2, 96, 14, 14), torch.bfloat16, True, dict(r=4, bias=True, activation="silu",
                                                  gate="hardsigmoid")),
    ((2, 96, 14, 14), torch.float16, False, dict(r=8, activation="hardswish",
                                                 gate="hardsigmoid")),
    ((1, 256, 7, 7), torch.bfloat16, False, dict(r=16)),
    ((1, 64, 56, 56), torch.float32, True, dict(r=16)),
    ((2, 64, 7, 7), torch.float32, False, dict(excitation="one_fc", bias=True,
                                               gate="hardsigmoid")),
    ((2, 64, 9, 9), torch.float32, True, dict(excitation="eca")),
    ((2, 32, 8, 8), torch.float32, False, dict(r=4, bias=True, residual=True)),
    ((2, 48, 50), torch.float32, False, dict(r=8, bias=True)),
    ((1, 32, 4, 6, 6), torch.bfloat16, True, dict(r=4, bias=True)),
]


def _ulp(v: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """One unit in the last place of dtype at the float64 values v."""
    _, exp = torch.frexp(v)
    spacing = torch.ldexp(torch.ones_like(v), (exp - PRECISION[dtype]).to(torch.int64))
    return torch.clamp(torch.where(v == 0, torch.zeros_like(v), spacing), min=MIN_SPACING[dtype])


def _describe(shape, dtype, channels_last, opts):
    layout = "channels_last" if channels_last else "contiguous"
    kind = opts.get("excitation", "two_fc") + ("+residual" if opts.get("residual") else "")
    extra = ",".join(f"{k}={v}" for k, v in opts.items() if k not in ("excitation", "residual"))
    return (f"{'x'.join(map(str, shape)):<14} {str(dtype)[6:]:<8} {layout:<13} "
            f"{kind:<15} {extra}")


def run_case(case, device: str, seed: int):
    """(ok, message) for one case on one device: forward ULPs and gradient errors
    against the float64 plain block on the CPU, and the CUDA path that ran."""
    import se_fused

    shape, dtype, channels_last, opts = case
    gen = torch.Generator().manual_seed(seed)
    ref = se_fused.SEBlock(shape[1], **opts).double()
    with torch.no_grad():  # parameters exactly representable in dtype
        for p in ref.parameters():
            p.copy_((torch.randn(p.shape, generator=gen, dtype=torch.float64)
                     / max(p.shape[-1], 1) ** 0.5).to(dtype).double())
    x = (torch.randn(shape, generator=gen, dtype=torch.float64)
         + torch.randn(*shape[:2], *([1] * (len(shape) - 2)), generator=gen,
                       dtype=torch.float64)).to(dtype)
    dy = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    fused = se_fused.FusedSEBlock(shape[1], **opts).to(device, dtype)
    fused.load_state_dict({k: v.to(dtype) for k, v in ref.state_dict().items()})

    x_ref = x.double().requires_grad_(True)
    y_ref = ref(x_ref)
    y_ref.backward(dy.double())

    fmt = ({4: torch.channels_last, 5: torch.channels_last_3d}.get(len(shape))
           if channels_last else None)
    xd = x.to(device)
    if fmt is not None:
        xd = xd.contiguous(memory_format=fmt)
    elif channels_last:  # [N, C, L] channels inner
        xd = xd.transpose(1, 2).contiguous().transpose(1, 2)
    xd.requires_grad_(True)
    y = fused(xd)
    y.backward(dy.to(device))
    paths = ""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
        from . import _cuda
        paths = (f"path fwd={_cuda.last_cuda_path('forward') or '?'} "
                 f"bwd={_cuda.last_cuda_path('backward') or '?'}")

    problems = []
    if y.dtype != dtype or y.shape != x.shape:
        problems.append(f"y is {y.dtype} {tuple(y.shape)}")
    y_err = (y.detach().cpu().double() - y_ref.detach()).abs()
    if dtype == torch.float64:  # the reference rounds as often as the kernel: relative bound
        worst = (y_err.max().item() / max(y_ref.abs().max().item(), 1e-300)) if y.numel() else 0.0
        fwd = f"fwd {worst:.1e}"
        if not worst <= 1e-13:
            problems.append(f"y off by {worst:.3g} of max |ref| (tolerance 1e-13)")
    else:
        worst = (y_err / _ulp(y_ref.detach(), dtype)).max().item() if y.numel() else 0.0
        fwd = f"fwd {worst:.2f} ULP"
        if not worst <= 1.0:
            problems.append(f"y {worst:.3g} ULP from float64")
    worst_grad = 0.0
    grads = [("dx", xd.grad, x_ref.grad)] + [
        (f"d{name}", p.grad, q.grad) for (name, p), q in
        zip(fused.named_parameters(), ref.parameters())]
    tol = GRAD_TOLERANCE[dtype] * (10 if opts.get("gate") == "hardsigmoid" else 1)
    for name, got, want in grads:
        if got is None:
            problems.append(f"{name} missing")
            continue
        scale = max(want.abs().max().item(), 1e-30)
        err = (got.detach().cpu().double() - want).abs().max().item() / scale
        worst_grad = max(worst_grad, err)
        if not err <= tol:
            problems.append(f"{name} off by {err:.3g} of max |ref| (tolerance {tol:.1g})")
    detail = f"{fwd}, bwd {worst_grad:.1e}"
    return not problems, f"{detail} {paths}".rstrip() + ("; " + "; ".join(problems) if problems else "")


def self_check(device: str, label: str) -> int:
    failed = 0
    for seed, case in enumerate(CASES):
        try:
            ok, message = run_case(case, device, seed)
        except Exception as e:  # noqa: BLE001  (one line per case, whatever happens)
            ok, message = False, f"raised {type(e).__name__}: {e}"
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {label:<18} {_describe(*case)}  {message}", flush=True)
    return failed


def _versions():
    import se_fused
    from . import _cuda

    print(f"se_fused {se_fused.__version__} ({os.path.dirname(se_fused.__file__)})")
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'}), "
          f"python {platform.python_version()}, {platform.machine()}")
    print(f"CPU kernels: {_cuda.cpu_build_info()}; {torch.get_num_threads()} threads")
    info = _cuda.cuda_build_info()
    if info is None:
        print("CUDA kernels: not in this build (CPU only)")
    else:
        print(f"CUDA kernels: built for {info['archs']} with {info['nvcc']}, CUDA runtime "
              f"{info['cuda_runtime']}, fmad={info['fmad']}")


def _devices():
    """Each visible GPU and whether this build runs on it; returns the usable ones."""
    from . import _cuda

    if not torch.cuda.is_available():
        print("GPUs: none visible" + ("" if torch.version.cuda else " (torch is a CPU build)"))
        return []
    usable = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        ok, why = _cuda.cuda_device_support(i)
        print(f"cuda:{i}: {props.name}, sm_{props.major}{props.minor}, {props.multi_processor_count} "
              f"SMs, {props.total_memory / 2**30:.0f} GiB: {'runs' if ok else 'NOT SUPPORTED'}"
              f"{'' if ok else ': ' + why}")
        if ok:
            usable.append(f"cuda:{i}")
            with torch.cuda.device(i):
                for shape, dtype, cl in (((1, 256, 56, 56), torch.bfloat16, True),
                                         ((64, 256, 56, 56), torch.float32, False),
                                         ((64, 2048, 7, 7), torch.float32, False)):
                    n, c, h, w = shape
                    picks = [_cuda.cuda_auto_path(d, n, c, h * w, c // 16, dtype, cl)
                             for d in ("forward", "backward")]
                    print(f"  Auto path for {'x'.join(map(str, shape))} {str(dtype)[6:]} "
                          f"{'channels_last' if cl else 'contiguous'}: forward {picks[0]}, "
                          f"backward {picks[1]}")
    return usable


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m se_fused", description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-check", action="store_true", help="skip the self-check")
    parser.add_argument("--check", metavar="DEVICE", help="only the self-check, on this device")
    args = parser.parse_args(argv)
    try:
        import se_fused  # noqa: F401
        from . import _cuda  # noqa: F401  (needs the compiled extension)
    except ImportError as e:
        print(f"se_fused does not load: {e}")
        return 1
    if args.check:
        path = os.environ.get("SE_FUSED_CUDA_PATH", "auto")
        label = args.check if args.check == "cpu" else f"{args.check} {path}"
        return 1 if self_check(args.check, label) else 0

    _versions()
    usable = _devices()
    if args.no_check:
        return 0
    print("self-check: y within 1 ULP of the float64 block; gradients within the dtype's tolerance")
    failed = self_check("cpu", "cpu")
    for device in usable:
        for path in CUDA_PATHS:  # the path is read once per process: one process each
            env = dict(os.environ, SE_FUSED_CUDA_PATH=path)
            rc = subprocess.run([sys.executable, "-m", "se_fused", "--check", device], env=env).returncode
            failed += rc != 0
    print("self-check: " + ("FAILED" if failed else "all passed"))
    return 1 if failed else 0
