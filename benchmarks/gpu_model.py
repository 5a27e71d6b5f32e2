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
3N instead of 4N+, at a grid barrier per round. cluster_fwd_us /
cluster_bwd_us (None where it does not apply: a block's j slots over
CLUSTER_SMEM_BUDGET, or no cluster fits at once) model issue 22's
SE_FUSED_CUDA_PATH=cluster: one sample per thread-block cluster of up to 16
blocks, x (dy) staged in shared memory and read once, one launch (backward: two
at N > 1, the weight gradients' launch after it); cluster_fwd / cluster_bwd give
its geometry (cs x j, slot, blocks per SM, clusters at once, waves, the bound).
path_us(r, path, "fwd" | "bwd") is what a forced path runs, fallbacks included.
Every assumption is a named constant below with its reason. clone_us is
x.clone() (read + write x), add_us is x + x2 (read 2, write 1), both with the
same launch floor, so the ratios
fwd/clone are what bench.py's "x clone" column shows. These are predictions
from bandwidth, launch and wave arithmetic, not measurements: a GPU run of
bench.py prints them beside the measured times.

    python3 benchmarks/gpu_model.py        # the tables of docs/cuda.md, issue 22's bar
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

# --- the cluster path (SE_FUSED_CUDA_PATH=cluster, issue 22's design; its kernels are not in
# this tree, so every figure below is an assumption to be checked by one GPU run).
CLUSTER_MAX = 16          # blocks per cluster: sm_90's non-portable limit (8 portable), H100/H200
CLUSTER_SMEM_BUDGET = 200 * 1024  # a block's J slots at most (the design's "about 200 KB": 227 KB
                          # per block less the ~20-25 KB static); taken as 200 KiB, so 8 slots of
                          # 25104 B (fp32 56x56 backward: 200,832 B) fit and would not at 200,000
CLUSTER_SLOT_ALIGN = 16   # a slot: the one-pass tile's elements, rounded up to 16 B (not 8 KB)
SM_SMEM = 228 * 1024      # shared memory per SM (H100/H200), 1 KB of it reserved per block
SMEM_RESERVED = 1024
STATIC_SMEM = {2: 20512, 4: 24640, 8: 24640}  # static smem per block by dtype bytes: the ptxas
                          # figures of today's kernels (docs/cuda.md), assumed for the cluster ones
CLUSTER_REGS = 128        # registers per thread (ptxas, sm_90: the staged kernels 112-128, 168-169 for
                          # fp32 NHWC two-FC forward, which holds 1 block per SM; not modelled):
SM_REGS = 65536           # -> 2 blocks of 256 threads per SM by registers
GPC_SMS = (18, 18, 16, 16, 16, 16, 16, 16)  # ASSUMED: an H200/H100 SXM's 132 SMs (66 of 72 TPCs)
                          # in 8 GPCs; the harvest differs chip to chip. A cluster's blocks share
                          # a GPC, so clusters of 16 at 1 block/SM: one per GPC, 8 at once
CLUSTER_BARRIER_US = 0.5  # one hardware cluster barrier with the fence that publishes the partial
                          # sums (assumed; a grid barrier is taken as 1 us)
L2_RT_US = 0.7            # one dependent L2 round trip under load (PERF.md: 0.6-1 us): the partials
                          # read after the barrier, a weight slice's first bytes
DSMEM_RT_US = 0.2         # ASSUMED: the row parts' sums stored into the summing block's shared memory
                          # (distributed shared memory, ~200-400 cycles) and read there after the
                          # barrier, in place of a dependent L2 round trip
HBM_LATENCY_US = 0.8      # loaded DRAM latency (as BLOCK_BPS)
SM_INFLIGHT_CAP = 64 * 1024  # ASSUMED: bytes of loads one SM keeps in flight at most (not
                          # published). With a block's whole staged tile in flight (cp.async),
                          # Little's law gives min(tile, cap) / HBM_LATENCY_US per SM: 82 GB/s at
                          # 64 KB, against a fair share of HBM of 4.3 TB/s / 132 = 33 GB/s; the
                          # write of y from shared memory is taken at the same rate
X_INFLIGHT = 16 * 1024    # backward: x is read from global memory in the squeeze with plain loads,
                          # whole rounds of 4 x 16 B per thread in flight (ColDot2Ld, RowDot2Tile:
                          # 16 KB per block; until they held the dy tile's chunks beside x's, 2 of
                          # x per thread and a tail loop: 8 KB or less)
WEIGHT_INFLIGHT = 8 * 1024  # a unit's w1 slice and w2 rows read from global memory (L2) per sample,
                          # no cross-sample reuse: the MLP's lanes keep 2 x 16 B each in flight
                          # (RowDotVec, ColDotVec: 8 KB per block), one L2 round trip per 8 KB. The
                          # cluster path stages the slice instead where it fits (cluster_fit's
                          # weight_bytes; the model's shapes are two-FC): the whole slice in flight at once
                          # (cp.async), at the block's share of SM_INFLIGHT_CAP, one round trip per
                          # phase and unit
SMEM_BPS = 128 * 1.755e9  # ASSUMED: shared-memory bytes/s per SM (128 B/clock at the boost clock):
                          # the rate at which a round's samples read a staged weight slice
CLUSTER_MLP_OVERLAP = 0.0  # share of a block's serial part (MLP, barriers) hidden under its own
                          # staging: none (the MLP needs the whole squeeze); other clusters keep
                          # HBM busy meanwhile, which is the max() of bandwidth and cluster waves


def _pow2_at_least(v, cap):
    p = 1
    while p < v and p < cap:
        p *= 2
    return p


def acc_bytes(dtype_bytes):
    """Bytes of acc_t (se_math.h): double for float and double, float for the 16-bit types."""
    return 8 if dtype_bytes in (4, 8) else 4


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


def _phase_us(hbm_bytes, l2_bytes, flops, units, unit_bytes, acc_flops, slots=SMS * BLOCKS_PER_SM):
    """One launch's time: the larger of its whole-GPU bandwidth time and the
    time its busiest block slot needs (waves x one unit at one block's
    bandwidth), plus a fixed cost."""
    waves = math.ceil(units / slots)
    bw = hbm_bytes / HBM_BPS * 1e6 + l2_bytes / L2_BPS * 1e6 + flops / acc_flops * 1e6
    per_slot = waves * unit_bytes / BLOCK_BPS * 1e6
    return PHASE_FIXED_US + max(bw, per_slot)


def slot_bytes(c, hw, chunk, rows, dtype_bytes, channels_last):
    """A unit's staged tile (se_heuristics.h onepass_smem_bytes' element count) in bytes,
    rounded up to CLUSTER_SLOT_ALIGN: the cluster path's slot."""
    vec = 16 // dtype_bytes
    if channels_last and hw > 1 and c > 1:
        elems = rows * (math.ceil(chunk / vec) * vec)
    else:
        elems = math.ceil((chunk * hw + vec - 1) / vec) * vec
    return math.ceil(elems * dtype_bytes / CLUSTER_SLOT_ALIGN) * CLUSTER_SLOT_ALIGN


def weight_slice_bytes(chunk, hidden, dtype_bytes):
    """se_heuristics.h weight_slice_bytes: a unit's staged weight slice, the larger phase (w1's
    hidden rows of `chunk` at a 16-byte row stride, or w2's chunk x hidden as one span)."""
    vec = 16 // dtype_bytes
    return max(hidden * math.ceil(chunk / vec) * vec, math.ceil((chunk * hidden + vec - 1) / vec) * vec) * dtype_bytes


def cluster_fit(c, hw, hidden, dtype_bytes, channels_last, backward=False, cluster_max=CLUSTER_MAX, samples=1):
    """How a sample's units map onto a cluster (issue 22's design): cluster size cs,
    units per block j (per sample), slot and staged bytes per block, blocks per SM (shared
    memory and registers), clusters active at once over GPC_SMS, and whether it applies.
    cluster_max: the design's 16 (a what-if may pass less). samples: whole samples per
    cluster round (se_heuristics.h cluster_plan: only with every slot and the weight slice
    staged)."""
    chunk, k, parts, rows = geometry(c, hw, hidden, dtype_bytes, channels_last, backward)
    units = k * parts
    cs = min(units, cluster_max)
    j = math.ceil(units / cs)
    slot = slot_bytes(c, hw, chunk, rows, dtype_bytes, channels_last)
    # se_heuristics.h cluster_plan: the units whose slots fit the budget are staged; a block
    # may run one more from global memory (its x read twice, the second time from L2).
    # se_heuristics.h part_sum_bytes: with row parts, the parts' sums the block adds, first.
    sums = math.ceil(math.ceil(k / cs) * parts * chunk * acc_bytes(dtype_bytes) / 16) * 16 if parts > 1 else 0
    budget = CLUSTER_SMEM_BUDGET - sums
    staged_units = min(j * samples, budget // slot)
    staged = staged_units * slot
    unstaged = max(0, units - cs * staged_units) if samples == 1 else 0  # units run from global memory
    # se_heuristics.h weight_slice_bytes: the staged weight slice (the larger phase), where it
    # fits beside the slots (rows split: the summing step stages it for its MLP rows).
    wb = weight_slice_bytes(chunk, hidden, dtype_bytes)
    weight_bytes = wb if staged + wb <= budget else 0
    per_block = staged + weight_bytes + sums + STATIC_SMEM[dtype_bytes] + SMEM_RESERVED
    per_sm = min(SM_SMEM // per_block, SM_REGS // (CLUSTER_REGS * THREADS))
    fits = (staged_units >= max(1, j - 1) if samples == 1
            else staged_units == j * samples and weight_bytes > 0 and parts == 1)
    active = sum(g * per_sm // cs for g in GPC_SMS)
    return dict(chunk=chunk, parts=parts, rows=rows, units=units, cs=cs, j=j, slot=slot,
                staged=staged, staged_units=staged_units, direct=max(0, j - staged_units),
                weight_bytes=weight_bytes, sum_bytes=sums, samples=samples,
                unstaged_share=unstaged / units, blocks_per_sm=per_sm, active=active,
                applies=fits and active >= 1)


def cluster_samples(n, c, hw, hidden, dtype_bytes, channels_last, cluster_max=CLUSTER_MAX):
    """se_onepass.cuh cluster_fit's rule for the forward: the most samples per cluster round
    of 8, 4, 2 (at most n) whose plan applies and leaves ceil(n / samples) clusters at least
    as many as fit at once; else 1."""
    for s in (8, 4, 2):
        if s > n:
            continue
        f = cluster_fit(c, hw, hidden, dtype_bytes, channels_last, cluster_max=cluster_max, samples=s)
        if f["applies"] and math.ceil(n / s) >= f["active"]:
            return s
    return 1


def _cluster_us(n, fit, hbm, l2, flops, acc_flops, x_block, w_block, sm_inflight, barrier_us,
                tail_us=0.0):
    """One cluster launch: every block stages its j slots at once (Little's law: at most
    sm_inflight per SM, shared by the SM's blocks), squeezes, meets its cluster at a barrier
    (two with row parts), reads the partial sums from L2, runs its units' MLP rows (weights
    from L2) and writes the scaled tile. Clusters run in waves of `active`; the time is the
    larger of the whole-GPU bandwidth time (plus one cluster's serial tail) and the waves of
    cluster cycles. x_block: bytes a block reads with plain loads beside the staging
    (backward: x); w_block: weight bytes a block reads per sample; tail_us: work after the
    scale inside the launch (batch 1's weight gradients). With fit["samples"] > 1 a cycle is
    a round of that many samples: the staged slice read from L2 once, from shared memory by
    each sample."""
    lat = HBM_LATENCY_US
    staged = fit["staged"]
    block_inflight = sm_inflight / fit["blocks_per_sm"]
    t_in = lat * max(1.0, staged / block_inflight)
    if x_block:
        t_in = max(t_in, lat * max(1.0, x_block / X_INFLIGHT))
    t_out = lat * staged / block_inflight
    # A block's unit past its staged slots: read with plain loads, read again and written.
    direct = fit["direct"] * fit["slot"]
    t_in += lat * direct / X_INFLIGHT
    t_out += lat * 2 * direct / X_INFLIGHT
    split = 1 if fit["parts"] > 1 else 0
    # Weights from L2: staged (cluster_fit's weight_bytes), a slice's copies all in flight at the
    # block's share of the SM's; else the MLP lanes' WEIGHT_INFLIGHT.
    w_inflight = block_inflight if fit.get("weight_bytes") else WEIGHT_INFLIGHT
    t_w = L2_RT_US * max(1.0, w_block / w_inflight) if w_block else 0.0
    if split and fit.get("weight_bytes"):
        # Row parts: the summing step's slice is issued with the round's tiles (behind the squeeze)
        # and phase 2's before the partials' L2 read: one round trip hidden. Without row parts
        # phase 1's slice is issued after its slot's wait, behind a squeeze from shared memory:
        # exposed.
        t_w = max(0.0, t_w - L2_RT_US)
    samples = fit.get("samples", 1)
    if samples > 1:  # the round's samples read the staged slice from shared memory
        t_w += samples * w_block / (SMEM_BPS / fit["blocks_per_sm"]) * 1e6
    # The barriers: the partials' (from L2), and with row parts first the parts' sums' (through
    # distributed shared memory, se_tile.cuh put_part_sums).
    serial = PHASE_FIXED_US + barrier_us + L2_RT_US + split * (barrier_us + DSMEM_RT_US) + t_w + tail_us
    cycle = t_in + t_out + serial * (1 - CLUSTER_MLP_OVERLAP)
    waves = math.ceil(math.ceil(n / samples) / fit["active"])
    bw = hbm / HBM_BPS * 1e6 + l2 / L2_BPS * 1e6 + flops / acc_flops * 1e6
    bound = "bandwidth" if bw + serial >= waves * cycle else "cluster waves"
    return dict(us=LAUNCH_US + max(bw + serial, waves * cycle), waves=waves, cycle_us=cycle,
                serial_us=serial, stage_us=t_in, bound=bound)


def predict(n, c, h, w, hidden, dtype_bytes, channels_last, sm_inflight=SM_INFLIGHT_CAP,
            barrier_us=CLUSTER_BARRIER_US, weights_from_l2=True, cluster_max=CLUSTER_MAX):
    hw = h * w
    x = n * c * hw * dtype_bytes                 # bytes of x (= y, dy, dx)
    acc = acc_bytes(dtype_bytes)
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
    # Cluster (issue 22): one sample per cluster of cs blocks, j units per block staged in
    # shared memory; x (dy) read once from HBM, one launch; the backward's weight gradients
    # inside it at batch 1 (a cluster barrier, then the cluster's blocks write dW), else the
    # two-pass weight-gradient launch after it.
    wl2 = w_l2 if weights_from_l2 else 0.0
    cs_samples = cluster_samples(n, c, hw, hidden, dtype_bytes, channels_last, cluster_max=cluster_max)
    cf = cluster_fit(c, hw, hidden, dtype_bytes, channels_last, cluster_max=cluster_max, samples=cs_samples)
    cb = cluster_fit(c, hw, hidden, dtype_bytes, channels_last, backward=True, cluster_max=cluster_max)
    cl_fwd = cl_bwd = None
    if cf["applies"]:
        w_block = cf["j"] * cf["chunk"] * hidden * dtype_bytes * 2 if weights_from_l2 else 0
        cf.update(_cluster_us(n, cf, 2 * x, wl2 / cs_samples + state + cf["unstaged_share"] * x, mlp_flops, acc_flops,
                              0, w_block, sm_inflight, barrier_us))
        cl_fwd = cf["us"]
    if cb["applies"]:
        w_block = cb["j"] * cb["chunk"] * hidden * dtype_bytes * 2 if weights_from_l2 else 0
        x_block = cb["j"] * cb["chunk"] * cb["rows"] * dtype_bytes
        wgrad_in = 0.0
        if n == 1:  # dW written by the cluster's blocks at the per-SM write rate, after a barrier
            wgrad_in = barrier_us + PHASE_FIXED_US + HBM_LATENCY_US * weights / (
                cb["cs"] * sm_inflight / cb["blocks_per_sm"])
        cb.update(_cluster_us(n, cb, 3 * x, wl2 + state + cb["unstaged_share"] * x, mlp_flops, acc_flops,
                              x_block, w_block, sm_inflight, barrier_us, wgrad_in))
        cl_bwd = cb["us"] + (NEXT_LAUNCH_US + b3 if n > 1 else 0.0)
    return dict(fwd_us=fwd, bwd_us=bwd, clone_us=clone, add_us=add,
                cluster_fwd_us=cl_fwd, cluster_bwd_us=cl_bwd,
                cluster_fwd_launches=1 if cl_fwd is not None else None,
                cluster_bwd_launches=(1 if n == 1 else 2) if cl_bwd is not None else None,
                cluster_fwd=cf, cluster_bwd=cb,
                fwd_launches=2 + (parts > 1), bwd_launches=3 + (bparts > 1), chunk=chunk,
                units_per_sample=k * parts, parts=parts, units=units,
                waves=math.ceil(units / (SMS * BLOCKS_PER_SM)), hbm_fwd_bytes=hbm_fwd, hbm_bwd_bytes=hbm_bwd,
                l2_weight_bytes=w_l2, onepass_fwd_us=op_fwd, onepass_bwd_us=op_bwd,
                onepass_hbm_fwd_bytes=2 * x, onepass_hbm_bwd_bytes=3 * x, onepass_rounds=op_rounds,
                onepass_bwd_rounds=op_brounds)


def path_us(r, path, direction):
    """(microseconds, path that runs) of a forced SE_FUSED_CUDA_PATH in one direction
    ("fwd" or "bwd"), with the fallbacks the launcher takes: cluster -> twopass where it
    does not apply; onepass -> twopass likewise; auto is twopass today."""
    if path == "cluster" and r[f"cluster_{direction}_us"] is not None:
        return r[f"cluster_{direction}_us"], "cluster"
    if path == "onepass" and r[f"onepass_{direction}_us"] is not None:
        return r[f"onepass_{direction}_us"], "onepass"
    return r[f"{direction}_us"], "twopass"


BENCH_SHAPES = [  # (label, n, c, h, w, hidden, dtype_bytes, channels_last)
    ("256x256x56x56 bf16 NCHW h16", 256, 256, 56, 56, 16, 2, False),
    ("256x256x56x56 bf16 NHWC h16", 256, 256, 56, 56, 16, 2, True),
    ("256x256x56x56 fp32 NCHW h16", 256, 256, 56, 56, 16, 4, False),
    ("256x256x56x56 fp32 NHWC h16", 256, 256, 56, 56, 16, 4, True),
    ("64x96x112x112 fp32 h4", 64, 96, 112, 112, 4, 4, False),
    ("64x256x56x56 fp32 h16", 64, 256, 56, 56, 16, 4, False),
    ("64x256x56x56 bf16 h16", 64, 256, 56, 56, 16, 2, False),
    ("64x2048x7x7 fp32 h128", 64, 2048, 7, 7, 128, 4, False),
    ("64x2048x7x7 bf16 h128", 64, 2048, 7, 7, 128, 2, False),
    ("64x960x7x7 fp32 h240", 64, 960, 7, 7, 240, 4, False),
    ("64x960x7x7 bf16 h240", 64, 960, 7, 7, 240, 2, False),
    ("1x256x56x56 fp32 h16", 1, 256, 56, 56, 16, 4, False),
    ("1x256x56x56 bf16 h16", 1, 256, 56, 56, 16, 2, False),
    ("1x256x56x56 bf16 NHWC h16", 1, 256, 56, 56, 16, 2, True),
    ("1x2048x7x7 fp32 h128", 1, 2048, 7, 7, 128, 4, False),
    ("1x2048x7x7 bf16 h128", 1, 2048, 7, 7, 128, 2, False),
    ("1x64x1x1 fp32 h4", 1, 64, 1, 1, 4, 4, False),
    ("1x96x14x14 fp32 h24", 1, 96, 14, 14, 24, 4, False),
    ("1x1152x7x7 fp32 h48", 1, 1152, 7, 7, 48, 4, False),
]

# Issue 22's bar: (label, kind); "big": forward <= 1.10x clone and forward+backward <= 1.25x
# (clone + add), at >= 50 MB where a sample fits a cluster; "7x7": forward <= 1.5x clone;
# batch 1 (every N == 1 row): one launch per direction.
BAR_BIG = ("256x256x56x56 bf16 NCHW h16", "256x256x56x56 bf16 NHWC h16", "64x256x56x56 fp32 h16")
BAR_7X7 = ("64x2048x7x7 fp32 h128", "64x2048x7x7 bf16 h128", "64x960x7x7 fp32 h240", "64x960x7x7 bf16 h240")
FWD_BIG, FWDBWD_BIG, FWD_7X7 = 1.10, 1.25, 1.5


def _opt(v, fmt="{:.1f}"):
    return "-" if v is None else fmt.format(v)


def bar_rows(shapes=BENCH_SHAPES, **kw):
    """[(label, bar, predicted as run with SE_FUSED_CUDA_PATH=cluster, met, why)]: the
    fallback (two-pass) counts where the cluster path does not apply."""
    rows = []
    for label, *args in shapes:
        r = predict(*args, **kw)
        (f, fp), (b, bp) = path_us(r, "cluster", "fwd"), path_us(r, "cluster", "bwd")
        cf, cb = r["cluster_fwd"], r["cluster_bwd"]

        def why(fit, taken):
            if taken == "cluster":
                return (f"{fit['bound']}-bound (cs {fit['cs']} x j {fit['j']}"
                        f"{', 1 unstaged' if fit['direct'] else ''}"
                        f"{', %d samples a round' % fit['samples'] if fit.get('samples', 1) > 1 else ''}"
                        f"{', weights staged' if fit.get('weight_bytes') else ''}, {fit['active']} clusters at once)")
            if fit["staged_units"] < max(1, fit["j"] - 1):
                return (f"does not fit: j {fit['j']} x {fit['slot'] / 1024:.1f} KB, "
                        f"{fit['staged_units']} fit {CLUSTER_SMEM_BUDGET // 1024} KB: two-pass")
            return "no cluster fits at once: two-pass"
        if label in BAR_BIG:
            q = f / r["clone_us"]
            rows.append((label, f"fwd <= {FWD_BIG}x clone", f"{q:.3f} ({fp})", q <= FWD_BIG, why(cf, fp)))
            q = (f + b) / (r["clone_us"] + r["add_us"])
            rows.append((label, f"fwd+bwd <= {FWDBWD_BIG}x (clone+add)", f"{q:.3f} ({fp}+{bp})",
                         q <= FWDBWD_BIG, "bwd " + why(cb, bp)))
        if label in BAR_7X7:
            q = f / r["clone_us"]
            rows.append((label, f"fwd <= {FWD_7X7}x clone", f"{q:.2f} ({fp})", q <= FWD_7X7, why(cf, fp)))
        if args[0] == 1:
            lf, lb = r["cluster_fwd_launches"], r["cluster_bwd_launches"]
            ok = lf == 1 and lb == 1
            rows.append((label, "1 launch per direction",
                         f"{lf or r['fwd_launches']} + {lb or r['bwd_launches']} ({fp}+{bp})", ok,
                         "" if ok else why(cf if lf is None else cb, "twopass")))
    return rows


def main():
    print("| shape | x MB | K | units | waves | HBM fwd MB | L2 weights MB | fwd us | bwd us | clone us | add us "
          "| fwd/clone | 1-pass fwd us | 1-pass bwd us |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, *args in BENCH_SHAPES:
        r = predict(*args)
        n, c, h, w, hidden, b, cl = args
        xmb = n * c * h * w * b / 1e6
        print(f"| {label} | {xmb:.1f} | {r['units_per_sample']} | {r['units']} | {r['waves']} | "
              f"{r['hbm_fwd_bytes'] / 1e6:.1f} | {r['l2_weight_bytes'] / 1e6:.1f} | {r['fwd_us']:.1f} | "
              f"{r['bwd_us']:.1f} | {r['clone_us']:.1f} | {r['add_us']:.1f} | {r['fwd_us'] / r['clone_us']:.2f} | "
              f"{_opt(r['onepass_fwd_us'])} | {_opt(r['onepass_bwd_us'])} |")
    print()
    print("| shape | fwd cs x j (x samples a round) | slot KB | staged KB | blocks/SM | clusters at once | cluster fwd us | "
          "fwd/clone | bwd cs x j | cluster bwd us | launches | (fwd+bwd)/(clone+add) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, *args in BENCH_SHAPES:
        r = predict(*args)
        cf, cb = r["cluster_fwd"], r["cluster_bwd"]
        (f, fp), (b, bp) = path_us(r, "cluster", "fwd"), path_us(r, "cluster", "bwd")
        mark = "" if fp == bp == "cluster" else "*"
        launches = f"{r['cluster_fwd_launches'] or '-'} / {r['cluster_bwd_launches'] or '-'}"
        rounds = f" x {cf['samples']}" if cf.get("samples", 1) > 1 else ""
        print(f"| {label} | {cf['cs']} x {cf['j']}{rounds} | {cf['slot'] / 1024:.1f} | {cf['staged'] / 1024:.0f} | "
              f"{cf['blocks_per_sm']} | {cf['active']} | {_opt(r['cluster_fwd_us'])} | "
              f"{_opt(r['cluster_fwd_us'] and r['cluster_fwd_us'] / r['clone_us'], '{:.2f}')} | "
              f"{cb['cs']} x {cb['j']} | {_opt(r['cluster_bwd_us'])} | {launches} | "
              f"{(f + b) / (r['clone_us'] + r['add_us']):.2f}{mark} |")
    print("\n(*: a direction falls back to two-pass, whose time the ratio counts)\n")
    print("Issue 22's bar, as predicted with SE_FUSED_CUDA_PATH=cluster (two-pass where it does not apply):\n")
    print("| shape | bar | predicted | met | why |")
    print("|---|---|---|---|---|")
    for label, bar, pred, ok, why in bar_rows():
        print(f"| {label} | {bar} | {pred} | {'yes' if ok else 'NO'} | {why} |")
    print("\nSensitivity (cluster fwd/clone, fwd+bwd/(clone+add)) to the two guesses the bar hangs on:")
    for label in BAR_BIG[:2]:
        args = next(a for lab, *a in BENCH_SHAPES if lab == label)
        cells = []
        for kb, bar_us in ((32, CLUSTER_BARRIER_US), (48, CLUSTER_BARRIER_US), (64, CLUSTER_BARRIER_US),
                           (128, CLUSTER_BARRIER_US), (64, 2.0)):
            r = predict(*args, sm_inflight=kb * 1024, barrier_us=bar_us)
            f, b = path_us(r, "cluster", "fwd")[0], path_us(r, "cluster", "bwd")[0]
            cells.append(f"{kb} KB/SM, barrier {bar_us} us: {f / r['clone_us']:.2f}, "
                         f"{(f + b) / (r['clone_us'] + r['add_us']):.2f}")
        print(f"  {label}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
