"""What holds for every op at once: each has a C++ CPU kernel (not a Python fallback) and a Triton op with the
same schema; which implementation a backend= value picks, including backend=None on CUDA tensors; and that
nothing but the C++ extension registers spn:: kernels."""

from __future__ import annotations

import importlib
import re

import pytest
import torch

import spn_kernels  # noqa: F401  (loads the ops)
from spn_kernels import _backend
from tests.helpers import CUDA_OPS, OPS


def _op_folder(op: str) -> str:
    return "masked_conv2d" if op == "masked_conv2d_backward" else op


@pytest.mark.parametrize("op", OPS)
def test_cpu_kernel_is_cpp(op):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"spn::{op}", "CPU"), op
    # The dispatch table names the file that registered the kernel: a C++ source csrc/<op>/cpu.cpp, not
    # torch/library.py or other Python.
    table = torch._C._dispatch_dump_table(f"spn::{op}")
    cpu_line = next(line for line in table.splitlines() if line.startswith("CPU:"))
    assert re.search(rf"csrc/{_op_folder(op)}/cpu\.cpp:\d+ \[kernel\]", cpu_line), cpu_line


def test_choose():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert _backend.choose(None, cpu, "masked_conv2d") == _backend.CPP
    assert _backend.choose("cpu", cpu, "subscale_split") == _backend.CPP
    assert _backend.choose("torch", cuda, "subscale_split") == _backend.TORCH
    for op in OPS:
        # backend=None on CUDA tensors: the CUDA C++ kernel where one was built, else Triton
        if op in _backend.CUDA_CPP_OPS or _backend.HAS_TRITON:
            want = _backend.CPP if op in _backend.CUDA_CPP_OPS else _backend.TRITON
            assert _backend.choose(None, cuda, op) == want, op
        else:
            with pytest.raises(ValueError, match="no CUDA C\\+\\+ kernel was built and triton is not installed"):
                _backend.choose(None, cuda, op)
    with pytest.raises(ValueError, match="backend='cpu' needs CPU tensors"):
        _backend.choose("cpu", cuda, "subscale_split")
    with pytest.raises(ValueError, match="backend='cuda' needs CUDA tensors"):
        _backend.choose("cuda", cpu, "subscale_split")
    with pytest.raises(ValueError, match="without a CUDA C\\+\\+ kernel for masked_conv2d"):
        _backend.choose("cuda", cuda, "masked_conv2d")
    with pytest.raises(ValueError, match="backend must be None or one of"):
        _backend.choose("tpu", cpu, "subscale_split")


def test_cuda_cpp_ops_come_from_the_extension():
    """CUDA_CPP_OPS is what the dispatcher holds, and it stays that: importing the Triton ops registers no
    spn:: kernel (a CUDA tensor reaches Triton through `choose`, not through the dispatcher)."""
    if _backend.HAS_TRITON:
        for op in OPS:
            importlib.import_module(f"spn_kernels.ops.{_op_folder(op)}.triton")
    has_cuda = {op for op in OPS if torch._C._dispatch_has_kernel_for_dispatch_key(f"spn::{op}", "CUDA")}
    assert has_cuda == set(_backend.CUDA_CPP_OPS)
    assert has_cuda <= set(CUDA_OPS)


@pytest.mark.triton
def test_triton_schemas_match_spn():
    for op in OPS:
        importlib.import_module(f"spn_kernels.ops.{_op_folder(op)}.triton")
        a = getattr(torch.ops.spn_triton, op).default._schema
        b = getattr(torch.ops.spn, op).default._schema
        assert [(x.name, str(x.type), x.alias_info is not None and x.alias_info.is_write) for x in a.arguments] == [
            (x.name, str(x.type), x.alias_info is not None and x.alias_info.is_write) for x in b.arguments
        ], op
        assert [str(r.type) for r in a.returns] == [str(r.type) for r in b.returns], op


@pytest.mark.gpu
def test_cuda_kernels_registered():
    """With a GPU, an extension built without its CUDA kernels fails here (rebuild with
    `pip install --no-build-isolation -e .` under a CUDA torch)."""
    for op in CUDA_OPS:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"spn::{op}", "CUDA"), op
