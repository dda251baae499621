"""The context network: embeds every slice before the target (and, for depth upscaling, the high bits of
the whole image; for conditional models, the label and cond features) into a map that conditions every position
of the slice decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .conditioning import feature_channels
from .config import SPNConfig
from .layers import ResBlock, TransformerBlock


class ContextNetwork(nn.Module):
    """slice_context(x, s, t) [+ high-bit planes] [+ label and cond features] and the target's meta-position t ->
    embedding [B, D_c, n, n].

    conv3x3 stem + embedding(t) -> residual conv blocks -> full self-attention blocks over the n x n grid
    (with a learned position embedding: our choice) -> relu -> 1x1. It is unmasked: its input holds only
    slices < t (slice_context zeroes the rest), so it may condition every decoder position.
    """

    def __init__(self, cfg: SPNConfig) -> None:
        super().__init__()
        S2, C, D, n = cfg.num_slices, cfg.channels, cfg.context_channels, cfg.slice_size
        in_ch = S2 * (C + 1) * (2 if cfg.cond_bits else 1) + feature_channels(cfg)
        self.stem = nn.Conv2d(in_ch, D, 3, padding=1)
        self.meta = nn.Embedding(S2, D)
        self.blocks = nn.ModuleList(ResBlock(D, cfg.dropout) for _ in range(cfg.context_blocks))
        self.attention = nn.ModuleList(
            TransformerBlock(D, cfg.heads, causal=False) for _ in range(cfg.context_attention)
        )
        self.pos = nn.Parameter(torch.zeros(n * n, D)) if cfg.context_attention else None
        self.out = nn.Conv2d(D, D, 1)

    def forward(self, ctx: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """ctx [B, in_ch, n, n] float, t int64 [B] target slice -> [B, D_c, n, n]."""
        h = self.stem(ctx) + self.meta(t)[:, :, None, None]
        for blk in self.blocks:
            h = blk(h)
        if len(self.attention):
            B, D, n, _ = h.shape
            tok = h.flatten(2).transpose(1, 2) + self.pos  # [B, n*n, D]
            for blk in self.attention:
                tok = blk(tok)
            h = tok.transpose(1, 2).reshape(B, D, n, n)
        return self.out(F.relu(h))
