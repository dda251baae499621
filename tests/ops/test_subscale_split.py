"""subscale_split: the reference against an independent numpy implementation, every backend against both, the
input checks, the registrations (opcheck, torch.compile), the Triton kernel's own configurations, and the CUDA
C++ kernel (marked gpu)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import spn_kernels as sk
from tests.helpers import (
    CUDA_SLICE_CASES,
    HALF,
    LAYOUTS,
    SLICE_DTYPES,
    SLICE_SHAPES,
    cuda_image,
    layout,
    np_split,
    slice_image,
    views,
)


@pytest.mark.parametrize("shape", SLICE_SHAPES.values(), ids=SLICE_SHAPES.keys())
def test_reference_split_matches_numpy(shape):
    x = slice_image(shape, torch.int64)
    np.testing.assert_array_equal(sk.subscale_split_ref(x, shape[-1]).numpy(), np_split(x.numpy(), shape[-1]))


@pytest.mark.parametrize("shape", SLICE_SHAPES.values(), ids=SLICE_SHAPES.keys())
@pytest.mark.parametrize("dtype", SLICE_DTYPES, ids=str)
@pytest.mark.parametrize("kind", LAYOUTS)
def test_split(backend, shape, dtype, kind):
    s = shape[-1]
    x = layout(slice_image(shape, dtype), kind)
    out = sk.subscale_split(x, s, backend=backend)
    assert out.is_contiguous() and out.dtype == dtype
    np.testing.assert_array_equal(out.numpy(), np_split(x.contiguous().numpy(), s))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda b: sk.subscale_split(torch.zeros(1, 1, 5, 4), 2, backend=b), "divisible by s=2"),
        (lambda b: sk.subscale_split(torch.zeros(1, 1, 4, 4), 0, backend=b), "s must be >= 1"),
        (lambda b: sk.subscale_split(torch.zeros(1, 4, 4), 2, backend=b), r"x must be 4-D"),
    ],
    ids=["split-indivisible", "split-s0", "split-rank"],
)
def test_bad_input(backend, call, match):
    with pytest.raises(ValueError, match=match):
        call(backend)


def test_torch_ops_direct_bad_input_raises():
    """Calling torch.ops.spn.subscale_split directly (no Python checks in front) still raises, never crashes."""
    with pytest.raises((ValueError, RuntimeError)):
        torch.ops.spn.subscale_split(torch.zeros(1, 1, 5, 4), 2)


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend must be None or one of"):
        sk.subscale_split(torch.zeros(1, 1, 4, 4), 2, backend="tpu")


def test_opcheck():
    x = torch.randint(0, 256, (2, 3, 6, 6), dtype=torch.uint8)
    torch.library.opcheck(torch.ops.spn.subscale_split.default, (x, 3))


def test_compile_fullgraph():
    def f(x):
        return sk.subscale_split(x, 2).sum()

    x = torch.randint(0, 256, (2, 3, 8, 8))
    assert torch.equal(torch.compile(f, fullgraph=True, backend="aot_eager")(x), f(x))


@pytest.mark.parametrize("dtype", [torch.bool, torch.int8, torch.bfloat16, torch.float16, torch.complex64], ids=str)
def test_cpu_any_dtype(dtype):
    """The C++ kernel moves elements of any dtype (it dispatches on the element size)."""
    x = torch.randn(2, 3, 6, 6).to(dtype) if dtype != torch.complex64 else torch.randn(2, 3, 6, 6, dtype=dtype)
    out = sk.subscale_split(x, 3, backend="cpu")
    assert torch.equal(out, sk.subscale_split_ref(x, 3))


# ---------------------------------------------------------------- Triton
@pytest.mark.triton
@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_triton_half(dtype):
    x = torch.randn(2, 3, 8, 12).to(dtype)
    out = sk.subscale_split(x, 4, backend="triton")
    assert torch.equal(out, sk.subscale_split_ref(x, 4))


@pytest.mark.triton
def test_triton_gpu_config_multiblock():
    """The GPU configuration under the interpreter: larger than one tile in every dimension."""
    from spn_kernels.ops.subscale_split import triton as tr

    x = torch.randint(0, 256, (2, 3, 96, 104), dtype=torch.uint8)
    for s in (4, 8):
        assert torch.equal(tr.subscale_split(x, s, "gpu"), sk.subscale_split_ref(x, s))


@pytest.mark.triton
def test_triton_opcheck():
    from spn_kernels.ops.subscale_split import triton  # noqa: F401  (registers torch.ops.spn_triton.subscale_split)

    x = torch.randint(0, 256, (2, 3, 6, 6), dtype=torch.uint8)
    torch.library.opcheck(torch.ops.spn_triton.subscale_split.default, (x, 3))


@pytest.mark.triton
def test_triton_compile_fullgraph():
    def f(img):
        return sk.subscale_split(img, 2, backend="triton")

    img = torch.randint(0, 256, (2, 3, 8, 8))
    torch.testing.assert_close(torch.compile(f, fullgraph=True, backend="aot_eager")(img), f(img))


# ---------------------------------------------------------------- CUDA C++ (backend="cuda")
@pytest.mark.gpu
@pytest.mark.parametrize("case", CUDA_SLICE_CASES.values(), ids=CUDA_SLICE_CASES.keys())
def test_cuda(case):
    B, C, H, W, s, dtype = case
    x = cuda_image(B, C, H, W, dtype)
    ref = sk.subscale_split_ref(x, s)
    for name, v in views(x).items():
        out = sk.subscale_split(v, s, backend="cuda")
        assert out.is_contiguous() and torch.equal(out, ref), name


@pytest.mark.gpu
def test_cuda_backend_none_uses_cuda_kernel():
    x = cuda_image(2, 3, 64, 64, torch.uint8)
    assert torch.equal(sk.subscale_split(x, 4), sk.subscale_split_ref(x, 4))


@pytest.mark.gpu
def test_cuda_bad_input_names_argument():
    x = cuda_image(2, 3, 8, 8, torch.uint8)
    with pytest.raises(ValueError, match="divisible by s=3"):
        torch.ops.spn.subscale_split(x, 3)
