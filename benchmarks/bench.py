"""Latency of the fused SE block beside plain PyTorch and its memory-traffic floor.

Providers (providers.py):
  floor    x.clone() for the forward; x.clone() then x + dy for forward+backward
           (the least memory traffic an SE block can have)
  fused    se_fused.FusedSEBlock
  eager    se_fused.SEBlock, the plain PyTorch block
  compile  torch.compile(SEBlock, fullgraph=True)

The run, in this order:
  latency  batch-1 per-call times (latency.py): fused, eager, compile and one x.clone() at
           1x64x1x1, 1x96x14x14 and 1x1152x7x7 in float32, no-grad forward, grad-mode
           forward and forward + y.sum().backward(); on the CPU on one thread, beside
           issue 12's bar for fused / eager; on a GPU also as CUDA-graph replays
  cases    the SE blocks of real networks (cases.py): 2-D, and on the CPU also 3-D (MONAI
           SEResNet50 spatial_dims=3 stages), 1-D (ECAPA-TDNN, 8x512x200) and the variants
           (eSE, ECA, circular ECA, residual at 8x512x28x28), 7x7 maps first, in two passes: fwd
           (under torch.inference_mode, as a user runs inference) and fwdbwd (x and the
           parameters require grad; y.backward(dy) with a fixed random dy; the grads are set
           to None between calls); --graphs adds CUDA-graph replays of each forward. On a
           GPU, where benchmarks/gpu_model.py exists, its predictions go beside the results.

CUDA paths (--paths twopass,cluster,...): SE_FUSED_CUDA_PATH is read once per process, so
each path's fused block is timed in a process of its own (this script again, with the path
set): the first path's process also times eager (and the latency section), compile gets a
process after the first two paths (its compile time would otherwise eat the fused paths'
time budget), then the remaining paths. Each record carries the path its calls ran
(se_fused._cuda.cuda_path_counts: a forced path that does not apply falls back and says
so); gpu_model.py's prediction for that path goes beside it; the paths table gives per
shape the fastest path that ran as itself and the rule Auto should adopt from them.

Each measurement prints a progress line; the tables come last (latency, then the cases:
medians, ratios to the floor and to eager); the full results (medians, p20, p80, reps, peak
memory on a GPU, errors) go to a JSON file per device. Timing is harness.py's. It reports
and never asserts a time. Examples:

  python benchmarks/bench.py --quick --plot chart.png   # ~10 min on a shared 2-core CPU
  python benchmarks/bench.py --latency-only             # the latency section alone
  python benchmarks/bench.py --device cuda --graphs     # GPU, with CUDA-graph replays
  python benchmarks/bench.py --quick --paths twopass,cluster   # GPU: the paths side by side
  python benchmarks/bench.py --shapes 2048x7x7 --dtypes bf16 --passes fwd --no-latency
  python benchmarks/bench.py --quick --no-latency --shapes monai3d,ecapa,ese,ecanet,ceca,resid
                                                         # the 3-D, 1-D and variant rows
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from typing import List

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from anywhere against this checkout

import harness  # noqa: E402  (benchmarks/ is on sys.path as the script's folder)
import latency  # noqa: E402
import report  # noqa: E402
from cases import DTYPES, LAYOUTS, Case, cpu_cases, cuda_cases, to_layout  # noqa: E402
from providers import PROVIDERS, build, floor, max_rel_diff, none_grads, plain_block  # noqa: E402

PASSES = ("fwd", "fwdbwd")
CUDA_PATHS = ("auto", "twopass", "onepass", "cluster")  # SE_FUSED_CUDA_PATH values


# --------------------------------------------------------------------------- one case
def case_inputs(case: Case, device):
    """x in the case's dtype and layout, and dy like it (seeded)."""
    b = case.block
    torch.manual_seed(1)
    x = torch.randn(case.n, b.c, *b.map, device=device, dtype=DTYPES[case.dtype])
    x = to_layout(x, case.layout)
    return x, torch.randn_like(x)  # same strides as x (dense)


def pass_jobs(pass_: str, models: dict, x: torch.Tensor, dy: torch.Tensor) -> dict:
    """provider -> (the call to time, the tensors whose .grad is reset between calls)."""
    jobs = {"floor": (floor(pass_, x, dy), [])}
    if pass_ == "fwd":
        for p, m in models.items():
            jobs[p] = ((lambda m=m: m(x)), [])
    else:
        xg = x.detach().clone().requires_grad_(True)
        for p, m in models.items():
            jobs[p] = ((lambda m=m: m(xg).backward(dy)), [xg] + list(m.parameters()))
    return jobs


def path_counts(se_fused):
    """se_fused._cuda.cuda_path_counts(reset=True): the calls per direction and path since the
    last reset; None where the build cannot say (no CUDA part)."""
    try:
        from se_fused import _cuda
        return _cuda.cuda_path_counts(reset=True)
    except Exception:
        return None


def taken(counts) -> dict:
    """{"forward": "cluster", "backward": "twopass"}: the paths that ran, per direction (two
    joined by "+" when the calls differed; directions without calls left out)."""
    out = {}
    for direction, per in (counts or {}).items():
        names = [p for p, n in sorted(per.items()) if n]
        if names:
            out[direction] = "+".join(names)
    return out


def first_call(fn, device) -> tuple:
    """(result, seconds) of one call: compiles for compile, loads kernels for fused."""
    t0 = time.perf_counter()
    y = fn()
    harness.sync(device)
    return y, time.perf_counter() - t0


def time_job(fn, grads, device, quick: bool) -> dict:
    if device.type == "cuda":
        return harness.time_kernel(fn, grads, rep_ms=50 if quick else 100)
    budget_s, min_reps, max_reps = (0.3, 5, 30) if quick else (0.5, 10, 100)
    return harness.time_one(fn, device, budget_s=budget_s, min_reps=min_reps,
                            max_reps=max_reps, reset=lambda: none_grads(grads))


def measure(pass_: str, provider: str, job, y_ref, device, quick: bool) -> dict:
    """First call, sanity diff against eager (fwd), peak memory (GPU), then the timing."""
    fn, grads = job
    rec = {}
    with torch.inference_mode(pass_ == "fwd"):
        y, rec["first_call_s"] = first_call(fn, device)
        if pass_ == "fwd" and provider in ("fused", "compile"):
            rec["max_rel_diff_vs_eager"] = max_rel_diff(y, y_ref)
        del y
        peak = harness.peak_memory_mb(fn, device, lambda: none_grads(grads))
        if peak is not None:
            rec["peak_mem_mb"] = peak
        rec.update(time_job(fn, grads, device, quick))
    return rec


def graph_records(case: Case, jobs: dict, names, errors: dict, tag: str) -> List[dict]:
    """CUDA-graph replay of each provider's forward: device time, no host overhead."""
    records = []
    for p in names:
        rec = {**case.fields(), "pass": "fwd-graph", "provider": p}
        try:
            if p in errors:
                raise RuntimeError(errors[p])
            with torch.inference_mode():
                rec.update(harness.time_kernel(harness.graph_replay(jobs[p][0]), []))
        except Exception as e:
            rec["error"] = harness.short_error(e)
        records.append(rec)
    print(progress_line(tag, case, "fwd-graph", records), flush=True)
    return records


def progress_line(tag: str, case: Case, pass_: str, records: List[dict]) -> str:
    line = [f"{tag}{case.name:<26} h={case.hidden:<4} {case.dtype} {case.layout:<4} {pass_:<9}"]
    for rec in records:
        if "error" in rec:
            line.append(f"{rec['provider']}=ERR({rec['error']})")
        else:
            diff = rec.get("max_rel_diff_vs_eager")
            ran = "/".join(rec.get("path_taken", {}).values())
            line.append(f"{rec['provider']}={rec['median_us']:.1f}us"
                        + (f"[{ran}]" if ran else "") + (f"(d={diff:.0e})" if diff else ""))
    return "  ".join(line)


def run_case(case: Case, args, device, se_fused, gpu_model, tag="") -> List[dict]:
    """Every provider on one case, each pass; one record per (pass, provider)."""
    plain = plain_block(se_fused, case.block, device, DTYPES[case.dtype])
    models, errors = build(se_fused, args.providers, plain, case.block, device)
    x, dy = case_inputs(case, device)
    with torch.inference_mode():
        y_ref = plain(x)
    names = ("floor",) + tuple(args.providers)
    records = []
    for pass_ in args.passes:
        jobs = pass_jobs(pass_, models, x, dy)
        done = []
        for p in names:
            rec = {**case.fields(), "pass": pass_, "provider": p}
            if p in errors:
                rec["error"] = errors[p]
            else:
                counting = p == "fused" and device.type == "cuda"
                if counting:
                    path_counts(se_fused)
                try:
                    rec.update(measure(pass_, p, jobs[p], y_ref, device, args.quick))
                except Exception as e:
                    rec["error"] = harness.short_error(e)
                    if args.verbose:
                        traceback.print_exc()
                if counting:
                    rec["path_taken"] = taken(path_counts(se_fused))
            done.append(rec)
        print(progress_line(tag, case, pass_, done), flush=True)
        records += done
        if pass_ == "fwd" and args.graphs and device.type == "cuda":
            records += graph_records(case, jobs, names, errors, tag)
    if gpu_model is not None:
        prediction = report.predict(gpu_model, case, DTYPES[case.dtype].itemsize)
        path = fused_path(args)
        for rec in records:
            if rec["provider"] in ("fused", "floor"):
                pred = report.predicted_us(prediction, rec["pass"], rec["provider"], path)
                if pred is not None:
                    rec["predicted_us"] = pred
                    if rec["provider"] == "fused":
                        rec["predicted_path"] = report.predicted_path(prediction, rec["pass"], path)
                elif "error" in prediction:
                    rec["prediction_error"] = prediction["error"]
    return records


def fused_path(args) -> str:
    """The SE_FUSED_CUDA_PATH this process's fused block runs under."""
    return args.child_path or os.environ.get("SE_FUSED_CUDA_PATH") or "auto"


# --------------------------------------------------------------------------- main
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                    help="default: cuda when a GPU is present, else cpu")
    ap.add_argument("--quick", action="store_true",
                    help="a short run: the perf-bar and batch-1 shapes (CPU), PERF.md's rows "
                         "(GPU), fewer repetitions")
    ap.add_argument("--latency-only", action="store_true", help="only the latency section")
    ap.add_argument("--no-latency", action="store_true", help="skip the latency section")
    ap.add_argument("--dtypes", default="fp32,bf16,fp16", help="subset of fp32,bf16,fp16")
    ap.add_argument("--layouts", default="nchw,cl", help="subset of nchw,cl (cl: channels_last)")
    ap.add_argument("--shapes", default="",
                    help="comma-separated substrings of the case name, e.g. 2048x7x7,mbv3 ")
    ap.add_argument("--passes", default="fwd,fwdbwd", help="subset of fwd,fwdbwd")
    ap.add_argument("--providers", default=",".join(PROVIDERS),
                    help="subset of fused,eager,compile (the floor is always timed)")
    ap.add_argument("--no-compile", action="store_true", help="drop the torch.compile provider")
    ap.add_argument("--graphs", action="store_true",
                    help="CUDA only: also time CUDA-graph replays of each case's forward "
                         "(the latency section always has them on a GPU)")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU: torch.set_num_threads(N) for the cases (default: what torch "
                         "picks; the latency section runs on 1)")
    ap.add_argument("--out", default=None,
                    help="JSON results file (default benchmarks/results-<device>.json)")
    ap.add_argument("--plot", default=None, metavar="FILE.png",
                    help="draw time / floor per case (needs matplotlib)")
    ap.add_argument("--paths", default="",
                    help="time the fused block under each of these SE_FUSED_CUDA_PATH "
                         f"values ({','.join(CUDA_PATHS)}), each in a process of its own, e.g. "
                         "twopass,cluster (see above)")
    ap.add_argument("--child-path", default=None, help=argparse.SUPPRESS)  # --paths' processes
    ap.add_argument("--list", action="store_true", help="print the selected cases and exit")
    ap.add_argument("--verbose", action="store_true", help="print tracebacks of failures")
    args = ap.parse_args(argv)

    def pick(value, allowed, what):
        items = [v.strip() for v in value.split(",") if v.strip()]
        bad = [v for v in items if v not in allowed]
        if bad:
            ap.error(f"--{what}: unknown {bad}; choose from {list(allowed)}")
        return items

    if args.latency_only and args.no_latency:
        ap.error("--latency-only and --no-latency exclude each other")
    args.dtypes = pick(args.dtypes, DTYPES, "dtypes")
    args.layouts = pick(args.layouts, LAYOUTS, "layouts")
    args.passes = pick(args.passes, PASSES, "passes")
    args.providers = [p for p in pick(args.providers, PROVIDERS, "providers")
                      if not (p == "compile" and args.no_compile)]
    args.shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    args.paths = list(dict.fromkeys(pick(args.paths, CUDA_PATHS, "paths")))
    if args.paths and "fused" not in args.providers:
        ap.error("--paths times the fused block: keep fused in --providers")
    return args


def select_cases(args, device) -> List[Case]:
    if args.latency_only:
        return []
    cases = cuda_cases(args.quick) if device.type == "cuda" else cpu_cases(args.quick)
    return [c for c in cases if c.dtype in args.dtypes and c.layout in args.layouts
            and (not args.shapes or any(s in c.name for s in args.shapes))]


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no GPU is visible to torch", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    if args.paths and not args.child_path:
        return run_paths(args, device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = select_cases(args, device)
    if args.list:
        for c in cases:
            print(f"{c.name:<26} hidden={c.hidden:<4} {c.dtype} {c.layout} {c.block}")
        return 0
    try:
        import se_fused
    except Exception as e:  # ImportError, or an undefined symbol in a half-built _C
        print(f"se_fused does not import ({type(e).__name__}: {e}); build it first "
              f"(see the README)", file=sys.stderr)
        return 2

    info = harness.describe(device)
    gpu_model = report.load_gpu_model() if device.type == "cuda" else None
    if args.graphs and device.type != "cuda":
        print("--graphs: CUDA only, ignored on the CPU")
    print(harness.device_line(info) + ("  latency section" if not args.no_latency else "")
          + (f"  cases {len(cases)} (passes {','.join(args.passes)})" if cases else "")
          + f"  providers {','.join(args.providers)}")
    print(f"se_fused {se_fused.__version__}  cuda kernels: {se_fused.has_cuda_kernels()}"
          + ("  gpu_model.py: predictions on" if gpu_model else ""))
    warning = harness.load_warning(device)
    if warning:
        print(warning)
    sys.stdout.flush()

    out = args.out or harness.results_path("results", device)
    meta = {**info, "se_fused": se_fused.__version__, "argv": sys.argv[1:],
            "quick": args.quick, "timing": harness.kernel_timer_name(device),
            "latency_timing": "harness.time_calls, providers in turns of 20 calls"}
    lat_records: List[dict] = []
    records: List[dict] = []
    t_start = time.perf_counter()
    signal.signal(signal.SIGTERM, _interrupt)  # a `timeout` still gets the tables

    def save():
        if args.child_path:  # the fused block as run under this process's path
            for rec in lat_records + records:
                if rec["provider"] == "fused":
                    rec["provider"] = f"fused:{args.child_path}"
                    rec["cuda_path"] = args.child_path
        harness.write_json(out, meta, wall_s=time.perf_counter() - t_start,
                           latency=lat_records, results=records)
    try:
        if not args.no_latency:
            latency.run(se_fused, args.providers, device, args.quick, lat_records)
            save()
        for i, case in enumerate(cases):
            tag = f"[{i + 1}/{len(cases)} {time.perf_counter() - t_start:4.0f}s] "
            records += run_case(case, args, device, se_fused, gpu_model, tag)
            save()
    except KeyboardInterrupt:
        print("\ninterrupted: reporting what was measured so far")
    save()
    if args.child_path:  # run_paths prints the tables of all the processes
        return 0
    print(f"\nwall time {time.perf_counter() - t_start:.0f}s; results: {out}")
    if args.plot:
        from plot import plot
        plot(records, args.providers, args.plot,
             f"se_fused bench: {info['device_name']}, torch {info['torch']}, "
             f"threads {info['threads']}")
    report.print_predictions(records)
    latency.print_table(lat_records, args.providers)
    if records:
        report.print_table(records, args.providers)
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


# --------------------------------------------------------------------------- --paths
def path_jobs(args) -> List[tuple]:
    """(SE_FUSED_CUDA_PATH, providers) of each process, in the order they run: the first path
    with the other non-compile providers, the second path, compile, the remaining paths."""
    first = ["fused"] + [p for p in args.providers if p not in ("fused", "compile")]
    jobs = [(args.paths[0], first)] + [(p, ["fused"]) for p in args.paths[1:2]]
    if "compile" in args.providers:
        jobs.append((args.paths[0], ["compile"]))
    return jobs + [(p, ["fused"]) for p in args.paths[2:]]


def child_argv(args, path: str, providers, out: str) -> List[str]:
    argv = ["--device", args.device, "--dtypes", ",".join(args.dtypes), "--layouts", ",".join(args.layouts),
            "--passes", ",".join(args.passes), "--providers", ",".join(providers), "--out", out,
            "--child-path", path]
    argv += ["--shapes", ",".join(args.shapes)] if args.shapes else []
    argv += ["--threads", str(args.threads)] if args.threads else []
    argv += ["--no-latency"] if args.no_latency else ["--latency-only"] if args.latency_only else []
    return argv + [f for f, on in (("--quick", args.quick), ("--graphs", args.graphs),
                                   ("--verbose", args.verbose)) if on]


def run_paths(args, device) -> int:
    """--paths: one process per path_jobs entry (SE_FUSED_CUDA_PATH set), their JSON results
    merged; then the tables, with the paths side by side and the rule for Auto. An
    interruption (Ctrl-C, or a `timeout` around this script) stops the current process,
    starts no other, and reports what was measured."""
    info = harness.describe(device)
    out = args.out or harness.results_path("results", device)
    jobs = path_jobs(args)
    print(harness.device_line(info) + f"  paths {','.join(args.paths)}: "
          + "; ".join(f"{','.join(p)} under {path}" for path, p in jobs), flush=True)
    if device.type != "cuda":
        print("(the CPU ignores SE_FUSED_CUDA_PATH: every process times the same CPU kernels)")
    signal.signal(signal.SIGTERM, _interrupt)
    t_start = time.perf_counter()
    meta = {**info, "argv": sys.argv[1:], "quick": args.quick, "paths": args.paths,
            "timing": harness.kernel_timer_name(device), "processes": []}
    lat_records: List[dict] = []
    records: List[dict] = []
    tmp = tempfile.mkdtemp(prefix="se_fused_bench_")
    try:
        for i, (path, providers) in enumerate(jobs):
            part = os.path.join(tmp, f"{i}.json")
            cmd = [sys.executable, os.path.abspath(__file__)] + child_argv(args, path, providers, part)
            print(f"\n--- SE_FUSED_CUDA_PATH={path}: {','.join(providers)} "
                  f"[{time.perf_counter() - t_start:.0f}s]", flush=True)
            proc = subprocess.Popen(cmd, env=dict(os.environ, SE_FUSED_CUDA_PATH=path))
            try:
                rc = proc.wait()
            except KeyboardInterrupt:
                print("\ninterrupted: reporting what was measured so far", flush=True)
                try:  # the process saves its results on SIGTERM / Ctrl-C, as this one does
                    proc.wait(timeout=3)
                except (subprocess.TimeoutExpired, KeyboardInterrupt):
                    proc.kill()
                _merge(part, path, providers, meta, lat_records, records, "interrupted")
                break
            _merge(part, path, providers, meta, lat_records, records, rc)
    finally:
        harness.write_json(out, meta, wall_s=time.perf_counter() - t_start, latency=lat_records,
                           results=records)
        for name in os.listdir(tmp):
            os.remove(os.path.join(tmp, name))
        os.rmdir(tmp)
    print(f"\nwall time {time.perf_counter() - t_start:.0f}s; results: {out}")
    labels = [f"fused:{p}" for p in args.paths] + [p for p in args.providers if p != "fused"]
    if args.plot:
        from plot import plot
        plot(records, labels, args.plot, f"se_fused bench: {info['device_name']}, torch {info['torch']}")
    report.print_predictions(records)
    latency.print_table(lat_records, labels)
    if records:
        report.print_table(records, labels)
        report.print_paths(records, args.paths)
    return 0


def _merge(part, path, providers, meta, lat_records, records, rc) -> None:
    """One process's JSON results into the run's (what it saved, if anything)."""
    entry = {"cuda_path": path, "providers": providers, "rc": rc}
    try:
        with open(part) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        entry["error"] = f"no results ({type(e).__name__})"
        data = {}
    meta["processes"].append(entry)
    meta.setdefault("se_fused", data.get("se_fused"))
    lat_records += data.get("latency", [])
    records += data.get("results", [])


if __name__ == "__main__":
    sys.exit(main())
