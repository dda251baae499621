"""Shared test setup.

TRITON_INTERPRET must be set before any @triton.jit decorator runs; it defaults to 1 here, so the Triton kernels
run on CPU tensors through the interpreter. `TRITON_INTERPRET=0 pytest` compiles them for a GPU instead.

Markers (registered in pyproject.toml):
- gpu: needs a CUDA GPU; skipped without one.
- triton: needs the Triton kernels to run here (triton installed, and a GPU or TRITON_INTERPRET=1).
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import importlib.util  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402


def triton_runs() -> bool:
    """Whether the Triton kernels run in this environment: on a GPU, or on CPU through the interpreter."""
    if importlib.util.find_spec("triton") is None or importlib.util.find_spec("spn_kernels._triton_launch") is None:
        return False
    return os.environ.get("TRITON_INTERPRET") == "1" or torch.cuda.is_available()


def cpu_backends() -> list[str]:
    """Every backend that runs on CPU tensors in this environment."""
    out = ["torch", "cpu"]
    if os.environ.get("TRITON_INTERPRET") == "1" and triton_runs():
        out.append("triton")
    return out


def pytest_runtest_setup(item):
    if item.get_closest_marker("gpu") and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    if item.get_closest_marker("triton") and not triton_runs():
        pytest.skip("Triton kernels need triton and a GPU or TRITON_INTERPRET=1")


@pytest.fixture(params=cpu_backends())
def backend(request):
    return request.param


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# Property-based tests: bounded and derandomised by default so CI is deterministic and fast;
# HYPOTHESIS_PROFILE=dev explores more.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", max_examples=25, derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
