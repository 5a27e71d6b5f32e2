"""se_fused: the whole Squeeze-and-Excitation block in fused CPU and CUDA kernels.

The plain block (SEBlock) and the variant names import without the compiled
extension; everything fused needs se_fused._C, and says so when it failed to load."""
from ._variants import ACTIVATIONS, GATES
from .reference import SEBlock

_FUSED = ("FusedSEBlock", "FusedSEAdapter", "squeeze_excitation", "convert", "revert",
          "has_cuda_kernels", "accumulation_dtype")
__all__ = ["SEBlock", "ACTIVATIONS", "GATES", *_FUSED]
__version__ = "0.1.0"

try:
    from ._ops import accumulation_dtype, has_cuda_kernels
    from .functional import squeeze_excitation
    from .modules import FusedSEAdapter, FusedSEBlock
    from ._convert import convert, revert
except ImportError as _error:  # the compiled extension is missing or does not load
    _load_error = _error

    def __getattr__(name):
        if name in _FUSED:
            raise ImportError(
                f"se_fused.{name} needs the compiled extension se_fused._C, which did not "
                f"load ({_load_error}); build it with "
                f"`pip install --no-build-isolation -e .`") from _load_error
        raise AttributeError(f"module 'se_fused' has no attribute {name!r}")
