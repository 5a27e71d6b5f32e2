#!/usr/bin/env python3
"""A first-order performance model of the se_fused CUDA kernels on an H200
(docs/cuda.md explains each term). Pure Python, no torch.

    from gpu_model import predict
    predict(n, c, h, w, hidden, dtype_bytes, channels_last)
      -> dict(fwd_us=..., bwd_us=..., clone_us=..., add_us=..., ...)

fwd_us / bwd_us model the default path (SE_FUSED_CUDA_PATH=twopass): forward
2 launches, backward 3, one more each where NHWC rows are split into parts
(the summing step). onepass_fwd_us / onepass_bwd_us (None where it does
not apply: a tile over 80 KB or more units per sample than one wave) model
SE_FUSED_CUDA_PATH=onepass: one launch in rounds of whole samples, x (and
dy) read once, so the forward moves 2N bytes instead of 3N and the backward
3N instead of 4N+, at a grid barrier per round. clone_us is x.clone() (read + write x), add_us is
x + x2 (read 2, write 1), both with the same launch floor, so the ratios
fwd/clone are what bench.py's "x clone" column shows. These are predictions
from bandwidth, launch and wave arithmetic, not measurements: a GPU run of
bench.py prints them beside the measured times.

    python3 benchmarks/gpu_model.py        # the table of docs/cuda.md
"""
import math

# --- H200 (SXM, 141 GB HBM3e), as the issue states them or from the datasheet.
HBM_BPS = 4.3e12          # bytes/s a copy achieves (clone's read + write bytes / time)
L2_BPS = 10e12            # bytes/s of L2 hits, all SMs (assumed; not measured here)
L2_BYTES = 60e6           # L2 capacity
L2_REUSE = 0.5            # fraction of L2 that a re-read can count on (y's write-back, weights)
SMS = 132
LAUNCH_US = 3.0           # first launch of a call: launch + host floor
NEXT_LAUNCH_US = 1.5      # each further dependent launch in the same stream (drain + ramp)
BLOCK_BPS = 20e9          # one block: 16 KB of loads in flight / ~0.8 us loaded DRAM latency
PHASE_FIXED_US = 1.0      # per launch: the block's first loads, the MLP's reductions, barriers
FP64_FLOPS = 60e12        # the MLP of fp32/fp64 tensors runs in double
FP32_FLOPS = 60e12

# --- the kernels' shape heuristics (csrc/cuda/se_heuristics.h)
THREADS = 256
UNIT_BYTES = 32 * 1024
MAX_CHUNK = 512
MIN_ROW_BYTES = 128
SPLIT_FACTOR = 2          # se_heuristics.h kSplitFactor: NHWC rows split past 2 x UNIT_BYTES per unit
BLOCKS_PER_SM = 4         # 256 threads, <= 64 registers, 24.6 KB static smem (ptxas figures)
ONEPASS_SMEM = 80 * 1024  # se_heuristics.h kOnePassSmemBytes: a unit's staged tile at most
ONEPASS_BLOCKS_PER_SM = 2  # one-pass kernels: up to 128 registers (ptxas), <= 80 KB + 24.6 KB smem
GRID_SYNC_US = 1.0        # one grid barrier (assumed)


def _pow2_at_least(v, cap):
    p = 1
    while p < v and p < cap:
        p *= 2
    return p


def geometry(c, hw, hidden, dtype_bytes, channels_last, backward=False):
    """(channels per unit, chunks per sample, row parts per chunk, rows per
    part): se_heuristics.h make_geometry; units per sample = chunks x parts."""
    vec = 16 // dtype_bytes
    per_channel = (hw * (2 if backward else 1) + hidden) * dtype_bytes
    chunk = math.ceil(UNIT_BYTES / per_channel)
    nhwc = channels_last and hw > 1 and c > 1
    if nhwc:
        chunk = max(math.ceil(chunk / vec) * vec, MIN_ROW_BYTES // dtype_bytes)
    else:
        g = _pow2_at_least(math.ceil(math.ceil(hw / vec) / 4), THREADS)
        per_round = THREADS // g
        chunk = math.ceil(chunk / per_round) * per_round
    chunk = min(chunk, MAX_CHUNK, c)
    parts, part_rows = 1, hw
    tile = chunk * hw * (2 if backward else 1) * dtype_bytes
    if nhwc and tile > SPLIT_FACTOR * UNIT_BYTES:
        part_rows = math.ceil(hw / math.ceil(tile / UNIT_BYTES))
        parts = math.ceil(hw / part_rows)
    return chunk, math.ceil(c / chunk), parts, part_rows


def _phase_us(hbm_bytes, l2_bytes, flops, units, unit_bytes, acc_flops):
    """One launch's time: the larger of its whole-GPU bandwidth time and the
    time its busiest block slot needs (waves x one unit at one block's
    bandwidth), plus a fixed cost."""
    slots = SMS * BLOCKS_PER_SM
    waves = math.ceil(units / slots)
    bw = hbm_bytes / HBM_BPS * 1e6 + l2_bytes / L2_BPS * 1e6 + flops / acc_flops * 1e6
    per_slot = waves * unit_bytes / BLOCK_BPS * 1e6
    return PHASE_FIXED_US + max(bw, per_slot)


def predict(n, c, h, w, hidden, dtype_bytes, channels_last):
    hw = h * w
    x = n * c * hw * dtype_bytes                 # bytes of x (= y, dy, dx)
    acc = 8 if dtype_bytes == 4 or dtype_bytes == 8 else 4
    acc_flops = FP64_FLOPS if acc == 8 else FP32_FLOPS
    weights = 2 * c * hidden * dtype_bytes       # w1 + w2
    chunk, k, parts, rows = geometry(c, hw, hidden, dtype_bytes, channels_last)
    unit_bytes = chunk * (rows + hidden) * dtype_bytes
    units = n * k * parts
    mlp_flops = 2 * 2 * n * c * hidden           # two GEMVs per sample
    # Each unit reads its w1 slice (phase 1) and its w2 rows (phase 2) from L2.
    w_l2 = n * weights
    reread_from_l2 = x <= L2_REUSE * L2_BYTES
    state = n * (2 * c + hidden) * acc + n * k * hidden * acc
    p1 = _phase_us(x, w_l2 / 2 + state, mlp_flops / 2, units, unit_bytes, acc_flops)
    p2 = _phase_us((0 if reread_from_l2 else x) + x, (x if reread_from_l2 else 0) + w_l2 / 2 + state,
                   mlp_flops / 2, units, 2 * unit_bytes, acc_flops)
    # The summing step where the rows are split: N x K blocks adding P partial
    # sums per channel (from L2), then the chunk's share of the MLP.
    ps = n * parts * c * acc
    sum_us = NEXT_LAUNCH_US + PHASE_FIXED_US + ps / L2_BPS * 1e6 if parts > 1 else 0.0
    fwd = LAUNCH_US + p1 + sum_us + NEXT_LAUNCH_US + p2
    # Backward: phase 1 reads dy and x, phase 2 reads dy again and writes dx,
    # phase 3 (weight gradients) reads the [N, C] and [N, hidden] state.
    bchunk, bk, bparts, brows = geometry(c, hw, hidden, dtype_bytes, channels_last, backward=True)
    bunits = n * bk * bparts
    bunit_bytes = bchunk * (2 * brows + hidden) * dtype_bytes
    bsum_us = NEXT_LAUNCH_US + PHASE_FIXED_US + n * bparts * c * acc / L2_BPS * 1e6 if bparts > 1 else 0.0
    b_reread = 2 * x <= L2_REUSE * L2_BYTES
    b1 = _phase_us(2 * x, w_l2 / 2 + state, mlp_flops / 2, bunits, bunit_bytes, acc_flops)
    b2 = _phase_us((0 if b_reread else x) + x, (x if b_reread else 0) + w_l2 / 2 + state, mlp_flops / 2,
                   bunits, bunit_bytes, acc_flops)
    tiles = math.ceil(hidden / 64) * math.ceil(c / 64) * 2
    b3 = _phase_us(n * (2 * c + 2 * hidden) * acc + weights, 0, 2 * 2 * n * c * hidden, tiles,
                   min(n, 16) * 128 * acc * 2, acc_flops)
    bwd = LAUNCH_US + b1 + bsum_us + NEXT_LAUNCH_US + b2 + NEXT_LAUNCH_US + b3
    clone = LAUNCH_US + 2 * x / HBM_BPS * 1e6
    add = LAUNCH_US + 3 * x / HBM_BPS * 1e6
    hbm_fwd = x * (2 if reread_from_l2 else 3)
    hbm_bwd = x * (3 if b_reread else 4)
    # One-pass: one launch, one unit per block, the tile (x forward, dy backward;
    # se_heuristics.h onepass_smem_bytes) in shared memory; rounds of the whole
    # samples one wave of blocks holds (onepass_grid), each round a grid barrier
    # (two with row parts) and the fixed cost of a phase.
    vec = 16 // dtype_bytes
    def tile(ch, r):
        t = r * (math.ceil(ch / vec) * vec) if channels_last and hw > 1 and c > 1 else ch * hw + vec - 1
        return math.ceil(t * dtype_bytes / 8192) * 8192
    one_wave = SMS * ONEPASS_BLOCKS_PER_SM

    def onepass(hbm, per_sample, unit_stream_bytes, barriers):
        per_round = min(one_wave // per_sample, n)
        rounds = math.ceil(n / per_round)
        bw = hbm / HBM_BPS * 1e6 + (w_l2 + 2 * state) / L2_BPS * 1e6 + mlp_flops / acc_flops * 1e6
        per_slot = rounds * unit_stream_bytes / BLOCK_BPS * 1e6  # a block streams a unit a round
        return LAUNCH_US + rounds * (barriers * GRID_SYNC_US + PHASE_FIXED_US) + max(bw, per_slot), rounds

    op_fwd = op_bwd = None
    op_rounds = op_brounds = None
    if tile(chunk, rows) <= ONEPASS_SMEM and k * parts <= one_wave:
        op_fwd, op_rounds = onepass(2 * x, k * parts, 2 * unit_bytes, 2 if parts > 1 else 1)
    if tile(bchunk, brows) <= ONEPASS_SMEM and bk * bparts <= one_wave:
        op_bwd, op_brounds = onepass(3 * x, bk * bparts, 3 * bunit_bytes // 2, 2 if bparts > 1 else 1)
        op_bwd += GRID_SYNC_US + b3
    return dict(fwd_us=fwd, bwd_us=bwd, clone_us=clone, add_us=add,
                fwd_launches=2 + (parts > 1), bwd_launches=3 + (bparts > 1), chunk=chunk,
                units_per_sample=k * parts, parts=parts, units=units,
                waves=math.ceil(units / (SMS * BLOCKS_PER_SM)), hbm_fwd_bytes=hbm_fwd, hbm_bwd_bytes=hbm_bwd,
                l2_weight_bytes=w_l2, onepass_fwd_us=op_fwd, onepass_bwd_us=op_bwd,
                onepass_hbm_fwd_bytes=2 * x, onepass_hbm_bwd_bytes=3 * x, onepass_rounds=op_rounds,
                onepass_bwd_rounds=op_brounds)


BENCH_SHAPES = [  # (label, n, c, h, w, hidden, dtype_bytes, channels_last)
    ("256x256x56x56 bf16 NCHW h16", 256, 256, 56, 56, 16, 2, False),
    ("256x256x56x56 bf16 NHWC h16", 256, 256, 56, 56, 16, 2, True),
    ("256x256x56x56 fp32 NCHW h16", 256, 256, 56, 56, 16, 4, False),
    ("256x256x56x56 fp32 NHWC h16", 256, 256, 56, 56, 16, 4, True),
    ("64x96x112x112 fp32 h4", 64, 96, 112, 112, 4, 4, False),
    ("64x256x56x56 fp32 h16", 64, 256, 56, 56, 16, 4, False),
    ("64x2048x7x7 fp32 h128", 64, 2048, 7, 7, 128, 4, False),
    ("64x960x7x7 fp32 h240", 64, 960, 7, 7, 240, 4, False),
    ("1x256x56x56 fp32 h16", 1, 256, 56, 56, 16, 4, False),
    ("1x256x56x56 bf16 NHWC h16", 1, 256, 56, 56, 16, 2, True),
    ("1x2048x7x7 fp32 h128", 1, 2048, 7, 7, 128, 4, False),
    ("1x64x1x1 fp32 h4", 1, 64, 1, 1, 4, 4, False),
    ("1x96x14x14 fp32 h24", 1, 96, 14, 14, 24, 4, False),
    ("1x1152x7x7 fp32 h48", 1, 1152, 7, 7, 48, 4, False),
]


def main():
    print("| shape | x MB | K | units | waves | HBM fwd MB | L2 weights MB | fwd us | bwd us | clone us | add us "
          "| fwd/clone | 1-pass fwd us | 1-pass bwd us |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    opt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    for label, *args in BENCH_SHAPES:
        r = predict(*args)
        n, c, h, w, hidden, b, cl = args
        xmb = n * c * h * w * b / 1e6
        print(f"| {label} | {xmb:.1f} | {r['units_per_sample']} | {r['units']} | {r['waves']} | "
              f"{r['hbm_fwd_bytes'] / 1e6:.1f} | {r['l2_weight_bytes'] / 1e6:.1f} | {r['fwd_us']:.1f} | "
              f"{r['bwd_us']:.1f} | {r['clone_us']:.1f} | {r['add_us']:.1f} | {r['fwd_us'] / r['clone_us']:.2f} | "
              f"{opt(r['onepass_fwd_us'])} | {opt(r['onepass_bwd_us'])} |")


if __name__ == "__main__":
    main()
