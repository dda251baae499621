"""A tiny stand-in for spn.SPN with the same interface (config, log_prob, bits_per_dim, loss, sample,
needs_conditioning), so the data, checkpoint and training code can be tested in isolation and fast. Test-only: never
imported by the package."""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn


@dataclasses.dataclass
class StandInConfig:
    image_size: int = 8
    channels: int = 3
    bits: int = 8
    hidden: int = 4


class StandIn(nn.Module):
    """Every sub-pixel independent: logits = per-position bias + a 1x1 conv of a fixed position code."""

    def __init__(self, config: StandInConfig):
        super().__init__()
        self.config = config
        c, n, k = config.channels, config.image_size, 2**config.bits
        self.bias = nn.Parameter(torch.zeros(c, n, n, k))
        self.code = nn.Parameter(torch.randn(config.hidden, n, n) * 0.1)
        self.proj = nn.Conv2d(config.hidden, c * k, 1)

    def logits(self) -> torch.Tensor:
        c, n, k = self.config.channels, self.config.image_size, 2**self.config.bits
        p = self.proj(self.code[None])[0].reshape(c, k, n, n).permute(0, 2, 3, 1)
        return self.bias + p  # [C, N, N, K]

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        lp = torch.log_softmax(self.logits().float(), -1)  # [C, N, N, K]
        g = lp[None].expand(x.shape[0], *lp.shape).gather(-1, x.long()[..., None])[..., 0]
        return g.double().flatten(1).sum(1)

    def bits_per_dim(self, x: torch.Tensor) -> torch.Tensor:
        return -self.log_prob(x) / (math.log(2) * x[0].numel())

    def loss(self, x: torch.Tensor, slices_per_step: int | None = None) -> torch.Tensor:
        # Randomness like the real model's random target slice: noise on the loss weight from the global RNG.
        w = 1.0 + 0.01 * torch.rand(()) if slices_per_step else 1.0
        return (self.bits_per_dim(x) * w).mean().float()

    def needs_conditioning(self) -> bool:
        return False

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator=None, **kw) -> torch.Tensor:
        p = torch.softmax(self.logits().float() / temperature, -1).reshape(-1, 2**self.config.bits)
        s = torch.multinomial(p, n, replacement=True, generator=generator)  # [C*N*N, n]
        c, N = self.config.channels, self.config.image_size
        return s.T.reshape(n, c, N, N)


def build(config: dict) -> StandIn:
    return StandIn(StandInConfig(**config))
