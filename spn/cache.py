"""The inference cache of the slice decoder: one explicit entry per layer, allocated once per slice.

Masked convolutions cache their whole input map (the layout spn_kernels.masked_conv2d_step expects: zeros
where nothing is known yet), so a step reads only the k//2 + 1 rows x k columns its mask can see and the
work per position does not grow with the slice. Attention layers keep a key/value cache of the slice's raster
sequence (preallocated to n*n positions). All tensors are allocated up front and written in place, which is
also what lets a CUDA graph replay a step on static buffers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class GatedBlockCache:
    """Cache of one GatedBlock.

    v_in: [B, c_in, n, n] input map of the vertical stack (conv "V").
    h_in: [B, c_in, n, n] input map of the horizontal stack (conv "A"/"B"); the first block's is the same
        tensor as v_in (both read the slice itself).
    above: [B, 2d, n] the vertical stack's row r - 1 after the 1x1 into the horizontal stack (zeros for row 0).
    cond_v, cond_h: [B, 2d, n, n] the conditioning projections, computed once per slice.
    """

    v_in: torch.Tensor
    h_in: torch.Tensor
    above: torch.Tensor
    cond_v: torch.Tensor
    cond_h: torch.Tensor


@dataclass
class AttentionCache:
    """Key/value cache of one causal attention layer: k, v [B, heads, n*n, d/heads]; position i holds the
    key/value of raster position i once that position has been stepped."""

    k: torch.Tensor
    v: torch.Tensor


@dataclass
class DecoderCache:
    """Everything the slice decoder needs to continue a partly generated slice.

    blocks: one GatedBlockCache per gated block; attention: one AttentionCache per attention block;
    pixels: [B, C, n, n] the slice's values so far, scaled to [-1, 1] (zeros where unknown; the same
    tensor as blocks[0].v_in). rows_done: how many rows the vertical stacks have consumed.
    """

    blocks: list[GatedBlockCache]
    attention: list[AttentionCache] = field(default_factory=list)
    rows_done: int = 0

    @property
    def pixels(self) -> torch.Tensor:
        return self.blocks[0].v_in
