"""Microbenchmarks per op and backend, with pytest-benchmark:

    pytest benchmarks/ --benchmark-only [--benchmark-group-by=param:op]

Not collected by the test suite (testpaths = tests). Every backend that runs on this machine's tensors is
timed on the same inputs; GPU backends run when CUDA is available (Triton needs no interpreter there).
"""

from __future__ import annotations

import pytest
import torch

import spn_kernels as sk

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BACKENDS = ["torch", "cpu"] if DEVICE == "cpu" else ["torch", "triton", "cuda"]


def _sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _ops(backend):
    g = torch.Generator(device=DEVICE).manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 64, 64), dtype=torch.uint8, device=DEVICE, generator=g)
    t = torch.randint(0, 16, (64,), device=DEVICE, generator=g)
    sl = sk.subscale_split(x, 4)
    h = torch.randn(16, 128, 32, 32, device=DEVICE, generator=g)
    w = torch.randn(128, 128, 5, 5, device=DEVICE, generator=g) / 100
    cache = torch.randn(16, 128, 32, 32, device=DEVICE, generator=g)
    return {
        "subscale_split": lambda: sk.subscale_split(x, 4, backend=backend),
        "subscale_merge": lambda: sk.subscale_merge(sl, backend=backend),
        "slice_context": lambda: sk.slice_context(x, 4, t, backend=backend),
        "slice_scatter_": lambda: sk.slice_scatter_(x, sl[:, 5], 4, t.clamp(max=15), backend=backend),
        "masked_conv2d": lambda: sk.masked_conv2d(h, w, None, "B", backend=backend),
        "masked_conv2d_step": lambda: sk.masked_conv2d_step(cache, None, w, None, 16, 16, "B", backend=backend),
    }


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "op",
    ["subscale_split", "subscale_merge", "slice_context", "slice_scatter_", "masked_conv2d", "masked_conv2d_step"],
)
def test_op(benchmark, op, backend):
    try:
        fn = _ops(backend)[op]
        fn()
    except ValueError as e:  # e.g. backend="cuda" for an op with no CUDA C++ kernel
        pytest.skip(str(e))
    benchmark.group = op

    def run():
        fn()
        _sync()

    benchmark(run)
