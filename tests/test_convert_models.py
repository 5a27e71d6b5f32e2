"""se_fused.convert on whole models of timm and MONAI whose SE modules came in with
issue 15: converted ones give the original's eval outputs and training gradients
(test_convert.check_model_equivalence); those whose SE variant the kernels do not
compute yet stay as they were, named with the reason in convert's one warning."""
import copy
import re

import pytest
import torch
from torch import nn

import se_fused
from se_fused import FusedSEAdapter, FusedSEBlock
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
# 5e2, and 24^3 keeps the test as fast.
@pytest.mark.parametrize("spatial_dims,shape", [(3, (4, 1, 24, 24, 24)), (1, (2, 1, 64))],
                         ids=["3d", "1d"])
def test_monai_se_resnet50(spatial_dims, shape):
    model = _monai_se_resnet50(spatial_dims)
    from monai.networks.blocks import ChannelSELayer
    assert _count(model, ChannelSELayer) == 16
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    check_model_equivalence(model, x, f"SEResNet50 spatial_dims={spatial_dims}")


# ---------------------------------------------------------------------------
# left: the kernels do not compute the variant yet
# ---------------------------------------------------------------------------
LEFT = [
    ("ese_vovnet19b_dw", "timm.layers.squeeze_excite.EffectiveSEModule", 4,
     r"EffectiveSEModule: one-FC excitation \(eSE\) not computed by the kernels"),
    ("ecaresnet26t", "timm.layers.eca.EcaModule", 8,
     r"EcaModule: ECA excitation \(1-D conv over channels\) not computed by the kernels"),
]


@pytest.mark.parametrize("name,cls,count,reason", LEFT, ids=[n for n, *_ in LEFT])
def test_timm_variant_not_computed_left_with_the_reason(name, cls, count, reason):
    pytest.importorskip("timm")
    mod_name, cls_name = cls.rsplit(".", 1)
    se_class = getattr(__import__(mod_name, fromlist=[cls_name]), cls_name)
    torch.manual_seed(0)
    original = _timm_model(name).eval()
    assert _count(original, se_class) == count
    converted = copy.deepcopy(original)
    with pytest.warns(UserWarning) as record:
        assert se_fused.convert(converted) is converted
    assert len(record) == 1, [str(w.message) for w in record]
    message = str(record[0].message)
    lines = message.splitlines()
    assert f"left {count} SE module(s) unchanged" in lines[0], message
    assert len(lines) == 2 and re.search(rf"^  {count} x {reason} \[", lines[1]), message
    assert _count(converted, (FusedSEAdapter, FusedSEBlock)) == 0
    assert _count(converted, se_class) == count
    assert list(converted.state_dict()) == list(original.state_dict())
    x = _image()
    with torch.no_grad():
        assert torch.equal(converted(x), original(x)), f"{name}: outputs changed"
