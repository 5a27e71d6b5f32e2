"""bench.py --plot FILE.png: time / floor per case for each provider, grouped bars, one panel
per pass (floor: x.clone() for a forward, x.clone() then x + dy for forward + backward).
matplotlib is optional: without it the chart is skipped with a message."""
import math
from typing import List

from report import median, rows_by_case

COLORS = {"fused": "#1f77b4", "eager": "#ff7f0e", "compile": "#2ca02c"}
TITLES = {"fwd": "forward (floor: x.clone())",
          "fwdbwd": "forward + backward (floor: x.clone() then x + dy)",
          "fwd-graph": "forward, CUDA-graph replay (floor: x.clone())"}


def plot(records: List[dict], providers, path: str, title: str) -> bool:
    """Writes the chart to path; False (with a message) when matplotlib is missing or there
    is nothing to draw."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        print(f"--plot: matplotlib is not installed, so no chart was written to {path} "
              f"(pip install matplotlib to get one)")
        return False
    rows = rows_by_case(records)
    passes = list(dict.fromkeys(key[4] for key in rows))
    if not passes:
        print("--plot: no results to draw")
        return False
    n_cases = max(sum(1 for key in rows if key[4] == p) for p in passes)
    fig, axes = plt.subplots(len(passes), 1, squeeze=False,
                             figsize=(max(8.0, 0.75 * n_cases + 2),
                                      4.5 * len(passes)))
    width = 0.8 / len(providers)
    for ax, pass_ in zip(axes[:, 0], passes):
        keys = [key for key in rows if key[4] == pass_]
        ratios = []
        for i, p in enumerate(providers):
            vals = []
            for key in keys:
                t, floor = median(rows[key].get(p)), median(rows[key].get("floor"))
                vals.append(t / floor if t and floor else math.nan)
            ratios += [v for v in vals if not math.isnan(v)]
            xs = [k + (i - (len(providers) - 1) / 2) * width for k in range(len(keys))]
            bars = ax.bar(xs, vals, width, label=p, color=COLORS.get(p))
            ax.bar_label(bars, labels=["" if math.isnan(v) else f"{v:.3g}" for v in vals],
                         fontsize=6, rotation=90, padding=2)
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--", label="floor")
        if ratios and max(ratios) / max(min(ratios), 1e-9) > 8:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_ylabel("time / floor (lower is better)")
        ax.set_title(TITLES.get(pass_, pass_))
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels([f"{case.replace(':', ' ')}\nh={hidden} {dtype} {layout}"
                            for case, hidden, dtype, layout, _ in keys],
                           rotation=60, ha="right", fontsize=7)
        ax.set_xlim(-0.6, len(keys) - 0.4)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, ncol=len(providers) + 1)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"chart: {path}")
    return True
