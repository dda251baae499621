"""What training writes besides checkpoints: sample grids and the loss curve (and the conditioning an
upscaling stage's samples need)."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data import image_grid, quantize, save_png, to_uint8


def conditioning(config: Any, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The sample() keywords an upscaling stage needs, taken from real uint8 images [n, C, N, N]: slice 0
    (first_slice_given) or the high bits (cond_bits > 0); {} for an unconditional model."""
    kw: dict[str, torch.Tensor] = {}
    if getattr(config, "first_slice_given", False) or getattr(config, "cond_bits", 0):
        x = quantize(images, config.bits)
        if config.first_slice_given:
            kw["first_slice"] = x[:, :, :: config.subscale, :: config.subscale].contiguous()
        else:
            kw["high_bits"] = x >> (config.bits - config.cond_bits)
    return kw


def write_sample_grid(
    model: nn.Module,
    path: Path,
    n: int,
    seed: int,
    device,
    progress: bool = False,
    cond_images: torch.Tensor | None = None,
) -> Path:
    """Samples n images into a PNG grid; an upscaling stage is conditioned on `cond_images` (uint8 [n, C, N, N])."""
    g = torch.Generator(device=device).manual_seed(seed)
    kw: dict[str, Any] = {"progress": progress} if "progress" in inspect.signature(model.sample).parameters else {}
    if cond_images is not None:
        kw.update({k: v.to(device) for k, v in conditioning(model.config, cond_images[:n]).items()})
    x = model.sample(n, generator=g, **kw)
    save_png(image_grid(to_uint8(x, model.config.bits), scale=2), path)
    return path


def plot_loss_curve(records: list[dict[str, Any]], path: Path) -> Path | None:
    """Train loss and held-out bits/dim against step; None (and nothing written) if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    tr = [(r["step"], r["loss"]) for r in records if "loss" in r]
    ev = [(r["step"], r["eval_bpd"]) for r in records if "eval_bpd" in r]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    if tr:
        ax.plot(*zip(*tr), label="train loss (bits/dim)", lw=1)
    if ev:
        ax.plot(*zip(*ev), "o-", label="held-out bits/dim (EMA)")
    ax.set_xlabel("step")
    ax.set_ylabel("bits/dim")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path
