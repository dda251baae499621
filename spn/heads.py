"""Output heads: the per-sub-pixel distribution over 2^bits values, channel c given the pixel's hidden state and
its channels < c.

Both heads share one interface, so the model, both samplers and every test treat them alike:
    forward(hidden [..., D], values [..., C]) -> log-probabilities or logits [..., C, K] for every channel
        (teacher forcing: values are the pixel's true channels scaled to [-1, 1]; channel c reads only < c);
    log_prob(hidden, values, target [..., C] int64) -> [..., C], the log-probability of each target value;
    inp(hidden) -> base [..., Dh], then channel(base, values [B, C], c) -> [B, K] (one channel at a time);
    step_weights(), step_base(w, hidden [B, D]) and step_channel(w, base, values [B, C], c) -> [B, K]: the same
        with the weights packed once (the cached sampler).
The rows are logits of a categorical: the samplers draw from softmax(row / temperature) by inverse CDF.

- CategoricalHead ("categorical", the paper's head): K free logits per channel.
- LogisticMixtureHead ("logistic_mixture", PixelCNN++ by Salimans et al. 2017): a mixture of M logistics
  discretised to the K bins of the value grid; the bins at both ends are open to -inf and +inf, so the K
  probabilities sum to 1 exactly for every bit depth (the rows are normalised log-probabilities). Each channel's
  means are shifted by learned, pixel-dependent coefficients times the pixel's earlier channels (PixelCNN++'s
  linear colour dependence), on top of the head's own view of those channels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from spn_kernels.ops.decode_rows.ref import logistic_bin_log_prob

OUTPUTS = ("categorical", "logistic_mixture")
LOG_SCALE_MIN = -7.0  # PixelCNN++'s floor on the logistic's log-scale: keeps bins of width 2/K resolvable


class _Trunk(nn.Module):
    """z_c = W_h hidden + sum_{c' < c} U[c, c'] value_{c'} + b_c; out_c = V_c relu(z_c) + a_c.

    Values enter scaled to [-1, 1] (an embedding table would grow as 2^bits). The strictly lower triangular U
    keeps the spatial network's masks purely spatial.
    """

    def __init__(self, d: int, channels: int, hidden: int, outputs: int) -> None:
        super().__init__()
        self.channels = channels
        self.inp = nn.Linear(d, hidden, bias=False)
        self.prev = nn.Parameter(torch.randn(channels, channels, hidden) / math.sqrt(max(channels, 1)))
        self.bias = nn.Parameter(torch.zeros(channels, hidden))
        self.out_w = nn.Parameter(torch.randn(channels, outputs, hidden) / math.sqrt(hidden))
        self.out_b = nn.Parameter(torch.zeros(channels, outputs))
        self.register_buffer("tri", torch.ones(channels, channels).tril(-1), persistent=False)

    def raw(self, hidden: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """hidden [..., D], values [..., C] -> raw outputs [..., C, outputs] of every channel."""
        u = self.prev * self.tri[:, :, None].to(self.prev.dtype)  # [C, C', Dh]
        z = self.inp(hidden)[..., None, :] + torch.einsum("...k,ckh->...ch", values, u) + self.bias  # [..., C, Dh]
        return torch.einsum("...ch,ckh->...ck", F.relu(z), self.out_w) + self.out_b

    def raw_channel(self, base: torch.Tensor, values: torch.Tensor, c: int) -> torch.Tensor:
        """Raw outputs [B, outputs] of channel c; base = inp(hidden) [B, Dh], values [B, C] (only < c read)."""
        z = base + values[:, :c] @ self.prev[c, :c] + self.bias[c]  # [B, Dh]
        return F.linear(F.relu(z), self.out_w[c], self.out_b[c])

    # -- the cached sampler's step: weights packed once per sample() call, few small ops per channel ------------
    def step_weights(self) -> dict:
        """The weights laid out for step_base / step_raw (a snapshot: pack again after changing the weights)."""
        C = self.channels
        return dict(
            inp=self.inp.weight.t().repeat(1, C).contiguous(),  # [D, C*Dh]: one matmul gives every channel's input
            bias=self.bias.reshape(-1).clone(),  # [C*Dh]
            prev=[self.prev[c, :c].clone() for c in range(C)],  # [c, Dh]
            out_w=[self.out_w[c].t().contiguous() for c in range(C)],  # [Dh, outputs]
            out_b=[self.out_b[c].clone() for c in range(C)],
        )

    def step_base(self, w: dict, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [B, D] -> every channel's input before its earlier channels are added, [B, C, Dh]."""
        return torch.addmm(w["bias"], hidden, w["inp"]).view(hidden.shape[0], self.channels, -1)

    def step_raw(self, w: dict, base: torch.Tensor, values: torch.Tensor, c: int) -> torch.Tensor:
        """Raw outputs [B, outputs] of channel c, as raw_channel; base from step_base, values [B, C] (< c read)."""
        z = base[:, c] if c == 0 else torch.addmm(base[:, c], values[:, :c], w["prev"][c])
        return torch.addmm(w["out_b"][c], F.relu(z), w["out_w"][c])


class CategoricalHead(_Trunk):
    """K = 2^bits free logits per channel."""

    def __init__(self, d: int, channels: int, hidden: int, classes: int) -> None:
        super().__init__(d, channels, hidden, classes)

    def forward(self, hidden: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        return self.raw(hidden, values)  # [..., C, K]

    def log_prob(self, hidden: torch.Tensor, values: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.raw(hidden, values), -1).gather(-1, target[..., None])[..., 0]

    def channel(self, base: torch.Tensor, values: torch.Tensor, c: int) -> torch.Tensor:
        return self.raw_channel(base, values, c)  # [B, K]

    def step_channel(self, w: dict, base: torch.Tensor, values: torch.Tensor, c: int) -> torch.Tensor:
        return self.step_raw(w, base, values, c)  # [B, K]


class LogisticMixtureHead(_Trunk):
    """A mixture of M discretised logistics per channel; rows are exactly normalised log-probabilities."""

    def __init__(self, d: int, channels: int, hidden: int, classes: int, mixtures: int) -> None:
        # per mixture component: weight logit, mean, log-scale, and one coefficient per channel (only c' < c used)
        super().__init__(d, channels, hidden, mixtures * (3 + channels))
        self.classes, self.mixtures = classes, mixtures

    def _params(self, raw: torch.Tensor, values: torch.Tensor, tri: torch.Tensor):
        """raw [..., M*(3+C)], values [..., C], tri [C] (1 for channels this row may read) -> the mixture's
        log-weights, means and log-scales, [..., M] each."""
        M, C = self.mixtures, self.channels
        logit, mean, log_scale, coef = raw.split([M, M, M, M * C], -1)
        coef = torch.tanh(coef.unflatten(-1, (M, C)))  # [..., M, C]
        mean = mean + (coef * (values * tri)[..., None, :]).sum(-1)
        return F.log_softmax(logit, -1), mean, log_scale.clamp(min=LOG_SCALE_MIN)

    def _log_prob_at(self, raw: torch.Tensor, values: torch.Tensor, tri: torch.Tensor, k: torch.Tensor):
        log_w, mean, log_scale = self._params(raw, values, tri)  # [..., M]
        lp = logistic_bin_log_prob(mean[..., None, :], log_scale[..., None, :], k[..., None], self.classes)
        return torch.logsumexp(log_w[..., None, :] + lp, -1)  # [..., len(k)]

    def forward(self, hidden: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        raw = self.raw(hidden, values)  # [..., C, M*(3+C)]
        k = torch.arange(self.classes, device=raw.device)
        return self._log_prob_at(raw, values[..., None, :], self.tri, k)  # [..., C, K]

    def log_prob(self, hidden: torch.Tensor, values: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Only the target bin is evaluated: K times cheaper than forward() in training.
        raw = self.raw(hidden, values)  # [..., C, M*(3+C)]
        return self._log_prob_at(raw, values[..., None, :], self.tri, target[..., None])[..., 0]  # [..., C]

    def channel(self, base: torch.Tensor, values: torch.Tensor, c: int) -> torch.Tensor:
        raw = self.raw_channel(base, values, c)  # [B, M*(3+C)]
        k = torch.arange(self.classes, device=raw.device)
        return self._log_prob_at(raw, values, self.tri[c], k)  # [B, K]

    def step_weights(self) -> dict:
        return dict(super().step_weights(), k=torch.arange(self.classes, device=self.out_w.device))

    def step_channel(self, w: dict, base: torch.Tensor, values: torch.Tensor, c: int) -> torch.Tensor:
        return self._log_prob_at(self.step_raw(w, base, values, c), values, self.tri[c], w["k"])  # [B, K]


def build_head(output: str, d: int, channels: int, hidden: int, classes: int, mixtures: int) -> nn.Module:
    """The head an SPNConfig asks for (``output`` in OUTPUTS)."""
    if output == "categorical":
        return CategoricalHead(d, channels, hidden, classes)
    if output == "logistic_mixture":
        return LogisticMixtureHead(d, channels, hidden, classes, mixtures)
    raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
