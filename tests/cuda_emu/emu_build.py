"""How the emulator is compiled: the CUDA headers it needs and the g++ command,
shared by tests/test_cuda_emulation.py (CI) and tests/cuda_emu/mutate.py (by
hand), so that both build it alike. Python 3 standard library only."""
import glob
import os
import shutil
import sys

NEEDED = ("cuda_runtime_api.h", "crt/host_defines.h", "vector_types.h", "cuda_fp16.h", "cuda_bf16.h")


def cuda_include_dirs():
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


def compile_command(cxx, root, source, exe, cuda_inc, asan):
    """g++ command building tests/cuda_emu/<source> of the tree at root into exe.
    -ffp-contract=off: no fused multiply-adds beyond the kernels' own fmaf/fma (g++
    contracts by default where the target has FMA, e.g. -march=native or aarch64):
    the stored digests are the bits of the written operations. The emulator's
    include/ comes first: its cuda/se_sync.h wraps csrc/cuda/se_sync.h."""
    flags = ["-std=c++20", "-O1", "-pthread", "-g1", "-ffp-contract=off"]
    if asan:
        flags += ["-fsanitize=address", "-fno-omit-frame-pointer"]
    emu = os.path.join(root, "tests", "cuda_emu")
    incs = ["-I" + d for d in [os.path.join(emu, "include"), os.path.join(root, "csrc"),
                               os.path.join(root, "csrc", "cuda"), emu] + cuda_inc]
    return [cxx, *flags, *incs, os.path.join(emu, source), "-o", exe]
