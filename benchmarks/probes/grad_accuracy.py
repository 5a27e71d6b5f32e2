"""Gradient accuracy of FusedSEBlock against the plain block, over many inputs.

    python benchmarks/probes/grad_accuracy.py [dtype [seeds]]     # e.g. float32 3

For each shape x seed x layout x bias: gradients of the plain block (eager) and of
FusedSEBlock in `dtype`, and of the plain block in float64 (the reference) on the same
dtype-rounded inputs and weights; per gradient the max abs error against the reference.
Prints how many comparisons miss the test suite's bar (fused <= margin x eager, margin 2
in float32 and 1 otherwise, or fused <= 1 ULP at the gradient's max |value|) and, per
gradient, the worst ratio fused / eager with where it happened. Reports; never asserts.
"""
import itertools
import math
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)  # this checkout
import se_fused  # noqa: E402

SHAPES = [(1, 2048, 7, 7, 16), (4, 2048, 7, 7, 16), (32, 2048, 7, 7, 16), (2, 256, 14, 14, 16),
          (8, 64, 56, 56, 4), (1, 1024, 1, 1, 16), (3, 17, 17, 13, 4), (16, 512, 7, 7, 4),
          (2, 960, 7, 7, 4)]
MANTISSA = {torch.float32: 23, torch.bfloat16: 7, torch.float16: 10}


def ulp(v, dtype):
    return 2.0 ** ((math.floor(math.log2(v)) if v > 0 else -126) - MANTISSA[dtype])


def grads(mod, x, dy, dtype, cl):
    fmt = torch.channels_last if cl else torch.contiguous_format
    xx = x.to(dtype).contiguous(memory_format=fmt).detach().requires_grad_(True)
    mod(xx).backward(dy.to(dtype).contiguous(memory_format=fmt))
    out = {"dx": xx.grad}
    out.update((k, p.grad) for k, p in mod.named_parameters())
    return {k: v.double() for k, v in out.items()}


def main():
    dtype = getattr(torch, sys.argv[1] if len(sys.argv) > 1 else "float32")
    seeds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    margin = 2.0 if dtype == torch.float32 else 1.0
    worst, misses, total = {}, 0, 0
    for (n, c, h, w, r), seed, cl, bias in itertools.product(SHAPES, range(seeds),
                                                             [False, True], [False, True]):
        g = torch.Generator().manual_seed(seed * 1000 + n + c + h)
        ref = se_fused.SEBlock(c, r, bias=bias).double()
        with torch.no_grad():
            for p in ref.parameters():
                p.copy_((torch.randn(p.shape, generator=g, dtype=torch.float64)
                         * p.shape[-1] ** -0.5).to(dtype).double())
        x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64).to(dtype).double()
        dy = torch.randn(n, c, h, w, generator=g, dtype=torch.float64).to(dtype).double()
        eager = se_fused.SEBlock(c, r, bias=bias)
        fused = se_fused.FusedSEBlock(c, r, bias=bias)
        for m in (eager, fused):
            m.load_state_dict(ref.state_dict())
            m.to(dtype)
        g_ref = grads(ref, x, dy, torch.float64, cl)
        g_e, g_f = grads(eager, x, dy, dtype, cl), grads(fused, x, dy, dtype, cl)
        for k, v in g_ref.items():
            e_f = (g_f[k] - v).abs().max().item()
            e_e = (g_e[k] - v).abs().max().item()
            one = ulp(v.abs().max().item(), dtype)
            total += 1
            misses += not (e_f <= margin * e_e or e_f <= one)
            ratio = e_f / max(e_e, 1e-30)
            if k not in worst or ratio > worst[k][0]:
                worst[k] = (ratio, (n, c, h, w, r, seed, "cl" if cl else "nchw", bias), e_f, e_e, one)
    print(f"{dtype}: {misses} of {total} comparisons miss the bar (margin {margin})")
    for k, (ratio, where, e_f, e_e, one) in worst.items():
        print(f"  {k}: worst fused / eager {ratio:.2f} at N,C,H,W,r,seed,layout,bias={where} "
              f"(fused {e_f:.3g}, eager {e_e:.3g}, 1 ulp {one:.3g})")


if __name__ == "__main__":
    main()
