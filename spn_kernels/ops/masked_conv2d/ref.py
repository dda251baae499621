"""Pure-PyTorch references of masked_conv2d and its backward, and the one definition of the masks. They are
the spec for every backend (masked_conv2d_step/ref.py builds on them).

Square masks, for an odd k x k kernel with centre (p, p), p = k // 2:
- "A": every tap above the centre row, the taps left of the centre in the centre row; no centre tap.
- "B": as "A" plus the centre tap.
- "V": every tap in the rows at or above the centre row, all columns (the vertical stack of a gated
  PixelCNN; its output is shifted down one row by the caller before it feeds an A/B stack).

Colour groups. With color_groups = g > 1 the centre tap of "A"/"B" is masked block-triangularly over the colour
groups of the output and input channels: "A" keeps (co, ci) when group(ci) < group(co), "B" when
group(ci) <= group(co). The group of channel c of n channels is, by ``color_layout``:
- "blocked": c // (n // g), g equal contiguous groups (n must be divisible by g);
- "interleaved": c % g, for any n (so 10 channels in 3 groups are 4/3/3: R G B R G B R G B R).

Kernel shapes. A weight [C_out, C_in, kh, kw] (kw odd, p = kw // 2) holds a set of rows of the centred kw x kw
kernel; its row i is row r0 + i of the square kernel:
- (kw, kw): all rows (r0 = 0), the square kernel itself;
- (1, kw): the centre row (r0 = p), the horizontal stack of a gated PixelCNN;
- (p + 1, kw): rows 0..p (r0 = 0), the top rows through the centre row (a vertical stack);
- (p, kw): rows 0..p-1 (r0 = 0), strictly above the centre row (a vertical stack that needs no down-shift).
kh == kw is checked first, then kh == 1, so at kw = 3 a (1, 3) weight is the centre row (the strictly-above row
of a 3-wide kernel is the centre row applied to the input shifted down by one row). The square mask of
``mask_type`` applies to those rows: a (1, k) "A"/"B" keeps the taps left of the centre plus the centre tap per
colour mask, (1, k) "V" keeps the whole row, (p + 1, k) "V" and (p, k) of any type keep every tap.
The output is 'same' size [B, C_out, H, W], with the centre of the square kernel at the output pixel:
    out[b, co, h, w] = bias[co] + sum over ci, i, j of (weight * mask)[co, ci, i, j]
                       * x[b, ci, h + r0 + i - p, w + j - p]          (zero outside the image).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..._checks import check_conv_params, kernel_rows

COLOR_LAYOUTS = ("blocked", "interleaved")


def color_group(n: int, color_groups: int, color_layout: str, device=None) -> torch.Tensor:
    """The colour group [n] (int64) of each of n channels (module docstring)."""
    c = torch.arange(n, device=device)
    if color_layout == "interleaved":
        return c % color_groups
    return c // max(n // color_groups, 1)


def conv_mask(
    c_out: int,
    c_in: int,
    kernel_size: int | tuple[int, int],
    mask_type: str,
    color_groups: int = 1,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    *,
    color_layout: str = "blocked",
) -> torch.Tensor:
    """The 0/1 mask [c_out, c_in, kh, kw] of a masked convolution (kernel_size an int k: (k, k)). The one
    definition of the masks: the rows of the square kw x kw mask that a (kh, kw) weight holds."""
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    check_conv_params(torch.empty(c_out, c_in, kh, kw, device="meta"), None, mask_type, color_groups, color_layout)
    r0, n = kernel_rows(kh, kw)
    k, p = kw, kw // 2
    m = torch.zeros(c_out, c_in, k, k, dtype=dtype, device=device)
    m[:, :, :p, :] = 1
    if mask_type == "V":
        m[:, :, p, :] = 1
        return m[:, :, r0 : r0 + n].contiguous()
    m[:, :, p, :p] = 1
    g_out = color_group(c_out, color_groups, color_layout, device)
    g_in = color_group(c_in, color_groups, color_layout, device)
    if mask_type == "A":
        centre = g_in[None, :] < g_out[:, None]
    else:
        centre = g_in[None, :] <= g_out[:, None]
    m[:, :, p, p] = centre.to(dtype)
    return m[:, :, r0 : r0 + n].contiguous()


def square_weight(weight: torch.Tensor) -> torch.Tensor:
    """The (kh, kw) weight embedded in its centred kw x kw kernel, zeros in the rows it does not hold."""
    kh, kw = weight.shape[2:]
    r0, n = kernel_rows(kh, kw)
    return F.pad(weight, (0, 0, r0, kw - r0 - n))


def masked_conv2d_ref(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    mask_type: str = "B",
    color_groups: int = 1,
    *,
    color_layout: str = "blocked",
) -> torch.Tensor:
    """PixelCNN masked convolution, stride 1, zero 'same' padding.

    Args:
        x: [B, C_in, H, W] float.
        weight: [C_out, C_in, kh, kw], kw odd, kh one of kw, 1, kw//2 + 1, kw//2 (module docstring); same dtype
            and device as x.
        bias: [C_out] or None.
    Returns:
        [B, C_out, H, W] = F.conv2d(x, square(weight * mask), bias, padding=kw//2), square() embedding the rows
        in the centred kw x kw kernel. Masked weights get zero gradient.
    """
    c_out, c_in, kh, kw = weight.shape
    mask = conv_mask(
        c_out, c_in, (kh, kw), mask_type, color_groups, weight.dtype, weight.device, color_layout=color_layout
    )
    return F.conv2d(x, square_weight(weight * mask), bias, padding=kw // 2)


def masked_conv2d_backward_ref(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    mask_type: str,
    color_groups: int,
    output_mask: list[bool],
    *,
    color_layout: str = "blocked",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of masked_conv2d.

    Args:
        grad_out: [B, C_out, H, W]; x: [B, C_in, H, W]; weight: [C_out, C_in, kh, kw].
        output_mask: which of (grad_x, grad_weight, grad_bias) to compute; the others are returned empty.
    Returns:
        grad_x [B, C_in, H, W], grad_weight [C_out, C_in, kh, kw] (zero at masked taps), grad_bias [C_out].
    """
    c_out, c_in, kh, kw = weight.shape
    p = kw // 2
    r0, n = kernel_rows(kh, kw)
    mask = conv_mask(
        c_out, c_in, (kh, kw), mask_type, color_groups, weight.dtype, weight.device, color_layout=color_layout
    )
    empty = grad_out.new_empty(0)
    gx = F.conv_transpose2d(grad_out, square_weight(weight * mask), padding=p) if output_mask[0] else empty
    if output_mask[1]:
        gw = torch.nn.grad.conv2d_weight(x, (c_out, c_in, kw, kw), grad_out, padding=p)[:, :, r0 : r0 + n] * mask
    else:
        gw = empty
    gb = grad_out.sum((0, 2, 3)) if output_mask[2] else empty
    return gx, gw, gb
