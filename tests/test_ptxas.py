"""ptxas on the CUDA kernels, no GPU needed (docs/cuda.md, "Registers and spills"): the
eight instantiation files of csrc/cuda/ compiled with setup.py's nvcc flags and torch's for
sm_80, sm_90 and (where nvcc has it) sm_100, `-Xptxas -v` read back:

- no spill stores or loads in any kernel or `__noinline__` function, on any of them;
- on sm_80 and sm_90, the staged kernels at most 128 registers (two blocks of 256 threads per
  SM: the model's CLUSTER_REGS and ONEPASS_BLOCKS_PER_SM) and the two-pass streaming kernels
  at most 64 (four blocks: BLOCKS_PER_SM).

The staged forward sits at ptxas's edge (a small change has taken it to 169 registers or to
spills), so this runs on every change instead of by hand. The figures are nvcc 13.0's (the
toolkit CI builds with); another release allocates differently, so it skips there.
"""
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = [f"se_{d}_{t}.cu" for d in ("forward", "backward") for t in ("f32", "f64", "f16", "bf16")]
STAGED_MAX, STREAM_MAX = 128, 64


def _nvcc():
    return shutil.which("nvcc") or next(
        (p for p in [os.path.join(os.environ.get("CUDA_HOME", ""), "bin", "nvcc"), "/usr/local/cuda/bin/nvcc"]
         if os.path.exists(p)), None)


def _flags():
    """setup.py's nvcc list and the defines torch's extension build adds."""
    from torch.utils.cpp_extension import COMMON_NVCC_FLAGS
    src = open(os.path.join(REPO, "setup.py")).read()
    own = re.findall(r'"([^"]+)"', re.search(r"^\s*nvcc = \[(.*)\]", src, re.M).group(1))
    return ["-std=c++17"] + own + [f for f in COMMON_NVCC_FLAGS if f not in own]


def parse(log):
    """[(name, registers or None, spill store bytes, spill load bytes)] of a `-Xptxas -v` log:
    each "Compiling entry function" (a kernel) and "Function properties for" (kernels and
    device functions) record."""
    out = []
    for block in re.split(r"(?=ptxas info\s+: (?:Compiling entry function|Function properties for))", log):
        m = re.match(r"ptxas info\s+: (?:Compiling entry function '([^']+)'|Function properties for (\S+))", block)
        if not m:
            continue
        regs = re.search(r"Used (\d+) registers", block)
        spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", block)
        out.append((m.group(1) or m.group(2), int(regs.group(1)) if regs else None,
                    int(spill.group(1)) if spill else 0, int(spill.group(2)) if spill else 0))
    return out


def test_parse_reads_registers_and_spills():
    log = ("ptxas info    : Compiling entry function '_Z3fooPf' for 'sm_90'\n"
           "ptxas info    : Function properties for _Z3fooPf\n"
           "    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n"
           "ptxas info    : Used 130 registers, used 1 barriers, 24640 bytes smem\n"
           "ptxas info    : Function properties for _Z3barv\n"
           "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n")
    recs = parse(log)
    assert ("_Z3fooPf", None, 0, 0) in recs
    assert ("_Z3fooPf", 130, 4, 12) in recs
    assert ("_Z3barv", None, 0, 0) in recs


def test_no_spills_and_the_models_register_budgets(tmp_path):
    nvcc = _nvcc()
    if nvcc is None:
        pytest.skip("no nvcc")
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    if "release 13.0" not in version:
        pytest.skip("the register figures are nvcc 13.0's (docs/cuda.md); this nvcc is another release")
    archs = ["80", "90"]
    if "compute_100" in subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True).stdout.split():
        archs.append("100")
    flags = _flags()

    def compile_one(job):
        arch, name = job
        run = subprocess.run(
            [nvcc] + flags + ["-Icsrc", f"-gencode=arch=compute_{arch},code=sm_{arch}", "-Xptxas", "-v", "-c",
                              os.path.join("csrc", "cuda", name), "-o", str(tmp_path / f"{name}.{arch}.o")],
            cwd=REPO, capture_output=True, text=True, timeout=1200)
        assert run.returncode == 0, f"nvcc sm_{arch} {name}:\n{run.stderr[-4000:]}"
        return arch, name, parse(run.stderr + run.stdout)

    jobs = [(a, f) for a in archs for f in FILES]
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        results = list(pool.map(compile_one, jobs))
    problems, kernels = [], 0
    for arch, name, recs in results:
        assert recs, f"no ptxas records for sm_{arch} {name}"
        for fn, regs, st, ld in recs:
            if st or ld:
                problems.append(f"sm_{arch} {name} {fn}: {st} bytes spill stores, {ld} loads")
            if regs is None or arch == "100":
                continue
            kernels += 1
            limit = STAGED_MAX if "_staged_kernel" in fn else (
                STREAM_MAX if re.search(r"se_(fwd|bwd)_(phase1|phase2|sum)_kernel", fn) else None)
            if limit is not None and regs > limit:
                problems.append(f"sm_{arch} {name} {fn}: {regs} registers (at most {limit})")
    assert kernels > 0
    assert not problems, "\n".join(problems)
