"""subscale_split, subscale_merge, slice_context, slice_scatter_: every backend against the references,
and the references against an independent numpy implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import spn_kernels as sk
from tests.helpers import LAYOUTS, layout

# (B, C, H, W, s) with readable ids
SHAPES = {
    "b1-c1-4x4-s2": (1, 1, 4, 4, 2),
    "b2-c3-6x6-s3": (2, 3, 6, 6, 3),
    "b3-c3-8x8-s1": (3, 3, 8, 8, 1),
    "b1-c5-14x21-s7": (1, 5, 14, 21, 7),
    "b2-c2-10x6-s2": (2, 2, 10, 6, 2),
    "b4-c3-16x16-s4": (4, 3, 16, 16, 4),
    "b1-c1-13x13-s13": (1, 1, 13, 13, 13),
}
DTYPES = [torch.uint8, torch.int16, torch.int32, torch.int64, torch.float32, torch.float64]


def _np_split(x: np.ndarray, s: int) -> np.ndarray:
    B, C, H, W = x.shape
    out = np.empty((B, s * s, C, H // s, W // s), dtype=x.dtype)
    for i in range(s):
        for j in range(s):
            out[:, i * s + j] = x[:, :, i::s, j::s]
    return out


def _image(shape, dtype, bits=8):
    B, C, H, W, _ = shape
    if dtype.is_floating_point:
        return torch.randn(B, C, H, W, dtype=dtype)
    return torch.randint(0, 2**bits, (B, C, H, W), dtype=dtype)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_reference_split_matches_numpy(shape):
    x = _image(shape, torch.int64)
    np.testing.assert_array_equal(sk.subscale_split_ref(x, shape[-1]).numpy(), _np_split(x.numpy(), shape[-1]))


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", LAYOUTS)
def test_split_merge(backend, shape, dtype, kind):
    s = shape[-1]
    x = layout(_image(shape, dtype), kind)
    out = sk.subscale_split(x, s, backend=backend)
    assert out.is_contiguous() and out.dtype == dtype
    np.testing.assert_array_equal(out.numpy(), _np_split(x.contiguous().numpy(), s))
    back = sk.subscale_merge(out, backend=backend)
    assert torch.equal(back, x)
    # merge of a non-contiguous stack
    back2 = sk.subscale_merge(out.transpose(3, 4).contiguous().transpose(3, 4), backend=backend)
    assert torch.equal(back2, x)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32, torch.int64], ids=str)
@pytest.mark.parametrize("kind", LAYOUTS)
def test_slice_context(backend, shape, dtype, kind):
    B, C, H, W, s = shape
    bits = 5
    x = layout(_image(shape, dtype, bits), kind)
    t = torch.randint(0, s * s + 1, (B,))
    out = sk.slice_context(x, s, t, bits, backend=backend)
    ref = sk.slice_context_ref(x.contiguous(), s, t, bits)
    assert out.dtype == torch.float32 and out.shape == (B, s * s * (C + 1), H // s, W // s)
    assert torch.equal(out, ref)  # the scaling is exact in float32
    # numpy, independently
    sl = _np_split(x.contiguous().numpy().astype(np.int64), s)
    for b in range(B):
        for k in range(s * s):
            seen = k < int(t[b])
            vals = out[b, k * (C + 1) : k * (C + 1) + C].numpy()
            want = (2 * sl[b, k] + 1) / 2**bits - 1 if seen else np.zeros_like(vals)
            np.testing.assert_array_equal(vals, want.astype(np.float32))
            assert (out[b, k * (C + 1) + C] == float(seen)).all()


@pytest.mark.parametrize("t", [0, 1, 3, 4])
def test_slice_context_int_t_and_bits(backend, t):
    x = torch.randint(0, 2**16, (2, 3, 4, 4), dtype=torch.int32)
    out = sk.slice_context(x, 2, t, bits=16, backend=backend)
    ref = sk.slice_context_ref(x, 2, torch.full((2,), t), 16)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.float32], ids=str)
@pytest.mark.parametrize("kind", LAYOUTS)
def test_slice_scatter(backend, shape, dtype, kind):
    B, C, H, W, s = shape
    x = layout(_image(shape, dtype), kind)
    vals = _image((B, C, H // s, W // s, 1), dtype)
    t = torch.randint(0, s * s, (B,))
    want = x.clone()
    sk.slice_scatter_ref_(want, vals, s, t)
    got = x.clone() if kind == "contiguous" else x
    out = sk.slice_scatter_(got, vals, s, t, backend=backend)
    assert out is got and torch.equal(got, want)
    # the written slice is exactly values, everything else unchanged
    split = sk.subscale_split_ref(got.contiguous(), s)
    assert torch.equal(split[torch.arange(B), t], vals)


def test_slice_scatter_int_t(backend):
    x = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    sk.slice_scatter_(x, torch.full((2, 1, 2, 2), 7, dtype=torch.uint8), 2, 3, backend=backend)
    assert x[:, :, 1::2, 1::2].eq(7).all() and x.sum() == 7 * 8


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda b: sk.subscale_split(torch.zeros(1, 1, 5, 4), 2, backend=b), "divisible by s=2"),
        (lambda b: sk.subscale_split(torch.zeros(1, 1, 4, 4), 0, backend=b), "s must be >= 1"),
        (lambda b: sk.subscale_split(torch.zeros(1, 4, 4), 2, backend=b), r"x must be 4-D"),
        (lambda b: sk.subscale_merge(torch.zeros(1, 3, 1, 2, 2), backend=b), "square"),
        (lambda b: sk.subscale_merge(torch.zeros(1, 4, 2, 2), backend=b), "slices must be 5-D"),
        (
            lambda b: sk.slice_context(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), 2, 5, backend=b),
            r"t must be in \[0, 4\]",
        ),
        (
            lambda b: sk.slice_context(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), 2, torch.tensor([0, -1]), backend=b),
            r"t must be in \[0, 4\]",
        ),
        (
            lambda b: sk.slice_context(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), 2, torch.tensor([0]), backend=b),
            r"t must have shape \[B\]",
        ),
        (lambda b: sk.slice_context(torch.zeros(2, 1, 4, 4), 2, 0, backend=b), "integer image"),
        (lambda b: sk.slice_context(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), 2, 0, bits=17, backend=b), "bits"),
        (
            lambda b: sk.slice_scatter_(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 2, 3), 2, 0, backend=b),
            r"values must have shape \(2, 1, 2, 2\)",
        ),
        (
            lambda b: sk.slice_scatter_(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 2, 2), 2, 4, backend=b),
            r"t must be in \[0, 3\]",
        ),
        (
            lambda b: sk.slice_scatter_(
                torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 2, 2, dtype=torch.float64), 2, 0, backend=b
            ),
            "dtype",
        ),
    ],
    ids=[
        "split-indivisible",
        "split-s0",
        "split-rank",
        "merge-not-square",
        "merge-rank",
        "ctx-t-int-range",
        "ctx-t-tensor-range",
        "ctx-t-shape",
        "ctx-float-image",
        "ctx-bits",
        "scatter-values-shape",
        "scatter-t-range",
        "scatter-dtype",
    ],
)
def test_bad_input(backend, call, match):
    with pytest.raises(ValueError, match=match):
        call(backend)


@pytest.mark.parametrize("op", ["split", "merge", "context", "scatter"])
def test_torch_ops_direct_bad_input_raises(op):
    """Calling torch.ops.spn.* directly (no Python checks in front) still raises, never crashes."""
    with pytest.raises((ValueError, RuntimeError)):
        if op == "split":
            torch.ops.spn.subscale_split(torch.zeros(1, 1, 5, 4), 2)
        elif op == "merge":
            torch.ops.spn.subscale_merge(torch.zeros(1, 3, 1, 2, 2))
        elif op == "context":
            torch.ops.spn.slice_context(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), 2, torch.tensor([0, 9]), 8)
        else:
            torch.ops.spn.slice_scatter_(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 2, 2), 2, torch.tensor([0, 4]))


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend must be None or one of"):
        sk.subscale_split(torch.zeros(1, 1, 4, 4), 2, backend="tpu")


def test_opcheck():
    x = torch.randint(0, 256, (2, 3, 6, 6), dtype=torch.uint8)
    t = torch.tensor([0, 7])
    torch.library.opcheck(torch.ops.spn.subscale_split.default, (x, 3))
    torch.library.opcheck(torch.ops.spn.subscale_merge.default, (sk.subscale_split(x, 3),))
    torch.library.opcheck(torch.ops.spn.slice_context.default, (x, 3, t, 8))
    vals = torch.randint(0, 256, (2, 3, 2, 2), dtype=torch.uint8)
    torch.library.opcheck(torch.ops.spn.slice_scatter_.default, (x.clone(), vals, 3, t))


def test_compile_fullgraph():
    def f(x, t):
        ctx = sk.slice_context(x, 2, t, 8)
        sl = sk.subscale_split(x, 2)
        y = x.clone()
        sk.slice_scatter_(y, sl[:, 3], 2, t)
        return ctx.sum() + sk.subscale_merge(sl).sum() + y.sum()

    x = torch.randint(0, 256, (2, 3, 8, 8))
    t = torch.tensor([1, 2])
    assert torch.equal(torch.compile(f, fullgraph=True, backend="aot_eager")(x, t), f(x, t))
