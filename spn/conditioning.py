"""Conditional SPNs: class labels and conditioning inputs, given (not modelled) with every call.

A model with SPNConfig(classes=K) takes labels, int [B] in [0, K); one with SPNConfig(cond_channels=D) takes cond,
float [B, D] (the same features at every position) or [B, D, N, N] (a full-resolution map). Both become
conditioning features [B, F, n, n] for the target slice t: the label's learned embedding (context_channels wide)
broadcast over the n x n positions, then cond broadcast, or cond sliced like the image (slice k = i*s + j is
cond[:, :, i::s, j::s]). The features are extra input channels of the context network and extra channels of the
decoder's conditioning map, which every gated block projects (so the cached sampler needs nothing more). They are
given for the whole image, so every position may see all of them: the likelihood stays exact and normalised for
every label and every cond.
"""

from __future__ import annotations

import torch

from .config import SPNConfig

_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def feature_channels(cfg: SPNConfig) -> int:
    """F, the channels the labels and cond add to the context network's input and the decoder's map."""
    return (cfg.context_channels if cfg.classes else 0) + cfg.cond_channels


def check_labels(labels: object, cfg: SPNConfig, batch: int, device: torch.device) -> torch.Tensor | None:
    """Validates labels for a batch of ``batch`` images: None exactly when the model has classes=0, else an
    integer tensor [batch] with values in [0, classes). Returns int64 on ``device`` (or None)."""
    if not cfg.classes:
        if labels is not None:
            raise ValueError("labels given, but this model has classes=0 (it is not class-conditional)")
        return None
    if labels is None:
        raise ValueError(f"this model has classes={cfg.classes}: pass labels, int64 [{batch}] in [0, {cfg.classes})")
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"labels must be a torch.Tensor, int64 [{batch}], got {type(labels).__name__}")
    if labels.dtype not in _INT_DTYPES:
        raise ValueError(f"labels must be an integer tensor (int64 [{batch}]), got {labels.dtype}")
    if tuple(labels.shape) != (batch,):
        raise ValueError(f"labels must have shape ({batch},), one per image, got shape {tuple(labels.shape)}")
    # Read on the host, so not under torch.compile (as check_int_tensor does for images).
    if labels.numel() and not torch.compiler.is_compiling():
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= cfg.classes:
            raise ValueError(
                f"labels must be in [0, {cfg.classes}) (classes={cfg.classes}), got values in [{lo}, {hi}]"
            )
    return labels.to(device=device, dtype=torch.int64)


def check_cond(
    cond: object, cfg: SPNConfig, batch: int, device: torch.device, dtype: torch.dtype, name: str = "cond"
) -> torch.Tensor | None:
    """Validates cond for a batch of ``batch`` images: None exactly when the model has cond_channels=0, else a
    finite floating-point tensor [batch, D] or [batch, D, N, N] on ``device``. Returns it in ``dtype``."""
    D, N = cfg.cond_channels, cfg.image_size
    want = f"[{batch}, {D}] or [{batch}, {D}, {N}, {N}]"
    if not D:
        if cond is not None:
            raise ValueError(f"{name} given, but this model has cond_channels=0 (it takes no conditioning input)")
        return None
    if cond is None:
        raise ValueError(f"this model has cond_channels={D}: pass {name}, float {want}")
    if not isinstance(cond, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, float {want}, got {type(cond).__name__}")
    if tuple(cond.shape) not in ((batch, D), (batch, D, N, N)):
        raise ValueError(f"{name} must have shape {want}, got shape {tuple(cond.shape)}")
    if not cond.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor {want}, got {cond.dtype}")
    if cond.device != device:
        raise ValueError(f"{name} is on {cond.device} but the model is on {device}: move it with .to({str(device)!r})")
    if cond.numel() and not torch.compiler.is_compiling() and not bool(torch.isfinite(cond).all()):
        raise ValueError(f"{name} {tuple(cond.shape)} holds NaN or infinite values")
    return cond.to(dtype)


def cond_slice(cond: torch.Tensor, s: int, t: torch.Tensor) -> torch.Tensor:
    """cond [B, D] or [B, D, N, N], target slices t int64 [B] -> cond at slice t[b] of each row, [B, D, n, n]
    (a [B, D] cond is broadcast, not copied)."""
    if cond.dim() == 2:
        return cond[:, :, None, None]
    B, D, N, _ = cond.shape
    n = N // s
    grid = cond.reshape(B, D, n, s, n, s).permute(0, 3, 5, 1, 2, 4)  # [B, s, s, D, n, n]: slice (i, j) of row b
    return grid[torch.arange(B, device=cond.device), t // s, t % s]


def stage_cond(cond: torch.Tensor | None, size: int) -> torch.Tensor | None:
    """A full-resolution cond [B, D, N, N] at a smaller image size (N / size divides): every (N/size)-th
    position, as slice 0 of a size upscaler is taken from its image. [B, D] and None pass through."""
    if cond is None or cond.dim() == 2 or cond.shape[-1] == size:
        return cond
    f = cond.shape[-1] // size
    return cond[:, :, ::f, ::f]
