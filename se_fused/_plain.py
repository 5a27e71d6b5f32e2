"""The SE block as plain PyTorch ops, with the fused op's signature: what runs where the
fused kernels do not serve, and what exporters see in place of the fused op.

One function, plain_squeeze_excite, the plain block's math (SEBlock.forward), registered
  - as the op se_fused::_squeeze_excite_plain (CompositeImplicitAutograd): the C++
    autograd kernel of squeeze_excite (csrc/se_autograd.cpp) calls it under forward-mode
    AD (dual tensors), under torch.func's grad, jvp, vjp, jacrev, jacfwd, and for an
    empty map; ATen's own derivatives and batching rules then apply;
  - in squeeze_excite's vmap rule when weights are batched (per batch entry); with only
    x batched the rule runs the fused op on the batch dim merged with N;
  - as squeeze_excite's decomposition in torch._decomp's table, which the dynamo ONNX
    exporter applies (torch.onnx.export's default);
and, as ONNX ops, the symbolic for the TorchScript ONNX exporter (dynamo=False).
"""
from typing import List, Optional

import torch
import torch._decomp
import torch.nn.functional as F
from torch._subclasses.fake_tensor import is_fake

_ACT = {"relu": F.relu, "silu": F.silu, "hardswish": F.hardswish}
_GATE = {"sigmoid": torch.sigmoid, "hardsigmoid": F.hardsigmoid}
_SCHEMA = ("(Tensor x, Tensor w1, Tensor? b1, Tensor? w2, Tensor? b2, str activation, "
           "str gate, str excitation=\"two_fc\", bool residual=False) -> Tensor")


def plain_squeeze_excite(x: torch.Tensor, w1: torch.Tensor, b1: Optional[torch.Tensor],
                         w2: Optional[torch.Tensor], b2: Optional[torch.Tensor],
                         activation: str, gate: str, excitation: str = "two_fc",
                         residual: bool = False) -> torch.Tensor:
    """squeeze_excite's result computed as the plain block computes it (in x's dtype)."""
    torch._check(3 <= x.dim() <= 5, lambda: f"se_fused: x must be [N, C, *spatial] with 1 "
                                            f"to 3 spatial dims, got {x.dim()}-D")
    pooled = x.mean(dim=list(range(2, x.dim())))
    if excitation == "two_fc":
        torch._check(w2 is not None, lambda: "se_fused: the two_fc excitation needs w2")
        z = F.linear(_ACT[activation](F.linear(pooled, w1, b1)), w2, b2)
    elif excitation == "one_fc":
        z = F.linear(pooled, w1, b1)
    elif excitation in ("eca", "eca_circular"):
        k = w1.shape[0]
        p = pooled.unsqueeze(1)
        if excitation == "eca_circular":
            p = F.pad(p, (k // 2, k // 2), mode="circular")
        z = F.conv1d(p, w1.reshape(1, 1, k), b1,
                     padding=0 if excitation == "eca_circular" else k // 2).squeeze(1)
    else:
        raise ValueError(f"se_fused: unknown excitation {excitation!r}")
    s = _GATE[gate](z)
    for _ in range(x.dim() - 2):
        s = s.unsqueeze(-1)
    return x * s + x if residual else x * s


_lib = torch.library.Library("se_fused", "FRAGMENT")
_lib.define("_squeeze_excite_plain" + _SCHEMA)
_lib.impl("_squeeze_excite_plain", plain_squeeze_excite, "CompositeImplicitAutograd")


# ---------------------------------------------------------------------------------------
# vmap: the op is batched over N already; batch dims of x alone merge into N (fused).
# ---------------------------------------------------------------------------------------
def _vmap_rule(info, in_dims, x, w1, b1, w2, b2, activation, gate, excitation="two_fc",
               residual=False):
    x_dim, *weight_dims = in_dims[:5]
    if x_dim is not None and all(d is None for d in weight_dims):
        x = x.movedim(x_dim, 0)
        b, n = x.shape[0], x.shape[1]
        y = torch.ops.se_fused.squeeze_excite(x.flatten(0, 1), w1, b1, w2, b2, activation,
                                              gate, excitation, residual)
        return y.unflatten(0, (b, n)), 0
    # batched weights (an ensemble): the plain computation per batch entry
    size = info.batch_size
    tensors = [t if d is None else t.movedim(d, 0).unbind(0)
               for t, d in zip((x, w1, b1, w2, b2), in_dims[:5])]
    ys = [plain_squeeze_excite(*[t if d is None else t[i] for t, d in zip(tensors, in_dims)],
                               activation, gate, excitation, residual) for i in range(size)]
    return torch.stack(ys), 0


torch.library.register_vmap("se_fused::squeeze_excite", _vmap_rule)


# ---------------------------------------------------------------------------------------
# ONNX: the dynamo exporter decomposes with torch._decomp.decomposition_table.
# ---------------------------------------------------------------------------------------
@torch._decomp.register_decomposition(torch.ops.se_fused.squeeze_excite.default)
def _decomposition(x, w1, b1, w2, b2, activation, gate, excitation="two_fc", residual=False):
    """The plain computation, except for FakeTensorMode outside an ONNX export: under
    dynamic shapes it reads this table before the op's own fake kernel, which must stay
    what torch.compile sees (the fused op's output layout)."""
    args = (x, w1, b1, w2, b2, activation, gate, excitation, residual)
    if is_fake(x) and not torch.onnx.is_in_onnx_export():
        from ._ops import _squeeze_excite_fake
        return _squeeze_excite_fake(*args)
    return plain_squeeze_excite(*args)


def _onnx_symbolic(g, x, w1, b1, w2, b2, activation, gate, excitation, residual):
    """squeeze_excite in ONNX ops, for torch.onnx.export(dynamo=False)."""
    from torch.onnx import symbolic_helper as sh

    activation, gate = sh._parse_arg(activation, "s"), sh._parse_arg(gate, "s")
    excitation, residual = sh._parse_arg(excitation, "s"), sh._parse_arg(residual, "b")
    rank = sh._get_tensor_rank(x)
    if rank is None:
        raise RuntimeError("se_fused: the ONNX export needs x's rank")
    pooled = g.op("Flatten", g.op("GlobalAveragePool", x), axis_i=1)  # [N, C]

    def fc(inp, w, b):
        return (g.op("Gemm", inp, w, b, transB_i=1) if not sh._is_none(b)
                else g.op("Gemm", inp, w, transB_i=1))

    if excitation == "two_fc":
        z = fc(pooled, w1, b1)
        if activation == "relu":
            z = g.op("Relu", z)
        elif activation == "silu":
            z = g.op("Mul", z, g.op("Sigmoid", z))
        else:  # hardswish(z) = z * hardsigmoid(z) (ONNX HardSwish needs opset 14)
            z = g.op("Mul", z, g.op("HardSigmoid", z, alpha_f=1.0 / 6, beta_f=0.5))
        z = fc(z, w2, b2)
    elif excitation == "one_fc":
        z = fc(pooled, w1, b1)
    else:
        k = sh._get_tensor_sizes(w1)[0]
        p = g.op("Unsqueeze", pooled, g.op("Constant", value_t=torch.tensor([1])))  # [N, 1, C]
        pad = k // 2
        if excitation == "eca_circular" and pad > 0:
            def channels(start, end):
                return g.op("Slice", p, g.op("Constant", value_t=torch.tensor([start])),
                            g.op("Constant", value_t=torch.tensor([end])),
                            g.op("Constant", value_t=torch.tensor([2])))
            p = g.op("Concat", channels(-pad, 2 ** 62), p, channels(0, pad), axis_i=2)
            pads = [0, 0]
        else:
            pads = [pad, pad]
        kernel = g.op("Reshape", w1, g.op("Constant", value_t=torch.tensor([1, 1, k])))
        inputs = [p, kernel] + ([] if sh._is_none(b1) else [b1])
        z = g.op("Conv", *inputs, kernel_shape_i=[k], pads_i=pads)
        z = g.op("Squeeze", z, g.op("Constant", value_t=torch.tensor([1])))
    s = (g.op("Sigmoid", z) if gate == "sigmoid"
         else g.op("HardSigmoid", z, alpha_f=1.0 / 6, beta_f=0.5))
    s = g.op("Unsqueeze", s, g.op("Constant", value_t=torch.tensor(list(range(2, rank)))))
    y = g.op("Mul", x, s)
    return g.op("Add", y, x) if residual else y


torch.onnx.register_custom_op_symbolic("se_fused::squeeze_excite", _onnx_symbolic, 13)

__all__: List[str] = ["plain_squeeze_excite"]
