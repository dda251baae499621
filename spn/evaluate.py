"""Held-out evaluation: bits/dim over a dataset with its 95% confidence interval, spread over the ranks under
torch.distributed. `spn eval`, the training loop and `spn demo` all score models with it."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from .data import quantize


def eval_indices(n: int, max_images: int | None = None) -> np.ndarray:
    """The dataset indices scored: all n, or `max_images` evenly spaced ones."""
    if not max_images or max_images >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_images).round())


def _gather(per: torch.Tensor, world: int) -> torch.Tensor:
    """Every rank's per-image numbers, concatenated on every rank."""
    if world == 1:
        return per
    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, per)
    return torch.cat(parts)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    *,
    bits: int,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    max_images: int | None = None,
    progress: bool = False,
    fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Held-out bits/dim: mean over images and its 95% confidence interval (1.96 standard errors).

    `fn(x) -> [B]` replaces model.bits_per_dim; `fn(x) -> [B, K]` gives K numbers (lists of K means and CIs).
    Under torch.distributed each rank scores every world_size-th image and all ranks get the full result."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    mine = eval_indices(len(dataset), max_images)[rank::world]
    was_training = model.training
    model.eval()
    fn = fn or model.bits_per_dim
    out = []
    it = range(0, len(mine), batch_size)
    if progress and rank == 0:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="eval", unit="batch", leave=False)
    for i in it:
        x = torch.stack([dataset[int(j)] for j in mine[i : i + batch_size]])
        out.append(fn(quantize(x, bits).to(device)).double().cpu())
    per = _gather(torch.cat(out) if out else torch.zeros(0, dtype=torch.float64), world)
    model.train(was_training)
    mean = per.mean(0)
    ci = 1.96 * per.std(0, unbiased=True) / math.sqrt(len(per)) if len(per) > 1 else torch.full_like(mean, math.nan)
    if per.dim() == 1:
        mean, ci = mean.item(), ci.item()
    else:
        mean, ci = mean.tolist(), ci.tolist()
    return {"bpd": mean, "ci95": ci, "n": int(len(per)), "per_image": per}
