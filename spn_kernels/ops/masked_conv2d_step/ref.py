"""Pure-PyTorch reference of masked_conv2d_step, the sampler's cached step of masked_conv2d. It is the spec for
every backend; the masks are those of masked_conv2d (masked_conv2d/ref.py: conv_mask).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..masked_conv2d.ref import conv_mask, square_weight


def masked_conv2d_step_ref(
    cache: torch.Tensor,
    x_new: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    row: int,
    col: int,
    mask_type: str = "B",
    color_groups: int = 1,
    *,
    color_layout: str = "blocked",
) -> torch.Tensor:
    """One cached step of masked_conv2d, as used by the sampler.

    The cache is the layer's whole input map, zero where nothing was written yet (our choice over a ring of
    k//2 + 1 rows: the same memory order as the training input, no wrap-around index math, and a step
    still reads only the k//2 + 1 rows x k columns its mask can see).

    Args:
        cache: [B, C_in, H, W], modified in place when x_new is given.
        x_new: None, or the new input written before the output is computed: [B, C_in] at (row, col) for
            "A"/"B"; [B, C_in, W] as the whole row `row` for "V".
        weight: [C_out, C_in, kh, kw], any kernel shape of masked_conv2d; bias: [C_out] or None.
        row, col: the output position; col is ignored for "V".
    Returns:
        "A"/"B": [B, C_out], equal to masked_conv2d(cache)[:, :, row, col].
        "V": [B, C_out, W], equal to masked_conv2d(cache)[:, :, row, :].
    """
    k = weight.shape[-1]
    p = k // 2
    kernel_size = tuple(weight.shape[2:])
    if x_new is not None:
        if mask_type == "V":
            cache[:, :, row, :] = x_new
        else:
            cache[:, :, row, col] = x_new
    c_out, c_in = weight.shape[:2]
    mask = conv_mask(
        c_out, c_in, kernel_size, mask_type, color_groups, weight.dtype, weight.device, color_layout=color_layout
    )
    w = square_weight(weight * mask)[:, :, : p + 1]  # rows below the centre are always masked
    r0 = max(row - p, 0)
    slab = F.pad(cache[:, :, r0 : row + 1], (0, 0, p - (row - r0), 0))  # [B, C_in, p+1, W]
    if mask_type == "V":
        return F.conv2d(slab, w, bias, padding=(0, p))[:, :, 0]
    W = cache.shape[-1]
    c0, c1 = max(col - p, 0), min(col + p + 1, W)
    win = F.pad(slab[..., c0:c1], (p - (col - c0), p - (c1 - 1 - col)))  # [B, C_in, p+1, k]
    return F.conv2d(win, w, bias)[:, :, 0, 0]
