"""Latency of the fused SE block beside plain PyTorch and its memory-traffic floor.

Providers (each one function below):
  floor    x.clone() for the forward; x.clone() then x + dy for forward+backward
           (the least memory traffic an SE block can have, see /work/shared/PERF.md)
  fused    se_fused.FusedSEBlock
  eager    se_fused.SEBlock, the plain PyTorch block
  compile  torch.compile(SEBlock, fullgraph=True)

Passes: fwd (under torch.inference_mode, as a user runs inference) and fwdbwd
(x and the parameters require grad; y.backward(dy) with a fixed random dy; the
grads are set to None between calls).

Each (case, pass) prints a progress line; the table of medians and ratios comes
last; the full results (medians, p20, p80, reps, errors) go to a JSON file.
It reports and never asserts a time. Examples:

  python benchmarks/bench.py --quick                 # ~5 min on a 2-core CPU
  python benchmarks/bench.py --device cuda --graphs  # GPU, with CUDA-graph replays
  python benchmarks/bench.py --shapes 2048x7x7 --dtypes bf16 --passes fwd
"""
import argparse
import dataclasses
import json
import os
import platform
import re
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Callable, List, Optional

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from anywhere against this checkout

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
LAYOUTS = {"nchw": torch.contiguous_format, "cl": torch.channels_last}
PROVIDERS = ("fused", "eager", "compile")  # the floor is always timed: ratios need it
PASSES = ("fwd", "fwdbwd")


# --------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Block:
    """One SE block of a real network: channels C at an H x W map, hidden = C // r."""
    model: str
    c: int
    hw: int
    r: int
    bias: bool = False
    activation: str = "relu"
    gate: str = "sigmoid"


@dataclass(frozen=True)
class Case:
    block: Block
    n: int
    dtype: str
    layout: str

    @property
    def shape(self) -> str:
        b = self.block
        return f"{self.n}x{b.c}x{b.hw}x{b.hw}"

    @property
    def hidden(self) -> int:
        return self.block.c // self.block.r

    @property
    def name(self) -> str:  # what --shapes matches against
        return f"{self.block.model}:{self.shape}"


# SE-ResNet-50: the SE block sits on each bottleneck's output (4x expansion), r = 16.
SE_RESNET50 = [Block("resnet50", c, hw, 16)
               for c, hw in ((256, 56), (512, 28), (1024, 14), (2048, 7))]

# MobileNetV3-Large (torchvision): hidden = make_divisible(C / 4, 8), bias, relu, hardsigmoid.
# C // r cannot give 32 for C = 120; r = 4 gives 30, the nearest.
MOBILENETV3 = [Block("mbv3", c, hw, r, True, "relu", "hardsigmoid")
               for c, hw, r in ((72, 28, 3), (120, 28, 4), (480, 14, 4), (672, 14, 4),
                                (672, 7, 4), (960, 7, 4))]

# EfficientNet-B0 (torchvision): SE after the depthwise conv of each MBConv, hidden =
# in_channels / 4 of the block input: C = 6 * in_channels -> r = 24 (r = 4 for the 1x stage).
EFFICIENTNET_B0 = [Block("effb0", c, hw, r, True, "silu", "sigmoid")
                   for c, hw, r in ((32, 112, 4), (96, 56, 24), (144, 56, 24), (144, 28, 24),
                                    (240, 28, 24), (240, 14, 24), (480, 14, 24), (672, 14, 24),
                                    (672, 7, 24), (1152, 7, 24))]

# The rows of PERF.md's "what users have today" that are not an SE-ResNet-50 stage
# (plain relu/sigmoid block without bias, as measured there).
PERF_ROWS = [Block("perf", 96, 112, 24), Block("perf", 960, 7, 4)]

MODEL_BLOCKS = SE_RESNET50 + MOBILENETV3 + EFFICIENTNET_B0


def _product(blocks, batches, dtypes, layouts) -> List[Case]:
    return [Case(b, n, d, l) for b in blocks for n in batches for d in dtypes for l in layouts]


def cpu_cases(quick: bool) -> List[Case]:
    perf_bar = [SE_RESNET50[0], SE_RESNET50[3]]  # 32x256x56x56 and 32x2048x7x7
    if quick:
        latency = [SE_RESNET50[0], SE_RESNET50[3], MOBILENETV3[0], EFFICIENTNET_B0[-1]]
        return (_product(perf_bar, [32], ["fp32", "bf16"], ["nchw", "cl"])
                + _product(latency, [1], ["fp32", "bf16"], ["nchw", "cl"]))
    # The full product (240 cases) would take about an hour on 2 cores; this keeps every
    # block at batch 1 and 32, both layouts in fp32, and all dtypes and layouts on the
    # perf-bar shapes: about 25 minutes. --dtypes/--layouts/--shapes narrow it further.
    return (_product(perf_bar, [32], ["fp32", "bf16", "fp16"], ["nchw", "cl"])
            + _product(MODEL_BLOCKS, [1], ["fp32"], ["nchw", "cl"])
            + _product(MODEL_BLOCKS, [1], ["bf16"], ["nchw"])
            + _product(MODEL_BLOCKS, [32], ["fp32", "bf16"], ["nchw"])
            + _product(SE_RESNET50[1:3] + MOBILENETV3 + EFFICIENTNET_B0, [32], ["fp32"], ["cl"])
            + _product([SE_RESNET50[0], SE_RESNET50[3]], [1], ["fp16"], ["nchw", "cl"]))


def cuda_cases(quick: bool) -> List[Case]:
    # PERF.md's rows, in its order; --quick is exactly those.
    perf = ([Case(SE_RESNET50[0], 256, "bf16", "nchw"), Case(SE_RESNET50[0], 256, "bf16", "cl"),
             Case(SE_RESNET50[0], 256, "fp32", "nchw")]
            + [Case(b, n, "bf16", "nchw") for b, n in ((PERF_ROWS[0], 64), (SE_RESNET50[0], 64),
                                                       (SE_RESNET50[3], 64), (PERF_ROWS[1], 64),
                                                       (SE_RESNET50[0], 1), (SE_RESNET50[3], 1))])
    if quick:
        return perf
    rest = (_product([SE_RESNET50[0]], [256], list(DTYPES), list(LAYOUTS))
            + _product(PERF_ROWS, [64], list(DTYPES), list(LAYOUTS))
            + _product(MODEL_BLOCKS, [1, 64], list(DTYPES), list(LAYOUTS)))
    return perf + [c for c in rest if c not in perf]


# --------------------------------------------------------------------------- timing
def _percentile(xs: List[float], q: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def time_cpu(fn: Callable, reset: Callable, quick: bool) -> dict:
    """Per-call perf_counter times after warm-up; as many calls as fit a small
    time budget, within [min_reps, max_reps]."""
    budget_s, min_reps, max_reps = (0.3, 5, 30) if quick else (0.5, 10, 100)
    for _ in range(2):
        reset()
        fn()
    reset()
    t0 = time.perf_counter()
    fn()
    estimate = time.perf_counter() - t0
    reps = max(min_reps, min(max_reps, int(budget_s / max(estimate, 1e-9))))
    times = []
    for _ in range(reps):
        reset()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return _stats([t * 1e6 for t in times])


def time_cuda(fn: Callable, grads_to_none: List[torch.Tensor], quick: bool) -> dict:
    """triton.testing.do_bench (CUDA events, L2 flushed between calls) when triton is
    importable; else CUDA events around each call after warm-up."""
    try:
        from triton.testing import do_bench
    except ImportError:
        do_bench = None
    if do_bench is not None:
        rep_ms = 50 if quick else 100
        med, p20, p80 = do_bench(fn, warmup=25, rep=rep_ms, grad_to_none=grads_to_none or None,
                                 quantiles=[0.5, 0.2, 0.8], return_mode="median")
        return {"median_us": med * 1e3, "p20_us": p20 * 1e3, "p80_us": p80 * 1e3, "reps": None}
    flush = torch.empty(256 * 2**20, dtype=torch.int8, device="cuda")
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(100)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(100)]
    for s, e in zip(starts, ends):
        for g in grads_to_none:
            g.grad = None
        flush.zero_()
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    return _stats([s.elapsed_time(e) * 1e3 for s, e in zip(starts, ends)])


def _stats(us: List[float]) -> dict:
    return {"median_us": _percentile(us, 0.5), "p20_us": _percentile(us, 0.2),
            "p80_us": _percentile(us, 0.8), "reps": len(us)}


def cuda_graph_replay(fn: Callable) -> Callable:
    """Capture one call of fn (after warm-up on a side stream); return the replay."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


# --------------------------------------------------------------------------- providers
class _PlainSEBlock(nn.Module):
    """Stand-in for se_fused.SEBlock (same modules, same forward) so that the eager and
    compile providers still run while the extension is not built."""

    def __init__(self, channels, r=16, *, bias=False, activation="relu", gate="sigmoid"):
        super().__init__()
        self.squeeze = nn.AdaptiveAvgPool2d(1)
        self.excitation = nn.Sequential(
            nn.Linear(channels, channels // r, bias=bias),
            {"relu": nn.ReLU, "silu": nn.SiLU}[activation](),
            nn.Linear(channels // r, channels, bias=bias),
            {"sigmoid": nn.Sigmoid, "hardsigmoid": nn.Hardsigmoid}[gate]())

    def forward(self, x):
        n, c = x.shape[:2]
        return x * self.excitation(self.squeeze(x).view(n, c)).view(n, c, 1, 1)


def load_se_fused():
    """(module, None) or (None, why it could not be imported)."""
    try:
        import se_fused
        return se_fused, None
    except Exception as e:  # ImportError, or an undefined symbol in a half-built _C
        return None, f"{type(e).__name__}: {e}"


def provider_eager(plain: nn.Module, block: Block, se_fused, device) -> nn.Module:
    return plain


def provider_compile(plain: nn.Module, block: Block, se_fused, device) -> nn.Module:
    # dynamic=False: a compiled kernel specialised to this shape, as a user's model gets.
    return torch.compile(plain, fullgraph=True, dynamic=False)


def provider_fused(plain: nn.Module, block: Block, se_fused, device) -> nn.Module:
    if se_fused is None:
        raise RuntimeError("se_fused is not importable")
    if device.type == "cuda" and not se_fused.has_cuda_kernels():
        raise RuntimeError("this se_fused build has no CUDA kernels")
    fused = se_fused.FusedSEBlock(block.c, block.r, bias=block.bias,
                                  activation=block.activation, gate=block.gate)
    fused.load_state_dict(plain.state_dict())
    return fused.to(device=device, dtype=next(plain.parameters()).dtype)


PROVIDER_FNS = {"fused": provider_fused, "eager": provider_eager, "compile": provider_compile}


# --------------------------------------------------------------------------- one case
def run_case(case: Case, args, device, plain_cls, se_fused, providers, tag="") -> List[dict]:
    """Times every provider on one case, both passes; one record per (pass, provider)."""
    b = case.block
    dtype, fmt = DTYPES[case.dtype], LAYOUTS[case.layout]
    torch.manual_seed(0)
    torch._dynamo.reset()  # fresh compile cache: no recompile limit, no automatic dynamic
    plain = plain_cls(b.c, b.r, bias=b.bias, activation=b.activation, gate=b.gate)
    plain = plain.to(device=device, dtype=dtype)
    x = torch.randn(case.n, b.c, b.hw, b.hw, device=device, dtype=dtype).to(memory_format=fmt)
    dy = torch.randn_like(x)  # same memory format as x
    params = list(plain.parameters())

    models, errors = {}, {}
    for p in providers:
        try:
            models[p] = PROVIDER_FNS[p](plain, b, se_fused, device)
        except Exception as e:
            errors[p] = _short(e)
    with torch.inference_mode():
        y_ref = plain(x).float()

    def timer(fn, grads):
        if device.type == "cuda":
            return time_cuda(fn, grads, args.quick)
        return time_cpu(fn, lambda: _none_grads(grads), args.quick)

    records = []
    for pass_ in args.passes:
        jobs = {}  # provider -> (fn, tensors whose .grad is reset, model or None)
        if pass_ == "fwd":
            jobs["floor"] = (lambda: x.clone(), [], None)
            for p, m in models.items():
                jobs[p] = ((lambda m=m: m(x)), [], m)
        else:
            xg = x.detach().clone().requires_grad_(True)

            def floor_fwdbwd():
                x.clone()
                return x + dy
            jobs["floor"] = (floor_fwdbwd, [], None)
            for p, m in models.items():
                mparams = list(m.parameters()) if isinstance(m, nn.Module) else params
                jobs[p] = ((lambda m=m: m(xg).backward(dy)), [xg] + mparams, m)

        line = [f"{tag}{case.name:<26} h={case.hidden:<4} {case.dtype} {case.layout:<4} {pass_:<6}"]
        for p in ("floor",) + tuple(providers):
            rec = {**_case_fields(case), "pass": pass_, "provider": p}
            if p in errors:
                rec["error"] = errors[p]
                line.append(f"{p}=ERR({errors[p]})")
                records.append(rec)
                continue
            fn, grads, model = jobs[p]
            try:
                with torch.inference_mode(pass_ == "fwd"):
                    t0 = time.perf_counter()
                    y = fn()  # the first call: compiles for compile, loads kernels for fused
                    _sync(device)
                    rec["first_call_s"] = time.perf_counter() - t0
                    if pass_ == "fwd" and model is not None and p != "eager":
                        # A sanity figure, not a test: max |y - y_eager| / max |y_eager|.
                        rec["max_rel_diff_vs_eager"] = float(
                            (y.float() - y_ref).abs().max() / y_ref.abs().max().clamp_min(1e-30))
                    del y
                    if device.type == "cuda":  # one call on its own: do_bench allocates too
                        _none_grads(grads)
                        torch.cuda.synchronize()
                        torch.cuda.reset_peak_memory_stats()
                        base = torch.cuda.memory_allocated()
                        fn()
                        torch.cuda.synchronize()
                        rec["peak_mem_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
                    rec.update(timer(fn, grads))
                diff = rec.get("max_rel_diff_vs_eager")
                line.append(f"{p}={rec['median_us']:.1f}us" + (f"(d={diff:.0e})" if diff else ""))
            except Exception as e:
                rec["error"] = _short(e)
                line.append(f"{p}=ERR({rec['error']})")
                if args.verbose:
                    traceback.print_exc()
            records.append(rec)
        print("  ".join(line), flush=True)

        if pass_ == "fwd" and args.graphs and device.type == "cuda":
            records += _graph_records(case, jobs, providers, errors, timer, tag)
    return records


def _graph_records(case, jobs, providers, errors, timer, tag) -> List[dict]:
    """CUDA-graph replay of each provider's forward: device time, no host overhead."""
    records = []
    line = [f"{tag}{case.name:<26} h={case.hidden:<4} {case.dtype} {case.layout:<4} fwd-graph"]
    for p in ("floor",) + tuple(providers):
        rec = {**_case_fields(case), "pass": "fwd-graph", "provider": p}
        try:
            if p in errors:
                raise RuntimeError(errors[p])
            with torch.inference_mode():
                replay = cuda_graph_replay(jobs[p][0])
                rec.update(timer(replay, []))
            line.append(f"{p}={rec['median_us']:.1f}us")
        except Exception as e:
            rec["error"] = _short(e)
            line.append(f"{p}=ERR({rec['error']})")
        records.append(rec)
    print("  ".join(line), flush=True)
    return records


def _none_grads(tensors):
    for t in tensors:
        t.grad = None


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _short(e: Exception, n: int = 160) -> str:
    msg = f"{type(e).__name__}: {e}".replace("\n", " ")
    return msg if len(msg) <= n else msg[: n - 3] + "..."


def _case_fields(case: Case) -> dict:
    return {"case": case.name, "model": case.block.model, "shape": case.shape,
            "hidden": case.hidden, **{k: v for k, v in dataclasses.asdict(case.block).items()
                                      if k in ("r", "bias", "activation", "gate")},
            "dtype": case.dtype, "layout": case.layout}


# --------------------------------------------------------------------------- report
def print_table(records: List[dict], providers) -> None:
    rows = {}
    for r in records:
        key = (r["case"], r["hidden"], r["dtype"], r["layout"], r["pass"])
        rows.setdefault(key, {})[r["provider"]] = r

    def us(rec):
        if rec is None:
            return None
        return rec.get("median_us")

    def cell(rec, width):
        if rec is None:
            return "-".rjust(width)
        if "error" in rec:
            return "ERR".rjust(width)
        return f"{rec['median_us']:.1f}".rjust(width)

    def ratio(a, b, width):
        return (f"{a / b:.2f}" if a and b else "-").rjust(width)

    head = (f"{'case':<26} {'hid':>4} {'dtype':<5} {'lay':<4} {'pass':<9} {'floor_us':>10}"
            + "".join(f" {p + '_us':>11}" for p in providers)
            + "".join(f" {p + '/floor':>13}" for p in providers)
            + (" eager/fused" if "fused" in providers and "eager" in providers else ""))
    print()
    print(head)
    print("-" * len(head))
    for (case, hidden, dtype, layout, pass_), recs in rows.items():
        floor = us(recs.get("floor"))
        out = (f"{case:<26} {hidden:>4} {dtype:<5} {layout:<4} {pass_:<9} "
               f"{cell(recs.get('floor'), 10)}")
        out += "".join(" " + cell(recs.get(p), 11) for p in providers)
        out += "".join(" " + ratio(us(recs.get(p)), floor, 13) for p in providers)
        if "fused" in providers and "eager" in providers:
            out += " " + ratio(us(recs.get("eager")), us(recs.get("fused")), 11)
        print(out)
    print("times: medians in microseconds; X/floor = time / floor time in the same run "
          "(floor: clone for fwd, clone + add for fwdbwd); eager/fused > 1 means fused is faster; "
          "ERR: see the progress line or the JSON.", flush=True)


def device_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


# --------------------------------------------------------------------------- main
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                    help="default: cuda when a GPU is present, else cpu")
    ap.add_argument("--quick", action="store_true",
                    help="a short run: the perf-bar and batch-1 shapes (CPU), PERF.md's rows (GPU)")
    ap.add_argument("--dtypes", default="fp32,bf16,fp16", help="subset of fp32,bf16,fp16")
    ap.add_argument("--layouts", default="nchw,cl", help="subset of nchw,cl (cl: channels_last)")
    ap.add_argument("--shapes", default="",
                    help="comma-separated substrings of the case name, e.g. 2048x7x7,mbv3 ")
    ap.add_argument("--passes", default="fwd,fwdbwd", help="subset of fwd,fwdbwd")
    ap.add_argument("--providers", default=",".join(PROVIDERS),
                    help="subset of fused,eager,compile (the floor is always timed)")
    ap.add_argument("--no-compile", action="store_true", help="drop the compile provider")
    ap.add_argument("--graphs", action="store_true",
                    help="CUDA only: also time CUDA-graph replays of each forward")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU: torch.set_num_threads(N) (default: what torch picks)")
    ap.add_argument("--out", default=None,
                    help="JSON results file (default benchmarks/results-<device>.json)")
    ap.add_argument("--list", action="store_true", help="print the selected cases and exit")
    ap.add_argument("--verbose", action="store_true", help="print tracebacks of failures")
    args = ap.parse_args(argv)

    def pick(value, allowed, what):
        items = [v.strip() for v in value.split(",") if v.strip()]
        bad = [v for v in items if v not in allowed]
        if bad:
            ap.error(f"--{what}: unknown {bad}; choose from {list(allowed)}")
        return items

    args.dtypes = pick(args.dtypes, DTYPES, "dtypes")
    args.layouts = pick(args.layouts, LAYOUTS, "layouts")
    args.passes = pick(args.passes, PASSES, "passes")
    args.providers = [p for p in pick(args.providers, PROVIDERS, "providers")
                      if not (p == "compile" and args.no_compile)]
    args.shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no GPU is visible to torch", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)

    cases = cuda_cases(args.quick) if device.type == "cuda" else cpu_cases(args.quick)
    cases = [c for c in cases if c.dtype in args.dtypes and c.layout in args.layouts
             and (not args.shapes or any(s in c.name for s in args.shapes))]
    if args.list:
        for c in cases:
            print(f"{c.name:<26} hidden={c.hidden:<4} {c.dtype} {c.layout} {c.block}")
        return 0

    se_fused, why = load_se_fused()
    plain_cls = se_fused.SEBlock if se_fused is not None else _PlainSEBlock
    name = device_name(device)
    if args.graphs and device.type != "cuda":
        print("--graphs: CUDA only, ignored on the CPU")
    print(f"device: {name}  torch {torch.__version__}  threads {torch.get_num_threads()}  "
          f"cases {len(cases)}  passes {','.join(args.passes)}  "
          f"providers floor,{','.join(args.providers)}")
    if se_fused is None:
        print(f"se_fused: not importable ({why}); skipping the fused provider "
              f"and timing bench.py's copy of the plain block as eager")
        args.providers = [p for p in args.providers if p != "fused"]
    else:
        print(f"se_fused {getattr(se_fused, '__version__', '?')} from "
              f"{os.path.dirname(se_fused.__file__)}  cuda kernels: {se_fused.has_cuda_kernels()}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if device.type == "cpu" and load > 0.5:
        print(f"warning: load average {load:.1f} before the run: other processes share these "
              f"{os.cpu_count()} cores, CPU timings will be noisy")
    sys.stdout.flush()

    slug = "cpu" if device.type == "cpu" else re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    out = args.out or os.path.join(HERE, f"results-{slug}.json")
    meta = {"device": device.type, "device_name": name, "torch": torch.__version__,
            "triton": _triton_version(), "threads": torch.get_num_threads(),
            "python": platform.python_version(), "se_fused": (
                getattr(se_fused, "__version__", "?") if se_fused else f"not importable: {why}"),
            "load_avg_1min_at_start": load, "argv": sys.argv[1:], "quick": args.quick,
            "timing": ("time.perf_counter per call" if device.type == "cpu"
                       else "triton.testing.do_bench" if _triton_version() else "cuda events"),
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    records: List[dict] = []
    t_start = time.perf_counter()
    try:
        for i, case in enumerate(cases):
            tag = f"[{i + 1}/{len(cases)} {time.perf_counter() - t_start:4.0f}s] "
            records += run_case(case, args, device, plain_cls, se_fused, args.providers, tag)
            _write_json(out, meta, records, time.perf_counter() - t_start)
    except KeyboardInterrupt:
        print("\ninterrupted: reporting the cases done so far")
    wall = time.perf_counter() - t_start
    _write_json(out, meta, records, wall)
    print(f"\nwall time {wall:.0f}s; results: {out}")
    print_table(records, args.providers)
    return 0


def _triton_version() -> Optional[str]:
    try:
        import triton
        return triton.__version__
    except Exception:
        return None


def _write_json(path, meta, records, wall_s):
    with open(path, "w") as f:
        json.dump({**meta, "wall_s": wall_s, "results": records}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
