"""Pure-PyTorch reference of masked_conv2d_step, the sampler's cached step of masked_conv2d. It is the spec for
every backend; the masks are those of masked_conv2d (masked_conv2d/ref.py: conv_mask).

Non-finite values: as masked_conv2d's (masked_conv2d/ref.py): an output is non-finite only if its bias, a kept
weight or a cache value its kept taps read is non-finite; NaN anywhere else in the cache (a pixel not
generated yet, a colour channel the centre tap masks) is never read.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..masked_conv2d.ref import masked_conv2d_ref


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
    p = weight.shape[-1] // 2
    if x_new is not None:
        if mask_type == "V":
            cache[:, :, row, :] = x_new
        else:
            cache[:, :, row, col] = x_new
    # the output pixel's neighbourhood: rows row-p..row of the cache, then p rows of zeros (below the centre
    # row nothing is ever read), zero outside the image; masked_conv2d_ref on it, read at the centre row
    r0 = max(row - p, 0)
    slab = F.pad(cache[:, :, r0 : row + 1], (0, 0, p - (row - r0), p))  # [B, C_in, 2p+1, W]
    args = (weight, bias, mask_type, color_groups)
    if mask_type == "V":
        return masked_conv2d_ref(slab, *args, color_layout=color_layout)[:, :, p]
    W = cache.shape[-1]
    c0, c1 = max(col - p, 0), min(col + p + 1, W)
    win = F.pad(slab[..., c0:c1], (p - (col - c0), p - (c1 - 1 - col)))  # [B, C_in, 2p+1, k]
    return masked_conv2d_ref(win, *args, color_layout=color_layout)[:, :, p, p]
