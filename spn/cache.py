"""The inference cache of an SPN: allocated once per sample() call (SPN.allocate_inference_cache), refilled
for every slice (SPN.start_slice), advanced one sub-pixel at a time (SPN.step, SPN.write).

Layout, chosen for a per-position step with no padding or masking work: every masked convolution's input map is
kept channels-last and zero-padded, [B, n + p, n + 2p, c_in] (p = k // 2 rows on top, p columns each side), so
position (r, c) is at [p + r, p + c] and the k//2 + 1 rows x k columns its mask can see are a plain slice
[r : r + p + 1, c : c + k]. Attention layers keep a key/value cache of the slice's raster sequence
(preallocated to n*n positions). The cache also holds the weights packed for the step (masks applied, laid out
as matrices): a snapshot taken at allocation, so allocate a new cache after changing the weights. All tensors
are allocated up front and written in place, which is also what lets a CUDA graph replay a step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class GatedBlockCache:
    """Cache of one GatedBlock (2d = twice the block's width).

    v_in: [B, n+p, n+2p, c_in] padded input map of the vertical stack.
    h_in: [B, n+p, n+2p, c_in] padded input map of the horizontal stack; the first block's is the same tensor
        as v_in (both read the slice itself).
    row_term: [B, n, 2d] what the horizontal stack adds at each column of the current row: W_vh vp(r - 1)
        (zeros for row 0) + the conditioning projection + the conv's bias.
    cond_v, cond_h: [n, B, n, 2d] the vertical and horizontal stacks' conditioning projections (+ their convs'
        biases), once per slice; row-major, so that a row is one [B*n, 2d] matrix.
    w_h: [(p+1)*k*c_in, 2d] the horizontal conv's masked rows 0..p, in the window's (row, col, channel) order.
    w_v: [(p+1)*k*c_in, 2d] the vertical conv's masked rows 0..p, in the same order.
    w_vh: [2d, 2d] the vertical-to-horizontal 1x1; w_out: [d, d] and b_out: [d] the output 1x1 (transposed).
    """

    v_in: torch.Tensor
    h_in: torch.Tensor
    row_term: torch.Tensor
    cond_v: torch.Tensor
    cond_h: torch.Tensor
    w_h: torch.Tensor
    w_v: torch.Tensor
    w_vh: torch.Tensor
    w_out: torch.Tensor
    b_out: torch.Tensor


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
    pad: p, the padding of the maps; rows_done: how many rows the vertical stacks have consumed; step_args: the
    blocks' tensors as spn_kernels.gated_step takes them (h_in, row_term, w_h, w_out, b_out lists).
    """

    blocks: list[GatedBlockCache]
    attention: list[AttentionCache] = field(default_factory=list)
    pad: int = 1
    rows_done: int = 0
    step_args: tuple = ()

    @property
    def pixels(self) -> torch.Tensor:
        """[B, n+p, n+2p, C]: the slice's values so far, scaled to [-1, 1], padded (zeros where unknown)."""
        return self.blocks[0].v_in


@dataclass
class InferenceCache:
    """An SPN's whole sampling state: the decoder's cache, the channel head's packed weights and the current
    pixel's head input, and where generation stands.

    head: the head's packed weights (heads.py: step_weights); base: [B, C, Dh] the current pixel's head input
    for every channel; pixel: [B, C] the current pixel's scaled values in the decoder's map (a view); levels:
    [2^bits] the scaled value of each integer level; next: the index of the next sub-pixel of the slice to step,
    in raster order (row, column, channel); graphs: the CUDA graphs of each pixel's decoding per position (CUDA only;
    None: eager), graphs_required: whether a failed capture raises, graph_pool: the memory pool they all share;
    u, values, log_p: [n*n*C, B] static buffers of a slice's uniforms (float64), drawn values (int64) and their
    log-probabilities (float64), in generation order, which captured pixels read and write; graph_temperature: the
    temperature the graphs were captured with;
    rows: the arguments of spn_kernels.decode_rows up to ``levels`` (None where the model's slices are decoded
    step by step: attention in the decoder, or a GPU), rows_checked: whether they were checked.
    """

    decoder: DecoderCache
    head: dict
    base: torch.Tensor
    levels: torch.Tensor
    pixel: torch.Tensor | None = None
    next: int = 0
    graphs: dict | None = None
    graphs_required: bool = False
    graph_pool: object = None
    rows: tuple | None = None
    rows_checked: bool = False
    u: torch.Tensor | None = None
    values: torch.Tensor | None = None
    log_p: torch.Tensor | None = None
    graph_temperature: float | None = None
