"""The CUDA C++ kernels (csrc/cuda, backend="cuda") against the references, on a GPU.

Skipped only where there is no GPU. With a GPU, an extension built without its CUDA kernels fails
test_cuda_kernels_registered (rebuild with `pip install --no-build-isolation -e .` under a CUDA torch).
Cases are chosen to hit both code paths of split/merge: the vectorised one (contiguous, W divisible by
s * 16 / element size, s in {2, 4, 8}) and the strided one (everything else).
"""

from __future__ import annotations

import pytest
import torch

import spn_kernels as sk
from tests.helpers import assert_close_to_ref

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA_OPS = ("subscale_split", "subscale_merge", "slice_context", "slice_scatter_", "masked_conv2d_step")
DEV = "cuda"

# (B, C, H, W, s, dtype)
SLICE_CASES = {
    "vec-u8-s4": (2, 3, 64, 64, 4, torch.uint8),
    "vec-u8-s8": (1, 3, 128, 256, 8, torch.uint8),
    "vec-i16-s2": (2, 2, 8, 32, 2, torch.int16),
    "vec-f32-s4": (3, 1, 16, 16, 4, torch.float32),
    "vec-i64-s8": (1, 2, 16, 16, 8, torch.int64),
    "generic-u8-s4-small": (2, 3, 16, 16, 4, torch.uint8),
    "generic-i32-s3": (1, 5, 12, 9, 3, torch.int32),
    "generic-u8-s1": (2, 1, 5, 7, 1, torch.uint8),
    "generic-c128-s2": (1, 2, 4, 6, 2, torch.complex128),
}


def _image(B, C, H, W, dtype, hi=256):
    if dtype.is_floating_point or dtype.is_complex:
        return torch.randn(B, C, H, W, dtype=dtype, device=DEV)
    return torch.randint(0, hi, (B, C, H, W), device=DEV).to(dtype)


def _views(x):
    """x itself, channels_last, and a strided view along W."""
    wide = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype, device=x.device)
    wide[..., ::2] = x
    return {
        "contiguous": x,
        "channels_last": x.contiguous(memory_format=torch.channels_last),
        "strided": wide[..., ::2],
    }


def test_cuda_kernels_registered():
    for op in CUDA_OPS:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"spn::{op}", "CUDA"), op


@pytest.mark.parametrize("case", SLICE_CASES.values(), ids=SLICE_CASES.keys())
def test_split_merge(case):
    B, C, H, W, s, dtype = case
    x = _image(B, C, H, W, dtype)
    ref = sk.subscale_split_ref(x, s)
    for name, v in _views(x).items():
        out = sk.subscale_split(v, s, backend="cuda")
        assert out.is_contiguous() and torch.equal(out, ref), name
    for name, v in _views(ref.flatten(0, 1)).items():
        back = sk.subscale_merge(v.unflatten(0, (B, s * s)), backend="cuda")
        assert back.is_contiguous() and torch.equal(back, x), name


@pytest.mark.parametrize(
    "dtype, bits",
    [(torch.uint8, 8), (torch.uint8, 5), (torch.int16, 15), (torch.int32, 12), (torch.int64, 16)],
    ids=str,
)
@pytest.mark.parametrize("shape", [(3, 3, 32, 32, 4), (2, 2, 12, 6, 2), (1, 1, 9, 9, 3)], ids=str)
def test_slice_context(shape, dtype, bits):
    B, C, H, W, s = shape
    x = _image(B, C, H, W, dtype, hi=2**bits)
    t = torch.randint(0, s * s + 1, (B,), device=DEV)
    t[0] = s * s  # every slice present
    ref = sk.slice_context_ref(x, s, t, bits)
    for name, v in _views(x).items():
        out = sk.slice_context(v, s, t, bits, backend="cuda")
        assert torch.equal(out, ref), name  # exact: the scaling is exact in float32


@pytest.mark.parametrize("case", SLICE_CASES.values(), ids=SLICE_CASES.keys())
def test_slice_scatter(case):
    B, C, H, W, s, dtype = case
    x = _image(B, C, H, W, dtype)
    values = _image(B, C, H // s, W // s, dtype)
    t = torch.randint(0, s * s, (B,), device=DEV)
    want = x.clone()
    sk.slice_scatter_ref_(want, values, s, t)
    for name in ("contiguous", "channels_last", "strided"):
        for vname, vals in _views(values).items():
            target = _views(x.clone())[name]
            sk.slice_scatter_(target, vals, s, t, backend="cuda")
            assert torch.equal(target, want), (name, vname)


# (B, C_in, C_out, H, W, k, mask_type, color_groups)
STEP_CASES = {
    "b16-128to128-k5-B": (16, 128, 128, 6, 8, 5, "B", 1),
    "b1-3to8-k3-A": (1, 3, 8, 5, 5, 3, "A", 1),
    "b5-6to9-k5-A-g3": (5, 6, 9, 7, 5, 5, "A", 3),
    "b6-6to6-k7-B-g3": (6, 6, 6, 9, 9, 7, "B", 3),
    "b2-16to16-k1-B": (2, 16, 16, 4, 4, 1, "B", 1),
    "b3-4to5-k5-V": (3, 4, 5, 6, 11, 5, "V", 1),
    "b1-2to2-k3-V-1x1": (1, 2, 2, 1, 1, 3, "V", 1),
}
STEP_DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]


def _positions(H, W, mt):
    """Corners, edges and the middle."""
    cols = [0] if mt == "V" else sorted({0, W // 2, W - 1})
    return [(r, c) for r in sorted({0, H // 2, H - 1}) for c in cols]


@pytest.mark.parametrize("dtype", STEP_DTYPES, ids=str)
@pytest.mark.parametrize("case", STEP_CASES.values(), ids=STEP_CASES.keys())
def test_step(case, dtype):
    B, ci, co, H, W, k, mt, g = case
    x = torch.randn(B, ci, H, W, device=DEV, dtype=torch.float64)
    w = torch.randn(co, ci, k, k, device=DEV, dtype=torch.float64) / (ci * k)
    b = torch.randn(co, device=DEV, dtype=torch.float64)
    for row, col in _positions(H, W, mt):
        x_new = x[:, :, row] if mt == "V" else x[:, :, row, col]
        for use_new, bias in [(True, b), (False, None)]:
            cache = x.clone()
            if use_new:
                cache[:, :, row] = 0  # the step must write x_new before reading it
            new = x_new if use_new else None
            c_k, c_r = cache.to(dtype, copy=True), cache.to(dtype, copy=True)
            args = (w.to(dtype), None if bias is None else bias.to(dtype), row, col, mt, g)
            out = sk.masked_conv2d_step(c_k, None if new is None else new.to(dtype), *args, backend="cuda")
            ref = sk.masked_conv2d_step_ref(c_r, None if new is None else new.to(dtype), *args)
            ref64 = sk.masked_conv2d_step_ref(cache.clone(), new, w, bias, row, col, mt, g)
            assert torch.equal(c_k, c_r), (row, col, use_new)
            if dtype == torch.float64:
                # no wider oracle: float64 against float64 in another summation order
                torch.testing.assert_close(out, ref)
            else:
                assert_close_to_ref(out, ref, ref64)


def test_step_noncontiguous():
    x = torch.randn(4, 6, 7, 9, device=DEV)
    w = torch.randn(8, 6, 5, 5, device=DEV)
    cache = x.contiguous(memory_format=torch.channels_last)
    cache_ref = x.clone()
    x_new = torch.randn(6, 4, device=DEV).t()  # strided [B, C_in]
    w_strided = w.transpose(2, 3).contiguous().transpose(2, 3)
    out = sk.masked_conv2d_step(cache, x_new, w_strided, None, 3, 8, "B", backend="cuda")
    ref = sk.masked_conv2d_step_ref(cache_ref, x_new, w, None, 3, 8, "B")
    ref64 = sk.masked_conv2d_step_ref(x.double().clone(), x_new.double(), w.double(), None, 3, 8, "B")
    assert torch.equal(cache, cache_ref)
    assert_close_to_ref(out, ref, ref64)


def test_backend_none_uses_cuda_kernel():
    x = _image(2, 3, 64, 64, torch.uint8)
    assert torch.equal(sk.subscale_split(x, 4), sk.subscale_split_ref(x, 4))


def test_bad_input_names_argument():
    x = _image(2, 3, 8, 8, torch.uint8)
    with pytest.raises(ValueError, match="divisible by s=3"):
        torch.ops.spn.subscale_split(x, 3)
    with pytest.raises(ValueError, match="x_new must have shape"):
        torch.ops.spn.masked_conv2d_step(
            torch.zeros(2, 3, 5, 5, device=DEV), torch.zeros(2, 4, device=DEV), torch.zeros(4, 3, 3, 3, device=DEV),
            None, 0, 0, "B", 1,
        )  # fmt: skip
