"""Pure-PyTorch reference of slice_scatter_. It is the spec: every backend is tested against it.

Slice k = i*s + j of an image x [B, C, H, W] is x[:, :, i::s, j::s], of shape [B, C, H/s, W/s].

Non-finite values: a copy; every value of `values`, NaN and +-inf included, lands bit for bit (NaN payloads
too), and nothing else of x changes.
"""

from __future__ import annotations

import torch


def slice_scatter_ref_(x: torch.Tensor, values: torch.Tensor, s: int, t: torch.Tensor) -> None:
    """Writes slice t[b] of every image in place: x[b, :, i::s, j::s] = values[b] with t[b] = i*s + j.

    Args:
        x: [B, C, H, W], any dtype, modified in place.
        values: [B, C, H/s, W/s], same dtype and device as x.
        s: subscale factor.
        t: int64 [B] in [0, s*s).
    """
    B, C, H, W = x.shape
    dev = x.device
    rows = (t // s)[:, None] + s * torch.arange(H // s, device=dev)  # [B, h]
    cols = (t % s)[:, None] + s * torch.arange(W // s, device=dev)  # [B, w]
    b = torch.arange(B, device=dev)[:, None, None, None]
    c = torch.arange(C, device=dev)[None, :, None, None]
    x[b, c, rows[:, None, :, None], cols[:, None, None, :]] = values
