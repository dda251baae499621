"""The slice decoder: a masked network over the target slice, conditioned on the context embedding.

forward() runs the whole slice at once (training, log_prob, the naive sampler); allocate_inference_cache(),
start_slice(), step_row(), step() and write() run it one position at a time on an explicit DecoderCache (the
cached sampler). Sampling order inside a slice is raster order; at the start of row r the vertical stacks consume
row r - 1 (step_row), then each position (r, c) runs the horizontal stacks and the attention blocks (step), the
head samples the pixel's channels, and write() stores the pixel where the next steps read it.
"""

from __future__ import annotations

import torch
from torch import nn

import spn_kernels as sk

from .cache import AttentionCache, DecoderCache
from .config import SPNConfig
from .layers import GatedBlock, TransformerBlock


class SliceDecoder(nn.Module):
    """Gated masked-conv blocks (no blind spot), then optional causal self-attention over the raster sequence.

    Input: the target slice scaled to [-1, 1], [B, C, n, n] (values of positions not yet generated are
    never read), and the conditioning map [B, cond_ch, n, n], which every block adds through 1x1 convs.
    Output: the hidden state of every position, [B, D, n, n]; position (r, c) depends only on pixels
    earlier in raster order.
    """

    def __init__(self, cfg: SPNConfig, cond_ch: int) -> None:
        super().__init__()
        C, D, n = cfg.channels, cfg.decoder_channels, cfg.slice_size
        self.channels, self.width, self.n, self.heads = C, D, n, cfg.heads
        self.step_backend = "torch" if cfg.backend == "torch" else None  # gated_step: the C++ kernel on CPU
        self.blocks = nn.ModuleList(
            GatedBlock(C if i == 0 else D, D, cond_ch, cfg.kernel_size, i == 0, cfg.backend, cfg.dropout)
            for i in range(cfg.decoder_blocks)
        )
        self.attention = nn.ModuleList(
            TransformerBlock(D, cfg.heads, causal=True) for _ in range(cfg.decoder_attention)
        )
        # Attention alone is blind to position; a learned embedding of the raster index is our choice.
        self.pos = nn.Parameter(torch.zeros(n * n, D)) if cfg.decoder_attention else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x [B, C, n, n] (scaled), cond [B, cond_ch, n, n] -> hidden [B, D, n, n]."""
        v = h = x
        for blk in self.blocks:
            v, h = blk(v, h, cond)
        if len(self.attention):
            B, D, n, _ = h.shape
            t = h.flatten(2).transpose(1, 2) + self.pos  # [B, n*n, D]
            for blk in self.attention:
                t = blk(t)
            h = t.transpose(1, 2).reshape(B, D, n, n)
        return h

    # -- cached decoding ---------------------------------------------------------------------------------------
    def allocate_inference_cache(self, batch: int, dtype: torch.dtype, device: torch.device) -> DecoderCache:
        """An empty cache for slices of a batch of ``batch`` (zeros; start_slice() fills in the conditioning),
        with the weights packed for the step (eval mode)."""
        n, C, D, p = self.n, self.channels, self.width, self.blocks[0].hconv.kernel_size[-1] // 2

        def padded(c: int) -> torch.Tensor:
            return torch.zeros(batch, n + p, n + 2 * p, c, dtype=dtype, device=device)

        pixels = padded(C)
        blocks = []
        for i, blk in enumerate(self.blocks):
            v_map, h_map = (pixels, pixels) if i == 0 else (padded(D), padded(D))
            blocks.append(blk.allocate_cache(v_map, h_map, n))
        dh = D // self.heads
        attention = [
            AttentionCache(*(torch.zeros(batch, self.heads, n * n, dh, dtype=dtype, device=device) for _ in "kv"))
            for _ in self.attention
        ]
        step_args = tuple([getattr(c, f) for c in blocks] for f in ("h_in", "row_term", "w_h", "w_out", "b_out"))
        sk.gated_step_check(*step_args, 0, 0)  # once: the per-position calls skip the checks
        return DecoderCache(blocks, attention, pad=p, step_args=step_args)

    def start_slice(self, cache: DecoderCache, cond: torch.Tensor) -> None:
        """Empties ``cache`` in place for a new slice conditioned on cond [B, cond_ch, n, n]."""
        cond_rows = cond.permute(2, 0, 3, 1).reshape(-1, cond.shape[1])  # [n*B*n, cond_ch], one copy for all blocks
        for blk, c in zip(self.blocks, cache.blocks):
            blk.start_slice(c, cond_rows)
        for c in cache.attention:
            c.k.zero_()
            c.v.zero_()
        cache.rows_done = 0

    def step_row(self, cache: DecoderCache, row: int) -> None:
        """Feeds the completed row ``row`` of the slice through the vertical stacks (before any step in row + 1)."""
        if row != cache.rows_done:
            raise ValueError(f"step_row: rows must be fed in order; expected row {cache.rows_done}, got {row}")
        v = None  # the first block reads the slice from its cache (written pixel by pixel by write())
        for blk, c in zip(self.blocks, cache.blocks):
            v = blk.step_row(c, v, row, cache.pad)
        cache.rows_done = row + 1

    def step(self, cache: DecoderCache, row: int, col: int) -> torch.Tensor:
        """Hidden state [B, D] of position (row, col); needs step_row(row - 1) first and every earlier
        position written. Equal to forward(...)[:, :, row, col] up to float rounding."""
        if row != cache.rows_done:
            raise ValueError(f"step({row}, {col}): the vertical stacks consumed {cache.rows_done} rows, need {row}")
        # every block's horizontal stack in one call; the first block's mask "A" does not read the position itself
        h = sk.gated_step(*cache.step_args, row, col, backend=self.step_backend, checked=True)  # [B, D]
        if len(self.attention):
            pos = row * self.n + col
            h = h + self.pos[pos]
            for blk, c in zip(self.attention, cache.attention):
                h = blk.step(c, h, pos)
        return h

    def write(self, cache: DecoderCache, pixel: torch.Tensor, row: int, col: int) -> None:
        """Stores the generated pixel, scaled, [B, C] at (row, col) for later steps to read."""
        cache.pixels[:, cache.pad + row, cache.pad + col] = pixel
