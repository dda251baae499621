"""Image output: integer images to viewable uint8, PNG grids, sample files, and the loss curve."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .data import quantize


def to_uint8(x: torch.Tensor, bits: int) -> np.ndarray:
    """Integer images [B, C, N, N] in [0, 2^bits) -> uint8 [B, N, N, C] spanning 0..255, for viewing."""
    x = x.detach().to("cpu", torch.int64)
    scaled = (x * 255 + (2**bits - 1) // 2) // (2**bits - 1) if bits != 8 else x
    return scaled.clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def image_grid(images: np.ndarray, ncols: int | None = None, pad: int = 2, scale: int = 1) -> np.ndarray:
    """uint8 [B, H, W, C] -> one uint8 [rows*(H+pad)+pad, cols*(W+pad)+pad, C] mosaic on a white background."""
    b, h, w, c = images.shape
    ncols = ncols or int(np.ceil(np.sqrt(b)))
    nrows = int(np.ceil(b / ncols))
    if scale > 1:
        images = images.repeat(scale, axis=1).repeat(scale, axis=2)
        h, w = h * scale, w * scale
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for k in range(b):
        r, q = divmod(k, ncols)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w] = images[k]
    return grid


def save_png(img: np.ndarray, path: str | os.PathLike) -> None:
    """uint8 [H, W, C] (C = 1 or 3) -> PNG."""
    from PIL import Image

    Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img).save(path)


def save_grid(
    images: torch.Tensor, bits: int, path: str | os.PathLike, scale: int = 2, ncols: int | None = None
) -> Path:
    """Integer images [B, C, N, N] in [0, 2^bits) -> one PNG grid (ncols wide, default about square), each pixel
    drawn `scale` x `scale`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(image_grid(to_uint8(images, bits), ncols=ncols, scale=scale), path)
    return path


def save_array(images: torch.Tensor, bits: int, path: str | os.PathLike) -> np.ndarray:
    """Integer images [B, C, N, N] -> a .npy of their values (uint8 up to 8 bits, else uint16); returns the array."""
    arr = images.cpu().numpy().astype(np.uint8 if bits <= 8 else np.uint16)
    np.save(path, arr)
    return arr


def write_sample_grid(
    model: nn.Module,
    path: Path,
    n: int,
    seed: int,
    device,
    progress: bool = False,
    cond_images: torch.Tensor | None = None,
    classes: int = 0,
) -> Path:
    """Samples n images into a PNG grid; a model that needs_conditioning() is conditioned on `cond_images` (uint8
    [n, C, N, N], reduced to the model's bits) through its conditioning_inputs(). A class-conditional model
    (`classes` > 0) samples one row per class (see label_grid)."""
    g = torch.Generator(device=device).manual_seed(seed)
    kw: dict[str, Any] = {}
    ncols = None
    if classes:
        labels, ncols = label_grid(classes, n)
        n, kw["labels"] = len(labels), labels.to(device)
    if cond_images is not None:
        cond = model.conditioning_inputs(quantize(cond_images[:n], model.config.bits))
        kw.update({k: v.to(device) for k, v in cond.items()})
    x = model.sample(n, generator=g, progress=progress, **kw)
    return save_grid(x, model.config.bits, path, ncols=ncols)


def label_grid(classes: int, n: int) -> tuple[torch.Tensor, int | None]:
    """Labels for a grid of about n samples with one row per class: (int64 labels, columns). With more classes than
    n, the first n classes, one image each, in an about square grid (columns None)."""
    if classes > n:
        return torch.arange(n), None
    per = max(1, n // classes)
    return torch.arange(classes).repeat_interleave(per), per


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
