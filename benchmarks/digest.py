"""Digest of the fused block's results over a fixed set of cases: y and every
gradient (dx, dw1, db1, dw2, db2), bit for bit, through the public functional
API. A change that claims "bitwise the same" shows this script's last line
before and after it.

    python benchmarks/digest.py [--device cpu|cuda] [--verbose]

Inputs are finite, seeded and built on the CPU, so the digest depends only on
the kernels (and the thread count does not change it: every sum has a fixed
order).
"""
import argparse
import hashlib
import itertools

import torch

import se_fused

DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]
LAYOUTS = ["nchw", "channels_last"]
# (bias, activation, gate)
VARIANTS = list(itertools.product([False, True], ["relu", "silu"], ["sigmoid", "hardsigmoid"]))
# [N, C, H, W], hidden: odd sizes, one-pixel maps, one hidden unit, wide C.
SHAPES = [((2, 8, 5, 3), 2), ((3, 40, 7, 7), 10), ((1, 64, 1, 1), 4), ((4, 24, 14, 14), 6),
          ((2, 130, 3, 9), 1), ((5, 256, 4, 4), 16), ((2, 96, 28, 28), 24)]


def _bits(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous()
    view = {8: torch.int64, 4: torch.int32, 2: torch.int16}[t.element_size()]
    return t.view(view).numpy().tobytes()


def case_digest(shape, hidden, dtype, layout, variant, device) -> str:
    bias, act, gate = variant
    n, c, h, w = shape
    gen = torch.Generator().manual_seed(n * 1000003 + c * 1009 + h * 31 + w + hidden)
    x = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    dy = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    w1 = (torch.randn(hidden, c, generator=gen, dtype=torch.float64) * 1.5 / c ** 0.5).to(dtype)
    w2 = (torch.randn(c, hidden, generator=gen, dtype=torch.float64) * 1.5 / hidden ** 0.5).to(dtype)
    b1 = (torch.randn(hidden, generator=gen, dtype=torch.float64) * 0.5).to(dtype) if bias else None
    b2 = (torch.randn(c, generator=gen, dtype=torch.float64) * 0.5).to(dtype) if bias else None
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
        dy = dy.contiguous(memory_format=torch.channels_last)
    leaves = [t.to(device).requires_grad_() for t in (x, w1, w2) + ((b1, b2) if bias else ())]
    x, w1, w2 = leaves[:3]
    b1, b2 = (leaves[3], leaves[4]) if bias else (None, None)
    y = se_fused.squeeze_excitation(x, w1, w2, b1, b2, activation=act, gate=gate)
    y.backward(dy.to(device))
    h = hashlib.sha256(_bits(y))
    for t in leaves:
        h.update(_bits(t.grad))
    return h.hexdigest()


def digest(device="cpu", verbose=False):
    """(case count, the sha256 over every case's digest, in order)."""
    total = hashlib.sha256()
    count = 0
    for (shape, hidden), dtype, layout, variant in itertools.product(SHAPES, DTYPES, LAYOUTS,
                                                                    VARIANTS):
        d = case_digest(shape, hidden, dtype, layout, variant, device)
        total.update(d.encode())
        count += 1
        if verbose:
            print(shape, hidden, str(dtype).replace("torch.", ""), layout, variant, d[:16])
    return count, total.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--verbose", action="store_true", help="print each case's digest")
    args = ap.parse_args()
    count, hexdigest = digest(args.device, args.verbose)
    print(f"{count} cases on {args.device}: {hexdigest}")


if __name__ == "__main__":
    main()
