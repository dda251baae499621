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
from .labels import stack_items


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
    fn: Callable[..., torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Held-out bits/dim: mean over images and its 95% confidence interval (1.96 standard errors).

    `fn(x) -> [B]` replaces model.bits_per_dim; `fn(x) -> [B, K]` gives K numbers (lists of K means and CIs).
    A labelled dataset (items (image, label), spn.labels) is scored as fn(x, labels), and the result also holds
    every image's label ("labels", int64, else None) for per_class(). Under torch.distributed each rank scores
    every world_size-th image and all ranks get the full result."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    mine = eval_indices(len(dataset), max_images)[rank::world]
    was_training = model.training
    model.eval()
    fn = fn or model.bits_per_dim
    out, labels = [], []
    it = range(0, len(mine), batch_size)
    if progress and rank == 0:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="eval", unit="batch", leave=False)
    for i in it:
        x, y = stack_items([dataset[int(j)] for j in mine[i : i + batch_size]])
        x = quantize(x, bits).to(device)
        out.append((fn(x) if y is None else fn(x, y.to(device))).double().cpu())
        if y is not None:
            labels.append(y)
    per = _gather(torch.cat(out) if out else torch.zeros(0, dtype=torch.float64), world)
    lab = _gather(torch.cat(labels) if labels else torch.zeros(0, dtype=torch.int64), world) if labels else None
    model.train(was_training)
    mean = per.mean(0)
    ci = 1.96 * per.std(0, unbiased=True) / math.sqrt(len(per)) if len(per) > 1 else torch.full_like(mean, math.nan)
    if per.dim() == 1:
        mean, ci = mean.item(), ci.item()
    else:
        mean, ci = mean.tolist(), ci.tolist()
    return {"bpd": mean, "ci95": ci, "n": int(len(per)), "per_image": per, "labels": lab}


def per_class(result: dict[str, Any], classes: int) -> list[dict[str, Any]]:
    """Per-class numbers of a labelled evaluate() result: for each label k < classes with images, {"label": k,
    "n", "bpd", "ci95"} (the last column of a [B, K] result: a pipeline's whole-image bits/dim)."""
    per, lab = result["per_image"], result["labels"]
    if lab is None:
        return []
    per = per if per.dim() == 1 else per[:, -1]
    rows = []
    for k in range(classes):
        v = per[lab == k]
        if len(v):
            ci = 1.96 * v.std(unbiased=True).item() / math.sqrt(len(v)) if len(v) > 1 else math.nan
            rows.append({"label": k, "n": int(len(v)), "bpd": v.mean().item(), "ci95": ci})
    return rows
