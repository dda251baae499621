"""The CPU dispatch of every spn op goes to a C++ kernel (csrc/cpu), not to a Python fallback, and the C++
kernels keep the dtypes and layouts the references allow beyond what test_subscale/test_masked_conv cover."""

from __future__ import annotations

import re

import pytest
import torch

import spn_kernels as sk
from spn_kernels._library import OPS
from tests.helpers import assert_close_to_ref


@pytest.mark.parametrize("op", OPS)
def test_cpu_kernel_is_cpp(op):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"spn::{op}", "CPU"), op
    # The dispatch table names the file that registered the kernel: a C++ source under csrc/cpu, not
    # torch/library.py or other Python.
    table = torch._C._dispatch_dump_table(f"spn::{op}")
    cpu_line = next(line for line in table.splitlines() if line.startswith("CPU:"))
    assert re.search(r"csrc/cpu/\w+\.cpp:\d+ \[kernel\]", cpu_line), cpu_line


@pytest.mark.parametrize("dtype", [torch.bool, torch.int8, torch.bfloat16, torch.float16, torch.complex64], ids=str)
def test_split_merge_scatter_any_dtype(dtype):
    x = torch.randn(2, 3, 6, 6).to(dtype) if dtype != torch.complex64 else torch.randn(2, 3, 6, 6, dtype=dtype)
    out = sk.subscale_split(x, 3, backend="cpu")
    assert torch.equal(out, sk.subscale_split_ref(x, 3))
    assert torch.equal(sk.subscale_merge(out, backend="cpu"), x)
    t = torch.tensor([2, 8])
    want, got = x.clone(), x.clone()
    sk.slice_scatter_ref_(want, out[:, 0], 3, t)
    sk.slice_scatter_(got, out[:, 0], 3, t, backend="cpu")
    assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16], ids=str)
def test_slice_context_signed_small_ints(dtype):
    x = torch.randint(0, 100, (3, 2, 8, 8), dtype=dtype)
    t = torch.tensor([0, 2, 4])
    assert torch.equal(sk.slice_context(x, 2, t, 7, backend="cpu"), sk.slice_context_ref(x, 2, t, 7))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_masked_conv_half_precision(dtype):
    """Half-precision inputs run (oneDNN's convolution) and stay within 2x the reference's own error."""
    x = torch.randn(2, 6, 9, 9)
    w = torch.randn(6, 6, 5, 5) / 30
    b = torch.randn(6)
    out = sk.masked_conv2d(x.to(dtype), w.to(dtype), b.to(dtype), "A", 3, backend="cpu")
    ref = sk.masked_conv2d_ref(x.to(dtype), w.to(dtype), b.to(dtype), "A", 3)
    assert_close_to_ref(out, ref, sk.masked_conv2d_ref(x.double(), w.double(), b.double(), "A", 3))
    cache = x.to(dtype)
    step = sk.masked_conv2d_step(cache, None, w.to(dtype), b.to(dtype), 4, 5, "B", 3, backend="cpu")
    ref_step = sk.masked_conv2d_step_ref(cache, None, w.to(dtype), b.to(dtype), 4, 5, "B", 3)
    full64 = sk.masked_conv2d_ref(x.to(dtype).double(), w.to(dtype).double(), b.to(dtype).double(), "B", 3)
    assert_close_to_ref(step, ref_step, full64[:, :, 4, 5])


def test_masked_conv_backward_channels_last_grad():
    """A channels_last grad_out and input (as autograd may hand them over) give the same gradients."""
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64)
    w = torch.randn(8, 4, 3, 3, dtype=torch.float64)
    gy = torch.randn(2, 8, 7, 7, dtype=torch.float64)
    cl = torch.channels_last
    got = torch.ops.spn.masked_conv2d_backward(
        gy.contiguous(memory_format=cl), x.contiguous(memory_format=cl), w, "B", 1, [True, True, True]
    )
    want = sk.masked_conv2d_backward_ref(gy, x, w, "B", 1, [True, True, True])
    for g, r in zip(got, want):
        assert g.is_contiguous()
        torch.testing.assert_close(g, r)
