"""Pure-PyTorch reference of subscale_merge. It is the spec: every backend is tested against it.

Slice k = i*s + j of an image x [B, C, H, W] is x[:, :, i::s, j::s], of shape [B, C, H/s, W/s].

Non-finite values: a copy; every value, NaN and +-inf included, moves bit for bit (NaN payloads too).
"""

from __future__ import annotations

import torch


def subscale_merge_ref(slices: torch.Tensor) -> torch.Tensor:
    """Puts s*s interleaved slices back together: the exact inverse of subscale_split.

    Args:
        slices: [B, s*s, C, h, w], any dtype.
    Returns:
        [B, C, h*s, w*s] (contiguous) with out[:, :, i::s, j::s] = slices[:, i*s + j].
    """
    B, S2, C, h, w = slices.shape
    s = int(round(S2**0.5))
    y = slices.reshape(B, s, s, C, h, w).permute(0, 3, 4, 1, 5, 2)  # [B, C, h, s_i, w, s_j]
    return y.reshape(B, C, h * s, w * s).contiguous()
