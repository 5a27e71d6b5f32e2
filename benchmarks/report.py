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


def predict(model, case, bytes_per_element: int) -> dict:
    """gpu_model.predict for one case: {fwd_us, bwd_us, clone_us, add_us}, or {error}."""
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
        return {k: float(p[k]) for k in ("fwd_us", "bwd_us", "clone_us", "add_us")}
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"[:160]}


def predicted_us(prediction: dict, pass_: str, provider: str) -> Optional[float]:
    """What the model predicts for the fused block ('fused') or the floor ('floor') in a
    pass: fwd (and fwd-graph) forward, fwdbwd forward + backward."""
    if "error" in prediction:
        return None
    if provider == "floor":
        return prediction["clone_us"] + (prediction["add_us"] if pass_ == "fwdbwd" else 0.0)
    return prediction["fwd_us"] + (prediction["bwd_us"] if pass_ == "fwdbwd" else 0.0)


def print_predictions(records: List[dict]) -> None:
    """Predicted beside measured for the records that carry a prediction (GPU runs only)."""
    rows = [(key, recs) for key, recs in rows_by_case(records).items()
            if any("predicted_us" in r for r in recs.values())]
    if not rows:
        return
    head = (f"{'case':<26} {'dtype':<5} {'lay':<4} {'pass':<9} {'fused_us':>9} {'predicted':>10} "
            f"{'meas/pred':>10} {'floor_us':>9} {'predicted':>10} {'meas/pred':>10}")
    print("\nGPU model (benchmarks/gpu_model.py): predicted beside measured")
    print(head)
    print("-" * len(head))
    for (case, _, dtype, layout, pass_), recs in rows:
        out = f"{case:<26} {dtype:<5} {layout:<4} {pass_:<9}"
        for p in ("fused", "floor"):
            rec = recs.get(p) or {}
            meas, pred = rec.get("median_us"), rec.get("predicted_us")
            out += (f" {meas:9.1f}" if meas else f" {'-':>9}") + (
                f" {pred:10.1f}" if pred else f" {'-':>10}") + " " + _ratio(meas, pred, 10)
        print(out)
    print("meas/pred > 1: slower than the model predicts.", flush=True)
