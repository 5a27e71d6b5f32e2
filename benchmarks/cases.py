"""The shapes bench.py times: SE blocks of real networks, and which of them each run takes.
Most are 2-D ([N, C, H, W]); the 3-D ([N, C, D, H, W], MONAI's SEResNet50 with
spatial_dims=3) and 1-D ([N, C, T], ECAPA-TDNN) blocks give their map in Block.spatial, and
the variants (eSE, ECA, circular ECA, the residual gate) their excitation and residual.
The layouts are named for 2-D: "nchw" is channels first for every rank, "cl" channels
last (channels_last, channels_last_3d, or [N, T, C] strides for 1-D)."""
from dataclasses import asdict, dataclass
from typing import List, Optional, Tuple

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
LAYOUTS = {"nchw": torch.contiguous_format, "cl": torch.channels_last}


def to_layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    """x in the layout: channels first, or channels last for its rank."""
    if layout == "nchw":
        return x.contiguous()
    if x.dim() == 3:  # [N, C, T] with [N, T, C] strides
        return x.transpose(1, 2).contiguous().transpose(1, 2)
    return x.contiguous(memory_format=torch.channels_last if x.dim() == 4
                        else torch.channels_last_3d)


@dataclass(frozen=True)
class Block:
    """One SE block of a real network: channels C at an H x W map (or at the map
    `spatial`, 1-D or 3-D, when given; hw is then its last size), hidden = C // r for the
    two-FC excitation and 0 for the others (excitation as se_fused.SEBlock takes it,
    kernel_size the ECA convolution's; residual: y = x * s + x)."""
    model: str
    c: int
    hw: int
    r: int
    bias: bool = False
    activation: str = "relu"
    gate: str = "sigmoid"
    excitation: str = "two_fc"
    residual: bool = False
    kernel_size: Optional[int] = None
    spatial: Tuple[int, ...] = ()

    @property
    def hidden(self) -> int:
        return self.c // self.r if self.excitation == "two_fc" else 0

    @property
    def map(self) -> Tuple[int, ...]:
        """The sizes of the map: (H, W), or spatial."""
        return self.spatial or (self.hw, self.hw)


@dataclass(frozen=True)
class Case:
    block: Block
    n: int
    dtype: str
    layout: str

    @property
    def shape(self) -> str:
        b = self.block
        return "x".join(str(v) for v in (self.n, b.c, *b.map))

    @property
    def hidden(self) -> int:
        return self.block.hidden

    @property
    def name(self) -> str:  # what --shapes matches against
        return f"{self.block.model}:{self.shape}"

    def fields(self) -> dict:
        """The case as flat JSON fields."""
        b = asdict(self.block)
        return {"case": self.name, "model": self.block.model, "shape": self.shape,
                "hidden": self.hidden,
                **{k: b[k] for k in ("r", "bias", "activation", "gate", "excitation", "residual",
                                     "kernel_size")},
                "spatial_dims": len(self.block.map), "dtype": self.dtype, "layout": self.layout}


# SE-ResNet-50: the SE block sits on each bottleneck's output (4x expansion), r = 16.
SE_RESNET50 = [Block("resnet50", c, hw, 16)
               for c, hw in ((256, 56), (512, 28), (1024, 14), (2048, 7))]

# MobileNetV3-Large (torchvision): hidden = make_divisible(C / 4, 8), bias, relu, hardsigmoid.
# C // r cannot give 32 for C = 120; r = 4 gives 30, the nearest.
MOBILENETV3 = [Block("mbv3", c, hw, r, True, "relu", "hardsigmoid")
               for c, hw, r in ((72, 28, 3), (120, 28, 4), (480, 14, 4), (672, 14, 4),
                                (672, 7, 4), (960, 7, 4))]

# EfficientNet-B0 (torchvision): SE after the depthwise conv of each MBConv, hidden =
# in_channels / 4 of the block input: C = 6 * in_channels -> r = 24 (r = 4 for the 1x stage).
EFFICIENTNET_B0 = [Block("effb0", c, hw, r, True, "silu", "sigmoid")
                   for c, hw, r in ((32, 112, 4), (96, 56, 24), (144, 56, 24), (144, 28, 24),
                                    (240, 28, 24), (240, 14, 24), (480, 14, 24), (672, 14, 24),
                                    (672, 7, 24), (1152, 7, 24))]

# The rows of PERF.md's "what users have today" that are not an SE-ResNet-50 stage
# (plain relu/sigmoid block without bias, as measured there).
PERF_ROWS = [Block("perf", 96, 112, 24), Block("perf", 960, 7, 4)]

# MONAI SEResNet50(spatial_dims=3) on a 96^3 volume (stem stride 2, max pool stride 2):
# the SE blocks (nn.Linear with bias, relu, sigmoid, r = 16) of its four stages see
# 24^3, 12^3, 6^3 and 3^3 maps.
MONAI_SERESNET50_3D = [Block("monai3d", c, s, 16, True, spatial=(s, s, s))
                       for c, s in ((256, 24), (512, 12), (1024, 6), (2048, 3))]

# ECAPA-TDNN (speaker verification): SE-Res2Blocks of 512 channels over T frames (200 =
# 2 s of 10 ms frames), bottleneck 128 (r = 4), Conv1d k=1 with bias, relu, sigmoid.
ECAPA = [Block("ecapa", 512, 200, 4, True, spatial=(200,))]

# The variants, each at SE-ResNet-50's 512 x 28 x 28 stage (eSE: VoVNet's one FC with
# bias and hard sigmoid; ECA: ECA-Net's k for 512 channels, 5; the residual gate:
# MONAI's add_residual on the plain block).
VARIANTS = [Block("ese", 512, 28, 1, True, "relu", "hardsigmoid", excitation="one_fc"),
            Block("ecanet", 512, 28, 1, excitation="eca", kernel_size=5),
            Block("ceca", 512, 28, 1, excitation="eca_circular", kernel_size=5),
            Block("resid", 512, 28, 16, True, residual=True)]

MODEL_BLOCKS = SE_RESNET50 + MOBILENETV3 + EFFICIENTNET_B0

# Issue 12's latency shapes (batch 1, float32, the plain relu/sigmoid block without bias),
# each with the bar for fused / eager on one CPU thread: no-grad forward, grad-mode
# forward, forward + backward.
LATENCY_BLOCKS = [(Block("latency", 64, 1, 16), (0.35, 0.45, 0.5)),
                  (Block("latency", 96, 14, 4), (0.35, 0.45, 0.5)),
                  (Block("latency", 1152, 7, 24), (0.6, 0.6, 0.6))]


def _product(blocks, batches, dtypes, layouts) -> List[Case]:
    return [Case(b, n, d, l) for b in blocks for n in batches for d in dtypes for l in layouts]


def _small_maps_first(cases: List[Case]) -> List[Case]:
    """The cases without repeats, 7x7 maps and batch 1 first (the GPU run has a time
    budget; they are its most telling rows), otherwise in the given order."""
    return sorted(dict.fromkeys(cases), key=lambda c: c.block.map != (7, 7) and c.n != 1)


def rank_cases(quick: bool) -> List[Case]:
    """The 3-D and 1-D blocks (fp32, both layouts; the full run adds bf16) and the
    variants (fp32, channels first), on the CPU: batch 2 of MONAI's first two 3-D stages
    (quick: the first, 2x256x24x24x24) and ECAPA-TDNN at batch 8."""
    dtypes = ["fp32"] if quick else ["fp32", "bf16"]
    volumes = MONAI_SERESNET50_3D[:1] if quick else MONAI_SERESNET50_3D
    return (_product(volumes, [2], dtypes, ["nchw", "cl"])
            + _product(ECAPA, [8], dtypes, ["nchw", "cl"])
            + _product(VARIANTS, [8], ["fp32"], ["nchw"]))


def mlp_heavy_cases() -> List[Case]:
    """Issue 23's rows beside the perf-bar ones (fp32 and bf16, both layouts): EfficientNet-B0's
    1152x7x7 block at batch 8 and eSE (one FC over 512 channels) at 8x512x28x28, where the
    gate MLP costs as much as the data path."""
    return _product([EFFICIENTNET_B0[-1], VARIANTS[0]], [8], ["fp32", "bf16"], ["nchw", "cl"])


def cpu_cases(quick: bool) -> List[Case]:
    perf_bar = [SE_RESNET50[0], SE_RESNET50[3]]  # 32x256x56x56 and 32x2048x7x7
    if quick:
        latency = [SE_RESNET50[0], SE_RESNET50[3], MOBILENETV3[0], EFFICIENTNET_B0[-1]]
        return _small_maps_first(_product(perf_bar, [32], ["fp32", "bf16"], ["nchw", "cl"])
                                 + _product(latency, [1], ["fp32", "bf16"], ["nchw", "cl"])
                                 + rank_cases(quick) + mlp_heavy_cases())
    # The full product (240 cases) would take about an hour on 2 cores; this keeps every
    # block at batch 1 and 32, both layouts in fp32, and all dtypes and layouts on the
    # perf-bar shapes: about 25 minutes. --dtypes/--layouts/--shapes narrow it further.
    return _small_maps_first(
        _product(perf_bar, [32], ["fp32", "bf16", "fp16"], ["nchw", "cl"])
        + _product(MODEL_BLOCKS, [1], ["fp32"], ["nchw", "cl"])
        + _product(MODEL_BLOCKS, [1], ["bf16"], ["nchw"])
        + _product(MODEL_BLOCKS, [32], ["fp32", "bf16"], ["nchw"])
        + _product(SE_RESNET50[1:3] + MOBILENETV3 + EFFICIENTNET_B0, [32], ["fp32"], ["cl"])
        + _product([SE_RESNET50[0], SE_RESNET50[3]], [1], ["fp16"], ["nchw", "cl"])
        + rank_cases(quick) + mlp_heavy_cases())


def cuda_cases(quick: bool) -> List[Case]:
    # PERF.md's rows, 7x7 maps first; --quick is exactly those, 1x256x56x56 bf16
    # channels_last (issue 13: NHWC units split into row parts, 4 chunks x 13 parts) and
    # 64x256x56x56 fp32 (issue 22's bar: its backward fits a cluster, its forward not).
    perf = _small_maps_first(
        [Case(SE_RESNET50[0], 256, "bf16", "nchw"), Case(SE_RESNET50[0], 256, "bf16", "cl"),
         Case(SE_RESNET50[0], 256, "fp32", "nchw"), Case(SE_RESNET50[0], 1, "bf16", "cl"),
         Case(SE_RESNET50[0], 64, "fp32", "nchw")]
        + [Case(b, n, "bf16", "nchw") for b, n in ((PERF_ROWS[0], 64), (SE_RESNET50[0], 64),
                                                   (SE_RESNET50[3], 64), (PERF_ROWS[1], 64),
                                                   (SE_RESNET50[0], 1), (SE_RESNET50[3], 1))])
    if quick:
        return perf
    rest = (_product([SE_RESNET50[0]], [256], list(DTYPES), list(LAYOUTS))
            + _product(PERF_ROWS, [64], list(DTYPES), list(LAYOUTS))
            + _product(MODEL_BLOCKS, [1, 64], list(DTYPES), list(LAYOUTS))
            + _product(MONAI_SERESNET50_3D, [2], ["bf16", "fp32"], list(LAYOUTS))
            + _product(ECAPA, [8, 64], ["bf16", "fp32"], list(LAYOUTS)))
    return perf + _small_maps_first([c for c in rest if c not in perf])
