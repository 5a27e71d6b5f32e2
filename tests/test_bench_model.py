"""benchmarks/gpu_model.py's cluster-path prediction (issue 22) and the parts of
bench.py / report.py that put the CUDA paths side by side (the per-path predictions,
the rule for Auto), on made-up records: no GPU needed. The model's geometry against the
kernels' is tests/test_cuda_emulation.py's test_gpu_model_geometry_is_the_kernels."""
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import gpu_model  # noqa: E402
import gpu_whatif  # noqa: E402
import report  # noqa: E402
sys.path.pop(0)


def test_cluster_applies_where_a_sample_fits():
    # 1x256x56x56 bf16 NCHW: 43 units of 6 channels, 36.8 KB slots, 16 blocks x 3 units.
    r = gpu_model.predict(1, 256, 56, 56, 16, 2, False)
    f = r["cluster_fwd"]
    assert (f["units"], f["chunk"], f["cs"], f["j"], f["slot"]) == (43, 6, 16, 3, 37648)
    assert f["applies"] and r["cluster_fwd_us"] is not None
    assert r["cluster_fwd_launches"] == 1 and r["cluster_bwd_launches"] == 1  # batch 1: dW inside
    assert gpu_model.path_us(r, "cluster", "fwd") == (r["cluster_fwd_us"], "cluster")
    # x read once: below the two-pass forward, above the clone floor.
    assert r["clone_us"] < r["cluster_fwd_us"] < r["fwd_us"]
    # At N > 1 the backward's weight gradients are one more launch.
    assert gpu_model.predict(256, 256, 56, 56, 16, 2, False)["cluster_bwd_launches"] == 2


def test_cluster_does_not_apply_past_the_budget():
    # 96x112x112 fp32: a 4.8 MB sample never fits 16 blocks; two-pass runs and is predicted.
    r = gpu_model.predict(64, 96, 112, 112, 4, 4, False)
    assert r["cluster_fwd_us"] is None and r["cluster_bwd_us"] is None
    assert r["cluster_fwd_launches"] is None
    assert gpu_model.path_us(r, "cluster", "fwd") == (r["fwd_us"], "twopass")
    # 256x256x56x56 fp32 NHWC: 104 units of 30976 B -> 7 per block = 212 KB: 6 staged, the
    # seventh from global memory (se_heuristics.h cluster_plan: one unit per block past the budget).
    f = gpu_model.predict(256, 256, 56, 56, 16, 4, True)["cluster_fwd"]
    assert (f["units"], f["j"], f["slot"], f["staged_units"], f["applies"]) == (104, 7, 30976, 6, True)
    # The row parts' sums (13 parts x 32 channels x 8-byte accumulators) come out of the budget
    # first (se_heuristics.h part_sum_bytes); NCHW has none.
    assert f["sum_bytes"] == 13 * 32 * 8
    assert gpu_model.predict(256, 256, 56, 56, 16, 2, False)["cluster_fwd"]["sum_bytes"] == 0
    # Its backward: 200 units of 16128 B -> 13 per block, 12 fit: applies too.
    assert gpu_model.predict(256, 256, 56, 56, 16, 4, True)["cluster_bwd"]["applies"]
    # fp32 NCHW 56x56: 86 units of 3 channels -> 6 x 37648 B = 221 KB forward: 5 staged (6 blocks
    # run a sixth unit from global memory); 128 units of 2 channels -> 8 x 25104 B = 196 KB backward.
    r = gpu_model.predict(64, 256, 56, 56, 16, 4, False)
    assert r["cluster_fwd_us"] is not None and r["cluster_bwd_us"] is not None
    assert (r["cluster_fwd"]["staged_units"], r["cluster_fwd"]["direct"]) == (5, 1)
    assert r["cluster_fwd"]["unstaged_share"] == pytest.approx(6 / 86)
    assert r["cluster_bwd"]["staged"] == 8 * 25104


def test_cluster_occupancy():
    # 1 block per SM at ~134 KB of shared memory: one 16-block cluster per GPC, 8 at once;
    # 7x7 tiles: 2 blocks per SM by registers, 16 clusters of 16.
    assert gpu_model.cluster_fit(256, 3136, 16, 2, False)["active"] == len(gpu_model.GPC_SMS)
    f = gpu_model.cluster_fit(2048, 49, 128, 4, False)
    assert (f["blocks_per_sm"], f["active"]) == (2, 2 * len(gpu_model.GPC_SMS))
    assert sum(gpu_model.GPC_SMS) == gpu_model.SMS


def test_7x7_designs_against_the_floor():
    # docs/cuda.md, "The 7x7 forward": the floor of any design sits between the clone and every
    # design the model prices; the streamed what-if fits its block or says what it would need.
    for label in gpu_model.BAR_7X7:
        n, c, h, w, hidden, b, cl = next(a for lab, *a in gpu_model.BENCH_SHAPES if lab == label)
        r = gpu_model.predict(n, c, h, w, hidden, b, cl)
        floor = gpu_whatif.fwd_floor_us(n, c, h * w, b)
        assert r["clone_us"] < floor < r["cluster_fwd_us"] < r["fwd_us"]
        st = gpu_whatif.streamed_fwd(n, c, h * w, hidden, b, cl)
        if st["us"] is None:
            assert st["need"] > gpu_model.CLUSTER_SMEM_BUDGET
        else:
            assert floor < st["us"] and st["smem"] <= gpu_model.CLUSTER_SMEM_BUDGET
    # fp32 at 7x7: both slices and a ring of every block's double partials pass a block's shared
    # memory, so each block keeps its own and reads the others' (pull); bf16 has room to push.
    assert gpu_whatif.streamed_fwd(64, 960, 49, 240, 4, False)["exchange"] == "pull"
    assert gpu_whatif.streamed_fwd(64, 960, 49, 240, 2, False)["exchange"] == "push"
    # Row parts (NHWC 56x56): the streamed what-if does not apply.
    assert gpu_whatif.streamed_fwd(256, 256, 3136, 16, 2, True)["us"] is None


def test_bar_rows_name_every_bar_shape():
    rows = gpu_model.bar_rows()
    labels = {r[0] for r in rows}
    assert set(gpu_model.BAR_BIG) | set(gpu_model.BAR_7X7) <= labels
    assert all(isinstance(r[3], bool) for r in rows)
    shapes = {label for label, *_ in gpu_model.BENCH_SHAPES}
    assert set(gpu_model.BAR_BIG) | set(gpu_model.BAR_7X7) <= shapes


def test_model_script_prints_its_tables():
    run = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "gpu_model.py")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "cluster fwd us" in run.stdout and "Issue 22's bar" in run.stdout
    run = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "gpu_whatif.py")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "What-ifs at 7x7" in run.stdout and "streamed" in run.stdout


def _case(n, c, hw, hidden):
    return SimpleNamespace(n=n, hidden=hidden, layout="nchw",
                           block=SimpleNamespace(excitation="two_fc", c=c, map=(hw, hw)))


def test_report_predicts_per_path():
    p = report.predict(gpu_model, _case(1, 256, 56, 16), 2)
    assert "error" not in p
    r = gpu_model.predict(1, 256, 56, 56, 16, 2, False)
    assert report.predicted_us(p, "fwd", "fused:cluster") == pytest.approx(r["cluster_fwd_us"])
    assert report.predicted_us(p, "fwd", "fused", "cluster") == pytest.approx(r["cluster_fwd_us"])
    assert report.predicted_us(p, "fwd", "fused") == pytest.approx(r["fwd_us"])  # auto: two-pass
    assert report.predicted_us(p, "fwdbwd", "fused:twopass") == pytest.approx(r["fwd_us"] + r["bwd_us"])
    assert report.predicted_path(p, "fwdbwd", "cluster") == "cluster"
    # A forced path that does not apply is predicted as its fallback (96x112x112 fp32).
    q = report.predict(gpu_model, _case(64, 96, 112, 4), 4)
    assert report.predicted_path(q, "fwdbwd", "cluster") == "twopass"


def _rec(shape, pass_, provider, us, fwd=None, bwd=None, dtype="bf16", layout="nchw"):
    rec = {"case": f"m:{shape}", "shape": shape, "hidden": 16, "dtype": dtype, "layout": layout,
           "pass": pass_, "provider": provider, "median_us": us}
    if fwd:
        rec["path_taken"] = {"forward": fwd, **({"backward": bwd} if bwd else {})}
    return rec


def _records(cluster_fwd):
    """Two shapes, twopass and cluster each; cluster_fwd: {shape: (fwd us, path it ran)}."""
    out = []
    for shape in ("1x256x56x56", "256x256x56x56"):
        out += [_rec(shape, "fwd", "floor", 10.0), _rec(shape, "fwdbwd", "floor", 25.0),
                _rec(shape, "fwd", "fused:twopass", 20.0, "twopass"),
                _rec(shape, "fwdbwd", "fused:twopass", 50.0, "twopass", "twopass")]
        us, ran = cluster_fwd[shape]
        out += [_rec(shape, "fwd", "fused:cluster", us, ran),
                _rec(shape, "fwdbwd", "fused:cluster", us + 30.0, ran, "cluster")]
    return out


def test_auto_rule_from_the_measurements(capsys):
    both_faster = _records({"1x256x56x56": (12.0, "cluster"), "256x256x56x56": (11.0, "cluster")})
    lines = report.auto_rule(both_faster, ["twopass", "cluster"])
    assert lines[0].startswith("Auto (forward): cluster wherever it applies, else twopass")
    assert lines[1].startswith("Auto (backward): twopass, not cluster")  # 30 vs 30: within 3%
    mixed = _records({"1x256x56x56": (12.0, "cluster"), "256x256x56x56": (26.0, "cluster")})
    assert report.auto_rule(mixed, ["twopass", "cluster"])[0].startswith(
        "Auto (forward): cluster where N <= 1 and it applies, else twopass")
    fell_back = _records({"1x256x56x56": (12.0, "twopass"), "256x256x56x56": (11.0, "twopass")})
    assert "never ran as itself" in report.auto_rule(fell_back, ["twopass", "cluster"])[0]
    report.print_paths(mixed, ["twopass", "cluster"])
    out = capsys.readouterr().out
    assert "fastest" in out and "Auto (forward)" in out


def test_bench_path_processes():
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    try:
        import bench
    finally:
        sys.path.pop(0)
    args = bench.parse_args(["--paths", "twopass,cluster,onepass", "--quick", "--no-latency"])
    assert bench.path_jobs(args) == [("twopass", ["fused", "eager"]), ("cluster", ["fused"]),
                                     ("twopass", ["compile"]), ("onepass", ["fused"])]
    argv = bench.child_argv(args, "cluster", ["fused"], "out.json")
    assert argv[argv.index("--child-path") + 1] == "cluster" and "--no-latency" in argv
    assert "--paths" not in argv and "--quick" in argv
    with pytest.raises(SystemExit):
        bench.parse_args(["--paths", "fast"])


def test_gpu_check_script_parses():
    if subprocess.run(["bash", "--version"], capture_output=True).returncode != 0:
        pytest.skip("no bash")
    script = os.path.join(REPO, "benchmarks", "gpu_check.sh")
    assert subprocess.run(["bash", "-n", script], capture_output=True).returncode == 0
    text = open(script).read()
    assert "cluster" in text and "--expect-path" in text
