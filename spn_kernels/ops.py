"""The public op functions. Each validates its inputs (ValueError naming the argument and shapes), then
runs the op on the chosen backend (see _backend.py). The references in subscale/ref.py and
masked_conv/ref.py define what each op computes."""

from __future__ import annotations

import torch

from . import _library  # noqa: F401  (registers fake kernels, autograd and CPU kernels)
from ._backend import resolve
from ._checks import (
    as_t,
    check_bits,
    check_conv,
    check_int_image,
    check_same,
    check_slices,
    check_step,
    check_subscale,
    require,
)


def _compiling() -> bool:
    return torch.compiler.is_compiling()


def _autocast(x: torch.Tensor, *ts: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
    """Under torch.autocast, casts floating inputs to the autocast dtype, as autocast does for F.conv2d
    (the custom ops are invisible to autocast's own op lists). Outside autocast: no-op."""
    dev = x.device.type
    if not torch.is_autocast_enabled(dev):
        return (x, *ts)
    dt = torch.get_autocast_dtype(dev)
    return tuple(None if t is None else t.to(dt) if t.is_floating_point() else t for t in (x, *ts))


def subscale_split(x: torch.Tensor, s: int, *, backend: str | None = None) -> torch.Tensor:
    """[B, C, H, W] (any dtype) -> [B, s*s, C, H/s, W/s] with out[:, i*s + j] = x[:, :, i::s, j::s]."""
    check_subscale(x, s)
    return resolve("subscale_split", backend, x)(x, s)


def subscale_merge(slices: torch.Tensor, *, backend: str | None = None) -> torch.Tensor:
    """[B, s*s, C, h, w] -> [B, C, h*s, w*s]: the exact inverse of subscale_split."""
    check_slices(slices)
    return resolve("subscale_merge", backend, slices)(slices)


def slice_context(
    x: torch.Tensor, s: int, t: int | torch.Tensor, bits: int = 8, *, backend: str | None = None
) -> torch.Tensor:
    """Context-network input: integer image [B, C, H, W], t int or [B] in [0, s*s] ->
    float32 [B, s*s*(C+1), H/s, W/s] (slices before t scaled to [-1, 1], plus a presence channel each)."""
    check_subscale(x, s)
    check_int_image(x)
    check_bits(bits)
    t = as_t(t, x, s * s, _compiling())
    return resolve("slice_context", backend, x)(x, s, t, bits)


def slice_scatter_(
    x: torch.Tensor, values: torch.Tensor, s: int, t: int | torch.Tensor, *, backend: str | None = None
) -> torch.Tensor:
    """Writes values [B, C, H/s, W/s] as slice t (int or [B] in [0, s*s)) of x [B, C, H, W], in place.
    Returns x."""
    check_subscale(x, s)
    B, C, H, W = x.shape
    want = (B, C, H // s, W // s)
    require(
        tuple(values.shape) == want,
        lambda: f"values must have shape {want} for x {tuple(x.shape)} and s={s}, got {tuple(values.shape)}",
    )
    check_same(values, x, "values", "x")
    t = as_t(t, x, s * s - 1, _compiling())
    resolve("slice_scatter_", backend, x)(x, values, s, t)
    return x


def masked_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    mask_type: str = "B",
    color_groups: int = 1,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """PixelCNN masked convolution: [B, C_in, H, W], weight [C_out, C_in, k, k] -> [B, C_out, H, W].

    Equals F.conv2d(x, weight * mask, bias, padding=k // 2); see masked_conv/ref.py for the masks.
    Under torch.autocast the inputs are cast to the autocast dtype (like F.conv2d)."""
    x, weight, bias = _autocast(x, weight, bias)
    check_conv(x, weight, bias, mask_type, color_groups)
    return resolve("masked_conv2d", backend, x)(x, weight, bias, mask_type, color_groups)


def masked_conv2d_step(
    cache: torch.Tensor,
    x_new: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    row: int,
    col: int,
    mask_type: str = "B",
    color_groups: int = 1,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """Cached incremental masked_conv2d. cache [B, C_in, H, W] is the layer's input map (zeros where
    nothing is known yet); x_new, if given, is written first ([B, C_in] at (row, col), or [B, C_in, W] as
    row `row` for mask "V"). Returns the output at (row, col) [B, C_out] (mask "V": row `row`, [B, C_out, W])."""
    check_step(cache, x_new, weight, bias, row, col, mask_type, color_groups)
    return resolve("masked_conv2d_step", backend, cache)(cache, x_new, weight, bias, row, col, mask_type, color_groups)
