"""The CUDA kernels of csrc/cuda/se_block.cu, run on the CPU by the emulator in
tests/cuda_emu/ (no GPU needed): gen.py rewrites the kernel source into
plain C++ in pytest's tmp_path, g++ compiles it with tests/cuda_emu/main.cpp
(under AddressSanitizer), and the binary runs its `quick` case set: forward
and backward against a float64 reference, plus bit-for-bit determinism across
tilings and alignments and batch invariance. See tests/cuda_emu/README.md.

Skips when g++ or the CUDA headers (cuda_fp16.h etc.; no CUDA runtime is
needed) cannot be found. SE_FUSED_EMU_SANITIZE=0 builds without ASan.
"""
import glob
import os
import shutil
import subprocess
import sys

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
EMU = os.path.join(TESTS, "cuda_emu")
NEEDED = ("cuda_runtime_api.h", "crt/host_defines.h", "vector_types.h", "cuda_fp16.h", "cuda_bf16.h")


def _cuda_include_dirs():
    """-I directories with the CUDA headers the emulator compiles against, or None."""
    roots = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        roots.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    roots.append("/usr/local/cuda")
    cands = [os.path.join(r, "include") for r in roots if r]
    for sp in sys.path:  # pip wheels (nvidia-cuda-runtime, triton) ship headers too
        cands += sorted(glob.glob(os.path.join(sp, "nvidia", "*", "include")))
        cands.append(os.path.join(sp, "triton", "backends", "nvidia", "include"))
    for inc in cands:
        if not all(os.path.exists(os.path.join(inc, h)) for h in NEEDED):
            continue
        for extra in ([], [os.path.join(inc, "cccl")]):  # <nv/target>: CUDA 13 keeps it under cccl/
            if any(os.path.exists(os.path.join(d, "nv", "target")) for d in [inc] + extra):
                return [inc] + extra
    return None


def _run(cmd, timeout, **kw):
    return subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, **kw)


def _asan_works(cxx, tmp_path):
    src = tmp_path / "asan_probe.cpp"
    src.write_text("int main() { return 0; }\n")
    r = _run([cxx, "-fsanitize=address", str(src), "-o", str(tmp_path / "asan_probe")], 60)
    return r.returncode == 0


def test_cuda_kernels_on_cpu_emulator(tmp_path):
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("no g++ on PATH")
    cuda_inc = _cuda_include_dirs()
    if cuda_inc is None:
        pytest.skip("CUDA headers (cuda_runtime_api.h, cuda_fp16.h, crt/, nv/target) not found")

    gen = _run([sys.executable, os.path.join(EMU, "gen.py"), str(tmp_path)], 60)
    assert gen.returncode == 0, f"tests/cuda_emu/gen.py failed:\n{gen.stdout}"

    flags = ["-std=c++20", "-O1", "-pthread", "-g1"]
    env = dict(os.environ)
    if os.environ.get("SE_FUSED_EMU_SANITIZE", "1") != "0" and _asan_works(cxx, tmp_path):
        flags += ["-fsanitize=address", "-fno-omit-frame-pointer"]
        # Leak checking needs ptrace rights some containers lack, and finds nothing here.
        env["ASAN_OPTIONS"] = "detect_leaks=0:" + env.get("ASAN_OPTIONS", "")
    exe = str(tmp_path / "se_block_emu")
    incs = ["-I" + d for d in [os.path.join(REPO, "csrc"), os.path.join(REPO, "csrc", "cuda"), EMU, str(tmp_path)]
            + cuda_inc]
    cc = _run([cxx, *flags, *incs, os.path.join(EMU, "main.cpp"), "-o", exe], 300)
    assert cc.returncode == 0, f"compiling tests/cuda_emu/main.cpp failed:\n{cc.stdout[-20000:]}"

    try:
        run = _run([exe, "quick"], 300, env=env)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        pytest.fail(f"the emulator did not finish in 300 s:\n{out}")
    lines = run.stdout.strip().splitlines()
    assert run.returncode == 0 and lines and lines[-1].endswith(" passed, 0 failed"), (
        f"CUDA kernel emulation failed (exit status {run.returncode}):\n{run.stdout[-20000:]}")
