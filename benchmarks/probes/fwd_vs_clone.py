"""Forward op alone against x.clone(), for quick before/after checks of one kernel change.

    python benchmarks/probes/fwd_vs_clone.py 32,2048,7,7,128 32,2048,7,7,128,bfloat16,cl

Each argument is N,C,H,W,hidden[,dtype[,cl]]. Prints the median of 300 calls of
torch.ops.se_fused.squeeze_excite and of x.clone(), and their ratio. Reports, never asserts.
"""
import os
import sys

import torch

import se_fused  # noqa: F401  (registers the ops)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/
from harness import time_one  # noqa: E402


def median_us(fn, reps):
    """Median microseconds of `reps` calls after 5 warm-up calls."""
    return time_one(fn, "cpu", budget_s=0.0, min_reps=reps, max_reps=reps, warmup=5)["median_us"]


def run(n, c, h, w, hidden, dtype=torch.float32, channels_last=False, reps=300):
    x = torch.randn(n, c, h, w, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w1 = torch.randn(hidden, c, dtype=dtype) * 0.05
    w2 = torch.randn(c, hidden, dtype=dtype) * 0.05
    op = torch.ops.se_fused.squeeze_excite
    fused = median_us(lambda: op(x, w1, None, w2, None, "relu", "sigmoid"), reps)
    clone = median_us(lambda: x.clone(), reps)
    layout = "cl" if channels_last else "nchw"
    print(f"{n}x{c}x{h}x{w} hidden {hidden} {str(dtype)[6:]} {layout} threads {torch.get_num_threads()}: "
          f"fwd {fused:.0f} us, clone {clone:.0f} us, ratio {fused / clone:.2f}", flush=True)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        f = arg.split(",")
        n, c, h, w, hidden = map(int, f[:5])
        dtype = getattr(torch, f[5]) if len(f) > 5 else torch.float32
        run(n, c, h, w, hidden, dtype, len(f) > 6 and f[6] == "cl")
