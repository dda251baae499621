"""subscale_merge: every backend inverts subscale_split exactly (also for a non-contiguous stack), the input
checks, the registrations (opcheck, torch.compile), the Triton kernel's own configurations, and the CUDA C++
kernel (marked gpu)."""

from __future__ import annotations

import pytest
import torch

import spn_kernels as sk
from tests.helpers import CUDA_SLICE_CASES, HALF, SLICE_DTYPES, SLICE_SHAPES, cuda_image, slice_image, views


@pytest.mark.parametrize("shape", SLICE_SHAPES.values(), ids=SLICE_SHAPES.keys())
@pytest.mark.parametrize("dtype", SLICE_DTYPES, ids=str)
def test_merge(backend, shape, dtype):
    s = shape[-1]
    x = slice_image(shape, dtype)
    out = sk.subscale_split_ref(x, s)
    back = sk.subscale_merge(out, backend=backend)
    assert torch.equal(back, x)
    # merge of a non-contiguous stack
    back2 = sk.subscale_merge(out.transpose(3, 4).contiguous().transpose(3, 4), backend=backend)
    assert torch.equal(back2, x)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda b: sk.subscale_merge(torch.zeros(1, 3, 1, 2, 2), backend=b), "square"),
        (lambda b: sk.subscale_merge(torch.zeros(1, 4, 2, 2), backend=b), "slices must be 5-D"),
    ],
    ids=["merge-not-square", "merge-rank"],
)
def test_bad_input(backend, call, match):
    with pytest.raises(ValueError, match=match):
        call(backend)


def test_torch_ops_direct_bad_input_raises():
    """Calling torch.ops.spn.subscale_merge directly (no Python checks in front) still raises, never crashes."""
    with pytest.raises((ValueError, RuntimeError)):
        torch.ops.spn.subscale_merge(torch.zeros(1, 3, 1, 2, 2))


def test_opcheck():
    x = torch.randint(0, 256, (2, 3, 6, 6), dtype=torch.uint8)
    torch.library.opcheck(torch.ops.spn.subscale_merge.default, (sk.subscale_split(x, 3),))


def test_compile_fullgraph():
    def f(sl):
        return sk.subscale_merge(sl).sum()

    sl = sk.subscale_split(torch.randint(0, 256, (2, 3, 8, 8)), 2)
    assert torch.equal(torch.compile(f, fullgraph=True, backend="aot_eager")(sl), f(sl))


@pytest.mark.parametrize("dtype", [torch.bool, torch.int8, torch.bfloat16, torch.float16, torch.complex64], ids=str)
def test_cpu_any_dtype(dtype):
    """The C++ kernel moves elements of any dtype (it dispatches on the element size)."""
    x = torch.randn(2, 3, 6, 6).to(dtype) if dtype != torch.complex64 else torch.randn(2, 3, 6, 6, dtype=dtype)
    assert torch.equal(sk.subscale_merge(sk.subscale_split_ref(x, 3), backend="cpu"), x)


# ---------------------------------------------------------------- Triton
@pytest.mark.triton
@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_triton_half(dtype):
    x = torch.randn(2, 3, 8, 12).to(dtype)
    assert torch.equal(sk.subscale_merge(sk.subscale_split_ref(x, 4), backend="triton"), x)


@pytest.mark.triton
def test_triton_gpu_config_multiblock():
    """The GPU configuration under the interpreter: larger than one tile in every dimension."""
    from spn_kernels.ops.subscale_merge import triton as tr

    x = torch.randint(0, 256, (2, 3, 96, 104), dtype=torch.uint8)
    for s in (4, 8):
        assert torch.equal(tr.subscale_merge(sk.subscale_split_ref(x, s), "gpu"), x)


@pytest.mark.triton
def test_triton_opcheck():
    from spn_kernels.ops.subscale_merge import triton  # noqa: F401  (registers torch.ops.spn_triton.subscale_merge)

    x = torch.randint(0, 256, (2, 3, 6, 6), dtype=torch.uint8)
    torch.library.opcheck(torch.ops.spn_triton.subscale_merge.default, (sk.subscale_split_ref(x, 3),))


@pytest.mark.triton
def test_triton_compile_fullgraph():
    def f(sl):
        return sk.subscale_merge(sl, backend="triton")

    sl = sk.subscale_split_ref(torch.randint(0, 256, (2, 3, 8, 8)), 2)
    torch.testing.assert_close(torch.compile(f, fullgraph=True, backend="aot_eager")(sl), f(sl))


# ---------------------------------------------------------------- CUDA C++ (backend="cuda")
@pytest.mark.gpu
@pytest.mark.parametrize("case", CUDA_SLICE_CASES.values(), ids=CUDA_SLICE_CASES.keys())
def test_cuda(case):
    B, C, H, W, s, dtype = case
    x = cuda_image(B, C, H, W, dtype)
    ref = sk.subscale_split_ref(x, s)
    for name, v in views(ref.flatten(0, 1)).items():
        back = sk.subscale_merge(v.unflatten(0, (B, s * s)), backend="cuda")
        assert back.is_contiguous() and torch.equal(back, x), name
