"""slice_scatter_: every backend writes exactly the slice the reference writes, in place and in x's own layout,
the input checks, the registrations (opcheck, torch.compile), the Triton kernel's own configurations, and the
CUDA C++ kernel (marked gpu)."""

from __future__ import annotations

import pytest
import torch

import spn_kernels as sk
from tests.helpers import CUDA_SLICE_CASES, HALF, LAYOUTS, SLICE_SHAPES, cuda_image, layout, slice_image, views


@pytest.mark.parametrize("shape", SLICE_SHAPES.values(), ids=SLICE_SHAPES.keys())
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.float32], ids=str)
@pytest.mark.parametrize("kind", LAYOUTS)
def test_slice_scatter(backend, shape, dtype, kind):
    B, C, H, W, s = shape
    x = layout(slice_image(shape, dtype), kind)
    vals = slice_image((B, C, H // s, W // s, 1), dtype)
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
    ids=["scatter-values-shape", "scatter-t-range", "scatter-dtype"],
)
def test_bad_input(backend, call, match):
    with pytest.raises(ValueError, match=match):
        call(backend)


def test_torch_ops_direct_bad_input_raises():
    """Calling torch.ops.spn.slice_scatter_ directly (no Python checks in front) still raises, never crashes."""
    with pytest.raises((ValueError, RuntimeError)):
        torch.ops.spn.slice_scatter_(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 2, 2), 2, torch.tensor([0, 4]))


def test_opcheck():
    x = torch.randint(0, 256, (2, 3, 6, 6), dtype=torch.uint8)
    t = torch.tensor([0, 7])
    vals = torch.randint(0, 256, (2, 3, 2, 2), dtype=torch.uint8)
    torch.library.opcheck(torch.ops.spn.slice_scatter_.default, (x.clone(), vals, 3, t))


def test_compile_fullgraph():
    def f(x, vals, t):
        y = x.clone()
        sk.slice_scatter_(y, vals, 2, t)
        return y.sum()

    x = torch.randint(0, 256, (2, 3, 8, 8))
    vals = sk.subscale_split_ref(x, 2)[:, 3]
    t = torch.tensor([1, 2])
    assert torch.equal(torch.compile(f, fullgraph=True, backend="aot_eager")(x, vals, t), f(x, vals, t))


@pytest.mark.parametrize("dtype", [torch.bool, torch.int8, torch.bfloat16, torch.float16, torch.complex64], ids=str)
def test_cpu_any_dtype(dtype):
    """The C++ kernel moves elements of any dtype (it dispatches on the element size)."""
    x = torch.randn(2, 3, 6, 6).to(dtype) if dtype != torch.complex64 else torch.randn(2, 3, 6, 6, dtype=dtype)
    out = sk.subscale_split_ref(x, 3)
    t = torch.tensor([2, 8])
    want, got = x.clone(), x.clone()
    sk.slice_scatter_ref_(want, out[:, 0], 3, t)
    sk.slice_scatter_(got, out[:, 0], 3, t, backend="cpu")
    assert torch.equal(got, want)


# ---------------------------------------------------------------- Triton
@pytest.mark.triton
@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_triton_half(dtype):
    x = torch.randn(2, 3, 8, 12).to(dtype)
    out = sk.subscale_split_ref(x, 4)
    t = torch.tensor([5, 0])
    y, y_ref = x.clone(), x.clone()
    sk.slice_scatter_(y, out[:, 3], 4, t, backend="triton")
    sk.slice_scatter_ref_(y_ref, out[:, 3], 4, t)
    assert torch.equal(y, y_ref)


@pytest.mark.triton
def test_triton_gpu_config_multiblock():
    """The GPU configuration under the interpreter: larger than one tile in every dimension."""
    from spn_kernels.ops.slice_scatter_ import triton as tr

    x = torch.randint(0, 256, (2, 3, 96, 104), dtype=torch.uint8)
    t = torch.tensor([3, 16])
    for s in (4, 8):
        out = sk.subscale_split_ref(x, s)
        y, y_ref = x.clone(), x.clone()
        tr.slice_scatter_(y, out[:, 1], s, t.clamp(max=s * s - 1), "gpu")
        sk.slice_scatter_ref_(y_ref, out[:, 1], s, t.clamp(max=s * s - 1))
        assert torch.equal(y, y_ref)


@pytest.mark.triton
def test_triton_ignores_out_of_range_t():
    """Only reachable through the raw op (the public function checks t): no write, not out of bounds."""
    from spn_kernels.ops.slice_scatter_ import triton  # noqa: F401  (registers torch.ops.spn_triton.slice_scatter_)

    x = torch.zeros(1, 1, 4, 4)
    torch.ops.spn_triton.slice_scatter_(x, torch.ones(1, 1, 2, 2), 2, torch.tensor([4]))
    assert x.eq(0).all()


@pytest.mark.triton
def test_triton_opcheck():
    from spn_kernels.ops.slice_scatter_ import triton  # noqa: F401  (registers torch.ops.spn_triton.slice_scatter_)

    x = torch.randint(0, 256, (2, 3, 6, 6), dtype=torch.uint8)
    vals = torch.randint(0, 256, (2, 3, 2, 2)).byte()
    torch.library.opcheck(torch.ops.spn_triton.slice_scatter_.default, (x.clone(), vals, 3, torch.tensor([0, 7])))


@pytest.mark.triton
def test_triton_compile_fullgraph():
    def f(img, vals, t):
        y = img.clone()
        sk.slice_scatter_(y, vals, 2, t, backend="triton")
        return y

    img = torch.randint(0, 256, (2, 3, 8, 8))
    vals = sk.subscale_split_ref(img, 2)[:, 3]
    t = torch.tensor([1, 2])
    torch.testing.assert_close(torch.compile(f, fullgraph=True, backend="aot_eager")(img, vals, t), f(img, vals, t))


# ---------------------------------------------------------------- CUDA C++ (backend="cuda")
@pytest.mark.gpu
@pytest.mark.parametrize("case", CUDA_SLICE_CASES.values(), ids=CUDA_SLICE_CASES.keys())
def test_cuda(case):
    B, C, H, W, s, dtype = case
    x = cuda_image(B, C, H, W, dtype)
    values = cuda_image(B, C, H // s, W // s, dtype)
    t = torch.randint(0, s * s, (B,), device="cuda")
    want = x.clone()
    sk.slice_scatter_ref_(want, values, s, t)
    for name in ("contiguous", "channels_last", "strided"):
        for vname, vals in views(values).items():
            target = views(x.clone())[name]
            sk.slice_scatter_(target, vals, s, t, backend="cuda")
            assert torch.equal(target, want), (name, vname)
