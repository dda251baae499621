"""Pure-PyTorch reference of categorical_draw: inverse-CDF sampling from softmax(logits / temperature) in float64."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def categorical_draw_ref(
    logits: torch.Tensor, u: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One draw per row: the value v with cdf[v - 1] < u * cdf[K - 1] <= cdf[v], cdf the cumulative sum of
    exp((z - max z) / temperature), z = logits in float64; and log p(v) at temperature 1.

    The logits are shifted by their row maximum before the division, so a tiny temperature tends to the argmax
    instead of overflowing. A row with a NaN or +inf logit, or only -inf logits, has no distribution: its
    log-probability is NaN (its value is some index in [0, K)).

    Args:
        logits: [B, K] floating; u: float64 [B] in [0, 1); temperature: > 0.
    Returns:
        int64 values [B] and float64 log-probabilities [B].
    """
    z = logits.to(torch.float64)
    z = z - z.amax(-1, keepdim=True)
    e = (z if temperature == 1 else z / temperature).exp()
    cdf = e.cumsum(-1)  # [B, K], unnormalised
    idx = torch.searchsorted(cdf, u[:, None] * cdf[:, -1:]).clamp_(0, logits.shape[-1] - 1)  # [B, 1]
    return idx[:, 0], F.log_softmax(z, -1).gather(-1, idx)[:, 0]


def categorical_draw_ref_(
    logits: torch.Tensor, u: torch.Tensor, temperature: float, values: torch.Tensor, log_p: torch.Tensor
) -> None:
    """categorical_draw_ref written into values (int64 [B]) and log_p (float64 [B])."""
    v, lp = categorical_draw_ref(logits, u, temperature)
    values.copy_(v)
    log_p.copy_(lp)
