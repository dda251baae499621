"""Pure-PyTorch reference of gated_step: the horizontal stacks of a gated PixelCNN's blocks at one position, one
block after the other, on padded channels-last caches (the layout of spn.cache.GatedBlockCache).

Non-finite values: each block is a dense product of its whole window with w_h, whose masked taps are zeros (one
GEMM per block, the reason for the layout), so a NaN or inf anywhere in the window reaches the output (NaN * 0
is NaN), the masked positions right of the centre included. Unlike masked_conv2d, which never reads a masked
tap, it relies on its caller keeping the positions not generated yet finite (spn.cache.GatedBlockCache: zeros).
"""

from __future__ import annotations

import torch


def gated_step_ref(
    h_in: list[torch.Tensor],
    row_term: list[torch.Tensor],
    w_h: list[torch.Tensor],
    w_out: list[torch.Tensor],
    b_out: list[torch.Tensor],
    row: int,
    col: int,
) -> torch.Tensor:
    """The output of the last of L gated blocks at position (row, col) of an n x n map.

    Block i (c_i input channels, d output channels, kernel k = 2p + 1) computes
        hp = row_term[i][:, col] + window_i @ w_h[i]                      # [B, 2d]
        h_i = tanh(hp[:, :d]) * sigmoid(hp[:, d:]) @ w_out[i] + b_out[i]  (+ h_{i-1} for i >= 1)
    where window_i = h_in[i][:, row : row + p + 1, col : col + k] flattened in (row, column, channel) order: the
    k//2 + 1 rows x k columns around the position. Block i >= 1 first writes h_{i-1} into its cache at the position.

    Args:
        h_in: L tensors [B, n + p, n + 2p, c_i], padded with zeros (p rows on top, p columns each side); the
            position (r, c) is at [p + r, p + c]. Entries i >= 1 are written in place at (row, col).
        row_term: L tensors [B, n, 2d]: what each block adds at each column of the row (its vertical stack's
            term, conditioning and bias).
        w_h: L tensors [(p + 1) * k * c_i, 2d], the masked horizontal kernels' rows 0..p.
        w_out: L tensors [d, d] (the output 1x1, transposed); b_out: L tensors [d].
        row, col: the position, 0 <= row, col < n.
    Returns:
        [B, d], the last block's output h_{L-1}.
    """
    n = row_term[0].shape[1]
    p = (h_in[0].shape[2] - n) // 2
    k = 2 * p + 1
    h = None
    for i in range(len(h_in)):
        if i:
            h_in[i][:, p + row, p + col] = h
        win = h_in[i][:, row : row + p + 1, col : col + k].reshape(h_in[i].shape[0], -1)
        hp = torch.addmm(row_term[i][:, col], win, w_h[i])
        a, b = hp.chunk(2, -1)
        out = torch.addmm(b_out[i], torch.tanh(a) * torch.sigmoid(b), w_out[i])
        h = out if i == 0 else out + h
    return h
