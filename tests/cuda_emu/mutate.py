#!/usr/bin/env python3
"""Mutation harness for the CPU emulator (run by hand; not part of pytest or CI).

Each mutant is one realistic GPU bug injected into csrc/cuda/: an exact text
edit (the old text must occur exactly once in its file). For each mutant the
tree (csrc/ and tests/cuda_emu/) is copied into a temporary directory, the
edit applied, and the emulator built and run there as
tests/test_cuda_emulation.py does (g++ -std=c++20 -O1, its include order, the
`quick` set); mutants of se_sync.h also run the selftest's good kernels
(good, runtime, se_sync). A mutant is
  caught   the run exits non-zero (a FAIL line, an emulator abort such as a
           misaligned 16-byte access, a shuffle or barrier fault, ASan, a
           per-case TIMEOUT, or the whole run past --timeout), the selftest
           fails, or (with stored digests) a case's EMU_DIGEST=1 digest
           differs from the stored one;
  MISSED   everything passes;
  invalid  it does not compile (the table is meant to hold compiling slips).
To save time each mutant is first built and run without ASan; only one that
passes there is rebuilt and rerun with ASan (the CI build). The two builds run
the same schedules and give the same digests, so a failure without ASan is
one with it too (but for the inter-block races of a dropped grid barrier,
which depend on host timing). The score is thus that of the CI checks.

Digests: tests/cuda_emu/digests/quick.txt (lines `<case name> <16 hex>`) when
the tree has it, or --digests FILE; --no-digests ignores both. With digests
the summary also gives the score without them.

    python tests/cuda_emu/mutate.py --list
    python tests/cuda_emu/mutate.py                      # every mutant (about an hour on 2 cores)
    python tests/cuda_emu/mutate.py --only barrier_group_reduce_reuse order_shuffle_tree
    python tests/cuda_emu/mutate.py --digests my_quick_digests.txt --jobs 1 --timeout 900
"""
import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import namedtuple

import compare_digests  # this directory's: the stored digests and the emulator's output
from emu_build import compile_command, cuda_include_dirs  # the CI build of the emulator

EMU = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(EMU))
STORED_DIGESTS = compare_digests.STORED

Mutant = namedtuple("Mutant", "name cls file old new desc")

# (name, class, file under csrc/cuda/, exact old text, new text, one-line description)
MUTANTS = [
    # ------------------------------------------------ barriers (__syncthreads)
    Mutant("barrier_group_reduce_reuse", "barrier", "se_reduce.cuh",
           "      v = t;\n    }\n    __syncthreads();\n  }\n  return v;",
           "      v = t;\n    }\n  }\n  return v;",
           "group_reduce: no barrier after reading red[] (write-after-read: the next reduction overwrites it)"),
    Mutant("barrier_col_reduce_round", "barrier", "se_reduce.cuh",
           "    __syncthreads();  // part is rewritten by the next round\n", "",
           "col_reduce: no barrier at the end of a round (equivalent: q == 0 reads only its own slot; a control)"),
    Mutant("barrier_col_tree", "barrier", "se_reduce.cuh",
           "          part[i * kThreads + threadIdx.x] += part[i * kThreads + threadIdx.x + h * CW];\n      }\n"
           "      __syncthreads();\n",
           "          part[i * kThreads + threadIdx.x] += part[i * kThreads + threadIdx.x + h * CW];\n      }\n",
           "col_reduce: no barrier between the levels of the shared-memory tree (read-after-write)"),
    Mutant("barrier_fwd_means", "barrier", "se_forward.cuh",
           "  if (staged) se_cp_async_wait(0);  // this thread's copies of the slice ...\n"
           "  __syncthreads();                  // ... and every thread's\n",
           "  if (staged) se_cp_async_wait(0);  // this thread's copies of the slice ...\n",
           "fwd_finish: no barrier between writing the means to sm.u.buf and the MLP partial reading them (RAW)"),
    Mutant("barrier_staged_slot", "barrier", "se_onepass.cuh",
           "        __syncthreads();               // ... for every thread's copies\n"
           "        phase1(u,",
           "        phase1(u,",
           "staged_rounds: no barrier between the copies' wait and the squeeze of the slot "
           "(other threads' copies not yet landed: RAW)"),
    Mutant("async_wait_one_short", "barrier", "se_onepass.cuh",
           "se_cp_async_wait(St - 1 - t);", "se_cp_async_wait(St - t);",
           "staged_rounds: waits for one group too few (slot t's copies may be in flight; J >= 2)"),
    Mutant("async_weights_phase1_unwaited", "barrier", "se_forward.cuh",
           "  if (staged) se_cp_async_wait(0);  // this thread's copies of the slice ...\n", "",
           "fwd_finish: the staged w1 slice read before its copies are waited for"),
    Mutant("async_weights_phase2_unwaited", "barrier", "se_excite.cuh",
           "    if (staged) se_cp_async_wait(0);  // this thread's copies of the rows ...\n", "",
           "excite_fwd_z2: the staged w2 rows read before their copies are waited for"),
    Mutant("async_weights_bwd_phase2_unwaited", "barrier", "se_excite.cuh",
           "    if (staged) se_cp_async_wait(0);  // this thread's copies of the columns ...\n", "",
           "excite_bwd_dp: the staged w1 columns read before their copies are waited for"),
    Mutant("async_weights_fwd_sum_unwaited", "barrier", "se_forward.cuh",
           "  fwd_finish<T>(a, sm, ui, out<A>(a.p.pooled) + ui.n * C, wv, wbuf != nullptr);",
           "  fwd_finish<T>(a, sm, ui, out<A>(a.p.pooled) + ui.n * C, wv, false);",
           "fwd_sum: the summing step's staged w1 slice read without waiting for its copies"),
    Mutant("async_weights_bwd_sum_unwaited", "barrier", "se_backward.cuh",
           "  bwd_finish<T>(a, sm, ui, wv, wbuf != nullptr);\n}", "  bwd_finish<T>(a, sm, ui, wv, false);\n}",
           "bwd_sum: the summing step's staged w2 rows read without waiting for their copies"),
    Mutant("async_fwd_sum_slice_not_issued", "barrier", "se_forward.cuh",
           "  stage_w1_async<T>(a.p, chunk_of(v, a.g, a.p.C, a.p.HW), staged_wbuf(a.sp), true);",
           "  (void)v;",
           "fwd_sum_stage: the first summing chunk's w1 slice never issued (fwd_sum reads the buffer as it is)"),
    Mutant("async_bwd_sum_slice_next_chunk", "barrier", "se_backward.cuh",
           "  stage_w2_async<T>(a.p, chunk_of(v, a.g, a.p.C, a.p.HW), staged_wbuf(a.sp), true);",
           "  stage_w2_async<T>(a.p, chunk_of(v + 1, a.g, a.p.C, a.p.HW), staged_wbuf(a.sp), true);",
           "bwd_sum_stage: the w2 rows of the next chunk issued for the block's first summing chunk"),
    Mutant("launch_samples_slice_reused", "launch", "se_onepass.cuh",
           "phase1(u, dyn + t * sp.slot_bytes, t % S == 0);", "phase1(u, dyn + t * sp.slot_bytes, t == 0);",
           "staged_rounds: a round's later chunks read the first chunk's staged w1 slice"),
    Mutant("launch_samples_unit_offset", "launch", "se_onepass.cuh",
           "const int64_t u = base + s * sc.per + c;", "const int64_t u = base + s * sc.size + c;",
           "staged_unit: a round's later samples offset by the cluster size, not a sample's units"),
    Mutant("order_whole_rounds_clamped_added", "order", "se_reduce.cuh",
           "              if (r + u * R < nrows) op.add_chunk(acc, raw[u], r + u * R);",
           "              if (r + u * R <= nrows) op.add_chunk(acc, raw[u], r + u * R);",
           "col_reduce (kWholeRounds): the clamped row added once more"),
    # ------------------------------------------------ shuffles
    Mutant("shuffle_half_mask", "shuffle", "se_reduce.cuh",
           "__shfl_down_sync(0xffffffffu, v, off, width)", "__shfl_down_sync(0x0000ffffu, v, off, width)",
           "group_reduce: a half-warp mask where the whole warp shuffles"),
    Mutant("shuffle_offset_from_G", "shuffle", "se_reduce.cuh",
           "for (int off = width / 2; off > 0; off >>= 1)", "for (int off = G / 2; off > 0; off >>= 1)",
           "group_reduce: first offset G / 2 instead of width / 2 (>= 32 for groups wider than a warp)"),
    Mutant("shuffle_width_G", "shuffle", "se_reduce.cuh",
           "const int width = G < 32 ? G : 32;", "const int width = G;",
           "group_reduce: shuffle width G, not clamped to 32"),
    # ------------------------------------------------ tail bounds
    Mutant("tail_row_remainder", "tail", "se_reduce.cuh",
           "for (int64_t i = nfull * V; i < len; ++i) acc = op.add_elem(acc, i);",
           "for (int64_t i = nfull * V; i <= len; ++i) acc = op.add_elem(acc, i);",
           "lane_partial: the partial last chunk's loop runs to i <= len (one element past the row)"),
    Mutant("tail_nhwc_scale_rows", "tail", "se_tile.cuh",
           "        for (; r < HW; r += R) {\n          const uint4 u = ld16_last(ip + r * C);",
           "        for (; r < HW - 1; r += R) {\n          const uint4 u = ld16_last(ip + r * C);",
           "scale_chunk_as (NHWC, 16-byte): the remainder loop stops at HW - 1 (last row not scaled)"),
    Mutant("tail_fwd_mean_channels", "tail", "se_forward.cuh",
           "for (int64_t r = threadIdx.x; r < ui.c1 - ui.c0; r += kThreads) {\n    const A m",
           "for (int64_t r = threadIdx.x; r < ui.c1 - ui.c0 - 1; r += kThreads) {\n    const A m",
           "fwd_finish: the means loop over the chunk's channels stops one short"),
    # ------------------------------------------------ summation orders
    Mutant("order_chunk_partials_reverse", "order", "se_excite.cuh",
           "      A t = __ldcg(part + j);\n      for (int64_t k = 1; k < K; ++k) t += __ldcg(part + k * H + j);\n"
           "      const A z",
           "      A t = __ldcg(part + (K - 1) * H + j);\n"
           "      for (int64_t k = K - 2; k >= 0; --k) t += __ldcg(part + k * H + j);\n      const A z",
           "excite_fwd_z2: the chunks' partial z1 summed in order K-1..0 (same order on every path)"),
    Mutant("order_row_parts_reverse", "order", "se_tile.cuh",
           "      A t = load(s + r);\n      for (int64_t q = 1; q < g.parts; ++q) t += load(s + q * stride + r);",
           "      A t = load(s + (g.parts - 1) * stride + r);\n"
           "      for (int64_t q = g.parts - 2; q >= 0; --q) t += load(s + q * stride + r);",
           "add_part_sums: the row parts' sums added in order P-1..0 (the one loop of the workspace and the cluster)"),
    Mutant("order_shuffle_tree", "order", "se_reduce.cuh",
           "for (int off = width / 2; off > 0; off >>= 1)", "for (int off = 1; off < width; off <<= 1)",
           "group_reduce: the shuffle tree with offsets 1, 2, 4.. (another tree, same on every path)"),
    Mutant("order_unrolled_chunks", "order", "se_reduce.cuh",
           "for (int u = 0; u < U; ++u) acc = op.add_chunk(acc, r[u], k + u * G);",
           "for (int u = U - 1; u >= 0; --u) acc = op.add_chunk(acc, r[u], k + u * G);",
           "lane_partial: the unrolled 16-byte loads added last-first (the scalar path's order differs)"),
    # ------------------------------------------------ workspace slots
    Mutant("ws_part_transposed", "workspace", "se_excite.cuh",
           "A* part = out<A>(ws.part) + (ui.n * g.chunks + ui.k) * H;\n  const VecSrc<A> pv{sm.u.buf};",
           "A* part = out<A>(ws.part) + (ui.k * p.N + ui.n) * H;\n  const VecSrc<A> pv{sm.u.buf};",
           "excite_fwd_partial: partial z1 stored [K, N, hidden] while phase 2 reads [N, K, hidden]"),
    Mutant("ws_psum_no_c0", "workspace", "se_tile.cuh",
           "(ui.n * g.parts + ui.p) * C + ui.c0;", "(ui.n * g.parts + ui.p) * C;",
           "put_part_sums: the chunk's channel offset c0 left out of the slot"),
    Mutant("ws_cluster_parts_owner", "workspace", "se_tile.cuh",
           "const unsigned rank = static_cast<unsigned>(ui.k % ps.cluster);",
           "const unsigned rank = static_cast<unsigned>((ui.k + 1) % ps.cluster);",
           "put_part_sums: a part's sums stored into the next block's shared memory, not its chunk's summing block's"),
    Mutant("ws_cluster_parts_over_slice", "workspace", "se_onepass.cuh",
           "return PartSums{psum, dyn + sp.staged * sp.slot_bytes + sp.weight_bytes, sp.cluster};",
           "return PartSums{psum, dyn + sp.staged * sp.slot_bytes, sp.cluster};",
           "part_sums_of: the cluster's part sums over the staged weight slice"),
    Mutant("ws_hscratch_per_sample", "workspace", "se_excite.cuh",
           "A* hid = g.hid_global ? out<A>(ws.hscratch) + u * H : sm.u.hid;\n"
           "    const A* part = cin<A>(ws.part) + ui.n * K * H;\n    A* z1",
           "A* hid = g.hid_global ? out<A>(ws.hscratch) + ui.n * H : sm.u.hid;\n"
           "    const A* part = cin<A>(ws.part) + ui.n * K * H;\n    A* z1",
           "excite_fwd_z2: the global hidden scratch indexed per sample, not per unit (units race on it)"),
    # ------------------------------------------------ out-of-bounds reads of unused bytes
    Mutant("oob_realign_last_chunk", "oob-read", "se_reduce.cuh",
           "if (m > 0 && k * V - m + 2 * V <= len) {", "if (m > 0 && k * V + V <= len) {",
           "lane_partial: realigned loads for every whole chunk, the last one's second pack past the row"),
    Mutant("oob_stage_rows_copy", "oob-read", "se_onepass.cuh",
           "for (uint32_t e = threadIdx.x; e < total; e += kThreads) {\n      const uint32_t r = e / P;",
           "for (uint32_t e = threadIdx.x; e <= total; e += kThreads) {\n      const uint32_t r = e / P;",
           "stage_rows_async: one pack past the tile (a row past the unit's rows, a pack past the slot)"),
    Mutant("oob_wgrad_hoisted_load", "oob-read", "se_excite.cuh",
           "sm.w.sy[nn][ii] = (nr < N && k0 + ii < Kc) ? __ldcg(Y + nr * Kc + k0 + ii) : A(0);",
           "const A yv = __ldcg(Y + nr * Kc + k0 + ii);\n"
           "        sm.w.sy[nn][ii] = (nr < N && k0 + ii < Kc) ? yv : A(0);",
           "wgrad_block: the tile load hoisted above its bounds check (value discarded when out of range)"),
    # ------------------------------------------------ grid barriers
    Mutant("gridsync_fwd_round", "grid-sync", "se_onepass.cuh",
           "    staged_sync<kCluster>();\n#pragma unroll 1\n    for (int t = 0; t < J * S; ++t) {\n"
           "      const int64_t u = staged_unit(sc, base, end, t / S, t % S);\n      if (u >= end) continue;\n",
           "#pragma unroll 1\n    for (int t = 0; t < J * S; ++t) {\n"
           "      const int64_t u = staged_unit(sc, base, end, t / S, t % S);\n      if (u >= end) continue;\n",
           "staged_rounds: no round barrier (cluster or grid) before the MLP rows read the partials"),
    Mutant("gridsync_bwd_wgrad", "grid-sync", "se_backward.cuh",
           "  if (!kCluster || gridDim.x == a.sp.cluster) {  // grid-uniform\n    staged_sync<kCluster>();\n",
           "  if (!kCluster || gridDim.x == a.sp.cluster) {  // grid-uniform\n",
           "se_bwd_staged_kernel: no barrier before the weight gradients (dz1, act, dz2 of other blocks)"),
    # ------------------------------------------------ misaligned 16-byte accesses
    Mutant("misaligned_tile_offset", "misaligned", "se_onepass.cuh",
           "return base + (m > 0 ? m : 0);", "return base + (m > 0 ? Vec<T>::V - m : 0);",
           "onepass_tile (NCHW): the staged span offset by V - m instead of m (its packs off the boundary)"),
    Mutant("misaligned_stage_rows_src", "misaligned", "se_onepass.cuh",
           "const bool vec = len % V == 0 && aligned16(src) &&", "const bool vec = len % V == 0 &&",
           "stage_rows: 16-byte copies without checking the source's alignment (only the tile's is known)"),
    # ------------------------------------------------ launch settings
    Mutant("launch_onepass_no_smem", "launch", "se_forward.cuh",
           "onepass_grid(a.p, a.g, resident), kThreads, stream, a,\n"
           "                               static_cast<size_t>(smem));",
           "onepass_grid(a.p, a.g, resident), kThreads, stream, a);",
           "launch_forward_onepass: the dynamic shared memory bytes not passed (0 bytes for the tile)"),
    Mutant("launch_onepass_smem_slack", "launch", "se_heuristics.h",
           "round_up(g.chunk * p.HW + V - 1, V);\n  return round_up(elems * B, kOnePassSmemStep);",
           "round_up(g.chunk * p.HW, V);\n  return round_up(elems * B, kOnePassSmemStep);",
           "onepass_smem_bytes (NCHW): no room for the span's misalignment (up to V - 1 elements)"),
    Mutant("launch_cluster_slot_slack", "launch", "se_heuristics.h",
           "round_up(g.chunk * p.HW + V - 1, V);\n  return elems * B;",
           "round_up(g.chunk * p.HW, V);\n  return elems * B;",
           "cluster_slot_bytes (NCHW): no room for the span's misalignment (slots overlap by up to V - 1)"),
    Mutant("launch_cluster_no_sum_bytes", "launch", "se_heuristics.h",
           "int64_t smem() const { return staged * slot_bytes + weight_bytes + sum_bytes; }",
           "int64_t smem() const { return staged * slot_bytes + weight_bytes; }",
           "StagedPlan::smem: the launch leaves out the cluster's part sums (stores past the block's shared memory)"),
    Mutant("launch_cluster_slots_floor", "launch", "se_heuristics.h",
           "sp.slots = ceil_div(ups, sp.cluster);", "sp.slots = ups / sp.cluster;",
           "cluster_plan: slots per block rounded down (a sample's last units never run)"),
    Mutant("launch_cluster_direct_skipped", "launch", "se_forward.cuh",
           "[&](int64_t u) { fwd_direct_phase2_call<T, kNHWC, kFC2>(a, sm, u); });",
           "[&](int64_t u) { (void)u; });",
           "se_fwd_staged_kernel: a block's unstaged unit never scaled (its y unwritten)"),
    Mutant("launch_cluster_wgrad_skipped", "launch", "se_backward.cuh",
           "return a.p.N == 1 ? cudaSuccess : se_launch(se_wgrad_kernel<T>",
           "return a.p.N <= 2 ? cudaSuccess : se_launch(se_wgrad_kernel<T>",
           "launch_backward_cluster: no weight-gradient launch for N = 2 (only N = 1 has them in the kernel)"),
    Mutant("launch_onepass_no_fallback", "launch", "se_forward.cuh",
           "    if (launch_forward_onepass<T, kNHWC, kFC2>(a, stream) == cudaSuccess) {\n"
           "      if (taken) *taken = SEPath::OnePass;\n      return cudaSuccess;\n    }\n",
           "    const cudaError_t refused = launch_forward_onepass<T, kNHWC, kFC2>(a, stream);\n"
           "    if (taken) *taken = SEPath::OnePass;\n    return refused;\n",
           "launch_forward_layout: a one-pass request that does not apply returned as is, no two-pass fallback"),
    # ------------------------------------------------ se_sync.h
    Mutant("sync_occupancy_cache_device", "se_sync", "se_sync.h",
           "? static_cast<size_t>(dev) * kSteps + smem / kStep", "? smem / kStep",
           "se_resident_blocks: the occupancy cache slot ignores the device"),
    Mutant("sync_launch_leaves_error", "se_sync", "se_sync.h",
           "return cudaGetLastError();  // this launch's error", "return cudaPeekAtLastError();  // this launch's error",
           "se_launch: peeks at its own launch error instead of clearing it"),
    Mutant("sync_resident_clears_pending", "se_sync", "se_sync.h",
           "static std::atomic<int> cache[kMaxDevices * kSteps];\n  const cudaError_t pending = cudaPeekAtLastError();",
           "static std::atomic<int> cache[kMaxDevices * kSteps];\n  const cudaError_t pending = cudaGetLastError();",
           "se_resident_blocks: clears an error pending from earlier work (Get for Peek)"),
]

_print_lock = threading.Lock()


def say(*a):
    with _print_lock:
        print(*a, flush=True)


CASE_RE = re.compile(r"^(ok  |FAIL) (.*?)\s+K=\S+ P=\S+ \S+s(?: digest=[0-9a-f]{16})?$")


def classify(rc, out, timed_out):
    """Why a run failed (None if it passed): the first fault the output names."""
    if timed_out:
        return "timeout (whole run)"
    if rc == 0:
        return None
    m = re.search(r"ERROR: AddressSanitizer: ([\w-]+)", out)
    if m:
        where = ""
        frame = re.search(r"#\d+ 0x[0-9a-f]+ in (.*) (csrc/cuda/\S+)$", out, re.M)  # the first kernel frame
        if frame:
            fn = re.match(r"(?:[\w:]+ )?([\w:]+)", frame.group(1))
            where = f" in {fn.group(1).split('::')[-1] if fn else '?'} ({frame.group(2)})"
        return "ASan " + m.group(1) + where
    m = re.search(r"^TIMEOUT (.*?): no result", out, re.M)
    if m:
        return "TIMEOUT in case " + m.group(1)
    m = re.search(r"^emu: (.*) in case (.*)$", out, re.M)
    if m:
        what = re.sub(r" at \S+", "", m.group(1))  # addresses, the temporary tree's paths
        return (what[:70] + "..." if len(what) > 70 else what) + " in case " + m.group(2)
    fails = [m.group(2) for m in map(CASE_RE.match, out.splitlines()) if m and m.group(1) == "FAIL"]
    if fails:
        first = out.split("FAIL " + fails[0], 1)[1].splitlines()[1:2]
        why = (": " + first[0].strip()[:70]) if first else ""
        more = f" (+{len(fails) - 1} more)" if len(fails) > 1 else ""
        return f"FAIL in case {fails[0]}{more}{why}"
    m = re.search(r"^FAIL (.*)$", out, re.M)  # selftest
    if m:
        return "FAIL " + m.group(1)[:80]
    return f"exit status {rc}" if rc > 0 else f"killed by signal {-rc}"


def digest_diff(out, stored):
    got, _ = compare_digests.parse_emu_output(out)
    diff = [name for name, d in got.items() if name in stored and stored[name] != d]
    if not diff:
        return None
    return f"digest differs in case {diff[0]}" + (f" (+{len(diff) - 1} more)" if len(diff) > 1 else "")


class Harness:
    def __init__(self, args, cuda_inc, digests):
        self.args = args
        self.cuda_inc = cuda_inc
        self.digests = digests
        self.cxx = shutil.which("g++")

    def build(self, root, src, exe, asan):
        cmd = ["nice", *compile_command(self.cxx, root, src, exe, self.cuda_inc, asan)]
        r = subprocess.run(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return r.returncode == 0, r.stdout

    def run(self, root, cmd, timeout, asan):
        env = dict(os.environ)
        env.pop("EMU_SCHED", None)  # the default (mixed) schedules, as CI
        env["EMU_DIGEST"] = "1"
        if asan:
            env["ASAN_OPTIONS"] = "detect_leaks=0:" + env.get("ASAN_OPTIONS", "")
        try:
            r = subprocess.run(["nice", *cmd], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, timeout=timeout, env=env)
            return r.returncode, r.stdout.replace(root + os.sep, ""), False
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            return -9, out, True

    def checks(self, root, m, asan):
        """(failure or None, digest difference or None) of one build flavour."""
        tag = "asan" if asan else "plain"
        exe = os.path.join(root, "emu_" + tag)
        ok, log = self.build(root, "main.cpp", exe, asan)
        if not ok:
            return "does not compile: " + first_error(log), None
        rc, out, to = self.run(root, [exe, "quick"], self.args.timeout, asan)
        with open(os.path.join(root, f"quick_{tag}.log"), "w") as f:
            f.write(out)
        why = classify(rc, out, to)
        dig = digest_diff(out, self.digests) if self.digests and why is None else None
        if why is None and m.file == "se_sync.h":
            st = os.path.join(root, "selftest_" + tag)
            ok, log = self.build(root, "selftest.cpp", st, asan)
            if not ok:
                return "does not compile: " + first_error(log), None
            for name in ("good", "runtime", "se_sync"):
                rc, out, to = self.run(root, [st, name], 120, asan)
                w = classify(rc, out, to)
                if w is None and f"ok {name}" not in out:
                    w = "no 'ok' line"
                if w is not None:
                    return f"selftest {name}: {w}", dig
        return why, dig

    def mutate(self, m):
        root = tempfile.mkdtemp(prefix="se_mutate_")
        try:
            shutil.copytree(os.path.join(REPO, "csrc"), os.path.join(root, "csrc"))
            shutil.copytree(EMU, os.path.join(root, "tests", "cuda_emu"),
                            ignore=shutil.ignore_patterns("__pycache__", "digests"))
            path = os.path.join(root, "csrc", "cuda", m.file)
            with open(path) as f:
                text = f.read()
            with open(path, "w") as f:
                f.write(text.replace(m.old, m.new, 1))
            why, dig = self.checks(root, m, asan=False)
            if why and why.startswith("does not compile"):
                return m, "invalid", why, None
            if why is None and not self.args.no_asan:
                why, dig2 = self.checks(root, m, asan=True)
                dig = dig or dig2
                if why and why.startswith("does not compile"):
                    return m, "invalid", why, None
                if why:
                    why += " (ASan build)"
            return m, ("caught" if why or dig else "MISSED"), why, dig
        finally:
            if self.args.keep:
                say(f"  (kept {root})")
            else:
                shutil.rmtree(root, ignore_errors=True)


def first_error(log):
    for line in log.splitlines():
        if "error" in line:
            return line.strip()[-120:]
    return log.strip()[-120:]


def check_table(mutants):
    """Every old text must occur exactly once in its file; returns the problems."""
    problems = []
    names = set()
    for m in mutants:
        if m.name in names:
            problems.append(f"{m.name}: duplicate name")
        names.add(m.name)
        path = os.path.join(REPO, "csrc", "cuda", m.file)
        if not os.path.exists(path):
            problems.append(f"{m.name}: no csrc/cuda/{m.file}")
            continue
        with open(path) as f:
            n = f.read().count(m.old)
        if n != 1:
            problems.append(f"{m.name}: the old text occurs {n} times in csrc/cuda/{m.file} (must be once)")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="list the mutants (and check their old texts)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run these mutants only")
    ap.add_argument("--jobs", type=int, default=1, help="mutants at once (default 1)")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per emulator run (default 900)")
    ap.add_argument("--no-asan", action="store_true", help="skip the ASan rebuild of mutants that pass")
    ap.add_argument("--digests", metavar="FILE", help="stored digests (default: tests/cuda_emu/digests/quick.txt)")
    ap.add_argument("--no-digests", action="store_true", help="ignore stored digests")
    ap.add_argument("--keep", action="store_true", help="keep the temporary trees")
    args = ap.parse_args()

    mutants = MUTANTS
    if args.only:
        unknown = [n for n in args.only if n not in {m.name for m in MUTANTS}]
        if unknown:
            sys.exit("unknown mutant(s): " + " ".join(unknown))
        mutants = [m for m in MUTANTS if m.name in args.only]
    problems = check_table(mutants)
    if args.list:
        for m in mutants:
            print(f"{m.name:32} {m.cls:11} {m.file:16} {m.desc}")
        print("\n".join(problems) if problems else f"{len(mutants)} mutants; every old text occurs exactly once")
        return 1 if problems else 0
    if problems:
        sys.exit("\n".join(problems))

    cuda_inc = cuda_include_dirs()
    if not shutil.which("g++") or not cuda_inc:
        sys.exit("needs g++ and the CUDA headers (see tests/test_cuda_emulation.py)")
    digests = None
    dpath = None if args.no_digests else (args.digests or (STORED_DIGESTS if os.path.exists(STORED_DIGESTS) else None))
    if dpath:
        digests = compare_digests.read_stored(dpath)
        print(f"digests: {len(digests)} cases from {os.path.relpath(dpath)}", flush=True)
    h = Harness(args, cuda_inc, digests)
    results = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as ex:
        for m, verdict, why, dig in ex.map(h.mutate, mutants):
            by = "; ".join(x for x in (why, dig) if x) or "every check passed"
            say(f"{m.name:32} {m.cls:11} {verdict:7} {by}")
            results.append((m, verdict, why, dig))
    valid = [r for r in results if r[1] != "invalid"]
    invalid = len(results) - len(valid)
    if digests is not None:
        print(f"without the digest check: caught {sum(1 for r in valid if r[2])} of {len(valid)}")
    print(f"caught {sum(1 for r in valid if r[1] == 'caught')} of {len(valid)}"
          + (f" ({invalid} invalid: do not compile)" if invalid else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
