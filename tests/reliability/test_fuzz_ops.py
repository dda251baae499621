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
    """Every kernel shape (square, (1, k), (k//2 + 1, k), (k//2, k); k = 1 included), both colour layouts
    (interleaved with unequal groups), RGB inputs (C_in = 3 with 3 colour groups)."""
    g = draw(st.sampled_from([1, 1, 2, 3]))
    mt = draw(st.sampled_from(["A", "B", "V"] if g == 1 else ["A", "B"]))
    lay = draw(st.sampled_from(["blocked", "interleaved"])) if g > 1 else "blocked"
    if lay == "interleaved":
        ci, co = draw(st.sampled_from([1, 2, 3, 4, 5])), draw(st.sampled_from([1, 3, 4, 7]))
    else:
        ci, co = g * draw(st.sampled_from([1, 2, 3])), g * draw(st.sampled_from([1, 2, 4]))
    if g == 3 and draw(st.booleans()):
        ci = 3  # an RGB input
    kw = draw(st.sampled_from([1, 3, 5]))
    kh = draw(st.sampled_from(sorted({kw, 1, kw // 2 + 1, kw // 2} - {0})))
    B, H, W = draw(st.sampled_from([0, 1, 2])), draw(SIZES), draw(SIZES)
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    x = _lay(torch.randn(B, ci, H, W, dtype=dtype), draw(LAYOUT))
    w = torch.randn(co, ci, kh, kw, dtype=dtype) / (ci * kw)
    b = torch.randn(co, dtype=dtype) if draw(st.booleans()) else None
    return x, w, b, mt, g, lay


@pytest.mark.parametrize("backend", cpu_backends())
@given(case=convs())
def test_masked_conv2d_fuzz(backend, case):
    x, w, b, mt, g, lay = case
    out = sk.masked_conv2d(x, w, b, mt, g, color_layout=lay, backend=backend)
    ref = sk.masked_conv2d_ref(x, w, b, mt, g, color_layout=lay)
    b64 = None if b is None else b.double()
    assert_close_to_ref(out, ref, sk.masked_conv2d_ref(x.double(), w.double(), b64, mt, g, color_layout=lay))


@pytest.mark.parametrize("backend", cpu_backends())
@given(case=convs(), pos=st.tuples(st.integers(0, 10), st.integers(0, 10)), write=st.booleans())
def test_masked_conv2d_step_fuzz(backend, case, pos, write):
    x, w, b, mt, g, lay = case
    B, ci, H, W = x.shape
    row, col = pos[0] % H, pos[1] % W
    cache = x.contiguous().clone()
    cache_ref = cache.clone()
    x_new = None
    if write:
        x_new = torch.randn((B, ci, W) if mt == "V" else (B, ci), dtype=x.dtype)
    out = sk.masked_conv2d_step(cache, x_new, w, b, row, col, mt, g, color_layout=lay, backend=backend)
    ref = sk.masked_conv2d_step_ref(cache_ref, x_new, w, b, row, col, mt, g, color_layout=lay)
    assert torch.equal(cache, cache_ref)
    b64 = None if b is None else b.double()
    full = sk.masked_conv2d_ref(cache_ref.double(), w.double(), b64, mt, g, color_layout=lay)
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


@pytest.mark.parametrize("backend", cpu_backends())
@given(kw=st.sampled_from([3, 5, 7]), kh=st.integers(1, 8), lay=st.sampled_from(["blocked", "interleaved", "rgb"]))
def test_invalid_kernel_rows_raise(backend, kw, kh, lay):
    """A kernel height that is none of the allowed row sets, or an unknown layout, raises ValueError."""
    ok_rows = kh in (kw, 1, kw // 2 + 1, kw // 2)
    call = lambda: sk.masked_conv2d(  # noqa: E731
        torch.zeros(1, 2, 5, 5), torch.zeros(2, 2, kh, kw), None, "B", color_layout=lay, backend=backend
    )
    if ok_rows and lay != "rgb":
        assert call().shape == (1, 2, 5, 5)
    else:
        with pytest.raises(ValueError, match="kernel height|color_layout"):
            call()
