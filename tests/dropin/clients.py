"""Two kinds of existing PyTorch PixelCNN code, written here from their description, each with its own masked
convolution (an nn.Conv2d subclass with a ``mask`` buffer) and the spn module that replaces it. The model code is
shared: switching to spn means only passing the spn constructor.

- StackNet: a 7x7 A/B stack with BatchNorm + ReLU (MNIST sizes: 1 channel, 256-way output).
- GatedNet: a gated PixelCNN over RGB: a vertical stack of (k//2+1, k) kernels padded (k//2, k//2) and cropped to
  the first H rows, a horizontal stack of (1, k) kernels, colour groups interleaved (channel c in group c mod 3,
  so 10 channels split 4/3/3), a pad + crop down-shift from the vertical to the horizontal stack, gated
  activations (chunk + tanh * sigmoid), residual adds, a concatenation and a [B, levels, 3, H, W] output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import spn_kernels as sk


# ---- the clients' own masked convolutions ----------------------------------------------------------------------
class StackMaskedConv2d(nn.Conv2d):
    """The first client's mask: rows below the centre and the centre row's right part (and centre for "A")."""

    def __init__(self, mask_type, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("mask", self.weight.data.clone())
        _, _, kh, kw = self.weight.size()
        self.mask.fill_(1)
        self.mask[:, :, kh // 2, kw // 2 + (mask_type == "B") :] = 0
        self.mask[:, :, kh // 2 + 1 :] = 0

    def forward(self, x):
        self.weight.data *= self.mask
        return super().forward(x)


def stack_spn_conv(mask_type, *args, **kwargs):
    return sk.MaskedConv2d(*args, mask_type=mask_type, **kwargs)


class GatedMaskedConv2d(nn.Conv2d):
    """The second client's mask, built from each tap's offset to the output pixel (set by the padding):
    "V" every tap in rows at or above it; "A"/"B" rows above, the taps left of it, and its own tap from
    earlier colours ("A") or earlier-or-same colours ("B"), colour = channel mod 3."""

    def __init__(self, c_in, c_out, kernel_size, padding=0, *, mask_type, colors=3):
        super().__init__(c_in, c_out, kernel_size, padding=padding)
        kh, kw = self.kernel_size
        ph, pw = self.padding
        mask = torch.zeros(c_out, c_in, kh, kw)
        for a in range(kh):
            for b in range(kw):
                di, dj = a - ph, b - pw
                if di < 0 or (mask_type == "V" and di == 0) or (di == 0 and dj < 0):
                    mask[:, :, a, b] = 1
                elif di == 0 and dj == 0:
                    for o in range(c_out):
                        for i in range(c_in):
                            keep = i % colors < o % colors if mask_type == "A" else i % colors <= o % colors
                            mask[o, i, a, b] = float(keep)
        self.register_buffer("mask", mask)

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


def gated_spn_conv(c_in, c_out, kernel_size, padding=0, *, mask_type, persistent_mask=True):
    colors = dict(color_groups=3, color_layout="interleaved") if mask_type != "V" else {}
    return sk.MaskedConv2d(
        c_in, c_out, kernel_size, padding=padding, mask_type=mask_type, persistent_mask=persistent_mask, **colors
    )


# ---- the clients' models ---------------------------------------------------------------------------------------
class StackNet(nn.Module):
    def __init__(self, conv=StackMaskedConv2d, channels=16, layers=3, levels=256):
        super().__init__()
        net = [conv("A", 1, channels, 7, 1, 3, bias=False), nn.BatchNorm2d(channels), nn.ReLU(True)]
        for _ in range(layers - 1):
            net += [conv("B", channels, channels, 7, 1, 3, bias=False), nn.BatchNorm2d(channels), nn.ReLU(True)]
        net.append(nn.Conv2d(channels, levels, 1))
        self.net = nn.Sequential(*net)

    def forward(self, x):  # [B, 1, H, W] in [0, 1] -> logits [B, levels, H, W]
        return self.net(x)


def shift_down(x):
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1, :]


class GatedBlock(nn.Module):
    def __init__(self, conv, c_in, dim, k, first):
        super().__init__()
        p, hm = k // 2, "A" if first else "B"
        self.first = first
        self.v = conv(c_in, 2 * dim, (p + 1, k), (p, p), mask_type="V")
        self.v2h = nn.Conv2d(2 * dim, 2 * dim, 1)
        self.h_tanh = conv(c_in, dim, (1, k), (0, p), mask_type=hm)
        self.h_gate = conv(c_in, dim, (1, k), (0, p), mask_type=hm)
        self.h_out = conv(dim, dim, 1, mask_type="B")

    def forward(self, v, h):
        H = v.shape[-2]
        vp = self.v(v)[:, :, :H]  # rows <= r
        a, b = vp.chunk(2, dim=1)
        v_new = torch.tanh(a) * torch.sigmoid(b)
        vt, vs = self.v2h(shift_down(vp)).chunk(2, dim=1)  # rows < r
        h_new = self.h_out(torch.tanh(self.h_tanh(h) + vt) * torch.sigmoid(self.h_gate(h) + vs))
        if not self.first:
            v_new, h_new = v_new + v, h_new + h
        return v_new, h_new


class GatedNet(nn.Module):
    def __init__(self, conv=GatedMaskedConv2d, dim=10, blocks=2, k=5, levels=4):
        super().__init__()
        self.levels = levels
        self.blocks = nn.ModuleList(GatedBlock(conv, 3 if i == 0 else dim, dim, k, i == 0) for i in range(blocks))
        self.head = conv(2 * dim, 3 * levels, 1, mask_type="B")

    def forward(self, x):  # [B, 3, H, W] in [0, 1] -> logits [B, levels, 3, H, W]
        v = h = x
        for blk in self.blocks:
            v, h = blk(v, h)
        out = self.head(F.relu(torch.cat([h, shift_down(v)], dim=1)))
        B, _, H, W = out.shape
        return out.view(B, self.levels, 3, H, W)


# ---- sampling with given draws -----------------------------------------------------------------------------
def _pick(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw from logits [B, L] with uniforms u [B]: index in [0, L)."""
    cdf = logits.softmax(-1).cumsum(-1)
    return (cdf < u[:, None]).sum(-1).clamp(max=logits.shape[-1] - 1)


def channel_logits(out: torch.Tensor, ch: int) -> torch.Tensor:
    """Logits of channel ch from a model output at one pixel: [B, L] ([B, L, C] outputs) or [B, L] (C = 1)."""
    return out[:, :, ch] if out.dim() == 3 else out


def sample_naive(model, shape, draws):
    """Re-runs the model per sub-pixel. draws [H, W, C, B] uniforms -> integer image [B, C, H, W]."""
    B, C, H, W = shape
    L = None
    x = torch.zeros(shape, dtype=torch.float64)
    img = torch.zeros(shape, dtype=torch.int64)
    for r in range(H):
        for c in range(W):
            for ch in range(C):
                logits = channel_logits(model(x)[..., r, c], ch)
                L = logits.shape[-1]
                img[:, ch, r, c] = _pick(logits, draws[r, c, ch])
                x[:, ch, r, c] = img[:, ch, r, c] / (L - 1)
    return img


def sample_cached(model, shape, draws):
    B, C, H, W = shape
    inc = sk.incremental(model, torch.zeros(shape, dtype=torch.float64))
    img = torch.zeros(shape, dtype=torch.int64)
    for r in range(H):
        for c in range(W):
            for ch in range(C):
                logits = channel_logits(inc.step(r, c), ch)
                img[:, ch, r, c] = _pick(logits, draws[r, c, ch])
                inc.write(img[:, ch, r, c] / (logits.shape[-1] - 1), r, c, channel=ch)
    return img
