"""Pure-PyTorch reference of subscale_split. It is the spec: every backend is tested against it.

Slice k = i*s + j of an image x [B, C, H, W] is x[:, :, i::s, j::s], of shape [B, C, H/s, W/s].

Non-finite values: a copy; every value, NaN and +-inf included, moves bit for bit (NaN payloads too).
"""

from __future__ import annotations

import torch


def subscale_split_ref(x: torch.Tensor, s: int) -> torch.Tensor:
    """Cuts an image into its s*s interleaved slices.

    Args:
        x: [B, C, H, W], any dtype, H and W divisible by s.
        s: subscale factor >= 1.
    Returns:
        [B, s*s, C, H/s, W/s] (contiguous) with out[:, i*s + j] = x[:, :, i::s, j::s].
    """
    B, C, H, W = x.shape
    # [B, C, h, s_i, w, s_j] -> [B, s_i, s_j, C, h, w]
    y = x.reshape(B, C, H // s, s, W // s, s).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(B, s * s, C, H // s, W // s).contiguous()
