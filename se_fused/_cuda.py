"""What the CUDA part of this build is, whether it runs on a device, and which
path each CUDA call took (csrc/se_fused.cpp, csrc/se_cuda_plan.h). Every
function answers in a CPU-only build too: None, False, "" or zeros."""
import torch

from . import _C

_DTYPES = {torch.float32: "float32", torch.float64: "float64",
           torch.float16: "float16", torch.bfloat16: "bfloat16"}


def cpu_build_info() -> str:
    """The -march the CPU kernels were compiled with, and why (setup.py)."""
    return _C.cpu_build_info()


def cuda_build_info() -> "dict | None":
    """The CUDA build's settings, or None in a CPU-only build: "archs" (the
    TORCH_CUDA_ARCH_LIST it was built with), "cuda_runtime" (the CUDA runtime
    headers' version, "13.0"), "nvcc" (nvcc's version) and "fmad" (False: the
    device code is built with --fmad=false, docs/cuda.md)."""
    return _C.cuda_build_info()


def cuda_device_support(index: int) -> "tuple[bool, str]":
    """Whether this build runs on CUDA device `index` (it has a kernel for the
    device's architecture, or PTX the driver compiles for it; asked of the
    driver once per device), and a message naming the device's compute
    capability and, when it does not, how to rebuild (TORCH_CUDA_ARCH_LIST)."""
    return _C.cuda_device_support(int(index))


def last_cuda_path(direction: str) -> str:
    """The path the last CUDA call on this thread took in `direction`
    ("forward" or "backward"): "twopass", "onepass" or "cluster"; "" when
    this thread has made none. A forced path that fell back reports the path
    that ran (SE_FUSED_CUDA_PATH, docs/cuda.md)."""
    return _C.last_cuda_path(direction)


def cuda_path_counts(reset: bool = False) -> dict:
    """CUDA calls per direction and path since the process started (or the last
    reset), all threads: {"forward": {"twopass": n, "onepass": n,
    "cluster": n}, "backward": {...}}. reset: zero them after reading."""
    return _C.cuda_path_counts(bool(reset))


def cuda_auto_path(direction: str, N: int, C: int, HW: int, hidden: int, dtype: torch.dtype,
                   channels_last: bool) -> str:
    """The path SE_FUSED_CUDA_PATH=auto takes for this problem (se_heuristics.h
    choose_path), without launching: "twopass", "onepass" or "cluster".
    hidden: w1's rows for the two-FC excitation, else 0. Raises RuntimeError in
    a CPU-only build."""
    if dtype not in _DTYPES:
        raise ValueError(f"se_fused: dtype must be one of {list(_DTYPES)}, got {dtype}")
    return _C.cuda_auto_path(direction, int(N), int(C), int(HW), int(hidden), _DTYPES[dtype],
                             bool(channels_last))
