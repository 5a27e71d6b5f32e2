"""The CUDA launcher's seams (issue 20): one allocation per returned tensor,
the path each call took, one arithmetic (--fmad=false, exp_poly on the
device), clear errors at the boundary. What needs no GPU runs here (the
allocation plan is compiled in every build and exercised on CPU tensors; the
Python API in a CPU build or without a device; static checks of the sources);
the GPU cases run the day a GPU does."""
import ctypes
import os
import re
import subprocess
import sys

import pytest
import torch

import se_fused
from se_fused import _cuda
from _reference import make_x

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPS = torch.ops.se_fused
C_ = se_fused._C
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _read(rel):
    with open(os.path.join(ROOT, rel)) as f:
        return f.read()


# ---------------------------------------------------------------------------
# Problems: every excitation, with and without biases
# ---------------------------------------------------------------------------

def _problem(excitation, bias, dtype, layout, n=2, c=8, h=3, w=5, device="cpu"):
    gen = torch.Generator().manual_seed(7)
    x = make_x((n, c, h, w), dtype, device, layout, seed=3)
    rnd = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64).to(dtype).to(device)  # noqa: E731
    if excitation == "two_fc":
        w1, w2, act = rnd(4, c), rnd(c, 4), "silu"
        b1, b2 = (rnd(4), rnd(c)) if bias else (None, None)
    elif excitation == "one_fc":
        w1, w2, b2, act = rnd(c, c), None, None, "none"
        b1 = rnd(c) if bias else None
    else:
        w1, w2, b2, act = rnd(3), None, None, "none"
        b1 = rnd(1) if bias else None
    return x, w1, b1, w2, b2, act, "sigmoid", excitation


PROBLEMS = [(e, b) for e in ["two_fc", "one_fc", "eca", "eca_circular"] for b in [False, True]]
PLAN_CASES = [(e, b, dtype, layout, n)
              for (e, b) in PROBLEMS
              for dtype, layout in [(torch.float32, "nchw"), (torch.bfloat16, "channels_last"),
                                    (torch.float64, "sliced_h")]
              for n in [2, 0]]


def _case_id(case):
    e, b, dtype, layout, n = case
    return f"{e}-{'bias' if b else 'nobias'}-{str(dtype).split('.')[-1]}-{layout}-n{n}"


def _storages(tensors):
    return [t.untyped_storage()._cdata for t in tensors]


def _assert_apart(named):
    """No two of the tensors share a storage, nor (when not empty) bytes."""
    names, tensors = zip(*named)
    st = _storages(tensors)
    assert len(set(st)) == len(st), f"shared storage among {names}: {st}"
    ptrs = [t.untyped_storage().data_ptr() for t in tensors if t.untyped_storage().nbytes() > 0]
    assert len(set(ptrs)) == len(ptrs), f"shared bytes among {names}"


def _assert_like(got, want, what):
    assert got.shape == want.shape, (what, got.shape, want.shape)
    assert got.dtype == want.dtype, (what, got.dtype, want.dtype)
    assert got.device == want.device, (what, got.device, want.device)
    if got.numel() > 1:
        assert got.stride() == want.stride(), (what, got.stride(), want.stride())
    # Each output is a whole allocation of its own: no offset into a buffer.
    assert got.storage_offset() == 0, what
    assert got.untyped_storage().nbytes() == got.numel() * got.element_size(), what


# ---------------------------------------------------------------------------
# The allocation plan (csrc/se_cuda_plan.cpp), the CPU op as the reference
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", PLAN_CASES, ids=_case_id)
def test_forward_plan_allocates_each_output_apart(case):
    e, bias, dtype, layout, n = case
    x, w1, b1, w2, b2, act, gate, exc = _problem(e, bias, dtype, layout, n=n)
    regions = [512, 0, 256]
    y, pooled, z1, z2, ws = C_._cuda_plan_forward(x, w1, b1, w2, b2, act, gate, exc, False,
                                                  regions, False)
    want = OPS._squeeze_excite_forward(x, w1, b1, w2, b2, act, gate, exc, False)
    for name, got, ref in zip(["y", "pooled", "z1", "z2"], [y, pooled, z1, z2], want):
        _assert_like(got, ref, name)
    if n == 0:
        assert ws == []  # nothing to launch: no workspace
        _assert_apart([("y", y), ("pooled", pooled), ("z1", z1), ("z2", z2)])
    else:
        assert len(ws) == 1 and ws[0].dtype == torch.uint8 and ws[0].numel() == sum(regions)
        _assert_apart([("y", y), ("pooled", pooled), ("z1", z1), ("z2", z2), ("workspace", ws[0])])


@pytest.mark.parametrize("want_db", [(False, False), (True, True), (True, False), (False, True)],
                         ids=["no_db", "db1_db2", "db1", "db2"])
@pytest.mark.parametrize("case", PLAN_CASES, ids=_case_id)
def test_backward_plan_allocates_each_output_apart(case, want_db):
    e, bias, dtype, layout, n = case
    x, w1, b1, w2, b2, act, gate, exc = _problem(e, bias, dtype, layout, n=n)
    _, pooled, z1, z2 = OPS._squeeze_excite_forward(x, w1, b1, w2, b2, act, gate, exc, False)
    dy = torch.ones_like(x)
    args = (dy, x, pooled, z1, z2, w1, w2, act, gate, *want_db, exc, False)
    regions = [256, 256, 0, 512, 0, 256]
    got = C_._cuda_plan_backward(*args, regions, False)
    want = OPS._squeeze_excite_backward(*args)
    names = ["dx", "dw1", "db1", "dw2", "db2"]
    for name, g, ref in zip(names, got[:5], want):
        _assert_like(g, ref, name)
    ws = got[5]
    named = list(zip(names, got[:5]))
    if n > 0:
        assert len(ws) == 1 and ws[0].numel() == sum(regions)
        named.append(("workspace", ws[0]))
    _assert_apart(named)


def test_separate_workspace_plan_gives_each_region_its_allocation():
    x, w1, b1, w2, b2, act, gate, exc = _problem("two_fc", True, torch.float32, "nchw")
    regions = [512, 0, 256]
    *outs, ws = C_._cuda_plan_forward(x, w1, b1, w2, b2, act, gate, exc, False, regions, True)
    assert len(ws) == 3 and ws[1] is None
    assert [t.numel() for t in (ws[0], ws[2])] == [512, 256]
    _assert_apart(list(zip(["y", "pooled", "z1", "z2", "ws0", "ws2"], [*outs, ws[0], ws[2]])))
    _, pooled, z1, z2 = OPS._squeeze_excite_forward(x, w1, b1, w2, b2, act, gate, exc, False)
    regions = [256, 256, 256, 256, 0, 0]
    *outs, ws = C_._cuda_plan_backward(torch.ones_like(x), x, pooled, z1, z2, w1, w2, act, gate,
                                       True, True, exc, False, regions, True)
    assert [None if t is None else t.numel() for t in ws] == [256, 256, 256, 256, None, None]
    _assert_apart(list(zip(["dx", "dw1", "db1", "dw2", "db2", "a", "b", "c", "d"],
                           [*outs, *ws[:4]])))


def test_plan_runs_the_ops_checks():
    x, w1, b1, w2, b2, act, gate, exc = _problem("two_fc", True, torch.float32, "nchw")
    with pytest.raises((ValueError, RuntimeError), match="se_fused: .*w1"):
        C_._cuda_plan_forward(x, w1[:, :3], b1, w2, b2, act, gate, exc, False, [256], False)


# ---------------------------------------------------------------------------
# The Python API (se_fused/_cuda.py) without a GPU
# ---------------------------------------------------------------------------

def test_build_info_matches_the_build():
    info = _cuda.cuda_build_info()
    if not se_fused.has_cuda_kernels():
        assert info is None
        return
    assert set(info) == {"archs", "cuda_runtime", "nvcc", "fmad"}
    assert info["fmad"] is False
    assert re.fullmatch(r"\d+\.\d+", info["cuda_runtime"]), info
    assert re.match(r"\d+\.\d+", info["nvcc"]), info
    assert info["archs"] not in ("", "unknown")


def test_device_support_without_the_device():
    ok, msg = _cuda.cuda_device_support(torch.cuda.device_count())  # one past the last
    assert ok is False
    if se_fused.has_cuda_kernels():
        assert f"no CUDA device {torch.cuda.device_count()}" in msg
    else:
        assert "no CUDA kernels" in msg and "TORCH_CUDA_ARCH_LIST" in msg


def test_path_record_is_empty_without_cuda_calls():
    # A thread that made no CUDA call has no last path (the record is per thread).
    import threading
    out = {}
    t = threading.Thread(target=lambda: out.update(
        f=_cuda.last_cuda_path("forward"), b=_cuda.last_cuda_path("backward")))
    t.start()
    t.join()
    assert out == {"f": "", "b": ""}
    counts = _cuda.cuda_path_counts()
    assert set(counts) == {"forward", "backward"}
    for d in counts.values():
        assert set(d) == {"twopass", "onepass", "cluster"}
        assert all(isinstance(v, int) and v >= 0 for v in d.values())
    if not torch.cuda.is_available():
        assert all(v == 0 for d in counts.values() for v in d.values())
        # CPU calls are not CUDA calls
        x, w1, b1, w2, b2, act, gate, exc = _problem("two_fc", True, torch.float32, "nchw")
        OPS.squeeze_excite(x, w1, b1, w2, b2, act, gate, exc, False)
        assert _cuda.last_cuda_path("forward") == ""


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="direction"):
        _cuda.last_cuda_path("sideways")
    with pytest.raises(ValueError, match="dtype"):
        _cuda.cuda_auto_path("forward", 1, 64, 49, 16, torch.int32, False)


def test_auto_path():
    args = ("forward", 8, 256, 56 * 56, 16, torch.bfloat16, True)
    if not se_fused.has_cuda_kernels():
        with pytest.raises(RuntimeError, match="no CUDA kernels"):
            _cuda.cuda_auto_path(*args)
        return
    # se_heuristics.h choose_path: two-pass until a GPU run says otherwise
    for d in ["forward", "backward"]:
        assert _cuda.cuda_auto_path(d, *args[1:]) == "twopass"


def test_has_cuda_kernels_says_compiled_in():
    doc = se_fused.has_cuda_kernels.__doc__
    assert "compiled" in doc and "cuda_device_support" in doc


# ---------------------------------------------------------------------------
# Static checks of the sources
# ---------------------------------------------------------------------------

def test_setup_builds_the_device_code_without_contraction():
    src = _read("setup.py")
    nvcc = re.search(r"^\s*nvcc = \[(.*)\]", src, re.M).group(1)
    assert '"--fmad=false"' in nvcc


def test_default_archs_add_blackwell_where_nvcc_has_it():
    # setup.py _default_cuda_archs, run on its own (setup.py builds when imported).
    import ast
    tree = ast.parse(_read("setup.py"))
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_default_cuda_archs")
    ns = {}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), "setup.py", "exec"), ns)
    default = ns["_default_cuda_archs"]
    assert default("compute_75\ncompute_80\ncompute_90\ncompute_100\ncompute_120\n") == "8.0;9.0;10.0+PTX"
    assert default("compute_75\ncompute_80\ncompute_90\n") == "8.0;9.0+PTX"
    assert default("") == "8.0;9.0+PTX"  # nvcc did not answer
    assert default("compute_1000\n") == "8.0;9.0+PTX"  # whole names only


def test_launcher_never_carves_outputs_with_set():
    src = _read("csrc/cuda/se_block_launcher.cpp")
    code = "\n".join(line.split("//")[0] for line in src.splitlines())
    assert "set_(" not in code
    assert "plan_forward(" in code and "plan_backward(" in code  # the tested plan is the one used
    # every launch passes path_taken and records it
    assert code.count("params.path_taken = taken") == 2 and "record_cuda_path(" in code


def _function_body(src, name):
    start = src.index(name + "(")
    body = src.index("{", start)
    depth, i = 0, body
    while True:
        depth += {"{": 1, "}": -1}.get(src[i], 0)
        i += 1
        if depth == 0:
            return src[body:i]


@pytest.mark.parametrize("fn,launch", [("se_launch", "SE_LAUNCH_CHEVRON("),
                                       ("se_launch_ex", "cudaLaunchKernelEx("),
                                       ("se_cluster_capacity", "cudaDeviceGetAttribute("),
                                       ("se_allow_dynamic_smem", "cudaFuncSetAttribute("),
                                       ("se_resident_blocks", "cudaOccupancyMaxActiveBlocksPerMultiprocessor(")])
def test_sync_fallbacks_peek_before_they_act(fn, launch):
    """An error pending from earlier work is returned before anything is launched
    or asked, and not cleared; only the function's own error is cleared."""
    body = _function_body(_read("csrc/cuda/se_sync.h"), "\ncudaError_t " + fn)
    peek = body.index("cudaPeekAtLastError()")
    assert peek < body.index(launch)
    assert body.index("return pending;") < body.index(launch)
    assert body.index("cudaGetLastError()") > body.index(launch) or fn != "se_launch"


def test_fallbacks_do_not_clear_errors_themselves():
    for rel in ["csrc/cuda/se_forward.cuh", "csrc/cuda/se_backward.cuh"]:
        assert "cudaGetLastError" not in _read(rel), rel


def test_device_uses_the_hosts_exp():
    src = _read("csrc/se_math.h")
    code = "\n".join(line.split("//")[0] for line in src.splitlines())
    assert not re.search(r"\bexpf?\s*\(", code), "a library exp in se_math.h"
    assert "SE_HOST_DEVICE F exp_poly(" in code


# ---------------------------------------------------------------------------
# GPU (run the day a GPU does)
# ---------------------------------------------------------------------------

GPU_OPCHECK = [(e, b, dtype, layout) for (e, b) in PROBLEMS
               for dtype, layout in [(torch.float32, "nchw"), (torch.bfloat16, "channels_last")]]


@requires_cuda
@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
@pytest.mark.parametrize("case", GPU_OPCHECK, ids=lambda c: _case_id((*c, 2)))
def test_cuda_opcheck(case, requires_grad):
    e, bias, dtype, layout = case
    x, w1, b1, w2, b2, act, gate, exc = _problem(e, bias, dtype, layout, device="cuda")
    args = [x, w1, b1, w2, b2]
    if requires_grad:
        args = [None if t is None else t.detach().requires_grad_(True) for t in args]
    torch.library.opcheck(OPS.squeeze_excite.default, (*args, act, gate, exc, False))
    torch.library.opcheck(OPS._squeeze_excite_forward.default, (*args, act, gate, exc, False))
    with torch.no_grad():
        _, pooled, z1, z2 = OPS._squeeze_excite_forward(x, w1, b1, w2, b2, act, gate, exc, False)
    torch.library.opcheck(OPS._squeeze_excite_backward.default,
                          (torch.ones_like(x), x, pooled, z1, z2, w1, w2, act, gate,
                           b1 is not None, b2 is not None, exc, False))


_PATH_SCRIPT = r"""
import sys, torch, se_fused
from se_fused import _cuda
block = se_fused.FusedSEBlock(64, 16).cuda()
x = torch.randn(2, 64, 7, 7, device="cuda", requires_grad=True)
_cuda.cuda_path_counts(reset=True)
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    block(x).sum().backward()
torch.cuda.synchronize()
names = {e.key for e in prof.key_averages()}
f, b = _cuda.last_cuda_path("forward"), _cuda.last_cuda_path("backward")
c = _cuda.cuda_path_counts()
print(f, b, c["forward"][f], c["backward"][b],
      f"se_fused::cuda_forward.{f}" in names, f"se_fused::cuda_backward.{b}" in names)
"""


def _run_on_path(script, path):
    """(the script's run in a process of its own with SE_FUSED_CUDA_PATH=path, the path
    its calls must take): clusters exist from sm_90 on; before, a cluster request runs
    two-pass."""
    env = dict(os.environ, SE_FUSED_CUDA_PATH=path)
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out, "twopass" if path == "cluster" and torch.cuda.get_device_capability()[0] < 9 else path


@requires_cuda
@pytest.mark.parametrize("path", ["twopass", "onepass", "cluster"])
def test_forced_path_runs_as_itself_and_is_reported(path):
    out, ran = _run_on_path(_PATH_SCRIPT, path)
    assert out.stdout.split() == [ran, ran, "1", "1", "True", "True"], out.stdout


# CUDA graphs: forward and backward captured on a side stream (after a warm-up
# there: the allocator's pool, the kernels' one-time attribute calls), then
# replayed on new inputs copied into the captured ones; each replay must give
# the bits of a plain call on those inputs, and the path a plain call takes.
# Two shapes: 2x64x7x7 (batch 2: the cluster path's weight gradients are a
# second launch) and 1x64x56x56 bf16 channels_last (batch 1, row parts).
_GRAPH_SCRIPT = r"""
import torch, se_fused
from se_fused import _cuda
ops = torch.ops.se_fused
for shape, dtype, fmt in [((2, 64, 7, 7), torch.float32, torch.contiguous_format),
                          ((1, 64, 56, 56), torch.bfloat16, torch.channels_last)]:
    g = torch.Generator(device="cuda").manual_seed(5)
    rnd = lambda *s: torch.randn(*s, device="cuda", generator=g).to(dtype)
    w1, b1, w2, b2 = rnd(16, 64), rnd(16), rnd(64, 16), rnd(64)
    def step(x, dy):
        y, pooled, z1, z2 = ops._squeeze_excite_forward(x, w1, b1, w2, b2, "relu", "sigmoid", "two_fc", False)
        return (y,) + tuple(ops._squeeze_excite_backward(dy, x, pooled, z1, z2, w1, w2, "relu", "sigmoid",
                                                         True, True, "two_fc", False))
    sx = rnd(*shape).contiguous(memory_format=fmt)
    sdy = rnd(*shape).contiguous(memory_format=fmt)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            step(sx, sdy)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = step(sx, sdy)
    for _ in range(2):
        x, dy = rnd(*shape).contiguous(memory_format=fmt), rnd(*shape).contiguous(memory_format=fmt)
        sx.copy_(x)
        sdy.copy_(dy)
        graph.replay()
        want = step(x, dy)
        torch.cuda.synchronize()
        assert all(torch.equal(a, b) for a, b in zip(outs, want)), shape
    print(_cuda.last_cuda_path("forward"), _cuda.last_cuda_path("backward"))
"""


@requires_cuda
@pytest.mark.parametrize("path", ["twopass", "onepass", "cluster"])
def test_cuda_graph_capture_and_replay_per_path(path):
    out, ran = _run_on_path(_GRAPH_SCRIPT, path)
    for line in out.stdout.split("\n"):
        if line.strip():
            assert line.split() == [ran, ran], out.stdout


@requires_cuda
def test_device_support_and_arch_error_at_the_boundary():
    for i in range(torch.cuda.device_count()):
        ok, msg = _cuda.cuda_device_support(i)
        major, minor = torch.cuda.get_device_capability(i)
        assert f"{major}.{minor}" in msg
        x, w1, b1, w2, b2, act, gate, exc = _problem("two_fc", True, torch.float32, "nchw",
                                                     device=f"cuda:{i}")
        if ok:
            OPS.squeeze_excite(x, w1, b1, w2, b2, act, gate, exc, False)
        else:
            with pytest.raises(RuntimeError, match="TORCH_CUDA_ARCH_LIST"):
                OPS.squeeze_excite(x, w1, b1, w2, b2, act, gate, exc, False)


@requires_cuda
def test_pending_error_is_reported_not_cleared():
    rt = ctypes.CDLL(C_.__file__)  # resolves the CUDA runtime the extension links
    rt.cudaSetDevice.argtypes = [ctypes.c_int]
    x, w1, b1, w2, b2, act, gate, exc = _problem("two_fc", True, torch.float32, "nchw",
                                                 device="cuda")
    torch.cuda.synchronize()
    assert rt.cudaSetDevice(10_000) != 0  # a non-sticky error, left pending
    try:
        with pytest.raises(RuntimeError, match="pending"):
            OPS.squeeze_excite(x, w1, b1, w2, b2, act, gate, exc, False)
        assert rt.cudaPeekAtLastError() != 0  # still there: reported, not cleared
    finally:
        rt.cudaGetLastError()
    OPS.squeeze_excite(x, w1, b1, w2, b2, act, gate, exc, False)


_SEPARATE_SCRIPT = r"""
import hashlib, torch, se_fused
torch.manual_seed(0)
h = hashlib.sha256()
for shape, cl in [((3, 96, 9, 9), False), ((2, 64, 56, 56), True)]:
    block = se_fused.FusedSEBlock(shape[1], 24).cuda()
    x = torch.randn(*shape, device="cuda")
    x = x.contiguous(memory_format=torch.channels_last) if cl else x
    x.requires_grad_(True)
    y = block(x)
    y.backward(torch.randn_like(y))
    for t in [y, x.grad, *[p.grad for p in block.parameters()]]:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
print(h.hexdigest())
"""


@requires_cuda
def test_separate_workspace_gives_the_same_bits():
    """SE_FUSED_CUDA_SEPARATE_WORKSPACE=1 (one allocation per workspace region,
    for memcheck) changes addresses only."""
    digests = []
    for sep in ["0", "1"]:
        env = dict(os.environ, SE_FUSED_CUDA_SEPARATE_WORKSPACE=sep)
        out = subprocess.run([sys.executable, "-c", _SEPARATE_SCRIPT], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        digests.append(out.stdout.strip())
    assert digests[0] == digests[1]
