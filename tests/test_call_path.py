"""What one call does, seen from the dispatcher: the no-grad path runs the y-only
op; a call that will be differentiated runs the forward that keeps the state, and
its backward computes bias gradients only for biases that exist; autocast is
applied by the op itself (torch.ops callers get it too)."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import se_fused
from se_fused import FusedSEBlock
from _reference import DEVICES, make_weights, make_x

OPS = torch.ops.se_fused


class _Record(TorchDispatchMode):
    """The ops that reach the backends (below autograd and autocast), with their
    arguments."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls.append((func, args))
        return func(*args, **(kwargs or {}))

    def names(self):
        return [str(f.overloadpacket.__name__) for f, _ in self.calls
                if f.namespace == "se_fused"]


@pytest.mark.parametrize("device", DEVICES)
def test_no_grad_runs_the_y_only_op(device):
    block = FusedSEBlock(16, 4).to(device)
    x = make_x((2, 16, 3, 3), torch.float32, device, seed=1)
    with torch.no_grad(), _Record() as rec:
        y = block(x)
    assert rec.names() == ["squeeze_excite"], rec.names()
    assert y.grad_fn is None
    # Grad mode on but nothing requires grad: no node, the same y-only op.
    plain = {k: v for k, v in make_weights(16, 4, False, torch.float32, device).items()}
    with _Record() as rec:
        y2 = se_fused.squeeze_excitation(x, plain["w1"], plain["w2"])
    assert rec.names() == ["squeeze_excite"] and y2.grad_fn is None


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("device", DEVICES)
def test_grad_path_and_bias_gradients(device, bias):
    block = FusedSEBlock(16, 4, bias=bias).to(device)
    x = make_x((2, 16, 3, 3), torch.float32, device, seed=2).requires_grad_(True)
    with _Record() as rec:
        y = block(x)
        y.sum().backward()
    assert rec.names() == ["_squeeze_excite_forward", "_squeeze_excite_backward"], rec.names()
    (func, args), = [c for c in rec.calls if "backward" in str(c[0])]
    assert args[-2:] == (bias, bias), f"want_db1, want_db2 = {args[-2:]} for bias={bias}"
    fc1, fc2 = block.excitation[0], block.excitation[2]
    assert fc1.weight.grad is not None and fc2.weight.grad is not None
    assert (fc1.bias is None) or fc1.bias.grad is not None
    # A frozen bias gets no gradient work either.
    if bias:
        fc2.bias.requires_grad_(False)
        with _Record() as rec:
            block(x).sum().backward()
        (func, args), = [c for c in rec.calls if "backward" in str(c[0])]
        assert args[-2:] == (True, False)


def test_backward_op_returns_empty_bias_gradients_when_not_asked():
    x = make_x((2, 8, 3, 3), torch.float32, seed=3)
    w = make_weights(8, 2, False, torch.float32)
    y, pooled, z1, z2 = OPS._squeeze_excite_forward(x, w["w1"], None, w["w2"], None, "relu",
                                                    "sigmoid")
    dx, dw1, db1, dw2, db2 = OPS._squeeze_excite_backward(
        torch.ones_like(y), x, pooled, z1, z2, w["w1"], w["w2"], "relu", "sigmoid", False, False)
    assert db1.shape == (0,) and db2.shape == (0,)
    _, _, db1, _, db2 = OPS._squeeze_excite_backward(
        torch.ones_like(y), x, pooled, z1, z2, w["w1"], w["w2"], "relu", "sigmoid", True, True)
    assert db1.shape == (2,) and db2.shape == (8,)


def test_autocast_is_applied_by_the_op():
    """torch.ops callers get autocast too: the float32 weights are cast to x's dtype
    inside the op, and their gradients reach the float32 parameters."""
    x = make_x((2, 16, 3, 3), torch.bfloat16, seed=4)
    w = {k: (v.requires_grad_(True) if v is not None else None)
         for k, v in make_weights(16, 4, True, torch.float32, seed=4).items()}
    with pytest.raises(TypeError, match="w1 has dtype"):
        OPS.squeeze_excite(x, w["w1"], w["b1"], w["w2"], w["b2"], "relu", "sigmoid")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = OPS.squeeze_excite(x, w["w1"], w["b1"], w["w2"], w["b2"], "relu", "sigmoid")
    cast = {k: v.detach().to(torch.bfloat16) for k, v in w.items()}
    expect = OPS.squeeze_excite(x, cast["w1"], cast["b1"], cast["w2"], cast["b2"], "relu",
                                "sigmoid")
    assert y.dtype == torch.bfloat16 and torch.equal(y, expect)
    y.float().sum().backward()
    for name, t in w.items():
        assert t.grad is not None and t.grad.dtype == torch.float32, name
