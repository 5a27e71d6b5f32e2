"""The fused forward at an MLP-heavy shape if its parts ran one after another at library speed.

Any fused forward has to (1) read x and write y, which costs at least what x.clone() costs, and
(2) run the gate MLP and its sigmoid in the accumulation dtype (float64 for float32 x: a float32
MLP alone puts about half an ULP of error into the gate, so y would miss the 1-ULP bound;
float32 for 16-bit x). This script times, in one run, the clone, the MLP's two products done by
the fastest routine this machine has for them (torch.mm into preallocated outputs: MKL/oneDNN
GEMM, weights already in the accumulation dtype, which is more than the kernels get) and
torch.sigmoid, and prints their sum against the issue's bar of 1.5 x clone. The sum is
optimistic twice over (one clone's traffic, where every schedule tried here reads x twice; the
library's GEMM, faster than the kernels' own) and assumes the MLP overlaps no memory traffic: on
these 2 cores both are bound per core (a clone on 1 thread takes 1.9x its 2-thread time), so
overlap would have to hide the FMAs inside the same core's memory stalls. Reports, never
asserts.

  python benchmarks/probes/bound_7x7.py [N,C,H,W,hidden ...]     # default 32,2048,7,7,128
"""
import sys

import torch

from fwd_vs_clone import median_us  # benchmarks/probes/ is on sys.path when run as a script


def bound(n, c, h, w, hidden, dtype):
    acc = torch.float64 if dtype == torch.float32 else torch.float32
    x = torch.randn(n, c, h, w, dtype=dtype)
    pooled = torch.randn(n, c, dtype=acc)
    act = torch.randn(n, hidden, dtype=acc)
    w1 = torch.randn(hidden, c, dtype=acc)
    w2 = torch.randn(c, hidden, dtype=acc)
    z1 = torch.empty(n, hidden, dtype=acc)
    z2, s = torch.empty(n, c, dtype=acc), torch.empty(n, c, dtype=acc)
    clone = median_us(lambda: x.clone(), 301)
    layer1 = median_us(lambda: torch.mm(pooled, w1.T, out=z1), 301)
    layer2 = median_us(lambda: torch.mm(act, w2.T, out=z2), 301)
    gate = median_us(lambda: torch.sigmoid(z2, out=s), 301)
    total = clone + layer1 + layer2 + gate
    name = str(dtype).replace("torch.", "")
    print(f"{n}x{c}x{h}x{w} hidden {hidden} {name} (MLP in {str(acc).replace('torch.', '')}), "
          f"{torch.get_num_threads()} threads: clone {clone:.0f} us + GEMMs {layer1:.0f} + "
          f"{layer2:.0f} us + sigmoid {gate:.0f} us = {total:.0f} us = {total / clone:.2f} x clone "
          f"(bar: 1.50)", flush=True)


if __name__ == "__main__":
    shapes = sys.argv[1:] or ["32,2048,7,7,128"]
    for arg in shapes:
        n, c, h, w, hidden = map(int, arg.split(","))
        for dtype in (torch.float32, torch.bfloat16):
            bound(n, c, h, w, hidden, dtype)
