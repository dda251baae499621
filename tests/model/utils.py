"""Helpers shared by the model tests."""

from __future__ import annotations

import itertools

import torch

from spn import SPN


def enumerate_images(fixed: torch.Tensor, free: torch.Tensor, levels: int) -> torch.Tensor:
    """Every image that equals ``fixed`` [C, N, N] outside the boolean mask ``free`` and takes every
    combination of values 0..levels-1 inside it: int64 [levels^F, C, N, N]."""
    f = int(free.sum())
    combos = torch.tensor(list(itertools.product(range(levels), repeat=f)), dtype=torch.int64)
    out = fixed.expand(combos.shape[0], *fixed.shape).clone()
    out[:, free] = combos
    return out


def all_logits(model: SPN, x: torch.Tensor) -> torch.Tensor:
    """Teacher-forced logits of every modelled sub-pixel of x [B, C, N, N], in image layout
    [B, C, N, N, K] (rows/cols of slice 0 left at zero when it is given)."""
    cfg = model.config
    s, C, N, K = cfg.subscale, cfg.channels, cfg.image_size, cfg.num_classes
    low, high = model.split_bits(x.long())
    out = torch.zeros(x.shape[0], C, N, N, K, dtype=model.dtype)
    for k in range(cfg.first_slice, cfg.num_slices):
        t = torch.full((x.shape[0],), k, dtype=torch.int64)
        target = low[:, :, k // s :: s, k % s :: s]
        lg = model.slice_logits(target, model.condition(low, high, t))  # [B, n, n, C, K]
        out[:, :, k // s :: s, k % s :: s] = lg.permute(0, 3, 1, 2, 4)
    return out


def order_index(C: int, N: int, s: int) -> torch.Tensor:
    """Position of every sub-pixel (c, y, x) in the generation order: int64 [C, N, N]."""
    n = N // s
    c, y, x = torch.meshgrid(torch.arange(C), torch.arange(N), torch.arange(N), indexing="ij")
    k = (y % s) * s + (x % s)
    return ((k * n + y // s) * n + x // s) * C + c
