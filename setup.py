"""Build se_fused._C: the CPU kernels always, the CUDA kernels when nvcc and a
CUDA build of torch are present (no GPU needed to compile them).

Knobs (environment variables):
  SE_FUSED_CUDA=1         require the CUDA kernels (fail if they cannot be built)
  SE_FUSED_CUDA=0         skip the CUDA kernels
  TORCH_CUDA_ARCH_LIST    GPU architectures, default "8.0;9.0;10.0+PTX" ("8.0;9.0+PTX"
                          where nvcc has no 10.0)
  MAX_JOBS                parallel compile jobs (ninja)
  SE_FUSED_CPU_ARCH       -march for the C++ sources: default x86-64-v4 (AVX-512) or
                          x86-64-v3 (AVX2, FMA, F16C), the best the build machine has,
                          else the compiler's default;
                          "none" for a portable build, "native" for this CPU exactly
  SE_FUSED_PTXAS_VERBOSE=1  print registers, shared memory and spills per kernel
  (the device code is built with --fmad=false: no a * b + c contracted into an fma)
  CUDA_HOME               the CUDA toolkit; found from nvcc on PATH otherwise
Install against the torch already present: pip install --no-build-isolation -e .
"""
import glob
import json
import os
import re
import shutil
import subprocess

from setuptools import setup


def _is_cuda_home(path):
    return bool(path) and os.path.exists(os.path.join(path, "include", "cuda_runtime.h"))


def _find_cuda_home():
    if os.environ.get("CUDA_HOME"):
        return os.environ["CUDA_HOME"]
    candidates = []
    nvcc = shutil.which("nvcc")
    if nvcc:  # /usr/local/bin/nvcc may be a link (or a wrapper script) into the toolkit
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates.append("/usr/local/cuda")
    return next((c for c in candidates if _is_cuda_home(c)), None)


# torch.utils.cpp_extension reads CUDA_HOME when it is imported.
_cuda_home = _find_cuda_home()
if _cuda_home:
    os.environ["CUDA_HOME"] = _cuda_home

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

ROOT = os.path.dirname(os.path.abspath(__file__))


def _want_cuda():
    mode = os.environ.get("SE_FUSED_CUDA", "auto").lower()
    have_nvcc = bool(_cuda_home) and os.path.exists(os.path.join(_cuda_home, "bin", "nvcc"))
    have_torch_cuda = torch.version.cuda is not None
    if mode in ("0", "false", "no", "off"):
        return False, "SE_FUSED_CUDA=0"
    if have_nvcc and have_torch_cuda:
        return True, f"nvcc in {_cuda_home}, torch built with CUDA {torch.version.cuda}"
    reason = "no nvcc found" if not have_nvcc else f"torch {torch.__version__} is a CPU build"
    if mode in ("1", "true", "yes", "on"):
        raise RuntimeError(f"se_fused: SE_FUSED_CUDA=1 but the CUDA kernels cannot be built: {reason}")
    return False, reason


def _cpu_arch_flags():
    """The CPU kernels are memory-bound only when vectorised with AVX2-class
    instructions; the extension is built where it runs, so target the build CPU."""
    arch = os.environ.get("SE_FUSED_CPU_ARCH", "auto")
    if arch == "none":
        return [], "compiler default (SE_FUSED_CPU_ARCH=none)"
    if arch != "auto":
        return [f"-march={arch}"], f"-march={arch} (SE_FUSED_CPU_ARCH)"
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    if all(flag in flags for flag in ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")):
        return (["-march=x86-64-v4", "-mprefer-vector-width=512"],
                "-march=x86-64-v4 (the build CPU has AVX-512)")
    if all(flag in flags for flag in ("avx2", "fma", "f16c", "bmi2")):
        return ["-march=x86-64-v3"], "-march=x86-64-v3 (the build CPU has AVX2/FMA/F16C)"
    return [], "compiler default (no AVX2/FMA/F16C on the build CPU)"


def _nvcc_version():
    """nvcc's release as "13.0.48" (from `nvcc --version`: "..., V13.0.48"), or "unknown"."""
    try:
        out = subprocess.run([os.path.join(_cuda_home, "bin", "nvcc"), "--version"],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    match = re.search(r"\bV(\d+\.\d+\.\d+)", out) or re.search(r"release (\d+\.\d+)", out)
    return match.group(1) if match else "unknown"


def _default_cuda_archs(nvcc_archs):
    """TORCH_CUDA_ARCH_LIST's default: kernels for 8.0 (A100) and 9.0 (H100, H200), and for 10.0
    (B200) where this nvcc builds it (`nvcc --list-gpu-arch` names compute_100: CUDA 12.8 on),
    with PTX of the newest for later GPUs. Without 10.0 a B200 would compile 9.0's PTX when the
    process starts, with the register target that spills there (docs/cuda.md, "Registers")."""
    archs = ["8.0", "9.0"] + (["10.0"] if "compute_100" in nvcc_archs.split() else [])
    return ";".join(archs) + "+PTX"


def _nvcc_archs():
    """`nvcc --list-gpu-arch`'s output ("compute_75\ncompute_80\n..."), or "" where it fails."""
    try:
        return subprocess.run([os.path.join(_cuda_home, "bin", "nvcc"), "--list-gpu-arch"],
                              capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""


def _write_build_info(cpu, cuda_archs="", nvcc=""):
    """csrc/se_build_info.h (generated, not tracked): what se_fused._C.cpu_build_info()
    and cuda_build_info() report. A header rather than -D flags: the values hold
    spaces, parentheses and ';', which the compile command's shell would split."""
    text = ("// Generated by setup.py: the build's settings (se_fused._C.*_build_info).\n"
            "#pragma once\n"
            f"#define SE_FUSED_CPU_BUILD {json.dumps(cpu)}\n"
            f"#define SE_FUSED_CUDA_ARCHS {json.dumps(cuda_archs)}\n"
            f"#define SE_FUSED_NVCC_VERSION {json.dumps(nvcc)}\n")
    path = os.path.join(ROOT, "csrc", "se_build_info.h")
    old = open(path).read() if os.path.exists(path) else None
    if old != text:  # unchanged: keep its time stamp (no rebuild)
        with open(path, "w") as f:
            f.write(text)


def _extension():
    with_cuda, why = _want_cuda()
    sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")) + glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    arch, arch_why = _cpu_arch_flags()
    # -ffp-contract=off: a sum must not change with how the compiler fuses its
    # multiply-adds (one code path for a batch of 4 and of 1: batch invariance).
    # -fno-trapping-math: the kernels never read the floating-point exception
    # flags; without it GCC will not if-convert the clamps in the gate's exp, and
    # the gate loops stay scalar (the results are the same bits either way).
    # -Wno-psabi: the CPU kernels pass 64-byte vectors between internal
    # functions; GCC's note that their ABI differs without AVX-512 is moot there.
    cxx = ["-O3", "-fopenmp", "-ffp-contract=off", "-fno-trapping-math", "-Wno-psabi"] + arch
    print(f"se_fused: C++ sources with {arch_why}")
    define_macros = []
    if not with_cuda:
        _write_build_info(cpu=arch_why)
        print(f"se_fused: building the CPU kernels only ({why})")
        return CppExtension(
            "se_fused._C", sources, include_dirs=[os.path.join(ROOT, "csrc")],
            extra_compile_args={"cxx": cxx}, extra_link_args=["-fopenmp"],
            py_limited_api=False,
        )
    if "TORCH_CUDA_ARCH_LIST" not in os.environ:
        os.environ["TORCH_CUDA_ARCH_LIST"] = _default_cuda_archs(_nvcc_archs())
    sources += sorted(glob.glob(os.path.join("csrc", "cuda", "*.cpp")) + glob.glob(os.path.join("csrc", "cuda", "*.cu")))
    # --fmad=false: nvcc would contract a * b + c into one fma (its default),
    # which the host compiler (-ffp-contract=off) and the emulator do not: the
    # device would round differently from the CPU kernels and the emulator.
    # The hot loops write their fma explicitly (fmaf, fma), which this keeps.
    nvcc = ["-O3", "-lineinfo", "--expt-relaxed-constexpr", "--fmad=false"]
    if os.environ.get("SE_FUSED_PTXAS_VERBOSE") == "1":
        nvcc.append("-Xptxas=-v")
    define_macros.append(("SE_FUSED_WITH_CUDA", "1"))
    _write_build_info(cpu=arch_why, cuda_archs=os.environ["TORCH_CUDA_ARCH_LIST"],
                      nvcc=_nvcc_version())
    print(f"se_fused: building the CPU and CUDA kernels ({why}); "
          f"TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']}, MAX_JOBS={os.environ.get('MAX_JOBS', 'default')}")
    return CUDAExtension(
        "se_fused._C", sources, include_dirs=[os.path.join(ROOT, "csrc")],
        define_macros=define_macros,
        extra_compile_args={"cxx": cxx, "nvcc": nvcc}, extra_link_args=["-fopenmp"],
    )


setup(
    name="se_fused",
    version="0.1.0",
    description="Fused Squeeze-and-Excitation kernels (CPU and CUDA) for PyTorch",
    packages=["se_fused"],
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension},
    python_requires=">=3.9",
    install_requires=["torch"],
)
