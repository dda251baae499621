"""Pure-PyTorch reference of slice_context. It is the spec: every backend is tested against it.

Slice k = i*s + j of an image x [B, C, H, W] is x[:, :, i::s, j::s], of shape [B, C, H/s, W/s].

Non-finite values cannot occur: x is an integer image (checked, and its values range-checked against bits), so
the output is always finite.
"""

from __future__ import annotations

import torch

from ..subscale_split.ref import subscale_split_ref


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
