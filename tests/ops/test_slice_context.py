"""slice_context: every backend against the reference and an independent numpy computation, bit for bit (the
scaling is exact in float32), the input checks, the registrations (opcheck, torch.compile), the Triton kernel's
own configurations, and the CUDA C++ kernel (marked gpu)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import spn_kernels as sk
from tests.helpers import LAYOUTS, SLICE_SHAPES, cuda_image, layout, np_split, slice_image, views


@pytest.mark.parametrize("shape", SLICE_SHAPES.values(), ids=SLICE_SHAPES.keys())
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32, torch.int64], ids=str)
@pytest.mark.parametrize("kind", LAYOUTS)
def test_slice_context(backend, shape, dtype, kind):
    B, C, H, W, s = shape
    bits = 5
    x = layout(slice_image(shape, dtype, bits), kind)
    t = torch.randint(0, s * s + 1, (B,))
    out = sk.slice_context(x, s, t, bits, backend=backend)
    ref = sk.slice_context_ref(x.contiguous(), s, t, bits)
    assert out.dtype == torch.float32 and out.shape == (B, s * s * (C + 1), H // s, W // s)
    assert torch.equal(out, ref)  # the scaling is exact in float32
    # numpy, independently
    sl = np_split(x.contiguous().numpy().astype(np.int64), s)
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


@pytest.mark.parametrize(
    "call, match",
    [
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
    ],
    ids=["ctx-t-int-range", "ctx-t-tensor-range", "ctx-t-shape", "ctx-float-image", "ctx-bits"],
)
def test_bad_input(backend, call, match):
    with pytest.raises(ValueError, match=match):
        call(backend)


def test_torch_ops_direct_bad_input_raises():
    """Calling torch.ops.spn.slice_context directly (no Python checks in front) still raises, never crashes."""
    with pytest.raises((ValueError, RuntimeError)):
        torch.ops.spn.slice_context(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), 2, torch.tensor([0, 9]), 8)


def test_opcheck():
    x = torch.randint(0, 256, (2, 3, 6, 6), dtype=torch.uint8)
    t = torch.tensor([0, 7])
    torch.library.opcheck(torch.ops.spn.slice_context.default, (x, 3, t, 8))


def test_compile_fullgraph():
    def f(x, t):
        return sk.slice_context(x, 2, t, 8).sum()

    x = torch.randint(0, 256, (2, 3, 8, 8))
    t = torch.tensor([1, 2])
    assert torch.equal(torch.compile(f, fullgraph=True, backend="aot_eager")(x, t), f(x, t))


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16], ids=str)
def test_cpu_signed_small_ints(dtype):
    x = torch.randint(0, 100, (3, 2, 8, 8), dtype=dtype)
    t = torch.tensor([0, 2, 4])
    assert torch.equal(sk.slice_context(x, 2, t, 7, backend="cpu"), sk.slice_context_ref(x, 2, t, 7))


# ---------------------------------------------------------------- Triton
@pytest.mark.triton
def test_triton_gpu_config_multiblock():
    """The GPU configuration under the interpreter: larger than one tile in every dimension."""
    from spn_kernels.ops.slice_context import triton as tr

    x = torch.randint(0, 256, (2, 3, 96, 104), dtype=torch.uint8)
    t = torch.tensor([3, 16])
    for s in (4, 8):
        assert torch.equal(tr.slice_context(x, s, t, 8, "gpu"), sk.slice_context_ref(x, s, t, 8))


@pytest.mark.triton
def test_triton_opcheck():
    from spn_kernels.ops.slice_context import triton  # noqa: F401  (registers torch.ops.spn_triton.slice_context)

    x = torch.randint(0, 256, (2, 3, 6, 6), dtype=torch.uint8)
    torch.library.opcheck(torch.ops.spn_triton.slice_context.default, (x, 3, torch.tensor([0, 7]), 8))


@pytest.mark.triton
def test_triton_compile_fullgraph():
    def f(img, t):
        return sk.slice_context(img, 2, t, 8, backend="triton")

    img = torch.randint(0, 256, (2, 3, 8, 8))
    t = torch.tensor([1, 2])
    torch.testing.assert_close(torch.compile(f, fullgraph=True, backend="aot_eager")(img, t), f(img, t))


# ---------------------------------------------------------------- CUDA C++ (backend="cuda")
@pytest.mark.gpu
@pytest.mark.parametrize(
    "dtype, bits",
    [(torch.uint8, 8), (torch.uint8, 5), (torch.int16, 15), (torch.int32, 12), (torch.int64, 16)],
    ids=str,
)
@pytest.mark.parametrize("shape", [(3, 3, 32, 32, 4), (2, 2, 12, 6, 2), (1, 1, 9, 9, 3)], ids=str)
def test_cuda(shape, dtype, bits):
    B, C, H, W, s = shape
    x = cuda_image(B, C, H, W, dtype, hi=2**bits)
    t = torch.randint(0, s * s + 1, (B,), device="cuda")
    t[0] = s * s  # every slice present
    ref = sk.slice_context_ref(x, s, t, bits)
    for name, v in views(x).items():
        out = sk.slice_context(v, s, t, bits, backend="cuda")
        assert torch.equal(out, ref), name  # exact: the scaling is exact in float32
