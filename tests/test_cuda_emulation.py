"""The CUDA kernels of csrc/cuda/, run on the CPU by the emulator in
tests/cuda_emu/ (no GPU needed): g++ compiles the kernel sources and
csrc/cuda/se_sync.h unchanged with tests/cuda_emu/main.cpp, the include path
putting the emulator's include/ first (its cuda/se_sync.h wraps the real one;
its cuda_runtime.h and cooperative_groups.h are the emulated runtime, on CPU
fibers), under AddressSanitizer; the binary runs its `quick` case set: forward and backward
against a float64 reference on every path (two-pass, cooperative, one-pass,
a refused cooperative launch, one-pass falling back), bit-for-bit
determinism across paths, resident-block counts and alignments, batch
invariance, and three concurrent launch sequences on a device with fewer
block slots than units per sample (plus a one-pass launch beside them); and each
case's digest (every output of forward and backward) against the stored
tests/cuda_emu/digests/quick.txt, so that a change of bits shows even where every
path changed alike (SE_FUSED_EMU_UPDATE_DIGESTS=1 rewrites the file from the run).
Also: compare_digests.py's GPU comparison on made-up digests, and the GPU digest
driver (tests/cuda_emu/gpu_digest.cu) compiled by nvcc for sm_90 if nvcc is
present. See tests/cuda_emu/README.md.

Skips when g++ or the CUDA headers (cuda_fp16.h etc.; no CUDA runtime is
needed) cannot be found. SE_FUSED_EMU_SANITIZE=0 builds without ASan.
"""
import os
import re
import shutil
import subprocess
import sys

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
EMU = os.path.join(TESTS, "cuda_emu")
sys.path.insert(0, EMU)
import compare_digests  # noqa: E402  (tests/cuda_emu/compare_digests.py)
from emu_build import compile_command, cuda_include_dirs  # noqa: E402  (tests/cuda_emu/emu_build.py)
sys.path.pop(0)


def _run(cmd, timeout, **kw):
    return subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, **kw)


def _asan_works(cxx, tmp_path):
    src = tmp_path / "asan_probe.cpp"
    src.write_text("int main() { return 0; }\n")
    r = _run([cxx, "-fsanitize=address", str(src), "-o", str(tmp_path / "asan_probe")], 60)
    return r.returncode == 0


def _build(tmp_path_factory, source):
    """Compile tests/cuda_emu/<source> as the tests run it: (binary, environment)."""
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("no g++ on PATH")
    cuda_inc = cuda_include_dirs()
    if cuda_inc is None:
        pytest.skip("CUDA headers (cuda_runtime_api.h, cuda_fp16.h, crt/, nv/target) not found")
    tmp_path = tmp_path_factory.mktemp(source.replace(".", "_"))
    env = dict(os.environ)
    env.pop("EMU_SCHED", None)  # the default (mixed) schedules: the race checks need them
    asan = os.environ.get("SE_FUSED_EMU_SANITIZE", "1") != "0" and _asan_works(cxx, tmp_path)
    if asan:
        # Leak checking needs ptrace rights some containers lack, and finds nothing here.
        env["ASAN_OPTIONS"] = "detect_leaks=0:" + env.get("ASAN_OPTIONS", "")
    exe = str(tmp_path / source.split(".")[0])
    cc = _run(compile_command(cxx, REPO, source, exe, cuda_inc, asan), 300)
    assert cc.returncode == 0, f"compiling tests/cuda_emu/{source} failed:\n{cc.stdout[-20000:]}"
    return exe, env


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """(path of the emulator binary, environment to run it in), built once."""
    exe, env = _build(tmp_path_factory, "main.cpp")
    env["EMU_DIGEST"] = "1"
    return exe, env


def test_cuda_kernels_on_cpu_emulator(emulator):
    exe, env = emulator
    try:
        # About 3 minutes under ASan on 2 cores; the per-case watchdog (60 s) catches a hang
        # sooner, this only bounds the whole run.
        run = _run([exe, "quick"], 600, env=env)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        pytest.fail(f"the emulator did not finish in 600 s:\n{out}")
    lines = run.stdout.strip().splitlines()
    assert run.returncode == 0 and lines and lines[-1].endswith(" passed, 0 failed"), (
        f"CUDA kernel emulation failed (exit status {run.returncode}):\n{run.stdout[-20000:]}")
    # The cluster path's staged weight slice ran, and the forward's rounds of several samples sharing it
    # (their cp.async waits and the slice's reuse are checked only where they run).
    staged = re.search(r"cluster plans staging the weight slice: (\d+), forward ones taking several samples "
                       r"per round: (\d+)", run.stdout)
    assert staged and int(staged.group(1)) > 0, "no cluster run staged its weight slice"
    assert int(staged.group(2)) > 0, "no cluster forward run took several samples per round"
    # The cluster's row parts (NHWC) gave their sums through distributed shared memory.
    stores = re.search(r"row parts' sums stored into another block's shared memory: (\d+)", run.stdout)
    assert stores and int(stores.group(1)) > 0, "no cluster run exchanged row parts' sums in shared memory"
    # Every case's digest (all outputs of forward and backward) against the stored ones:
    # a kernel change that moves any bit shows here, even where every path moved alike.
    got, _ = compare_digests.parse_emu_output(run.stdout)
    if os.environ.get("SE_FUSED_EMU_UPDATE_DIGESTS") == "1":
        compare_digests.write_stored(got)
        return
    n, report = compare_digests.compare(compare_digests.read_stored(), got)
    assert n == 0, (f"{n} case digest(s) differ from tests/cuda_emu/digests/quick.txt:\n{report}\n"
                    f"If the change of bits is intended, regenerate (and say why in the commit):\n"
                    f"  {compare_digests.REGENERATE}")


def test_gpu_model_geometry_is_the_kernels(emulator):
    """benchmarks/gpu_model.py predicts from its own copy of make_geometry's rules
    (chunk, chunks, row parts, rows per part); it must give the kernels' geometry, or
    the predictions bench.py prints beside GPU timings describe other kernels."""
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    try:
        import gpu_model
    finally:
        sys.path.pop(0)
    shapes = [(c, h * w, hidden, b, cl) for _, _, c, h, w, hidden, b, cl in gpu_model.BENCH_SHAPES]
    shapes += [(c, hw, max(c // 16, 1), b, cl) for c in (3, 16, 24, 64, 256, 960, 2048, 4100)
               for hw in (1, 49, 196, 400, 576, 784, 1024, 3136, 12544) for b in (2, 4, 8)
               for cl in (False, True)]
    queries = [(c, hw, hidden, b, cl, bwd) for c, hw, hidden, b, cl in shapes for bwd in (False, True)]
    stdin = "".join(f"{c} {hw} {hidden} {b} {int(cl)} {int(bwd)}\n" for c, hw, hidden, b, cl, bwd in queries)
    exe, env = emulator
    run = subprocess.run([exe, "geometry"], input=stdin, capture_output=True, text=True, env=env,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    got = [tuple(int(v) for v in line.split()) for line in run.stdout.strip().splitlines()]
    assert len(got) == len(queries)
    for q, kernels in zip(queries, got):
        c, hw, hidden, b, cl, bwd = q
        model = tuple(gpu_model.geometry(c, hw, hidden, b, cl, backward=bwd))
        assert model == kernels, f"C {c} HW {hw} hidden {hidden} {b}-byte {'NHWC' if cl else 'NCHW'} " \
            f"{'backward' if bwd else 'forward'}: gpu_model.py {model}, kernels {kernels} (chunk, K, P, rows)"


def _cuda_sources():
    d = os.path.join(REPO, "csrc", "cuda")
    return {f: open(os.path.join(d, f)).read() for f in sorted(os.listdir(d))}


def test_cuda_sources_are_short_and_trap_free():
    """No file in csrc/cuda/ over 500 lines; no __trap anywhere in csrc/ (a
    trap is a sticky error that kills the process's CUDA context)."""
    for name, text in _cuda_sources().items():
        assert text.count("\n") <= 500, f"csrc/cuda/{name} has {text.count(chr(10))} lines (limit 500)"
    for root, _, files in os.walk(os.path.join(REPO, "csrc")):
        for f in files:
            with open(os.path.join(root, f)) as fh:
                assert "__trap" not in fh.read(), f"__trap in {os.path.join(root, f)}"


def _bodies(code, pattern):
    """(name, start, end) of each brace-delimited body after a match of pattern (group 1: the name)."""
    import re
    out = []
    for m in re.finditer(pattern, code):
        body_start = code.find("{", m.end())
        semi = code.find(";", m.end())
        if body_start < 0 or 0 <= semi < body_start:  # a declaration
            continue
        depth, i = 0, body_start
        while True:
            depth += {"{": 1, "}": -1}.get(code[i], 0)
            i += 1
            if depth == 0:
                break
        out.append((m.group(1), body_start, i))
    return out


def test_cuda_waits_only_under_cooperative_or_cluster_launch():
    """The only inter-block waits are se_grid_sync() and se_cluster_sync() (se_sync.h),
    each called only in staged_sync (se_onepass.cuh), which is called only in kernels
    named *_staged_kernel and in staged_rounds (se_onepass.cuh), itself called only in
    kernels named *_staged_kernel. A *_staged_kernel<..., false> (the grid barrier) is started
    only by se_launch_cooperative and a *_staged_kernel<..., true> (the cluster barrier)
    only by se_launch_cluster. No spin loop on global flags (no atomics, no ld.acquire /
    __nanosleep) anywhere in csrc/cuda/."""
    import re
    # (bounds spelled out, or a macro for them: se_forward.cuh SE_FWD_STAGED_BOUNDS)
    kernel = r"__global__\s+void\s+(?:(?:__launch_bounds__\([^)]*\)|SE_\w+_BOUNDS)\s*)?(\w+)\s*\("
    for name, text in _cuda_sources().items():
        code = re.sub(r"//[^\n]*", "", text)
        # (asm volatile: se_sync.h's cp.async instructions, which wait on nothing but the
        # thread's own copies)
        for bad in ("__nanosleep", "atomicAdd", "atomicCAS", "ld.acquire", "volatile"):
            assert bad not in code.replace("asm volatile(\"cp.async.", ""), f"csrc/cuda/{name} uses {bad}"
        if name == "se_sync.h":
            continue
        kernels = _bodies(code, kernel)
        staged_sync = _bodies(code, r"__device__\s+__forceinline__\s+void\s+(staged_sync)\s*\(")
        rounds = _bodies(code, r"__device__\s+__forceinline__\s+void\s+(staged_rounds)\s*\(")
        for k, a, b in kernels:
            assert "se_grid_sync" not in code[a:b], f"{k} in {name} waits on the grid outside staged_sync"
            if not k.endswith("_staged_kernel"):
                assert "staged_sync" not in code[a:b] and "staged_rounds" not in code[a:b], (
                    f"{k} in {name} waits in a staged round")
        inside = lambda pos, spans: any(a <= pos < b for _, a, b in spans)  # noqa: E731
        staged = [s for s in kernels if s[0].endswith("_staged_kernel")]
        for m in re.finditer(r"se_grid_sync\s*\(", code):
            assert inside(m.start(), staged_sync), f"se_grid_sync() outside staged_sync in {name} (offset {m.start()})"
        for m in re.finditer(r"se_cluster_sync\s*\(", code):
            assert inside(m.start(), staged_sync), f"se_cluster_sync() outside staged_sync in {name}"
        for m in re.finditer(r"staged_sync\s*<", code):
            assert inside(m.start(), staged + rounds), (
                f"staged_sync outside a *_staged_kernel body or staged_rounds in {name}")
        for m in re.finditer(r"staged_rounds\s*<", code):
            assert inside(m.start(), staged), f"staged_rounds outside a *_staged_kernel body in {name}"
        for m in re.finditer(r"se_launch(_cooperative|_cluster)?\((\w+)", code):
            assert not m.group(2).endswith("_staged_kernel"), f"{m.group(2)} launched by name in {name}"
        # The staged kernels are launched through `constexpr auto kernel = ...;` in a launch
        # function whose launch call names that kernel.
        for fn, a, b in _bodies(code, r"\ncudaError_t\s+(\w+)\s*\("):
            body = code[a:b]
            for m in re.finditer(r"constexpr auto kernel = (\w+_staged_kernel)<[^;]*,\s*(true|false)>;", body):
                launches = re.findall(r"se_launch(_cooperative|_cluster)?\(kernel\b", body)
                want = "_cluster" if m.group(2) == "true" else "_cooperative"
                assert launches and all(x == want for x in launches), (
                    f"{fn} in {name}: {m.group(1)}<..., {m.group(2)}> launched by {launches}, want se_launch{want}")
            assert not re.search(r"_staged_kernel<", body.replace("constexpr auto kernel = ", "")) or \
                "constexpr auto kernel = " in body, f"{fn} in {name} names a staged kernel outside its declaration"


# tests/cuda_emu/selftest.cpp: each check of the emulator on a tiny kernel that breaks
# one rule (must abort or exit non-zero naming it), and the good kernels and the real
# csrc/cuda/se_sync.h on the emulated runtime (must pass).
SELFTEST_GOOD = ("good", "runtime", "se_sync", "cluster", "cluster_runtime", "se_sync_cluster", "cp_async")
SELFTEST_BAD = {
    "misaligned_global_load": "misaligned 16-byte access",
    "misaligned_shared_store": "misaligned 16-byte access",
    "misaligned_dynamic_load": "misaligned 16-byte access",
    "shuffle_partial_mask": "does not include the calling lane",
    "shuffle_exited_lane": "names an exited lane",
    "shuffle_lane_elsewhere": "never came",
    "shuffle_divergent": "meet in different shuffles",
    "shuffle_offset": "shuffle offset 32 out of range",
    "shuffle_width": "shuffle width 24 at",
    "race_read_after_write": "results change with the thread schedule",
    "race_write_after_read": "results change with the thread schedule",
    "race_reduction_reuse": "results change with the thread schedule",
    "grid_sync_outside_cooperative": "grid sync outside a cooperative launch",
    "cluster_sync_outside_cluster": "cluster sync outside a cluster launch",
    "cluster_sync_block_returned": "cluster barrier deadlocked",
    "cluster_sync_pre_hopper_image": "image predates sm_90",
    "cp_async_read_before_wait": "saw unstaged shared memory",
    "cp_async_read_before_barrier": "saw unstaged shared memory",
    "cp_async_misaligned_source": "misaligned 16-byte cp.async source",
    "cp_async_misaligned_destination": "misaligned 16-byte cp.async destination",
    "cp_async_outside_shared": "outside the block's shared memory",
    "cp_async_pending_at_exit": "0 not committed, 1 committed but not waited for",
    "cp_async_wait_without_commit": "1 not committed, 0 committed but not waited for",
    "dsmem_read_before_barrier": "saw the bytes there before",
    "dsmem_outside_shared": "outside the block's shared memory",
    "dsmem_no_barrier": "not followed by a cluster barrier",
    "dsmem_misaligned": "misaligned 4-byte distributed shared-memory store",
    "dsmem_rank_outside_cluster": "distributed shared-memory store to rank 4 of a cluster of 4",
}


@pytest.fixture(scope="module")
def selftest(tmp_path_factory):
    """(path of the emulator's selftest binary, environment), built like the emulator."""
    return _build(tmp_path_factory, "selftest.cpp")


def test_emulator_selftest_lists_every_check(selftest):
    exe, env = selftest
    run = _run([exe, "list"], 60, env=env)
    assert run.returncode == 0, run.stdout
    listed = [tuple(line.split()) for line in run.stdout.strip().splitlines()]
    assert sorted(listed) == sorted([("good", g) for g in SELFTEST_GOOD] +
                                    [("bad", b) for b in SELFTEST_BAD]), listed


@pytest.mark.parametrize("name", SELFTEST_GOOD)
def test_emulator_selftest_good_kernels_and_se_sync_pass(selftest, name):
    """Checked 16-byte accesses, shuffles and barriers used rightly give the same bits on
    every schedule; the emulated runtime's rules (errors, occupancy, shared-memory opt-in,
    cooperative refusals, sticky errors); the real se_sync.h's launch, occupancy cache,
    opt-in and grid barrier on it; cluster launches (values exchanged through global memory
    at the cluster barrier, in waves over several GPCs, beside other host threads'
    launches), the cluster rules and occupancy answers, se_launch_cluster and
    se_cluster_capacity; values stored into the next block's shared memory (se_cluster_store)
    read after the cluster barrier; cp.async tiles read after the wait and a barrier,
    wait_group's count."""
    exe, env = selftest
    run = _run([exe, name], 120, env=env)
    assert run.returncode == 0 and f"ok {name}" in run.stdout, (
        f"selftest {name} failed (exit status {run.returncode}):\n{run.stdout[-5000:]}")


@pytest.mark.parametrize("name", sorted(SELFTEST_BAD))
def test_emulator_selftest_check_fires(selftest, name):
    """Each broken kernel ends the run with the fault named: a misaligned 16-byte access
    (global, static and dynamic shared memory), a shuffle whose mask leaves out a caller
    or names a lane that exits or waits elsewhere, lanes at different shuffles, an offset
    or width out of range, a missing barrier (read-after-write and write-after-read on
    shared memory, and a block reduction's buffer reused without one: the adversarial
    schedules change the result), a grid barrier outside a cooperative launch; a cluster
    barrier outside a cluster launch, not reached by a block of the cluster, or in a
    pre-sm_90 image; cp.async misaligned, outside shared memory, pending at exit (not
    waited for, or never committed), or read before its wait or the barrier after it
    (wrong results); a distributed shared-memory store read before the cluster barrier
    (wrong results), outside shared memory, misaligned, to a rank past the cluster, or
    never followed by a barrier."""
    exe, env = selftest
    run = _run([exe, name], 120, env=env)
    assert run.returncode != 0, f"selftest {name} passed, but its check should have fired:\n{run.stdout[-3000:]}"
    assert SELFTEST_BAD[name] in run.stdout, (
        f"selftest {name}: exit status {run.returncode} without '{SELFTEST_BAD[name]}':\n{run.stdout[-3000:]}")


# tests/cuda_emu/compare_digests.py, as tests/cuda_emu/gpu_digest.sh uses it on a GPU's
# digests, and the GPU driver tests/cuda_emu/gpu_digest.cu compiled as for a GPU.
def test_compare_digests_reports_equal_differ_missing(tmp_path):
    stored = tmp_path / "stored.txt"
    stored.write_text("# made up\nfp32 N1 C3 case a 00000000000000aa\nfp32 case b 00000000000000bb\n"
                      "case c 00000000000000cc\n")
    gpu = tmp_path / "gpu_digests.txt"
    paths = ["twopass:twopass/twopass", "onepass:twopass/onepass", "cluster:cluster/cluster",
             "cluster-s3:cluster/cluster"]
    gpu.write_text("".join(f"fp32 N1 C3 case a {p} 00000000000000aa\n" for p in paths) +  # equal
                   "".join(f"fp32 case b {p} {'00000000000000bb' if i else '00000000000000b0'}\n"
                           for i, p in enumerate(paths)) +                               # differs on one path
                   f"case d {paths[0]} 00000000000000dd\n")                             # c missing, d extra
    out = tmp_path / "gpu_vs_emu.txt"
    script = os.path.join(EMU, "compare_digests.py")
    run = _run([sys.executable, script, "gpu", str(gpu), "--stored", str(stored), "--out", str(out)], 60)
    assert run.returncode == 1, run.stdout
    assert run.stdout.strip().splitlines()[-1] == "gpu vs emulator: 1 equal, 3 differ (of 4)", run.stdout
    report = out.read_text()
    assert "equal  fp32 N1 C3 case a onepass:twopass/onepass gpu=00000000000000aa emu=00000000000000aa" in report
    assert "DIFFER fp32 case b twopass:twopass/twopass gpu=00000000000000b0 emu=00000000000000bb" in report
    assert "MISSING case c twopass,onepass,cluster,cluster-s3" in report and "EXTRA  case d" in report
    # a case on only some paths is not equal; every path equal passes
    gpu.write_text("".join(f"fp32 N1 C3 case a {p} 00000000000000aa\n" for p in paths))
    stored.write_text("fp32 N1 C3 case a 00000000000000aa\n")
    run = _run([sys.executable, script, "gpu", str(gpu), "--stored", str(stored), "--out", str(out)], 60)
    assert run.returncode == 0 and run.stdout.strip().endswith("gpu vs emulator: 1 equal, 0 differ (of 1)")
    gpu.write_text(f"fp32 N1 C3 case a {paths[0]} 00000000000000aa\n")
    run = _run([sys.executable, script, "gpu", str(gpu), "--stored", str(stored), "--out", str(out)], 60)
    assert run.returncode == 1 and run.stdout.strip().endswith("gpu vs emulator: 0 equal, 1 differ (of 1)")
    # the emulator's side: a missing, an extra and a differing case each named
    emu_out = ("ok   fp32 N1 C3 case a   K=1 P=1/1 0.01s digest=00000000000000ab\n"
               "ok   case e                K=2 P=1/1 0.02s digest=00000000000000ee\n2 passed, 0 failed\n")
    stored.write_text("fp32 N1 C3 case a 00000000000000aa\ncase c 00000000000000cc\n")
    run = _run([sys.executable, script, "emu", "-", "--stored", str(stored)], 60, input=emu_out)
    assert run.returncode == 1, run.stdout
    for name in ("missing (stored, not produced): case c", "extra (produced, not stored): case e",
                 "DIFFER: fp32 N1 C3 case a: stored 00000000000000aa, now 00000000000000ab"):
        assert name in run.stdout, run.stdout


def test_stored_digests_name_each_quick_case_once():
    stored = compare_digests.read_stored()
    assert len(stored) >= 50 and any(n.startswith("concurrent") for n in stored), sorted(stored)


def test_gpu_digest_driver_compiles_for_sm90(tmp_path):
    """gpu_digest.cu (the host driver; the kernels are the extension's .cu files)
    compiles with nvcc for sm_90, --fmad=false, the flags gpu_digest.sh builds with."""
    nvcc = shutil.which("nvcc") or next((p for p in [os.path.join(os.environ.get("CUDA_HOME", ""), "bin", "nvcc"),
                                                    "/usr/local/cuda/bin/nvcc"] if os.path.exists(p)), None)
    if nvcc is None:
        pytest.skip("no nvcc")
    env = dict(os.environ, NVCC=nvcc, TORCH_CUDA_ARCH_LIST="9.0")
    obj = tmp_path / "gpu_digest.o"
    run = _run(["bash", os.path.join(EMU, "gpu_digest.sh"), "--object", str(obj)], 300, env=env)
    assert run.returncode == 0 and obj.exists(), f"nvcc failed on gpu_digest.cu:\n{run.stdout[-10000:]}"
