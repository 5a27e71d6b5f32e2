"""bench.py's latency section (issue 12): what one call costs at batch 1, where the time is
the host's (op dispatch, autograd bookkeeping, launches) rather than memory traffic.

At the three batch-1 float32 shapes of cases.LATENCY_BLOCKS, per-call microseconds of fused
(FusedSEBlock), eager (SEBlock), compile (torch.compile of SEBlock) and one x.clone() (what a
single PyTorch op call costs), in three passes:
  nograd   forward under torch.no_grad
  grad     forward with x requiring grad (the autograd graph is recorded, then dropped)
  fwdbwd   forward, then y.sum().backward() (the gradients are set to None between calls)
The providers take turns, 20 calls in a row each (harness.time_calls with streak=20: warm
calls, as in a loop, while a change in the machine's load hits them alike). On the CPU on one thread
(restored afterwards), where the issue sets its bar for fused / eager; on a GPU the same rows
again as CUDA-graph replays (pass name +graph).
"""
from typing import Callable, Dict, List

import torch

from cases import LATENCY_BLOCKS, Case
from harness import graph_replay, short_error, sync, time_calls
from providers import build, none_grads, plain_block

PASSES = ("nograd", "grad", "fwdbwd")


def _calls(models: Dict[str, torch.nn.Module], pass_: str, x: torch.Tensor,
           xg: torch.Tensor) -> Dict[str, Callable]:
    fns: Dict[str, Callable] = {"clone": lambda: x.clone()}
    for name, m in models.items():
        if pass_ == "nograd":
            fns[name] = lambda m=m: m(x)
        elif pass_ == "grad":
            fns[name] = lambda m=m: m(xg)
        else:
            fns[name] = lambda m=m: m(xg).sum().backward()
    return fns


def _first_calls(fns: Dict[str, Callable], errors: Dict[str, str], reset, device) -> None:
    """One call of each (compiles for compile); a provider that fails is dropped from fns."""
    for name in list(fns):
        try:
            reset()
            fns[name]()
            sync(device)
        except Exception as e:
            errors[name] = short_error(e)
            del fns[name]


def _block_records(se_fused, block, bars, providers, device, quick, log) -> List[dict]:
    case = Case(block, 1, "fp32", "nchw")
    cuda = device.type == "cuda"
    plain = plain_block(se_fused, block, device, torch.float32)
    models, build_errors = build(se_fused, providers, plain, block, device)
    x = torch.randn(1, block.c, block.hw, block.hw, device=device)
    xg = x.detach().clone().requires_grad_(True)
    grads = [xg] + list({id(p): p for m in models.values() for p in m.parameters()}.values())

    def reset():
        none_grads(grads)

    budget_s, min_reps, max_reps = (0.3, 30, 1000) if quick else (1.0, 100, 5000)
    records = []
    for pass_, bar in zip(PASSES, bars):
        variants = [(pass_, False)] + ([(pass_ + "+graph", True)] if cuda else [])
        for name, graphed in variants:
            errors = dict(build_errors)
            with torch.set_grad_enabled(pass_ != "nograd"):
                fns = _calls(models, pass_, x, xg)
                _first_calls(fns, errors, reset, device)
                if graphed:
                    for p in list(fns):
                        try:
                            fns[p] = graph_replay(fns[p], reset)
                        except Exception as e:
                            errors[p] = short_error(e)
                            del fns[p]
                try:
                    times = time_calls(fns, device, budget_s=budget_s, min_reps=min_reps,
                                       max_reps=max_reps, warmup=10, streak=20,
                                       reset=None if graphed else reset)
                except Exception as e:  # which provider failed is in the message
                    times = {p: {"error": short_error(e)} for p in fns}
            del fns  # frees the graphs
            meta = {**case.fields(), "section": "latency", "pass": name, "cuda_graph": graphed,
                    "threads": torch.get_num_threads(),
                    "bar_fused_over_eager": None if cuda else bar}
            for p in ("clone",) + tuple(providers):
                rec = {**meta, "provider": p}
                rec.update({"error": errors[p]} if p in errors else times.get(p, {}))
                records.append(rec)
            log(_progress_line(case, name, records[-1 - len(providers):], bar, cuda))
    return records


def _progress_line(case: Case, pass_: str, recs: List[dict], bar: float, cuda: bool) -> str:
    us = {r["provider"]: r.get("median_us") for r in recs}
    parts = [f"latency {case.shape:<12} h={case.hidden:<3} {pass_:<13}"]
    parts += [f"{p}={us[p]:.1f}us" if us[p] else f"{p}=ERR" for p in us]
    if us.get("fused") and us.get("eager"):
        parts.append(f"fused/eager={us['fused'] / us['eager']:.2f}"
                     + ("" if cuda else f" (bar {bar:.2f})"))
    return "  ".join(parts)


def run(se_fused, providers, device, quick: bool, records: List[dict], log=print) -> None:
    """Appends the latency records of every shape and pass to records (shape by shape: an
    interrupted run keeps the shapes done); on the CPU with one thread."""
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        for block, bars in LATENCY_BLOCKS:
            records += _block_records(se_fused, block, bars, providers, device, quick, log)
    finally:
        torch.set_num_threads(threads)


def print_table(records: List[dict], providers) -> None:
    if not records:
        return
    rows: Dict[tuple, Dict[str, dict]] = {}
    for r in records:
        rows.setdefault((r["shape"], r["hidden"], r["pass"]), {})[r["provider"]] = r
    cpu = records[0]["bar_fused_over_eager"] is not None

    def us(recs, p):
        return recs[p].get("median_us") if p in recs else None

    def ratio(recs, a, b):
        ta, tb = us(recs, a), us(recs, b)
        return ta / tb if ta and tb else None

    # (header, width, format, value of a row)
    columns = [("clone_us", 9, ".1f", lambda recs: us(recs, "clone"))]
    columns += [(f"{p}_us", 11, ".1f", lambda recs, p=p: us(recs, p)) for p in providers]
    if "fused" in providers and "eager" in providers:
        columns.append(("fused/eager", 12, ".2f", lambda recs: ratio(recs, "fused", "eager")))
        if cpu:
            columns.append(("bar", 5, ".2f",
                            lambda recs: next(iter(recs.values()))["bar_fused_over_eager"]))
    if "compile" in providers and "eager" in providers:
        columns.append(("compile/eager", 14, ".2f", lambda recs: ratio(recs, "compile", "eager")))
    if "fused" in providers:
        columns.append(("fused/clone", 12, ".2f", lambda recs: ratio(recs, "fused", "clone")))

    head = f"{'shape':<12} {'hid':>3} {'pass':<13}" + "".join(
        f" {name:>{width}}" for name, width, _, _ in columns)
    print(f"\nlatency, batch 1, float32, {records[0]['threads']} thread(s)"
          + (": bar = issue 12's bar for fused / eager on one CPU thread" if cpu else ""))
    print(head)
    print("-" * len(head))
    for (shape, hidden, pass_), recs in rows.items():
        line = f"{shape:<12} {hidden:>3} {pass_:<13}"
        for _, width, spec, value in columns:
            v = value(recs)
            line += " " + (format(v, spec) if v else "-").rjust(width)
        print(line)
    print("medians of per-call times in microseconds; X/eager < 1: X is faster than eager; "
          "clone: one x.clone(), what a single op call costs here.", flush=True)
