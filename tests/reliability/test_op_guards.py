"""Slice-op inputs that used to pass silently: an expanded or grad-requiring leaf x for slice_scatter_, values
past 2^bits for slice_context, bools for s and t. Every backend that runs here refuses them alike."""

from __future__ import annotations

import pytest
import torch

import spn_kernels as sk


def test_slice_scatter_refuses_expanded_x(backend):
    x = torch.zeros(1, 1, 4, 4, dtype=torch.int64).expand(3, 1, 4, 4)
    with pytest.raises(ValueError, match=r"x is expanded \(stride 0 in dims \[0\]"):
        sk.slice_scatter_(x, torch.ones(3, 1, 2, 2, dtype=torch.int64), 2, 1, backend=backend)
    assert x.sum() == 0


def test_slice_scatter_refuses_a_leaf_that_requires_grad(backend):
    x = torch.zeros(2, 1, 4, 4, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        sk.slice_scatter_(x, torch.ones(2, 1, 2, 2), 2, 1, backend=backend)
    assert x.detach().sum() == 0
    with torch.no_grad():  # as for torch's own in-place ops, allowed without grad
        sk.slice_scatter_(x, torch.ones(2, 1, 2, 2), 2, 1, backend=backend)


def test_slice_context_range_checks_values(backend):
    x = torch.full((1, 3, 4, 4), 16, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"values in \[0, 2\^4\), got values in \[16, 16\]"):
        sk.slice_context(x, 2, 1, bits=4, backend=backend)
    sk.slice_context(x - 1, 2, 1, bits=4, backend=backend)


@pytest.mark.parametrize("call", ["context_t", "context_s", "scatter_t", "split_s"])
def test_bools_are_not_ints(backend, call):
    x = torch.zeros(1, 1, 4, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match="must be (an int|ints), got"):
        if call == "context_t":
            sk.slice_context(x, 2, True, bits=4, backend=backend)
        elif call == "context_s":
            sk.slice_context(x, True, 0, bits=4, backend=backend)
        elif call == "scatter_t":
            sk.slice_scatter_(x, torch.zeros(1, 1, 2, 2, dtype=torch.int64), 2, True, backend=backend)
        else:
            sk.subscale_split(x, True, backend=backend)
