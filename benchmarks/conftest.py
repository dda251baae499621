"""Shared by the per-op microbenchmarks, benchmarks/bench_<op>.py (pytest-benchmark):

    pytest benchmarks/ --benchmark-only [--benchmark-group-by=param:backend]

Not collected by the test suite (testpaths = tests). Every backend that runs on this machine's tensors is
timed on the same inputs; GPU backends run when CUDA is available (Triton needs no interpreter there).
"""

from __future__ import annotations

import pytest
import torch

import spn_kernels as sk

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# The backends that run on DEVICE's tensors: on CPU the reference and the C++ kernels (Triton there would be
# its interpreter, not worth timing); on a GPU the reference, Triton and the CUDA C++ kernels.
BACKENDS = [b for b in sk.BACKENDS if b == "torch" or (b == "cpu") == (DEVICE == "cpu")]


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def device():
    return DEVICE


@pytest.fixture
def gen():
    return torch.Generator(device=DEVICE).manual_seed(0)


@pytest.fixture
def bench(benchmark):
    """bench(op, fn): times fn() (synchronised on a GPU) in the group of its op. A backend the op does not have
    (e.g. backend="cuda" for an op with no CUDA C++ kernel) raises ValueError on the first call: skipped."""

    def run(op, fn):
        try:
            fn()
        except ValueError as e:
            pytest.skip(str(e))
        benchmark.group = op

        def timed():
            fn()
            if DEVICE == "cuda":
                torch.cuda.synchronize()

        benchmark(timed)

    return run
