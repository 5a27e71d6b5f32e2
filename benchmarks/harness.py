"""What bench.py and models.py share: timing, statistics, the device description, peak
memory and the JSON results file.

Timing:
  time_calls      per-call times of several functions, interleaved call by call (a change in
                  the machine's load hits them alike): time.perf_counter on the CPU; on a GPU
                  CUDA events around each call with the device idle before it, so the host's
                  launch overhead counts (what a user's loop sees)
  time_kernel     GPU device time of one function: triton.testing.do_bench (CUDA events, L2
                  flushed between calls, return_mode="median") when triton is importable, else
                  CUDA events with an L2 flush; on the CPU, time_calls
  graph_replay    one call of a function captured in a CUDA graph; returns the replay
Every timer returns medians with p20 and p80 (and the repetitions) in the unit asked for.
Reports, never asserts.
"""
import json
import os
import platform
import re
import time
from typing import Callable, Dict, List, Optional

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


# --------------------------------------------------------------------------- statistics
def percentile(xs: List[float], q: float) -> float:
    """The q-quantile (0 <= q <= 1) of xs, linearly interpolated."""
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summarize(values: List[float], unit: str = "us") -> dict:
    return {f"median_{unit}": percentile(values, 0.5), f"p20_{unit}": percentile(values, 0.2),
            f"p80_{unit}": percentile(values, 0.8), "reps": len(values)}


_SCALE = {"us": 1e6, "ms": 1e3, "s": 1.0}


# --------------------------------------------------------------------------- timing
def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_calls(fns: Dict[str, Callable], device, *, budget_s: float, min_reps: int,
               max_reps: int, warmup: int = 2, reset: Optional[Callable] = None,
               unit: str = "us", streak: int = 1) -> Dict[str, dict]:
    """Per-call times of each fn after `warmup` calls, the fns interleaved: each round runs
    every fn `streak` times in a row (1: call by call; more: mostly warm calls, as in a loop
    over one of them, while a drift in the machine's load still hits all alike). As many
    calls of each as fit budget_s (estimated from one round of single calls), within
    [min_reps, max_reps]. reset (if given) runs before every call, outside the timed region
    (e.g. setting .grad to None)."""
    reset = reset or (lambda: None)
    cuda = torch.device(device).type == "cuda"
    for fn in fns.values():
        for _ in range(warmup):
            reset()
            fn()
    sync(device)
    estimate = 0.0
    for fn in fns.values():
        reset()
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        estimate += time.perf_counter() - t0
    reps = max(min_reps, min(max_reps, int(budget_s / max(estimate, 1e-9))))
    times: Dict[str, List[float]] = {name: [] for name in fns}
    scale = _SCALE[unit]
    for _ in range(-(-reps // streak)):
        for name, fn in [item for item in fns.items() for _ in range(streak)]:
            reset()
            if cuda:
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize()  # the device idle: the start event fires at enqueue
                start.record()
                fn()
                end.record()
                end.synchronize()
                times[name].append(start.elapsed_time(end) * 1e-3 * scale)
            else:
                t0 = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t0) * scale)
    return {name: summarize(ts, unit) for name, ts in times.items()}


def time_one(fn: Callable, device, **kw) -> dict:
    """time_calls for a single function."""
    return time_calls({"fn": fn}, device, **kw)["fn"]


def time_kernel(fn: Callable, grads_to_none: List[torch.Tensor], rep_ms: int = 100) -> dict:
    """GPU time of fn in microseconds with the L2 flushed between calls: triton's do_bench
    when importable, else CUDA events around each of 100 calls after warm-up."""
    try:
        from triton.testing import do_bench
    except ImportError:
        do_bench = None
    if do_bench is not None:
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
    return summarize([s.elapsed_time(e) * 1e3 for s, e in zip(starts, ends)])


def kernel_timer_name(device) -> str:
    if torch.device(device).type == "cpu":
        return "time.perf_counter per call"
    return "triton.testing.do_bench (median)" if triton_version() else "cuda events"


def graph_replay(fn: Callable, reset: Optional[Callable] = None) -> Callable:
    """Capture one call of fn (after warm-up on a side stream) in a CUDA graph; return the
    replay. reset (e.g. setting .grad to None, so that the captured backward assigns the
    gradients rather than accumulating them) runs before each warm-up call and the capture."""
    reset = reset or (lambda: None)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            reset()
            fn()
    torch.cuda.current_stream().wait_stream(side)
    reset()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def peak_memory_mb(fn: Callable, device, reset: Optional[Callable] = None) -> Optional[float]:
    """MB that one call of fn allocates at its peak beyond what was allocated before it
    (CUDA caching allocator); None on the CPU, which keeps no such statistics."""
    if torch.device(device).type != "cuda":
        return None
    if reset:
        reset()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


# --------------------------------------------------------------------------- device
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def device_name(device) -> str:
    device = torch.device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()


def device_slug(device) -> str:
    """'cpu', or the GPU's name in lower case with dashes: the results file's key."""
    device = torch.device(device)
    if device.type == "cpu":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-")


def triton_version() -> Optional[str]:
    try:
        import triton
        return triton.__version__
    except Exception:
        return None


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def describe(device) -> dict:
    """The facts a result needs beside it: device, CPU model, threads, versions, load."""
    device = torch.device(device)
    info = {"device": device.type, "device_name": device_name(device), "cpu": cpu_model(),
            "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "triton": triton_version(),
            "python": platform.python_version(), "load_avg_1min_at_start": load_average(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if device.type == "cuda":
        info["cuda"] = torch.version.cuda
    return info


def device_line(info: dict) -> str:
    host = f"{info['cpu']}, {info['cpu_count']} cpus"
    where = f"cpu ({host})" if info["device"] == "cpu" else f"{info['device_name']} (host {host})"
    return f"device: {where}  torch {info['torch']}  threads {info['threads']}"


def load_warning(device) -> Optional[str]:
    """A warning line when other processes load the CPU the timings run on."""
    load = load_average()
    if torch.device(device).type == "cpu" and load > 0.5:
        return (f"warning: load average {load:.1f} before the run: other processes share these "
                f"{os.cpu_count()} cores, CPU timings will be noisy (--threads 1 suffers least: "
                f"a parallel region waits for its slowest thread)")
    return None


# --------------------------------------------------------------------------- results
def results_path(prefix: str, device) -> str:
    """benchmarks/<prefix>-<device slug>.json: one results file per device."""
    return os.path.join(HERE, f"{prefix}-{device_slug(device)}.json")


def write_json(path: str, meta: dict, **sections) -> None:
    """The run's description and its sections (lists of records) in one file, rewritten
    whole (call it after each case: an interrupted run keeps what it measured)."""
    with open(path, "w") as f:
        json.dump({**meta, **sections}, f, indent=1)


def short_error(e: BaseException, n: int = 160) -> str:
    msg = f"{type(e).__name__}: {e}".replace("\n", " ")
    return msg if len(msg) <= n else msg[: n - 3] + "..."
