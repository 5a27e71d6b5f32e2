"""pytest configuration for the se_fused suite. The helpers (float64 oracle,
ULP distance, seeded inputs, asserts) live in tests/_reference.py."""
import os
import sys

import pytest

try:
    import torch
except ImportError:  # tests/test_cuda_emulation.py needs no torch: it still runs
    torch = None

sys.path.insert(0, os.path.dirname(__file__))


def pytest_configure(config):
    config.addinivalue_line("markers", "compile: torch.compile tests (slow on CPU)")
    config.addinivalue_line("markers", "large: needs a GPU with several GiB free")


def pytest_report_header(config):
    if torch is None:
        return "torch not importable: only tests that need no torch can run"
    import se_fused
    cuda = torch.cuda.is_available()
    return (f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
            f"cuda available {cuda}"
            + (f" ({torch.cuda.get_device_name()})" if cuda else "")
            + f", se_fused CUDA kernels {se_fused.has_cuda_kernels()}")


@pytest.fixture(autouse=True)
def _fresh_dynamo(request):
    # A test named *compile* starts from an empty dynamo cache: the parametrized
    # cases compile the same forward with other guards (Linear vs Conv1d, bias or
    # not) and, run one after another, would reach the recompile limit (8), which
    # fullgraph=True turns into a failure that depends on the order of the tests.
    if torch is not None and "compile" in request.node.name:
        torch._dynamo.reset()
    yield


@pytest.fixture(autouse=True)
def _no_grad_leak():
    # Each test starts with grad mode on and default dtype float32.
    if torch is None:
        yield
        return
    assert torch.is_grad_enabled()
    yield
    torch.set_grad_enabled(True)
