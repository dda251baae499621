"""Pure-PyTorch references of masked_conv2d and its backward, and the one definition of the masks. They are
the spec for every backend (masked_conv2d_step/ref.py builds on them).

Mask types, for an odd k x k kernel with centre (p, p), p = k // 2:
- "A": every tap above the centre row, the taps left of the centre in the centre row; no centre tap.
- "B": as "A" plus the centre tap.
- "V": every tap in the rows at or above the centre row, all columns (the vertical stack of a gated
  PixelCNN; its output is shifted down one row by the caller before it feeds an A/B stack).
With color_groups = g > 1 the centre tap of "A"/"B" is masked block-triangularly over g equal groups of
output and input channels: "A" keeps input group < output group, "B" input group <= output group.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def conv_mask(
    c_out: int,
    c_in: int,
    k: int,
    mask_type: str,
    color_groups: int = 1,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The 0/1 mask [c_out, c_in, k, k] of a masked convolution. The one definition of the masks."""
    p = k // 2
    m = torch.zeros(c_out, c_in, k, k, dtype=dtype, device=device)
    m[:, :, :p, :] = 1
    if mask_type == "V":
        m[:, :, p, :] = 1
        return m
    m[:, :, p, :p] = 1
    g_out = torch.arange(c_out, device=device) // (c_out // color_groups)
    g_in = torch.arange(c_in, device=device) // (c_in // color_groups)
    if mask_type == "A":
        centre = g_in[None, :] < g_out[:, None]
    else:
        centre = g_in[None, :] <= g_out[:, None]
    m[:, :, p, p] = centre.to(dtype)
    return m


def masked_conv2d_ref(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    mask_type: str = "B",
    color_groups: int = 1,
) -> torch.Tensor:
    """PixelCNN masked convolution, stride 1, zero 'same' padding.

    Args:
        x: [B, C_in, H, W] float.
        weight: [C_out, C_in, k, k], k odd, same dtype and device as x.
        bias: [C_out] or None.
    Returns:
        [B, C_out, H, W] = F.conv2d(x, weight * mask, bias, padding=k//2). Masked weights get zero gradient.
    """
    c_out, c_in, k, _ = weight.shape
    mask = conv_mask(c_out, c_in, k, mask_type, color_groups, weight.dtype, weight.device)
    return F.conv2d(x, weight * mask, bias, padding=k // 2)


def masked_conv2d_backward_ref(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    mask_type: str,
    color_groups: int,
    output_mask: list[bool],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of masked_conv2d.

    Args:
        grad_out: [B, C_out, H, W]; x: [B, C_in, H, W]; weight: [C_out, C_in, k, k].
        output_mask: which of (grad_x, grad_weight, grad_bias) to compute; the others are returned empty.
    Returns:
        grad_x [B, C_in, H, W], grad_weight [C_out, C_in, k, k] (zero at masked taps), grad_bias [C_out].
    """
    c_out, c_in, k, _ = weight.shape
    p = k // 2
    mask = conv_mask(c_out, c_in, k, mask_type, color_groups, weight.dtype, weight.device)
    empty = grad_out.new_empty(0)
    gx = F.conv_transpose2d(grad_out, weight * mask, padding=p) if output_mask[0] else empty
    gw = torch.nn.grad.conv2d_weight(x, weight.shape, grad_out, padding=p) * mask if output_mask[1] else empty
    gb = grad_out.sum((0, 2, 3)) if output_mask[2] else empty
    return gx, gw, gb
