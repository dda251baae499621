"""Pure-PyTorch references of the slice ops. They are the spec: every backend is tested against them.

Slice k = i*s + j of an image x [B, C, H, W] is x[:, :, i::s, j::s], of shape [B, C, H/s, W/s].
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


def slice_context_ref(x: torch.Tensor, s: int, t: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """The context network's input: every slice before the target, scaled, plus a presence channel.

    Args:
        x: integer image [B, C, H, W] with values in [0, 2^bits).
        s: subscale factor; H and W divisible by s.
        t: int64 [B], target slice index per image, in [0, s*s].
        bits: bit depth of x, 1..16.
    Returns:
        float32 [B, s*s*(C+1), H/s, W/s]. Channels k*(C+1) .. k*(C+1)+C-1 hold slice k scaled to [-1, 1]
        as (2*v + 1)/2^bits - 1 when k < t[b], else 0; channel k*(C+1)+C is 1 when k < t[b], else 0.
        The scaling is exact in float32 for bits <= 16, so every backend must match bit for bit.
    """
    B, C, H, W = x.shape
    S2 = s * s
    slices = subscale_split_ref(x, s).to(torch.float32)  # [B, S2, C, h, w]
    vals = (2 * slices + 1) / float(2**bits) - 1
    present = (torch.arange(S2, device=x.device)[None, :] < t[:, None]).to(torch.float32)  # [B, S2]
    vals = vals * present[:, :, None, None, None]
    pres = present[:, :, None, None, None].expand(B, S2, 1, H // s, W // s)
    return torch.cat([vals, pres], dim=2).reshape(B, S2 * (C + 1), H // s, W // s)


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
