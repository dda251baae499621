"""Sampling from an SPN: the cached incremental sampler and the naive one that is its oracle.

Both draw exactly one uniform per sub-pixel from the generator, in generation order (slice, row, column,
channel; the uniforms of a slice are drawn together at its start), and turn it into a value by inverse CDF of
softmax(logits / temperature) in float64. Equal logits therefore give equal images: the naive sampler is the
oracle that the cached one is tested against.

- method="cached": per slice, the context network once; then the model decodes the slice on the state from
  SPN.allocate_inference_cache (SPN.start_slice, SPN.decode_slice: on CPU one fused C++ call per slice,
  spn_kernels.decode_rows; otherwise SPN.step and SPN.write one sub-pixel at a time), and slice_scatter_ writes
  the slice. Work per sub-pixel is constant in the slice size (attention: linear). This module only loops over
  slices and batches.
- method="naive": the full decoder over the whole slice for every sub-pixel (the baseline and the oracle).
"""

from __future__ import annotations

import math

import torch

import spn_kernels as sk

from .values import check_int_tensor

BATCH_SIZE = 1024  # images sampled at once: an 8x8 model needs ~30 kB per image in flight


def draw(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """One categorical draw per row of logits [B, K] by inverse CDF: exactly one float64 uniform per row (see
    spn_kernels.categorical_draw; the logits are shifted by their row maximum before the division, so a tiny
    temperature tends to the argmax instead of overflowing to NaN)."""
    u = torch.rand(logits.shape[0], generator=generator, dtype=torch.float64, device=logits.device)
    return sk.categorical_draw(logits, u, temperature)[0]


def sample(
    model,
    n: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    return_log_prob: bool = False,
    method: str = "cached",
    first_slice: torch.Tensor | None = None,
    high_bits: torch.Tensor | None = None,
    progress: bool | str = False,
    *,
    labels: torch.Tensor | None = None,
    cond: torch.Tensor | None = None,
    batch_size: int = BATCH_SIZE,
    cuda_graphs: bool | None = None,
):
    """Generates n images from an SPN ``model``.

    Args:
        n: number of images, >= 1.
        temperature: > 0; logits are divided by it before sampling.
        generator: a torch.Generator on the model's device; the same state gives the same images (same
            device, backend and batch_size).
        return_log_prob: also return log p(sample) under the model at temperature 1 (float64 [n]), summed
            while sampling; it equals model.log_prob(images) up to float rounding.
        method: "cached" (fast) or "naive" (re-runs the full decoder for every sub-pixel).
        first_slice: int [n, C, N/s, N/s] in [0, 2^bits): slice 0, required exactly when the model has
            first_slice_given (size upscaling).
        high_bits: int [n, C, N, N] in [0, 2^cond_bits): the high bits, required exactly when cond_bits > 0
            (depth upscaling); the returned images are then full depth.
        progress: show a progress bar over images, with images/s and the slice being generated; a string
            (e.g. "stage 2/3", as Pipeline.sample passes) labels the bar.
        labels: int [n] in [0, classes), image i's class; required exactly when the model has classes > 0.
        cond: float [n, D] or [n, D, N, N] on the model's device, image i's conditioning input; required exactly
            when the model has cond_channels = D > 0.
        batch_size: images generated at once (memory stays bounded for any n); more are drawn chunk after chunk
            from the same generator.
        cuda_graphs: on CUDA, None replays the decoder step from CUDA graphs and warns (once) if a capture
            fails, True raises then, False stays eager (see SPN.allocate_inference_cache). Ignored on CPU.
    Returns:
        int64 images [n, C, N, N] with values in [0, 2^bits), and with return_log_prob the float64 [n]
        log-probabilities.
    """
    cfg = model.config
    # Every input is checked here, once per call: the per-sub-pixel loop below checks nothing.
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < math.inf:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if method not in ("cached", "naive"):
        raise ValueError(f"method must be 'cached' or 'naive', got {method!r}")
    if not isinstance(progress, (bool, str)):
        raise ValueError(f"progress must be a bool or a label string, got {progress!r}")
    if cuda_graphs not in (None, True, False):
        raise ValueError(f"cuda_graphs must be None, True or False, got {cuda_graphs!r}")
    dev, N, ns, C = model.device, cfg.image_size, cfg.slice_size, cfg.channels
    fs = high = None
    if cfg.first_slice_given:
        if first_slice is None:
            raise ValueError("this model has first_slice_given=True: pass first_slice [n, C, N/s, N/s]")
        fs = check_int_tensor(first_slice, "first_slice", (n, C, ns, ns), cfg.bits, "[n, C, N/s, N/s]").to(dev)
    elif first_slice is not None:
        raise ValueError("first_slice is only for models with first_slice_given=True")
    if cfg.cond_bits:
        if high_bits is None:
            raise ValueError(f"this model has cond_bits={cfg.cond_bits}: pass high_bits [n, C, N, N]")
        high = check_int_tensor(high_bits, "high_bits", (n, C, N, N), cfg.cond_bits, "[n, C, N, N]").to(dev)
    elif high_bits is not None:
        raise ValueError("high_bits is only for models with cond_bits > 0")
    labels, cond = model.check_conditioning(labels, cond, n)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        # advanced by a fraction of a batch after every slice: whole images shown, images/s as the rate
        label = f"sample {method}" if progress is True else f"{progress}: sample {method}"
        fmt = "{l_bar}{bar}| {n:.1f}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"  # part images too
        bar = tqdm(total=n, unit="image", desc=label, bar_format=fmt)
    images, log_p, bad = [], [], 0
    was_training = model.training
    model.eval()  # dropout off: sampling is the deterministic eval-mode network, like the cached steps
    try:
        with torch.no_grad():
            for i in range(0, n, batch_size):
                j = min(n, i + batch_size)
                fs_b, high_b, labels_b, cond_b = (None if v is None else v[i:j] for v in (fs, high, labels, cond))
                x, lp, b = _sample_batch(
                    model, j - i, temperature, generator, method, cuda_graphs, fs_b, high_b, bar, labels_b, cond_b
                )
                images.append(x)
                log_p.append(lp)
                bad += b
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    if bad:
        raise FloatingPointError(
            f"the model gave non-finite logits (NaN or +inf) for {bad} sub-pixels: its weights or inputs are not "
            "finite, so no meaningful sample exists"
        )
    x = images[0] if len(images) == 1 else torch.cat(images)
    lp = log_p[0] if len(log_p) == 1 else torch.cat(log_p)
    return (x, lp) if return_log_prob else x


def _sample_batch(model, B, temperature, generator, method, cuda_graphs, fs, high, bar, labels=None, cond=None):
    """One batch of B images: (int64 images [B, C, N, N], float64 log p [B], count of bad sub-pixels)."""
    cfg = model.config
    dev, N, s, ns, C = model.device, cfg.image_size, cfg.subscale, cfg.slice_size, cfg.channels
    low = torch.zeros(B, C, N, N, dtype=torch.int64, device=dev)
    if fs is not None:
        sk.slice_scatter_(low, fs & (2**cfg.model_bits - 1), s, 0, backend=cfg.backend)
    # One uniform and one log-probability per sub-pixel of a slice, in generation order; counted at slice end.
    lp = torch.zeros(ns * ns * C, B, dtype=torch.float64, device=dev)
    log_p = torch.zeros(B, dtype=torch.float64, device=dev)
    bad = torch.zeros((), dtype=torch.int64, device=dev)
    cache = model.kept_inference_cache(B, cuda_graphs=cuda_graphs) if method == "cached" else None
    slices = range(cfg.first_slice, cfg.num_slices)
    for k in slices:
        t = torch.full((B,), k, dtype=torch.int64, device=dev)
        cond_map = model.condition(low, high, t, labels, cond)
        u = torch.rand(ns * ns * C, B, generator=generator, dtype=torch.float64, device=dev)
        if cache is not None:
            values = _cached_slice(model, cache, cond_map, temperature, u, lp)
        else:
            values = _naive_slice(model, cond_map, temperature, u, lp)
        sk.slice_scatter_(low, values, s, k, backend=cfg.backend)
        log_p += lp.sum(0)
        bad += lp.isnan().sum()
        if bar is not None:
            bar.set_postfix_str(f"slice {k + 1}/{cfg.num_slices}", refresh=False)
            bar.update(B / len(slices))
    images = low if high is None else (high << cfg.model_bits) | low
    return images, log_p, int(bad.item())


def _cached_slice(model, cache, cond, temperature, u, lp) -> torch.Tensor:
    """One slice by the model's cached decoding: cond [B, cond_ch, n, n] -> int64 values [B, C, n, n]."""
    ns, C = model.config.slice_size, model.config.channels
    values = torch.zeros(ns * ns * C, cond.shape[0], dtype=torch.int64, device=cond.device)  # generation order
    model.start_slice(cache, cond)
    model.decode_slice(cache, u, temperature, values, lp)
    return values.view(ns, ns, C, -1).permute(3, 2, 0, 1)


def _naive_slice(model, cond, temperature, u, lp) -> torch.Tensor:
    """One slice by re-running the full decoder for every sub-pixel (the oracle)."""
    ns, C = model.config.slice_size, model.config.channels
    be = "torch" if model.config.backend == "torch" else None
    values = torch.zeros(cond.shape[0], C, ns, ns, dtype=torch.int64, device=cond.device)
    i = 0
    for r in range(ns):
        for c in range(ns):
            for ch in range(C):
                logits = model.slice_logits(values, cond)  # [B, n, n, C, K], the whole slice every time
                values[:, ch, r, c], lp[i] = sk.categorical_draw(logits[:, r, c, ch], u[i], temperature, backend=be)
                i += 1
    return values
