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
    out[b, co, h, w] = bias[co] + sum over the kept (ci, i, j) of weight[co, ci, i, j]
                       * x[b, ci, h + r0 + i - p, w + j - p]          (zero outside the image).

Non-finite values (NaN, +-inf). A masked tap is never read, neither its weight nor the input under it: an
output is non-finite only if its bias, a kept weight it uses or an input it sees through a kept tap is
non-finite (or the sum overflows). Such an output is NaN or +-inf; which one is not fixed across backends (an
inf seen through a colour-masked centre tap may come out NaN). So a NaN in a pixel not generated yet never
reaches an output that may not see it. The backward is the adjoint over the same kept taps:
- grad_x: grad_out reaches grad_x only through kept taps (a non-finite grad_out at one output reaches exactly
  the inputs that output sees);
- grad_weight: at a kept tap the sum over every pixel of grad_out * the input the tap reads, so a non-finite
  input makes that tap's grad_weight non-finite for every output channel (also where grad_out is zero); at a
  masked tap exactly zero;
- grad_bias: grad_out summed.
(backend="torch" runs this reference under PyTorch's own autograd, whose grad_x of a non-finite grad_out is
that of F.conv2d: masked taps pass it on. masked_conv2d_backward_ref is the spec of the backward.)
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


def kept_taps_conv(src: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor, transposed: bool) -> torch.Tensor:
    """The masked convolution (transposed=False: src = x [B, C_in, H, W] -> [B, C_out, H, W]) or its adjoint
    (transposed=True: src = grad_out -> grad_x) as a sum over the kept taps only, one shifted product per tap:
    no value of src is ever multiplied by a masked weight. The spec's slow form, for non-finite src."""
    c_out, c_in, kh, kw = weight.shape
    p, (r0, _) = kw // 2, kernel_rows(kh, kw)
    B, _, H, W = src.shape
    sp = F.pad(src, (p, p, p, p))
    out = src.new_zeros(B, c_in if transposed else c_out, H, W)
    keep = mask != 0
    for i in range(kh):
        for j in range(kw):
            dy, dx = r0 + i - p, j - p
            w_t, m_t = weight[:, :, i, j], keep[:, :, i, j]  # [N, K]: output channels x channels read
            if transposed:
                w_t, m_t, dy, dx = w_t.T, m_t.T, -dy, -dx
            if not m_t.any():
                continue
            s = sp[:, :, p + dy : p + dy + H, p + dx : p + dx + W]  # [B, K, H, W]
            # outputs with the same kept channels at this tap (the colour groups of a centre tap) together
            rows, inv = torch.unique(m_t, dim=0, return_inverse=True)
            for u, row in enumerate(rows):
                n_idx, k_idx = (inv == u).nonzero()[:, 0], row.nonzero()[:, 0]
                if len(k_idx):
                    out[:, n_idx] += torch.einsum("nk,bkhw->bnhw", w_t[n_idx][:, k_idx], s[:, k_idx])
    return out


def _all_finite(t: torch.Tensor) -> bool:
    """Whether t is finite, by one sum (a non-finite element makes it non-finite; a finite sum that overflows
    only takes the slow form in vain): far cheaper than isfinite(t).all() (benchmarks/RESULTS.md). Under
    torch.compile the data-dependent check would break the graph: compiled, the fast form always runs."""
    if torch.compiler.is_compiling() or t.numel() == 0:
        return True
    return bool(torch.isfinite(t.sum(dtype=torch.float64 if t.dtype == torch.float64 else torch.float32)))


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
        in the centred kw x kw kernel, for finite x; a non-finite x is computed tap by tap (kept_taps_conv), so
        that it reaches only the outputs that see it (module docstring). Masked weights get zero gradient.
    """
    c_out, c_in, kh, kw = weight.shape
    mask = conv_mask(
        c_out, c_in, (kh, kw), mask_type, color_groups, weight.dtype, weight.device, color_layout=color_layout
    )
    w = torch.where(mask != 0, weight, 0)  # not weight * mask: a non-finite masked weight is never read
    if _all_finite(x):
        return F.conv2d(x, square_weight(w), bias, padding=kw // 2)
    out = kept_taps_conv(x, w, mask, transposed=False)
    return out if bias is None else out + bias[:, None, None]


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
        grad_x [B, C_in, H, W], grad_weight [C_out, C_in, kh, kw] (zero at masked taps), grad_bias [C_out];
        non-finite values as the module docstring says.
    """
    c_out, c_in, kh, kw = weight.shape
    p = kw // 2
    r0, n = kernel_rows(kh, kw)
    mask = conv_mask(
        c_out, c_in, (kh, kw), mask_type, color_groups, weight.dtype, weight.device, color_layout=color_layout
    )
    empty = grad_out.new_empty(0)
    w = torch.where(mask != 0, weight, 0)
    if not output_mask[0]:
        gx = empty
    elif _all_finite(grad_out):
        gx = F.conv_transpose2d(grad_out, square_weight(w), padding=p)
    else:
        gx = kept_taps_conv(grad_out, w, mask, transposed=True)
    if output_mask[1]:
        gw_all = torch.nn.grad.conv2d_weight(x, (c_out, c_in, kw, kw), grad_out, padding=p)[:, :, r0 : r0 + n]
        gw = torch.where(mask != 0, gw_all, 0)
    else:
        gw = empty
    gb = grad_out.sum((0, 2, 3)) if output_mask[2] else empty
    return gx, gw, gb
