#!/usr/bin/env python3
"""What-ifs at 7x7 for issue 22's forward bar (docs/cuda.md, "The 7x7 forward"), priced with
benchmarks/gpu_model.py's constants: the built cluster path with smaller clusters or without
the weights' L2 reads (gpu_model.predict's knobs), a streamed cluster forward that is not built
(streamed_fwd), and the floor of any design (fwd_floor_us). Pure Python, no torch.

    python3 benchmarks/gpu_whatif.py
"""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpu_model as gm  # noqa: E402

SM_CLOCK = 1.755e9        # boost clock (as gm.SMEM_BPS); FMAs per SM per clock: 128 float, 64 double


def fwd_floor_us(n, c, hw, dtype_bytes):
    """A lower bound for any fused forward under gpu_model's constants: the launch and a phase's
    fixed cost, x read and y written at the copy's rate, and between a sample's last bytes of x
    and its first of y one cluster barrier and one distributed shared-memory round trip (the
    gate needs every channel's sum); the MLP free (all of it hidden under other samples')."""
    x = n * c * hw * dtype_bytes
    return gm.LAUNCH_US + gm.PHASE_FIXED_US + 2 * x / gm.HBM_BPS * 1e6 + gm.CLUSTER_BARRIER_US + gm.DSMEM_RT_US


def streamed_fwd(n, c, hw, hidden, dtype_bytes, channels_last, cluster_max=gm.CLUSTER_MAX):
    """A streamed cluster forward (not built): clusters stay resident and take their samples one
    after another. A block keeps its j chunks' w1 and w2 slices in shared memory for the whole
    launch (w1's issued first, then S samples' tiles), and a ring of 3 samples' partial hidden
    vectors: "push", every block stores its partials into every block's ring, or "pull", each
    keeps its own and reads the others' after the barrier (one distributed shared-memory round
    trip a sample, exposed). One split cluster barrier per sample (arrive after its phase 1, wait
    before its phase 2), the next sample's phase 1 in between, so the barrier hides under it. A
    block's step (one sample) takes the larger of its shared-memory traffic (tiles written,
    squeezed and scaled; both slices; the partials received and added) at gm.SMEM_BPS and its FMAs,
    or its tiles' HBM bytes at its share of HBM (at most S samples' tiles in flight, Little's
    law at gm.HBM_LATENCY_US); the launch adds the fill (w1 and the first tile, the first phase 1) and
    the drain (the last barrier and phase 2). The fastest exchange and S of 2-8 that fit
    gm.CLUSTER_SMEM_BUDGET; us None where none does (row parts, or the slices too large), with the
    least bytes it would need."""
    acc = gm.acc_bytes(dtype_bytes)
    f = gm.cluster_fit(c, hw, hidden, dtype_bytes, channels_last, cluster_max=cluster_max)
    cs, j, chunk, slot = f["cs"], f["j"], f["chunk"], f["slot"]
    k = math.ceil(c / chunk)
    wsl = gm.weight_slice_bytes(chunk, hidden, dtype_bytes)
    active = sum(g // cs for g in gm.GPC_SMS)  # one block per SM: over half an SM's shared memory
    per = math.ceil(n / active)             # samples a cluster streams
    fma = (64 if acc == 8 else 128) * SM_CLOCK
    bw = 2 * n * c * hw * dtype_bytes / gm.HBM_BPS * 1e6 + active * 2 * c * hidden * dtype_bytes / gm.L2_BPS * 1e6
    best = dict(us=None, need=2 * j * wsl + 3 * j * hidden * acc + 2 * j * slot)
    for exchange, ring, rt in (("push", 3 * k * hidden * acc, 0.0), ("pull", 3 * j * hidden * acc, gm.DSMEM_RT_US)):
        for samples in (2, 4, 8):
            smem = samples * j * slot + 2 * j * wsl + ring
            if f["parts"] > 1 or smem > gm.CLUSTER_SMEM_BUDGET:
                continue
            p1 = max((2 * j * slot + j * wsl + (k * hidden * acc if exchange == "push" else 0)) / gm.SMEM_BPS,
                     j * chunk * hidden / fma) * 1e6
            p2 = rt + max((j * slot + j * wsl + k * hidden * acc) / gm.SMEM_BPS, j * chunk * hidden / fma) * 1e6
            rate = min(gm.HBM_BPS / gm.SMS, min(samples * j * slot, gm.SM_INFLIGHT_CAP) / (gm.HBM_LATENCY_US * 1e-6))
            step = max(p1 + p2 + max(0.0, gm.CLUSTER_BARRIER_US - p1), 2 * j * slot / rate * 1e6)
            fill = gm.L2_RT_US * max(1.0, (j * wsl + j * slot) / gm.SM_INFLIGHT_CAP) + p1
            drain = gm.CLUSTER_BARRIER_US + p2
            us = gm.LAUNCH_US + gm.PHASE_FIXED_US + max(bw, per * step - p1) + fill + drain
            if best["us"] is None or us < best["us"]:
                best = dict(us=us, cs=cs, j=j, samples=samples, per=per, smem=smem, active=active, step=step,
                            exchange=exchange)
    return best


def main():
    print("What-ifs at 7x7, cluster fwd/clone: as designed; the best cluster size of 2-16 (more, smaller "
          "clusters at once); the weights' L2 reads not counted (read once for many samples); both:")

    def best_cs(args, **kw):
        return min((r["cluster_fwd_us"], m) for r, m in ((gm.predict(*args, cluster_max=m, **kw), m)
                                                          for m in (2, 4, 8, 16))
                   if r["cluster_fwd_us"] is not None)
    for label in gm.BAR_7X7:
        args = next(a for lab, *a in gm.BENCH_SHAPES if lab == label)
        r0, r1 = gm.predict(*args), gm.predict(*args, weights_from_l2=False)
        (t2, m2), (t3, m3) = best_cs(args), best_cs(args, weights_from_l2=False)
        clone = r0["clone_us"]
        print(f"  {label}: {r0['cluster_fwd_us'] / clone:.2f}, {t2 / clone:.2f} (cs <= {m2}), "
              f"{r1['cluster_fwd_us'] / clone:.2f}, {t3 / clone:.2f} (cs <= {m3}); "
              f"two-pass {r0['fwd_us'] / clone:.2f}")
    print("The 7x7 forward under other designs (not built), fwd/clone: streamed (streamed_fwd: resident "
          "slices, a split barrier and a partials ring per sample); the floor of any design (fwd_floor_us):")
    for label in gm.BAR_7X7:
        n, c, h, w, hidden, b, cl = next(a for lab, *a in gm.BENCH_SHAPES if lab == label)
        clone = gm.predict(n, c, h, w, hidden, b, cl)["clone_us"]
        st = streamed_fwd(n, c, h * w, hidden, b, cl)
        got = (f"{st['us'] / clone:.2f} (cs {st['cs']} x j {st['j']}, {st['exchange']}, {st['samples']} samples "
               f"in flight, {st['per']} a cluster, {st['smem'] / 1024:.0f} KB)" if st["us"] is not None else
               f"does not fit ({st['need'] / 1024:.0f} KB > {gm.CLUSTER_SMEM_BUDGET // 1024})")
        print(f"  {label}: streamed {got}; floor {fwd_floor_us(n, c, h * w, b) / clone:.2f}")


if __name__ == "__main__":
    main()
