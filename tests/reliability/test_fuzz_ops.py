"""Property-based tests of every op on every backend that runs here (reference, C++, Triton under the
interpreter): random shapes including batch 0 and 1, sizes 1 and primes, every s that divides, and the
layouts kernels get wrong (non-contiguous, channels_last, expanded stride-0). Results must equal the
reference; invalid inputs must raise ValueError, never crash.

Examples are bounded and derandomised (profile "ci" in tests/conftest.py) so CI is deterministic.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import spn_kernels as sk
from tests.conftest import cpu_backends
from tests.helpers import assert_close_to_ref

SIZES = st.sampled_from([1, 2, 3, 5, 7])
LAYOUT = st.sampled_from(["contiguous", "channels_last", "noncontiguous", "expanded"])
INT_DTYPES = [torch.uint8, torch.int16, torch.int32, torch.int64]


def _lay(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if kind == "noncontiguous":
        wide = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype)
        wide[..., 1::2] = x
        return wide[..., 1::2]
    if kind == "expanded" and x.shape[0] > 0:
        # batch broadcast from one image: stride 0 on B
        return x[:1].expand_as(x)
    return x


@st.composite
def images(draw, dtypes):
    B = draw(st.sampled_from([0, 1, 2, 3]))
    C = draw(st.sampled_from([1, 2, 3]))
    s = draw(st.sampled_from([1, 2, 3]))
    h, w = draw(SIZES), draw(SIZES)
    dtype = draw(st.sampled_from(dtypes))
    bits = draw(st.integers(1, 8 if dtype == torch.uint8 else 15))
    if dtype.is_floating_point:
        x = torch.randn(B, C, h * s, w * s, dtype=dtype)
    else:
        x = torch.randint(0, 2**bits, (B, C, h * s, w * s), dtype=dtype)
    return _lay(x, draw(LAYOUT)), s, bits


@pytest.mark.parametrize("backend", cpu_backends())
@given(data=images(INT_DTYPES + [torch.float32, torch.float64]))
def test_split_merge_fuzz(backend, data):
    x, s, _ = data
    out = sk.subscale_split(x, s, backend=backend)
    assert torch.equal(out, sk.subscale_split_ref(x.contiguous(), s))
    assert torch.equal(sk.subscale_merge(out, backend=backend), x)


@pytest.mark.parametrize("backend", cpu_backends())
@given(data=images(INT_DTYPES), t_seed=st.integers(0, 2**16))
def test_slice_context_fuzz(backend, data, t_seed):
    x, s, bits = data
    g = torch.Generator().manual_seed(t_seed)
    t = torch.randint(0, s * s + 1, (x.shape[0],), generator=g)
    out = sk.slice_context(x, s, t, bits, backend=backend)
    assert torch.equal(out, sk.slice_context_ref(x.contiguous(), s, t, bits))


@pytest.mark.parametrize("backend", cpu_backends())
@given(data=images(INT_DTYPES + [torch.float32]), t_seed=st.integers(0, 2**16), values_expanded=st.booleans())
def test_slice_scatter_fuzz(backend, data, t_seed, values_expanded):
    x, s, _ = data
    x = x.clone() if x.stride(0) == 0 else x  # a stride-0 tensor cannot be written in place
    B, C, H, W = x.shape
    g = torch.Generator().manual_seed(t_seed)
    t = torch.randint(0, s * s, (B,), generator=g)
    vals = torch.randint(0, 100, (B, C, H // s, W // s), generator=g).to(x.dtype)
    if values_expanded and B > 0:
        vals = vals[:1].expand_as(vals)
    want = x.clone()
    sk.slice_scatter_ref_(want, vals, s, t)
    sk.slice_scatter_(x, vals, s, t, backend=backend)
    assert torch.equal(x, want)


@st.composite
def convs(draw):
    g = draw(st.sampled_from([1, 1, 2, 3]))
    mt = draw(st.sampled_from(["A", "B", "V"] if g == 1 else ["A", "B"]))
    ci, co = g * draw(st.sampled_from([1, 2, 3])), g * draw(st.sampled_from([1, 2, 4]))
    k = draw(st.sampled_from([1, 3, 5]))
    B, H, W = draw(st.sampled_from([0, 1, 2])), draw(SIZES), draw(SIZES)
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    x = _lay(torch.randn(B, ci, H, W, dtype=dtype), draw(LAYOUT))
    w = torch.randn(co, ci, k, k, dtype=dtype) / (ci * k)
    b = torch.randn(co, dtype=dtype) if draw(st.booleans()) else None
    return x, w, b, mt, g


@pytest.mark.parametrize("backend", cpu_backends())
@given(case=convs())
def test_masked_conv2d_fuzz(backend, case):
    x, w, b, mt, g = case
    out = sk.masked_conv2d(x, w, b, mt, g, backend=backend)
    ref = sk.masked_conv2d_ref(x, w, b, mt, g)
    b64 = None if b is None else b.double()
    assert_close_to_ref(out, ref, sk.masked_conv2d_ref(x.double(), w.double(), b64, mt, g))


@pytest.mark.parametrize("backend", cpu_backends())
@given(case=convs(), pos=st.tuples(st.integers(0, 10), st.integers(0, 10)), write=st.booleans())
def test_masked_conv2d_step_fuzz(backend, case, pos, write):
    x, w, b, mt, g = case
    B, ci, H, W = x.shape
    row, col = pos[0] % H, pos[1] % W
    cache = x.contiguous().clone()
    cache_ref = cache.clone()
    x_new = None
    if write:
        x_new = torch.randn((B, ci, W) if mt == "V" else (B, ci), dtype=x.dtype)
    out = sk.masked_conv2d_step(cache, x_new, w, b, row, col, mt, g, backend=backend)
    ref = sk.masked_conv2d_step_ref(cache_ref, x_new, w, b, row, col, mt, g)
    assert torch.equal(cache, cache_ref)
    full = sk.masked_conv2d_ref(cache_ref.double(), w.double(), None if b is None else b.double(), mt, g)
    ref64 = full[:, :, row] if mt == "V" else full[:, :, row, col]
    assert_close_to_ref(out, ref, ref64)


@st.composite
def bad_subscale_calls(draw):
    s = draw(st.sampled_from([2, 3, 5]))
    H = draw(st.integers(1, 12).filter(lambda v: v % s != 0))
    return torch.zeros(1, 1, H, s * 2, dtype=torch.uint8), s


@pytest.mark.parametrize("backend", cpu_backends())
@given(call=bad_subscale_calls(), op=st.sampled_from(["split", "context", "scatter"]))
def test_invalid_shapes_raise(backend, call, op):
    x, s = call
    with pytest.raises(ValueError, match="divisible by s"):
        if op == "split":
            sk.subscale_split(x, s, backend=backend)
        elif op == "context":
            sk.slice_context(x, s, 0, backend=backend)
        else:
            sk.slice_scatter_(x, torch.zeros(1, 1, 1, 2, dtype=torch.uint8), s, 0, backend=backend)


@pytest.mark.parametrize("backend", cpu_backends())
@given(k=st.sampled_from([2, 4, 6]), mt=st.sampled_from(["A", "B", "V", "a", "", "AB"]))
def test_invalid_conv_raises(backend, k, mt):
    with pytest.raises(ValueError):
        sk.masked_conv2d(torch.zeros(1, 2, 5, 5), torch.zeros(2, 2, k, k), None, mt, backend=backend)
