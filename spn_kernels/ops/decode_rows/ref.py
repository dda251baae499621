"""Pure-PyTorch reference of decode_rows: rows of a slice sampled by a gated PixelCNN decoder with a categorical or
a discretised logistic mixture channel head, on the padded channels-last caches of spn.cache (GatedBlockCache), one
sub-pixel after the other. The mixture's bin probabilities (logistic_bin_log_prob) are defined here, once; the
model's head (spn.heads) uses the same function."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..categorical_draw.ref import categorical_draw_ref_
from ..gated_step.ref import gated_step_ref


def logistic_bin_log_prob(mean: torch.Tensor, log_scale: torch.Tensor, k: torch.Tensor, classes: int) -> torch.Tensor:
    """log P(bin k) of a logistic(mean, exp(log_scale)) discretised to ``classes`` bins of [-1, 1].

    Bin k covers [x_k - 1/K, x_k + 1/K] around its centre x_k = (2k + 1)/K - 1, except that bin 0 extends to
    -inf and bin K-1 to +inf, so the bins partition the real line. Shapes broadcast; float in, float out.
    With a = (x_k + 1/K - mean)/scale > b = (x_k - 1/K - mean)/scale, the bin's mass is
    sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - exp(b - a)), evaluated in logs (no cancellation).
    """
    inv_s = torch.exp(-log_scale)
    centre = (2 * k.to(mean.dtype) + 1) / classes - 1
    half = 1.0 / classes
    inf = torch.tensor(math.inf, dtype=mean.dtype, device=mean.device)
    a = torch.where(k == classes - 1, inf, (centre + half - mean) * inv_s)
    b = torch.where(k == 0, -inf, (centre - half - mean) * inv_s)
    width = torch.where((k == 0) | (k == classes - 1), inf, 2 * half * inv_s)  # a - b, exactly
    return F.logsigmoid(a) + F.logsigmoid(-b) + torch.log(-torch.expm1(-width))


def mixture_log_probs_ref(
    raw: torch.Tensor, values: torch.Tensor, c: int, mixtures: int, classes: int, log_scale_min: float
) -> torch.Tensor:
    """The K bin log-probabilities [B, K] of channel c under a mixture of M = ``mixtures`` discretised logistics.

    raw [B, M*(3+C)] holds per component its weight logit, mean, log-scale (raw[:, :M], [M:2M], [2M:3M]) and C
    coefficients ([3M:], [M, C] row-major); values [B, C] is the pixel scaled to [-1, 1] (only channels < c read).
    mean_m += sum_{c' < c} tanh(coef[m, c']) values[c']; log-scales are clamped below at log_scale_min;
    log p(k) = logsumexp_m(log_softmax(logits)_m + logistic_bin_log_prob(mean_m, log_scale_m, k)).
    """
    M, C = mixtures, values.shape[1]
    logit, mean, log_scale, coef = raw.split([M, M, M, M * C], -1)
    coef = torch.tanh(coef.unflatten(-1, (M, C)))[..., :c]  # [B, M, c]
    mean = mean + (coef * values[:, None, :c]).sum(-1)
    log_scale = log_scale.clamp(min=log_scale_min)
    k = torch.arange(classes, device=raw.device)
    lp = logistic_bin_log_prob(mean[:, None, :], log_scale[:, None, :], k[:, None], classes)  # [B, K, M]
    return torch.logsumexp(F.log_softmax(logit, -1)[:, None, :] + lp, -1)


def vertical_row_ref(pixels, v_in, row_term, cond_v, cond_h, w_v, w_vh, row: int) -> None:
    """Feeds the finished row ``row`` through every block's vertical stack (row + 1 < n), in place: block i's
    input row (i >= 1: block i-1's output) is written into v_in, and row_term[i] becomes row + 1's term
        vp = cond_v[i][row] + window @ w_v[i]              # [B*n, 2d], window: rows row..row+p, every column
        row_term[i] = cond_h[i][row + 1] + vp @ w_vh[i]
        v_i = tanh(vp[:, :d]) * sigmoid(vp[:, d:])  (+ v_{i-1}'s row for i >= 1)
    """
    B, _, Wp, _ = pixels.shape
    n = row_term[0].shape[1]
    p = (Wp - n) // 2
    maps = [pixels, *v_in]
    v = None
    for i in range(len(w_v)):
        x = maps[i]
        if i:
            x[:, p + row, p : p + n] = v
        win = x[:, row : row + p + 1].unfold(2, 2 * p + 1, 1).permute(0, 2, 1, 4, 3).reshape(B * n, -1)
        vp = torch.addmm(cond_v[i][row].reshape(B * n, -1), win, w_v[i])  # [B*n, 2d]
        row_term[i].copy_(torch.addmm(cond_h[i][row + 1].reshape(B * n, -1), vp, w_vh[i]).view(B, n, -1))
        a, b = vp.chunk(2, -1)
        out = (torch.tanh(a) * torch.sigmoid(b)).view(B, n, -1)
        v = out if i == 0 else out + x[:, p + row, p : p + n]


def decode_rows_ref(
    pixels: torch.Tensor,
    v_in: list[torch.Tensor],
    h_in: list[torch.Tensor],
    row_term: list[torch.Tensor],
    cond_v: list[torch.Tensor],
    cond_h: list[torch.Tensor],
    w_v: list[torch.Tensor],
    w_h: list[torch.Tensor],
    w_vh: list[torch.Tensor],
    w_out: list[torch.Tensor],
    b_out: list[torch.Tensor],
    head_inp: torch.Tensor,
    head_bias: torch.Tensor,
    head_prev: list[torch.Tensor],
    head_out_w: list[torch.Tensor],
    head_out_b: list[torch.Tensor],
    mixtures: int,
    log_scale_min: float,
    levels: torch.Tensor,
    u: torch.Tensor,
    temperature: float,
    values: torch.Tensor,
    log_p: torch.Tensor,
    row_start: int,
    row_end: int,
) -> None:
    """Samples rows row_start .. row_end - 1 of an n x n slice with C channels, in raster order, in place.

    Sub-pixel (r, c, ch) has index i = (r*n + c)*C + ch. For every position (r, c) of the rows:
        h = gated_step_ref([pixels, *h_in], row_term, w_h, w_out, b_out, r, c)        # [B, d]
        base = h @ head_inp + head_bias, viewed [B, C, Dh]
        for ch in 0 .. C-1:
            z = base[:, ch] + pixels[:, p+r, p+c, :ch] @ head_prev[ch]                  # [B, Dh]
            logits = relu(z) @ head_out_w[ch] + head_out_b[ch]         # [B, K] (mixtures = 0: categorical)
            (mixtures > 0: logits = mixture_log_probs_ref(logits, pixels[:, p+r, p+c], ch, mixtures, K, ...))
            values[i], log_p[i] = categorical_draw_ref(logits, u[i], temperature)
            pixels[:, p+r, p+c, ch] = levels[values[i]]
    and after each row r with r + 1 < n, vertical_row_ref(..., r) prepares row r + 1.

    Args:
        pixels: [B, n+p, n+2p, C], the slice's scaled values so far (zeros where unknown), padded p rows on top
            and p columns each side; both stacks of block 0 read it. Written at every sampled position.
        v_in, h_in: L - 1 tensors [B, n+p, n+2p, d], the padded input maps of blocks 1 .. L-1 (written in place).
        row_term: L tensors [B, n, 2d]: each block's horizontal term of the current row (row_start's on entry;
            rewritten for every following row).
        cond_v, cond_h: L tensors [n, B, n, 2d], the slice's conditioning projections (+ conv biases).
        w_v, w_h: L tensors [(p+1)*k*c_i, 2d], the masked vertical / horizontal kernels' rows 0..p (k = 2p + 1).
        w_vh: L tensors [2d, 2d]; w_out: L tensors [d, d]; b_out: L tensors [d].
        head_inp: [d, C*Dh]; head_bias: [C*Dh]; head_prev: C tensors [ch, Dh]; head_out_w: C tensors [Dh, K];
            head_out_b: C tensors [K]: the channel head (spn.heads, step_weights()); for a mixture head the
            outputs are M*(3+C) raw values instead of K logits.
        mixtures: 0 for the categorical head, else the mixture's M; log_scale_min: its floor on log-scales.
        levels: [K] the scaled value of each level (K = 2^bits, the number of values).
        u: float64 [n*n*C, B], uniforms in [0, 1), one per sub-pixel.
        temperature: > 0. values: int64 [n*n*C, B], log_p: float64 [n*n*C, B]: written at the rows' indices
            (log p at temperature 1; NaN where the logits had no distribution, see categorical_draw_ref).
        row_start, row_end: 0 <= row_start < row_end <= n.
    """
    B, _, Wp, C = pixels.shape
    n = row_term[0].shape[1]
    p = (Wp - n) // 2
    K = levels.shape[0]
    hs = [pixels, *h_in]
    for r in range(row_start, row_end):
        for c in range(n):
            h = gated_step_ref(hs, row_term, w_h, w_out, b_out, r, c)
            base = torch.addmm(head_bias, h, head_inp).view(B, C, -1)
            for ch in range(C):
                z = base[:, ch] if ch == 0 else torch.addmm(base[:, ch], pixels[:, p + r, p + c, :ch], head_prev[ch])
                logits = torch.addmm(head_out_b[ch], torch.relu(z), head_out_w[ch])
                if mixtures:
                    logits = mixture_log_probs_ref(logits, pixels[:, p + r, p + c], ch, mixtures, K, log_scale_min)
                i = (r * n + c) * C + ch
                categorical_draw_ref_(logits, u[i], temperature, values[i], log_p[i])
                pixels[:, p + r, p + c, ch] = levels[values[i]]
        if r + 1 < n:
            vertical_row_ref(pixels, v_in, row_term, cond_v, cond_h, w_v, w_vh, r)
