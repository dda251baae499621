"""Building blocks of the context network and the slice decoder.

Every decoder layer has ``forward`` (the whole slice at once, for training and log_prob) and ``step`` methods
that read and write an explicit cache entry (spn/cache.py), for sampling one position at a time. The step
methods must reproduce ``forward`` exactly up to float rounding; tests/model/test_sampling.py checks it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from spn_kernels import MaskedConv2d

from .cache import AttentionCache, GatedBlockCache


def gate(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Gated activation tanh(a) * sigmoid(b) over the two halves of ``dim``."""
    a, b = x.chunk(2, dim=dim)
    return torch.tanh(a) * torch.sigmoid(b)


def shift_down(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> the same map moved down one row, zeros in row 0."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


# ---------------------------------------------------------------------------------------------- context net
class ResBlock(nn.Module):
    """x + conv3x3(dropout(relu(conv3x3(relu(x))))), unmasked (the context network sees only known slices)."""

    def __init__(self, d: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(d, d, 3, padding=1)
        self.conv2 = nn.Conv2d(d, d, 3, padding=1)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, D, n, n] -> [B, D, n, n]
        inner = F.dropout(F.relu(self.conv1(F.relu(x))), self.dropout, self.training)
        return x + self.conv2(inner)


class SelfAttention(nn.Module):
    """Multi-head self-attention over a token sequence [B, L, D], optionally causal, with a KV-cache step."""

    def __init__(self, d: int, heads: int, causal: bool) -> None:
        super().__init__()
        self.d, self.heads, self.causal = d, heads, causal
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)

    def _split(self, t: torch.Tensor) -> torch.Tensor:  # [B, L, D] -> [B, H, L, D/H]
        B, L, _ = t.shape
        return t.view(B, L, self.heads, self.d // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, D] -> [B, L, D]
        B, L, D = x.shape
        q, k, v = (self._split(t) for t in self.qkv(x).chunk(3, dim=-1))
        att = q @ k.transpose(-1, -2) / math.sqrt(D // self.heads)  # [B, H, L, L]
        if self.causal:
            future = torch.ones(L, L, dtype=torch.bool, device=x.device).triu(1)
            att = att.masked_fill(future, float("-inf"))
        y = att.softmax(-1) @ v  # [B, H, L, D/H]
        return self.out(y.transpose(1, 2).reshape(B, L, D))

    def step(self, cache: AttentionCache, x: torch.Tensor, pos: int) -> torch.Tensor:
        """Causal attention output at position ``pos`` for token x [B, D]; appends its key and value."""
        B, D = x.shape
        q, k, v = (self._split(t[:, None]) for t in self.qkv(x).chunk(3, dim=-1))  # [B, H, 1, D/H]
        cache.k[:, :, pos : pos + 1] = k
        cache.v[:, :, pos : pos + 1] = v
        keys, vals = cache.k[:, :, : pos + 1], cache.v[:, :, : pos + 1]
        att = q @ keys.transpose(-1, -2) / math.sqrt(D // self.heads)  # [B, H, 1, pos+1]
        y = att.softmax(-1) @ vals  # [B, H, 1, D/H]
        return self.out(y.reshape(B, D))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then + mlp(ln(x)); tokens [B, L, D]."""

    def __init__(self, d: int, heads: int, causal: bool) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = SelfAttention(d, heads, causal)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, D]
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))

    def step(self, cache: AttentionCache, x: torch.Tensor, pos: int) -> torch.Tensor:  # [B, D] -> [B, D]
        x = x + self.attn.step(cache, self.ln1(x), pos)
        return x + self.mlp(self.ln2(x))


# ---------------------------------------------------------------------------------------------- decoder
class GatedBlock(nn.Module):
    """One gated masked-conv block with no blind spot, conditioned on the context embedding.

    Vertical stack: vp = conv_V(v) + W_vc cond; its output row r sees input rows <= r (all columns).
    Horizontal stack: hp = conv_A|B(h) + W_vh shift_down(vp) + W_hc cond; shift_down makes row r see only
    rows < r of the vertical stack, so position (r, c) sees every earlier row plus the row's left part
    (mask "A" in the first block: not the position itself; "B" later: the previous layer's same position,
    which itself saw only earlier pixels). Outputs: v' = gate(vp) (+ v), h' = W_o gate(hp) (+ h).
    In training, dropout acts on both gated activations (the step methods are the eval-mode network).
    """

    def __init__(
        self, c_in: int, d: int, cond_ch: int, k: int, first: bool, backend: str | None, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.first, self.dropout = first, dropout
        self.vconv = MaskedConv2d(c_in, 2 * d, k, mask_type="V", backend=backend)
        self.hconv = MaskedConv2d(c_in, 2 * d, k, mask_type="A" if first else "B", backend=backend)
        # No bias: the shifted-in row 0 is zeros and must stay zeros through this 1x1 (the step relies on it).
        self.v2h = nn.Conv2d(2 * d, 2 * d, 1, bias=False)
        self.vcond = nn.Conv2d(cond_ch, 2 * d, 1, bias=False)
        self.hcond = nn.Conv2d(cond_ch, 2 * d, 1, bias=False)
        self.hout = nn.Conv2d(d, d, 1)

    def forward(self, v: torch.Tensor, h: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """v, h [B, c_in, n, n], cond [B, cond_ch, n, n] -> v', h' [B, d, n, n]."""
        vp = self.vconv(v) + self.vcond(cond)
        hp = self.hconv(h) + self.v2h(shift_down(vp)) + self.hcond(cond)
        drop = self.dropout if self.training else 0.0
        v_out, h_out = F.dropout(gate(vp), drop), self.hout(F.dropout(gate(hp), drop))
        if not self.first:
            v_out, h_out = v_out + v, h_out + h
        return v_out, h_out

    # -- step ----------------------------------------------------------------------------------------------
    def allocate_cache(self, v_map: torch.Tensor, h_map: torch.Tensor, cond_ch_n: int) -> GatedBlockCache:
        """Cache over the padded input maps v_map and h_map [B, n+p, n+2p, c_in] (zeros; the first block passes
        the same tensor twice: both stacks read the slice itself), with this block's weights packed for the
        step (eval mode: no dropout)."""
        B, n = v_map.shape[0], cond_ch_n
        k = self.hconv.kernel_size[-1]
        p = k // 2
        two_d = self.v2h.out_channels

        def packed(conv: nn.Module) -> torch.Tensor:  # masked rows 0..p (rows below are masked) in window order
            return (conv.weight * conv.mask)[:, :, : p + 1].permute(2, 3, 1, 0).reshape(-1, two_d).contiguous()

        return GatedBlockCache(
            v_in=v_map,
            h_in=h_map,
            row_term=v_map.new_zeros(B, n, two_d),
            cond_v=v_map.new_zeros(n, B, n, two_d),
            cond_h=v_map.new_zeros(n, B, n, two_d),
            w_h=packed(self.hconv),
            w_v=packed(self.vconv),
            w_vh=self.v2h.weight[:, :, 0, 0].t().contiguous(),
            w_out=self.hout.weight[:, :, 0, 0].t().contiguous(),
            b_out=self.hout.bias.clone(),
        )

    def start_slice(self, cache: GatedBlockCache, cond_rows: torch.Tensor) -> None:
        """Empties a cache in place for a new slice with conditioning cond_rows [n*B*n, cond_ch] (the map
        [B, cond_ch, n, n] in the caches' row-major order [n, B, n]; the buffers keep their addresses, which
        captured CUDA graphs rely on); the conditioning is projected once here, straight into the cache."""
        cache.v_in.zero_()
        cache.h_in.zero_()
        for conv, cond_conv, out in ((self.vconv, self.vcond, cache.cond_v), (self.hconv, self.hcond, cache.cond_h)):
            w = cond_conv.weight[:, :, 0, 0].t()  # [cond_ch, 2d]
            flat = out.view(-1, out.shape[-1])
            if conv.bias is None:
                torch.mm(cond_rows, w, out=flat)
            else:
                torch.addmm(conv.bias, cond_rows, w, out=flat)
        cache.row_term.copy_(cache.cond_h[0])  # row 0: nothing above it

    def step_row(self, cache: GatedBlockCache, v_row: torch.Tensor | None, row: int, pad: int) -> torch.Tensor:
        """Vertical stack for a completed row: v_row [B, n, c_in] (None: already in the cache) -> v' row
        [B, n, d]. Prepares the horizontal stack's row term of row + 1."""
        B, n, two_d = cache.row_term.shape
        if v_row is not None:
            cache.v_in[:, pad + row, pad : pad + n] = v_row
        # every column's (p+1) x k window as one matrix [B*n, (p+1)*k*c_in], in the packed weight's order
        win = cache.v_in[:, row : row + pad + 1].unfold(2, 2 * pad + 1, 1).permute(0, 2, 1, 4, 3).reshape(B * n, -1)
        vp = torch.addmm(cache.cond_v[row].view(B * n, two_d), win, cache.w_v)  # [B*n, 2d]
        if row + 1 < n:
            torch.addmm(cache.cond_h[row + 1].view(B * n, two_d), vp, cache.w_vh, out=cache.row_term.view(B * n, -1))
        v_out = gate(vp, -1).view(B, n, -1)  # [B, n, d]
        return v_out if self.first else v_out + cache.v_in[:, pad + row, pad : pad + n]
