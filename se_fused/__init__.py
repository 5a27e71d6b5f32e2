"""se_fused: the whole Squeeze-and-Excitation block in fused CPU and CUDA kernels."""
from ._ops import accumulation_dtype, has_cuda_kernels
from .functional import squeeze_excitation
from .modules import FusedSEBlock, SEBlock
from ._convert import FusedSEAdapter, convert

__all__ = ["FusedSEBlock", "SEBlock", "squeeze_excitation", "has_cuda_kernels",
           "accumulation_dtype", "convert", "FusedSEAdapter"]
__version__ = "0.1.0"
