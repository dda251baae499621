"""nn.Module wrappers of the ops: MaskedConv2d (a drop-in for nn.Conv2d in PixelCNN code) and DownShift."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .ops.masked_conv2d.op import masked_conv2d
from .ops.masked_conv2d_step.op import masked_conv2d_step

MASK_TYPES = ("A", "B", "V")
COLOR_LAYOUTS = ("blocked", "interleaved")


def _pair(v, name: str) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(e, int) for e in v):
        return int(v[0]), int(v[1])
    raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")


def _row_offsets(kh: int, kw: int) -> tuple[int, int] | None:
    """Row offsets (first, last) of a (kh, kw) weight taken as rows of the centred kw x kw kernel, or None
    when (kh, kw) is not one of the masked-kernel shapes (k, k), (1, k), (k//2+1, k), (k//2, k), k odd."""
    if kw % 2 != 1:
        return None
    p = kw // 2
    if kh == kw:
        return -p, p
    if kh == 1:
        return 0, 0
    if kh == p + 1:
        return -p, 0
    if kh == p and p > 0:
        return -p, -1
    return None


class MaskedConv2d(nn.Conv2d):
    """A PixelCNN masked convolution with nn.Conv2d's signature, parameters, state_dict and initialisation.

    ``weight`` [C_out, C_in, kh, kw] is a set of rows of the centred kw x kw kernel (p = kw // 2): (1, k) the
    centre row, (k//2+1, k) rows 0..p (a gated PixelCNN's vertical stack with mask "V"), (k//2, k) rows 0..p-1,
    (k, k) all rows. The square mask of ``mask_type`` applies to those rows ("A": rows above the centre and the
    taps left of it, "B": also the centre tap, "V": every tap in the rows at or above the centre). With
    ``color_groups`` = g > 1 the centre tap is masked over g channel groups ("A": input group < output group,
    "B": <=); ``color_layout`` "blocked" makes g equal contiguous groups, "interleaved" puts channel c in
    group c mod g (any channel count, unequal groups).

    The default padding ("causal") gives a same-size output with the kernel's centre at the output pixel. An
    explicit ``padding`` means what it means for nn.Conv2d: output (i, j) reads input
    (i + a * dilation - pad_top, j + b * dilation - pad_left) for tap (a, b), so the output may be larger and
    be cropped by the caller, e.g. a (k//2+1, k) kernel with padding (k//2, k//2) whose first H rows are kept,
    or a (1, k//2+1) kernel with padding (0, k//2) whose first W columns are kept. The mask then follows the
    taps: a tap is masked as the square mask masks its position relative to the output pixel. A padding that
    puts taps where a masked convolution never looks (below the output pixel; right of it in its row for "A"
    and "B") raises, unless it is the causal placement of a square, (1, k) or vertical-stack kernel.

    The mask is a buffer, ``mask`` [C_out, C_in, kh, kw]. With ``persistent_mask=True`` it is in the state_dict
    (for code that keeps one); either way a state_dict with a ``mask`` entry loads, after a check that it is
    this module's mask, and one without it loads too.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: str | int | tuple[int, int] = "causal",
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
        *,
        mask_type: str = "B",
        color_groups: int = 1,
        color_layout: str = "blocked",
        persistent_mask: bool = False,
        backend: str | None = None,
    ) -> None:
        kh, kw = _pair(kernel_size, "kernel_size")
        dh, dw = _pair(dilation, "dilation")
        if _pair(stride, "stride") != (1, 1):
            raise ValueError(f"stride must be 1 for a masked convolution, got stride={stride!r}")
        if groups != 1:
            raise ValueError(f"groups must be 1 for a masked convolution, got groups={groups}")
        if padding_mode != "zeros":
            raise ValueError(f"padding_mode must be 'zeros' for a masked convolution, got {padding_mode!r}")
        if mask_type not in MASK_TYPES:
            raise ValueError(f"mask_type must be one of 'A', 'B', 'V', got {mask_type!r}")
        if color_layout not in COLOR_LAYOUTS:
            raise ValueError(f"color_layout must be 'blocked' or 'interleaved', got {color_layout!r}")
        if not isinstance(color_groups, int) or color_groups < 1:
            raise ValueError(f"color_groups must be an int >= 1, got {color_groups!r}")
        if mask_type == "V" and color_groups != 1:
            raise ValueError(f"mask 'V' sees every channel of its rows: color_groups must be 1, got {color_groups}")
        if color_layout == "blocked" and (in_channels % color_groups or out_channels % color_groups):
            raise ValueError(
                f"in_channels={in_channels} and out_channels={out_channels} must be divisible by "
                f"color_groups={color_groups} with color_layout='blocked' (use 'interleaved' for unequal groups)"
            )
        if min(kh, kw, dh, dw) < 1:
            raise ValueError(f"kernel_size and dilation must be >= 1, got {kernel_size!r} and {dilation!r}")
        causal = padding == "causal"
        super().__init__(
            in_channels, out_channels, (kh, kw), 1, 0 if causal else padding, (dh, dw), 1, bias, "zeros", device, dtype
        )
        self.mask_type, self.color_groups, self.color_layout = mask_type, color_groups, color_layout
        self.backend = backend
        # (top, bottom, left, right) zero padding of the equivalent nn.Conv2d; bottom/right may be negative.
        rows = _row_offsets(kh, kw)
        causal_pad = None
        if rows is not None:
            top, left = -rows[0] * dh, (kw // 2) * dw
            causal_pad = (top, dh * (kh - 1) - top, left, dw * (kw - 1) - left)
        if causal:
            if causal_pad is None:
                raise ValueError(
                    f"kernel_size={kernel_size!r}: with the default padding a masked kernel must be (k, k), (1, k), "
                    f"(k//2+1, k) or (k//2, k) with k odd; pass an explicit padding to place another shape"
                )
            self.padding = (causal_pad[0], causal_pad[2]) if causal_pad[0] == causal_pad[1] else "causal"
            pads = causal_pad
        elif isinstance(self.padding, str):  # 'same' / 'valid', as nn.Conv2d splits them
            total_h, total_w = dh * (kh - 1), dw * (kw - 1)
            pads = (total_h // 2, total_h - total_h // 2, total_w // 2, total_w - total_w // 2)
            if self.padding == "valid":
                pads = (0, 0, 0, 0)
        else:
            pads = (self.padding[0], self.padding[0], self.padding[1], self.padding[1])
        self._pads = pads
        taps_r = [a * dh - pads[0] for a in range(kh)]
        taps_c = [b * dw - pads[2] for b in range(kw)]
        is_causal_place = causal_pad is not None and (pads[0], pads[2]) == (causal_pad[0], causal_pad[2])
        if not is_causal_place:
            unseen = taps_r[-1] > 0 or (mask_type != "V" and taps_r[-1] == 0 and taps_c[-1] > 0)
            if unseen:
                hint = "" if causal_pad is None else f"; the causal padding is (top, left) = {causal_pad[::2]}"
                raise ValueError(
                    f"padding={padding!r} puts taps of the {kh}x{kw} kernel below or right of the output pixel, "
                    f"which a masked convolution never sees{hint}"
                )
        self._taps = (taps_r, taps_c)
        mask = _tap_mask(out_channels, in_channels, taps_r, taps_c, mask_type, color_groups, color_layout)
        self.register_buffer("mask", mask.to(self.weight.device, self.weight.dtype), persistent=persistent_mask)

    # -- geometry ------------------------------------------------------------------------------------------
    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """Output height and width for an [.., h, w] input (h, w for the default causal padding)."""
        (kh, kw), (dh, dw), (t, b, le, r) = self.kernel_size, self.dilation, self._pads
        return h + t + b - dh * (kh - 1), w + le + r - dw * (kw - 1)

    def _contract_weight(self) -> tuple[torch.Tensor, int, int]:
        """The weight as a masked-kernel shape (k, k), (1, k), (k//2+1, k) or (k//2, k) with the same taps (zeros
        elsewhere), and the extra rows and columns of output beyond the input size."""
        (taps_r, taps_c), (dh, dw) = self._taps, self.dilation
        p = max(abs(taps_r[0]), abs(taps_r[-1]), abs(taps_c[0]), abs(taps_c[-1]))
        k = 2 * p + 1
        if taps_r[0] == taps_r[-1] == 0:
            r_lo, r_hi = 0, 0
        elif taps_r[-1] <= 0:
            # rows strictly above: the (k//2, k) shape, except at k = 3, where (1, 3) means the centre row, so the
            # weight gets a zero centre row instead
            r_lo, r_hi = -p, 0 if taps_r[-1] == 0 or p == 1 else -1
        else:
            r_lo, r_hi = -p, p
        w = self.weight
        pads = (taps_c[0] + p, p - taps_c[-1], taps_r[0] - r_lo, r_hi - taps_r[-1])
        if (dh, dw) == (1, 1) and any(pads):
            w = F.pad(w, pads)
        elif (dh, dw) != (1, 1):
            emb = w.new_zeros(*w.shape[:2], r_hi - r_lo + 1, k)
            emb[:, :, taps_r[0] - r_lo : taps_r[-1] - r_lo + 1 : dh, taps_c[0] + p : taps_c[-1] + p + 1 : dw] = w
            w = emb
        return w, *self._extra()

    def _extra(self) -> tuple[int, int]:
        (kh, kw), (dh, dw), (t, b, le, r) = self.kernel_size, self.dilation, self._pads
        return t + b - dh * (kh - 1), le + r - dw * (kw - 1)

    # -- compute -------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C_in, H, W] -> [B, C_out, H', W'] (H' = H, W' = W for the default causal padding)."""
        w, eh, ew = self._contract_weight()
        if eh or ew:  # an nn.Conv2d-style padding: extend (or crop) the same-size output at the bottom/right
            x = F.pad(x, (0, max(ew, 0), 0, max(eh, 0)))
        out = masked_conv2d(
            x, w, self.bias, self.mask_type, self.color_groups, color_layout=self.color_layout, backend=self.backend
        )
        if eh < 0 or ew < 0:
            out = out[..., : out.shape[-2] + min(eh, 0), : out.shape[-1] + min(ew, 0)]
        return out

    def step(self, cache: torch.Tensor, x_new: torch.Tensor | None, row: int, col: int) -> torch.Tensor:
        """Cached output at (row, col) (a whole row for mask "V"); see spn_kernels.masked_conv2d_step. The
        cache is the layer's input map [B, C_in, H, W]; (row, col) index the output as for the default
        padding (an nn.Conv2d-style padding's output is the same there)."""
        w, _, _ = self._contract_weight()
        return masked_conv2d_step(
            cache, x_new, w, self.bias, row, col, self.mask_type, self.color_groups,
            color_layout=self.color_layout, backend=self.backend,
        )  # fmt: skip

    # -- state_dict ----------------------------------------------------------------------------------------
    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected, errors):
        key, persistent = prefix + "mask", "mask" not in self._non_persistent_buffers_set
        if key in state_dict:
            theirs, ours = state_dict[key], self.mask
            if theirs.shape != ours.shape or not torch.equal(theirs.to(ours.device) != 0, ours != 0):
                raise ValueError(
                    f"{key}: the stored mask {tuple(theirs.shape)} differs from this module's mask "
                    f"(mask_type={self.mask_type!r}, color_groups={self.color_groups}, "
                    f"color_layout={self.color_layout!r}, kernel_size={self.kernel_size}, padding={self.padding})"
                )
            if not persistent:
                del state_dict[key]  # checked; there is nothing to load into
        elif persistent:  # a state_dict saved without the (derived) mask loads into a module that persists it
            state_dict[key] = self.mask
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected, errors)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        s += f", mask_type={self.mask_type!r}"
        if self.color_groups != 1:
            s += f", color_groups={self.color_groups}, color_layout={self.color_layout!r}"
        return s


class DownShift(nn.Module):
    """Shifts a map down one row (row 0 becomes zeros): [B, C, H, W] -> [B, C, H, W]. In a gated PixelCNN it
    hands the vertical stack (which sees rows <= r) to the horizontal stack (which may see only rows < r)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return down_shift(x)


def down_shift(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, H, W], out[:, :, r] = x[:, :, r - 1], out[:, :, 0] = 0."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


def _tap_mask(c_out, c_in, taps_r, taps_c, mask_type, color_groups, color_layout) -> torch.Tensor:
    """Mask [c_out, c_in, len(taps_r), len(taps_c)] of taps at the given (row, column) offsets from the output
    pixel: the square mask of mask_type, with the colour mask on the centre tap. Built on the CPU (also under a
    `torch.device("meta")` context, where the module's parameters live on the meta device)."""
    dr = torch.tensor(taps_r, device="cpu")[:, None]
    dc = torch.tensor(taps_c, device="cpu")[None, :]
    seen = (dr < 0) | ((dr == 0) & (dc < 0)) if mask_type != "V" else (dr <= 0)
    m = seen.to(torch.float32).expand(c_out, c_in, len(taps_r), len(taps_c)).clone()
    centre = (dr == 0) & (dc == 0)
    if mask_type != "V" and bool(centre.any()):
        g_out, g_in = _color_groups(c_out, color_groups, color_layout), _color_groups(c_in, color_groups, color_layout)
        ok = g_in[None, :] < g_out[:, None] if mask_type == "A" else g_in[None, :] <= g_out[:, None]
        i, j = centre.nonzero()[0].tolist()
        m[:, :, i, j] = ok.float()
    return m


def _color_groups(c: int, g: int, layout: str) -> torch.Tensor:
    idx = torch.arange(c, device="cpu")
    return idx % g if layout == "interleaved" else idx // (c // g)
