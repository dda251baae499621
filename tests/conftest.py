"""Shared test setup.

TRITON_INTERPRET must be set before any @triton.jit decorator runs, so the Triton kernels execute on CPU
tensors here (this machine and CI have no GPU). A session with a GPU can run `TRITON_INTERPRET=0 pytest`.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import importlib.util  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402


def cpu_backends() -> list[str]:
    """Every backend that runs on CPU tensors in this environment."""
    out = ["torch", "cpu"]
    if (
        os.environ.get("TRITON_INTERPRET") == "1"
        and importlib.util.find_spec("triton") is not None
        and importlib.util.find_spec("spn_kernels._triton_ops") is not None
    ):
        out.append("triton")
    return out


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
