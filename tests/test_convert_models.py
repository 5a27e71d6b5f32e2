"""se_fused.convert on whole models of timm and MONAI whose SE modules came in with
issue 15 (two-FC SE with hard-swish, a norm between the FCs, any spatial_dims; eSE; ECA;
circular ECA; MONAI's residual gate):
every SE module converts without a warning, and the converted model gives the
original's eval outputs (float32, 1e-4) and training gradients of every parameter
(float64, 1e-6 relative; test_convert.check_model_equivalence)."""
import copy

import pytest
import torch
from torch import nn

import se_fused
from se_fused import FusedSEAdapter
from test_convert import _count, _one_thread, _timm_model, check_model_equivalence  # noqa: F401


def _image(n=2, c=3, size=64):
    return torch.randn(n, c, size, size, generator=torch.Generator().manual_seed(1))


# ---------------------------------------------------------------------------
# converted: same outputs and gradients
# ---------------------------------------------------------------------------
def test_timm_legacy_seresnet18():
    pytest.importorskip("timm")
    from timm.models.senet import SEModule
    torch.manual_seed(0)
    model = _timm_model("legacy_seresnet18")
    assert _count(model, SEModule) == 8
    check_model_equivalence(model, _image(), "legacy_seresnet18")


def test_timm_fbnetv3_b_hard_swish():
    pytest.importorskip("timm")
    from timm.models._efficientnet_blocks import SqueezeExcite
    torch.manual_seed(0)
    model = _timm_model("fbnetv3_b")
    assert _count(model, SqueezeExcite) == 18
    check_model_equivalence(model, _image(), "fbnetv3_b")


def test_timm_rexnet_100_norm_between_the_fcs():
    """rexnet's SE holds a BatchNorm2d between the FCs: folded into fc1 in eval, the
    original forward in training (batch statistics)."""
    pytest.importorskip("timm")
    from timm.layers.squeeze_excite import SEModule
    torch.manual_seed(0)
    model = _timm_model("rexnet_100")
    norms = [m.bn for m in model.modules() if isinstance(m, SEModule)]
    assert len(norms) == 13 and all(type(bn) is nn.BatchNorm2d for bn in norms)
    with torch.no_grad():  # running statistics and affine far from the identity
        g = torch.Generator().manual_seed(7)
        for bn in norms:
            c = bn.num_features
            bn.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
            bn.running_var.copy_(torch.rand(c, generator=g) * 2 + 0.2)
            bn.weight.copy_(torch.rand(c, generator=g) + 0.5)
            bn.bias.copy_(torch.rand(c, generator=g) - 0.5)
    check_model_equivalence(model, _image(), "rexnet_100")


def _monai_se_resnet50(spatial_dims):
    pytest.importorskip("monai")
    from monai.networks.nets import SEResNet50
    torch.manual_seed(0)
    return SEResNet50(spatial_dims=spatial_dims, in_channels=1, num_classes=3)


# layer4 sees 1 x 1 x 1 maps of the 3-D input: its training BatchNorms normalise over the
# batch alone, and at batch 2 (two values per channel) they amplify float64 rounding
# about 1e9-fold (the original alone moves 7e-7 for x * (1 + 1e-15)); batch 4 makes it
# 5e2, and 24^3 keeps the test as fast. 1-D at 2 x 1 x 64 (4 values per channel in
# layer4) put either model's float32 train output 1-2e-4 off float64 on an AVX-512 host;
# 4 x 1 x 256 (32 values) 3-5e-6.
@pytest.mark.parametrize("spatial_dims,shape", [(3, (4, 1, 24, 24, 24)), (1, (4, 1, 256))],
                         ids=["3d", "1d"])
def test_monai_se_resnet50(spatial_dims, shape):
    model = _monai_se_resnet50(spatial_dims)
    from monai.networks.blocks import ChannelSELayer
    assert _count(model, ChannelSELayer) == 16
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    check_model_equivalence(model, x, f"SEResNet50 spatial_dims={spatial_dims}")


# ---------------------------------------------------------------------------
# the variants: eSE (one FC), ECA (a 1-D conv across the channels), the residual gate
# ---------------------------------------------------------------------------
def test_timm_ese_vovnet19b_dw_one_fc():
    pytest.importorskip("timm")
    from timm.layers.squeeze_excite import EffectiveSEModule
    torch.manual_seed(0)
    model = _timm_model("ese_vovnet19b_dw")
    assert _count(model, EffectiveSEModule) == 4
    check_model_equivalence(model, _image(), "ese_vovnet19b_dw")
    converted = se_fused.convert(copy.deepcopy(model))
    assert [m.spec.excitation for m in converted.modules()
            if isinstance(m, FusedSEAdapter)] == ["one_fc"] * 4


def test_timm_ecaresnet26t_eca():
    pytest.importorskip("timm")
    from timm.layers.eca import EcaModule
    torch.manual_seed(0)
    model = _timm_model("ecaresnet26t")
    assert _count(model, EcaModule) == 8
    check_model_equivalence(model, _image(), "ecaresnet26t")


def test_timm_resnet18_circular_eca():
    """timm registers no model with CecaModule; its ResNet builds one with
    block_args=dict(attn_layer="ceca") (as ecaresnet* do with "eca")."""
    timm = pytest.importorskip("timm")
    from timm.layers.eca import CecaModule
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, zero_init_last=False,
                              block_args=dict(attn_layer="ceca"))
    assert _count(model, CecaModule) == 8
    check_model_equivalence(model, _image(), "resnet18 with CecaModule")


def test_monai_se_resnet50_1d_residual():
    """MONAI's residual gate (ChannelSELayer add_residual, y = x * s + x) in a whole
    model: SEResNet50(spatial_dims=1) with add_residual set on each SE layer."""
    model = _monai_se_resnet50(1)
    from monai.networks.blocks import ChannelSELayer
    layers = [m for m in model.modules() if isinstance(m, ChannelSELayer)]
    assert len(layers) == 16
    for m in layers:
        m.add_residual = True
    # x * s + x grows the activations block by block, and training BatchNorm over few
    # values then amplifies float32 rounding: at 2 x 1 x 64 the original's own float32
    # output is 5e-3 off float64; at 4 x 1 x 256 (32 values per channel in layer4) 7e-5
    x = torch.randn(4, 1, 256, generator=torch.Generator().manual_seed(1))
    check_model_equivalence(model, x, "SEResNet50 spatial_dims=1, add_residual")
    converted = se_fused.convert(copy.deepcopy(model))
    assert all(m.spec.residual for m in converted.modules() if isinstance(m, FusedSEAdapter))
