"""python -m se_fused: it runs on a machine without a GPU, prints one line per
self-check case, and its exit status says whether every case passed."""
import os
import subprocess
import sys

import torch

import se_fused
from se_fused import _diagnose

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_module_runs_and_passes():
    out = subprocess.run([sys.executable, "-m", "se_fused"], cwd=REPO, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"se_fused {se_fused.__version__}")
    assert any(line.startswith("CPU kernels: -march") or line.startswith("CPU kernels: compiler")
               for line in lines), out.stdout
    cpu_cases = [line for line in lines if line.startswith("ok   cpu ")]
    assert len(cpu_cases) == len(_diagnose.CASES), out.stdout
    assert lines[-1] == "self-check: all passed"
    if not torch.cuda.is_available():
        assert "GPUs: none visible" in out.stdout


def test_failure_sets_the_exit_status(monkeypatch, capsys):
    def broken(case, device, seed):
        return (seed != 3), "forced failure" if seed == 3 else "fine"

    monkeypatch.setattr(_diagnose, "run_case", broken)
    assert _diagnose.main(["--check", "cpu"]) == 1
    printed = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("FAIL cpu") for line in printed) == 1
    assert sum(line.startswith("ok   cpu") for line in printed) == len(_diagnose.CASES) - 1


def test_a_raising_case_is_a_failure_not_a_crash(monkeypatch, capsys):
    def raising(case, device, seed):
        raise RuntimeError("no kernel image")

    monkeypatch.setattr(_diagnose, "run_case", raising)
    assert _diagnose.main(["--check", "cpu"]) == 1
    assert "raised RuntimeError: no kernel image" in capsys.readouterr().out


def test_self_check_catches_a_wrong_result(monkeypatch):
    """The check itself can fail: y scaled by one ULP too many is caught."""
    real = se_fused.FusedSEBlock.forward

    def off(self, x):
        y = real(self, x)
        return y * (1 + 4 * torch.finfo(y.dtype).eps)

    monkeypatch.setattr(se_fused.FusedSEBlock, "forward", off)
    ok, message = _diagnose.run_case(_diagnose.CASES[0], "cpu", 0)
    assert not ok and "ULP from float64" in message
