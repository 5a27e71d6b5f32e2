"""bench.py's tables: the main one (medians, ratios to the floor and to eager) and, on a GPU
where benchmarks/gpu_model.py exists, its predictions beside the measurements."""
from typing import Dict, List, Optional


def rows_by_case(records: List[dict]) -> Dict[tuple, Dict[str, dict]]:
    """(case, hidden, dtype, layout, pass) -> provider -> record, in the order measured."""
    rows: Dict[tuple, Dict[str, dict]] = {}
    for r in records:
        key = (r["case"], r["hidden"], r["dtype"], r["layout"], r["pass"])
        rows.setdefault(key, {})[r["provider"]] = r
    return rows


def median(rec: Optional[dict]) -> Optional[float]:
    return rec.get("median_us") if rec else None


def _cell(rec: Optional[dict], width: int) -> str:
    if rec is None:
        return "-".rjust(width)
    if "error" in rec:
        return "ERR".rjust(width)
    return f"{rec['median_us']:.1f}".rjust(width)


def _ratio(a: Optional[float], b: Optional[float], width: int) -> str:
    return (f"{a / b:.2f}" if a and b else "-").rjust(width)


def print_table(records: List[dict], providers) -> None:
    both = "fused" in providers and "eager" in providers
    head = (f"{'case':<26} {'hid':>4} {'dtype':<5} {'lay':<4} {'pass':<9} {'floor_us':>10}"
            + "".join(f" {p + '_us':>11}" for p in providers)
            + "".join(f" {p + '/floor':>13}" for p in providers)
            + (" eager/fused" if both else ""))
    print()
    print(head)
    print("-" * len(head))
    for (case, hidden, dtype, layout, pass_), recs in rows_by_case(records).items():
        floor = median(recs.get("floor"))
        out = (f"{case:<26} {hidden:>4} {dtype:<5} {layout:<4} {pass_:<9} "
               f"{_cell(recs.get('floor'), 10)}")
        out += "".join(" " + _cell(recs.get(p), 11) for p in providers)
        out += "".join(" " + _ratio(median(recs.get(p)), floor, 13) for p in providers)
        if both:
            out += " " + _ratio(median(recs.get("eager")), median(recs.get("fused")), 11)
        print(out)
    print("times: medians in microseconds; X/floor = time / floor time in the same run "
          "(floor: clone for fwd, clone + add for fwdbwd); eager/fused > 1 means fused is faster; "
          "ERR: see the progress line or the JSON.", flush=True)


# --------------------------------------------------------------------------- GPU model
def load_gpu_model():
    """benchmarks/gpu_model.py as a module, or None when it is not there (silently) or does
    not import (with a note)."""
    try:
        import gpu_model
    except ModuleNotFoundError as e:
        if e.name == "gpu_model":
            return None
        print(f"gpu_model.py does not import ({e}); no predictions")
        return None
    except Exception as e:
        print(f"gpu_model.py does not import ({type(e).__name__}: {e}); no predictions")
        return None
    return gpu_model if hasattr(gpu_model, "predict") else None


MODEL_PATHS = ("twopass", "onepass", "cluster")


def predict(model, case, bytes_per_element: int) -> dict:
    """gpu_model.predict for one case: {fwd_us, bwd_us, clone_us, add_us} (the default path),
    and where the model has path_us, "by_path": {path: {fwd_us, bwd_us, fwd_path, bwd_path}}
    (what a forced path runs, its fallback included); or {error}."""
    b = case.block
    try:
        if b.excitation != "two_fc":
            raise ValueError(f"no model of the {b.excitation} excitation")
        # the model takes a map of h x w elements: a 1-D or 3-D map as its product
        *outer, w = b.map
        h = 1
        for v in outer:
            h *= v
        p = model.predict(case.n, b.c, h, w, case.hidden, bytes_per_element,
                          case.layout == "cl")
        out = {k: float(p[k]) for k in ("fwd_us", "bwd_us", "clone_us", "add_us")}
        if hasattr(model, "path_us"):
            out["by_path"] = {}
            for path in MODEL_PATHS:
                (f, fp), (bw, bp) = model.path_us(p, path, "fwd"), model.path_us(p, path, "bwd")
                out["by_path"][path] = {"fwd_us": float(f), "bwd_us": float(bw), "fwd_path": fp,
                                        "bwd_path": bp}
        return out
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"[:160]}


def _model_path(path: Optional[str]) -> Optional[str]:
    """The modelled path a SE_FUSED_CUDA_PATH value runs: auto is twopass today
    (se_heuristics.h choose_path); None: the default path."""
    return "twopass" if path in (None, "", "auto") else path


def predicted_us(prediction: dict, pass_: str, provider: str, path: Optional[str] = None) -> Optional[float]:
    """What the model predicts for the fused block ('fused', under SE_FUSED_CUDA_PATH=path;
    'fused:PATH' names it) or the floor ('floor') in a pass: fwd (and fwd-graph) forward,
    fwdbwd forward + backward."""
    if "error" in prediction:
        return None
    if provider == "floor":
        return prediction["clone_us"] + (prediction["add_us"] if pass_ == "fwdbwd" else 0.0)
    if provider.startswith("fused:"):
        path = provider.split(":", 1)[1]
    by = prediction.get("by_path", {}).get(_model_path(path))
    if by is None:
        if _model_path(path) != "twopass":
            return None
        by = prediction
    return by["fwd_us"] + (by["bwd_us"] if pass_ == "fwdbwd" else 0.0)


def predicted_path(prediction: dict, pass_: str, path: Optional[str] = None) -> Optional[str]:
    """The path the model expects a forced path to run ("cluster", or "twopass" where it does
    not apply); "fwd/bwd" when the directions differ in a fwdbwd pass."""
    by = prediction.get("by_path", {}).get(_model_path(path))
    if by is None:
        return None
    if pass_ == "fwdbwd" and by["bwd_path"] != by["fwd_path"]:
        return f"{by['fwd_path']}/{by['bwd_path']}"
    return by["fwd_path"]


def _ran(rec: dict) -> str:
    """The path(s) a record's calls ran: "cluster", or "fwd/bwd" when they differ."""
    t = rec.get("path_taken") or {}
    f, b = t.get("forward"), t.get("backward")
    return f if not b or b == f else f"{f}/{b}"


def print_predictions(records: List[dict]) -> None:
    """Predicted beside measured for the records that carry a prediction (GPU runs only): the
    floor and each fused path, with the path the calls ran and the one the model expected."""
    rows = [(key, recs) for key, recs in rows_by_case(records).items()
            if any("predicted_us" in r for r in recs.values())]
    if not rows:
        return
    head = (f"{'case':<26} {'dtype':<5} {'lay':<4} {'pass':<9} {'provider':<19} {'meas_us':>9} "
            f"{'predicted':>10} {'meas/pred':>10}  ran (model)")
    print("\nGPU model (benchmarks/gpu_model.py): predicted beside measured")
    print(head)
    print("-" * len(head))
    for (case, _, dtype, layout, pass_), recs in rows:
        for p, rec in recs.items():
            if p != "floor" and not p.startswith("fused"):
                continue
            meas, pred = rec.get("median_us"), rec.get("predicted_us")
            ran = _ran(rec)
            model = rec.get("predicted_path")
            print(f"{case:<26} {dtype:<5} {layout:<4} {pass_:<9} {p:<19}"
                  + (f" {meas:9.1f}" if meas else f" {'-':>9}")
                  + (f" {pred:10.1f}" if pred else f" {'-':>10}") + " " + _ratio(meas, pred, 10)
                  + (f"  {ran or '-'} ({model})" if model else (f"  {ran}" if ran else "")))
    print("meas/pred > 1: slower than the model predicts. ran: the path the calls took "
          "(fwd/bwd where they differ); (model): the path the model expected.", flush=True)


# --------------------------------------------------------------------------- paths and Auto
def _n_hw_bytes(rec: dict) -> tuple:
    dims = [int(v) for v in rec["shape"].split("x")]
    hw = 1
    for v in dims[2:]:
        hw *= v
    elem = {"fp32": 4, "bf16": 2, "fp16": 2}.get(rec["dtype"], 4)
    return dims[0], hw, dims[0] * dims[1] * hw * elem / 1e6


def path_times(records: List[dict], paths) -> Dict[tuple, Dict[str, Dict[str, tuple]]]:
    """(case, hidden, dtype, layout) -> direction ("fwd", "bwd") -> path -> (us, ran as
    itself): fwd from the fwd pass, bwd as fwdbwd - fwd of the same path."""
    out: Dict[tuple, Dict[str, Dict[str, tuple]]] = {}
    for (case, hidden, dtype, layout, pass_), recs in rows_by_case(records).items():
        if pass_ not in ("fwd", "fwdbwd"):
            continue
        row = out.setdefault((case, hidden, dtype, layout), {})
        for path in paths:
            rec = recs.get(f"fused:{path}")
            if not rec or not rec.get("median_us"):
                continue
            t = rec.get("path_taken") or {}
            want = "twopass" if path == "auto" else path
            row.setdefault("_recs", {})[(pass_, path)] = rec
            if pass_ == "fwd":
                row.setdefault("fwd", {})[path] = (rec["median_us"], t.get("forward") in (None, want)
                                                   if path == "auto" else t.get("forward") == want)
    for key, row in out.items():
        recs = row.pop("_recs", {})
        for path in paths:
            f, fb = recs.get(("fwd", path)), recs.get(("fwdbwd", path))
            if f and fb:
                want = "twopass" if path == "auto" else path
                ok = (fb.get("path_taken") or {}).get("backward") == want or path == "auto"
                row.setdefault("bwd", {})[path] = (fb["median_us"] - f["median_us"], ok)
    return out


def auto_rule(records: List[dict], paths, base: str = "twopass", margin: float = 0.03) -> List[str]:
    """The rule Auto should adopt, per direction, from the measured paths: for each other
    path, the rows where both it and the base ran as themselves; faster by more than
    `margin` counts as a win, slower by more as a loss. All wins: that path where it
    applies; all losses: the base; mixed: the first single-feature threshold (batch N,
    map size HW, x MB, layout, dtype) that separates wins from losses, if any."""
    if base not in paths:
        return [f"Auto: no rule (the base path {base} was not measured)"]
    times = path_times(records, paths)
    lines = []
    for direction in ("fwd", "bwd"):
        for path in [p for p in paths if p != base]:
            wins, losses, ties = [], [], []
            for key, row in times.items():
                d = row.get(direction, {})
                if path in d and base in d and d[path][1] and d[base][1] and d[base][0] > 0:
                    q = d[path][0] / d[base][0]
                    rec = {"shape": key[0].split(":")[-1], "dtype": key[2], "layout": key[3]}
                    item = (key, q, rec)
                    (wins if q < 1 - margin else losses if q > 1 + margin else ties).append(item)
            name = "forward" if direction == "fwd" else "backward"
            n = len(wins) + len(losses) + len(ties)
            if n == 0:
                lines.append(f"Auto ({name}): {base}; {path} never ran as itself against {base} "
                             f"(it did not apply, or this build lacks it)")
                continue
            span = lambda items: (f"{min(q for _, q, _ in items):.2f}-{max(q for _, q, _ in items):.2f}x"  # noqa: E731
                                  if items else "-")
            counts = (f"{path}/{base} over {n} rows where both ran as themselves: {len(wins)} faster "
                      f"({span(wins)}), {len(losses)} slower ({span(losses)}), {len(ties)} within "
                      f"{margin:.0%}")
            if not losses and wins:
                lines.append(f"Auto ({name}): {path} wherever it applies, else {base} ({counts})")
            elif not wins:
                lines.append(f"Auto ({name}): {base}, not {path} ({counts})")
            else:
                rule = _separating_rule([r for _, _, r in wins], [r for _, _, r in losses])
                lines.append(f"Auto ({name}): " + (f"{path} where {rule} and it applies, else {base}"
                                                   if rule else "no single-feature rule; per shape above")
                             + f" ({counts})")
    return lines


def _separating_rule(wins: List[dict], losses: List[dict]) -> Optional[str]:
    feats = [("N", lambda r: _n_hw_bytes(r)[0]), ("HW", lambda r: _n_hw_bytes(r)[1]),
             ("x MB", lambda r: _n_hw_bytes(r)[2])]
    for name, f in feats:
        w, lo = [f(r) for r in wins], [f(r) for r in losses]
        if min(w) > max(lo):
            return f"{name} >= {min(w):g}"
        if max(w) < min(lo):
            return f"{name} <= {max(w):g}"
    for name in ("layout", "dtype"):
        w, lo = {r[name] for r in wins}, {r[name] for r in losses}
        if not w & lo:
            return f"{name} in {sorted(w)}"
    return None


def print_paths(records: List[dict], paths) -> None:
    """The CUDA paths side by side (each timed in a process of its own), per shape and
    direction: time / floor, the path the calls ran where it was not the one forced, the
    fastest path that ran as itself; then the rule Auto should adopt."""
    times = path_times(records, paths)
    if not times or len(paths) < 2:
        return
    others = {}  # (case, hidden, dtype, layout, pass, provider) -> median, the first measured
    for r in records:  # (each process times the floor: the first process's, beside eager)
        if r["provider"] in ("floor", "eager", "compile") and r.get("median_us"):
            others.setdefault((r["case"], r["hidden"], r["dtype"], r["layout"], r["pass"], r["provider"]),
                              r["median_us"])
    head = (f"{'case':<26} {'dtype':<5} {'lay':<4} {'dir':<4} {'floor':>9}"
            + "".join(f" {p:>13}" for p in paths) + f" {'eager':>9} {'compile':>9}  fastest")
    print("\nCUDA paths, each in a process of its own: microseconds (fwd: the forward; bwd: "
          "fwdbwd - fwd; floor: clone, add); * where the calls ran another path than the one forced")
    print(head)
    print("-" * len(head))
    for key, row in times.items():
        for direction in ("fwd", "bwd"):
            d = row.get(direction)
            if not d:
                continue

            def other(p):
                a, b = others.get((*key, "fwd", p)), others.get((*key, "fwdbwd", p))
                v = a if direction == "fwd" else (b - a if a and b else None)
                return f" {v:9.1f}" if v else f" {'-':>9}"
            line = f"{key[0]:<26} {key[2]:<5} {key[3]:<4} {direction:<4}" + other("floor")
            for p in paths:
                cell = "-" if p not in d else f"{d[p][0]:.1f}" + ("" if d[p][1] else "*")
                line += f" {cell:>13}"
            line += other("eager") + other("compile")
            own = {p: t for p, (t, ok) in d.items() if ok}
            line += "  " + (min(own, key=own.get) if own else "-")
            print(line)
    if any(r.get("path_taken") for r in records):
        print("*: the calls ran another path (the forced one does not apply there; see the progress "
              "lines or the JSON's path_taken)")
    else:
        print("*: no CUDA path was recorded (a CPU run, or a build without the CUDA part)")
    for line in auto_rule(records, paths):
        print(line)
