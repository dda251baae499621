"""Test helpers: tolerances with a reason, layouts that kernels often get wrong, and the cases the op tests
(tests/ops/test_<op>.py) share."""

from __future__ import annotations

import numpy as np
import torch


def assert_close_to_ref(out: torch.Tensor, ref: torch.Tensor, ref64: torch.Tensor, factor: float = 2.0) -> None:
    """A kernel's error against the float64 reference may be at most ``factor`` times the error of the
    same-dtype PyTorch reference, plus two ulps at the output's scale (float64 inputs have no more precise
    reference, so the reference's own error is 0 there)."""
    assert out.shape == ref64.shape and out.dtype == ref.dtype, (out.shape, out.dtype, ref64.shape, ref.dtype)
    if out.numel() == 0:
        return
    err_ref = (ref.double() - ref64).abs().max().item()
    err = (out.double() - ref64).abs().max().item()
    eps = torch.finfo(out.dtype).eps * max(ref64.abs().max().item(), 1.0)
    assert err <= factor * err_ref + 2 * eps, f"error {err:.3e} vs reference's {err_ref:.3e} (eps {eps:.1e})"


def layout(x: torch.Tensor, kind: str) -> torch.Tensor:
    """The same values as x in another memory layout: contiguous, channels_last, or a strided view."""
    if kind == "contiguous":
        return x.contiguous()
    if kind == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if kind == "noncontiguous":
        # every other element of a wider tensor along W
        wide = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype)
        wide[..., ::2] = x
        view = wide[..., ::2]
        assert not view.is_contiguous()
        return view
    raise ValueError(kind)


LAYOUTS = ["contiguous", "channels_last", "noncontiguous"]


# ---------------------------------------------------------------- the ops, for tests that cover every one
# torch.ops.spn.<name> for each: every op has a C++ CPU kernel and a Triton op torch.ops.spn_triton.<name>.
OPS = (
    "subscale_split",
    "subscale_merge",
    "slice_context",
    "slice_scatter_",
    "masked_conv2d",
    "masked_conv2d_backward",
    "masked_conv2d_step",
)
# The ops with a CUDA C++ kernel (csrc/cuda/binding.cpp's TORCH_LIBRARY_IMPL(spn, CUDA, m)).
CUDA_OPS = ("subscale_split", "subscale_merge", "slice_context", "slice_scatter_", "masked_conv2d_step")


# ---------------------------------------------------------------- slice ops
# (B, C, H, W, s) with readable ids
SLICE_SHAPES = {
    "b1-c1-4x4-s2": (1, 1, 4, 4, 2),
    "b2-c3-6x6-s3": (2, 3, 6, 6, 3),
    "b3-c3-8x8-s1": (3, 3, 8, 8, 1),
    "b1-c5-14x21-s7": (1, 5, 14, 21, 7),
    "b2-c2-10x6-s2": (2, 2, 10, 6, 2),
    "b4-c3-16x16-s4": (4, 3, 16, 16, 4),
    "b1-c1-13x13-s13": (1, 1, 13, 13, 13),
}
SLICE_DTYPES = [torch.uint8, torch.int16, torch.int32, torch.int64, torch.float32, torch.float64]


def np_split(x: np.ndarray, s: int) -> np.ndarray:
    """subscale_split in numpy, independently of the reference."""
    B, C, H, W = x.shape
    out = np.empty((B, s * s, C, H // s, W // s), dtype=x.dtype)
    for i in range(s):
        for j in range(s):
            out[:, i * s + j] = x[:, :, i::s, j::s]
    return out


def slice_image(shape, dtype, bits=8):
    """An image [B, C, H, W] for a (B, C, H, W, s) shape: normal floats, or integers in [0, 2^bits)."""
    B, C, H, W, _ = shape
    if dtype.is_floating_point:
        return torch.randn(B, C, H, W, dtype=dtype)
    return torch.randint(0, 2**bits, (B, C, H, W), dtype=dtype)


# On a GPU (tests marked gpu): cases that hit both code paths of the CUDA split/merge kernels, the vectorised
# one (contiguous, W divisible by s * 16 / element size, s in {2, 4, 8}) and the strided one (everything else).
# (B, C, H, W, s, dtype)
CUDA_SLICE_CASES = {
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


def cuda_image(B, C, H, W, dtype, hi=256):
    if dtype.is_floating_point or dtype.is_complex:
        return torch.randn(B, C, H, W, dtype=dtype, device="cuda")
    return torch.randint(0, hi, (B, C, H, W), device="cuda").to(dtype)


def views(x):
    """x itself, channels_last, and a strided view along W (on x's device)."""
    wide = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype, device=x.device)
    wide[..., ::2] = x
    return {
        "contiguous": x,
        "channels_last": x.contiguous(memory_format=torch.channels_last),
        "strided": wide[..., ::2],
    }


# ---------------------------------------------------------------- masked convolution
# (B, C_in, C_out, H, W, k, mask_type, color_groups)
# (B, C_in, C_out, H, W, kernel, mask_type, color_groups, color_layout); kernel an int k (k x k) or (kh, kw)
CONV_CASES = {
    "b1-1to1-5x5-k3-A": (1, 1, 1, 5, 5, 3, "A", 1, "blocked"),
    "b2-3to8-7x7-k3-B": (2, 3, 8, 7, 7, 3, "B", 1, "blocked"),
    "b1-4to4-11x13-k5-V": (1, 4, 4, 11, 13, 5, "V", 1, "blocked"),
    "b3-6to9-7x5-k5-A-g3": (3, 6, 9, 7, 5, 5, "A", 3, "blocked"),
    "b2-6to6-9x9-k7-B-g3": (2, 6, 6, 9, 9, 7, "B", 3, "blocked"),
    "b1-5to7-3x3-k7-B": (1, 5, 7, 3, 3, 7, "B", 1, "blocked"),
    "b2-16to16-8x8-k1-B": (2, 16, 16, 8, 8, 1, "B", 1, "blocked"),
    "b2-4to6-5x5-k1-A": (2, 4, 6, 5, 5, 1, "A", 1, "blocked"),  # no kept tap: the bias alone
    "b1-3to6-4x5-k1-A-g3": (1, 3, 6, 4, 5, 1, "A", 3, "blocked"),  # the centre tap alone, RGB
    "b1-2to2-1x1-k3-V": (1, 2, 2, 1, 1, 3, "V", 1, "blocked"),
    # gated PixelCNN shapes: horizontal (1, k) rows, vertical (k//2 + 1, k) and (k//2, k) stacks
    "b2-4to6-6x7-1x3-A": (2, 4, 6, 6, 7, (1, 3), "A", 1, "blocked"),
    "b1-3to6-5x5-1x5-B-g3": (1, 3, 6, 5, 5, (1, 5), "B", 3, "blocked"),
    "b1-3to5-4x9-1x7-A": (1, 3, 5, 4, 9, (1, 7), "A", 1, "blocked"),
    "b2-5to4-4x9-1x7-B": (2, 5, 4, 4, 9, (1, 7), "B", 1, "blocked"),
    "b1-3to3-3x2-1x3-B": (1, 3, 3, 3, 2, (1, 3), "B", 1, "blocked"),  # narrower than the kernel
    "b2-4to4-3x7-1x5-V": (2, 4, 4, 3, 7, (1, 5), "V", 1, "blocked"),
    "b3-4to5-7x5-3x5-V": (3, 4, 5, 7, 5, (3, 5), "V", 1, "blocked"),
    "b2-3to4-5x6-2x3-V": (2, 3, 4, 5, 6, (2, 3), "V", 1, "blocked"),
    "b2-4to4-6x6-2x5-B": (2, 4, 4, 6, 6, (2, 5), "B", 1, "blocked"),
    # interleaved colour groups (channel c in group c % 3), unequal: 10 = 4/3/3, 7 = 3/2/2
    "b2-10to7-5x6-1x5-A-g3i": (2, 10, 7, 5, 6, (1, 5), "A", 3, "interleaved"),
    "b1-3to9-7x7-k3-B-g3i": (1, 3, 9, 7, 7, 3, "B", 3, "interleaved"),
    "b1-10to10-5x4-3x5-A-g3i": (1, 10, 10, 5, 4, (3, 5), "A", 3, "interleaved"),
}


def make_conv(case, dtype, bias=True):
    """x, weight, bias for a CONV_CASES entry."""
    B, ci, co, H, W, k, *_ = case
    kh, kw = (k, k) if isinstance(k, int) else k
    x = torch.randn(B, ci, H, W, dtype=dtype)
    w = torch.randn(co, ci, kh, kw, dtype=dtype) / (ci * kw)
    b = torch.randn(co, dtype=dtype) if bias else None
    return x, w, b


def conv_inputs(B, ci, co, H, W, k, dtype):
    """x, weight, bias drawn in float32, then cast (the same values for every dtype)."""
    x = torch.randn(B, ci, H, W).to(dtype)
    w = (torch.randn(co, ci, k, k) / (ci * k)).to(dtype)
    b = torch.randn(co).to(dtype)
    return x, w, b


HALF = [torch.bfloat16, torch.float16]
