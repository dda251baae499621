"""Sampling from an SPN: the cached incremental sampler and the naive one that is its oracle.

Both draw exactly one uniform per sub-pixel from the generator, in generation order (slice, row, column,
channel), and turn it into a value by inverse CDF of softmax(logits / temperature) in float64. Equal logits
therefore give equal images: the naive sampler is the oracle that the cached one is tested against.

- method="cached": per slice, the context network once; then the decoder one position at a time on an
  explicit DecoderCache (masked_conv2d_step per conv layer, a KV cache per attention layer, the vertical
  stacks one row at a time), the channel head once per channel, and slice_scatter_ to write the slice. Work
  per sub-pixel is constant in the slice size (attention: linear).
- method="naive": the full decoder over the whole slice for every sub-pixel (the baseline and the oracle).
On CUDA the cached per-position decoder step is captured in CUDA graphs (one per position, captured on the
first slice, replayed for the others, cache buffers static); any failure to capture falls back to eager.
It is taken only on CUDA tensors.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import spn_kernels as sk

from .cache import DecoderCache
from .model import SPN, check_int_tensor, scale

MAX_BATCH = 1024  # images sampled at once: an 8x8 model needs ~30 kB per image in flight


def draw(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """One categorical draw per row of logits [B, K] by inverse CDF: exactly one float64 uniform per row.

    The logits are shifted by their row maximum before the division, so a tiny temperature tends to the argmax
    instead of overflowing to NaN. Rows with a NaN or +inf logit give no meaningful draw: sample() counts them
    and raises at the end (one check per call, not a device sync per sub-pixel)."""
    u = torch.rand(logits.shape[0], generator=generator, dtype=torch.float64, device=logits.device)
    z = logits.to(torch.float64)
    z = z - z.amax(-1, keepdim=True)
    cdf = F.softmax(z / temperature, -1).cumsum(-1)  # [B, K]
    idx = (cdf < u[:, None] * cdf[:, -1:]).sum(-1)
    return idx.clamp_(max=logits.shape[-1] - 1)


def _log_p(logits: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """log p(v) under the untempered model, float64 [B]."""
    return F.log_softmax(logits.to(torch.float64), -1).gather(-1, v[:, None])[:, 0]


def sample(
    model: SPN,
    n: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    return_log_prob: bool = False,
    method: str = "cached",
    first_slice: torch.Tensor | None = None,
    high_bits: torch.Tensor | None = None,
    progress: bool = False,
    *,
    max_batch: int = MAX_BATCH,
):
    """Generates n images from ``model`` (see _sample for the arguments), at most `max_batch` at a time so that
    memory stays bounded for any n. Up to max_batch images are one batch, as before; more are drawn chunk after
    chunk from the same generator (so the images for a given n and seed are fixed)."""
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"max_batch must be an int >= 1, got {max_batch!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n <= max_batch:
        return _sample(model, n, temperature, generator, return_log_prob, method, first_slice, high_bits, progress)
    parts = []
    for i in range(0, n, max_batch):
        j = min(n, i + max_batch)
        fs = None if first_slice is None else first_slice[i:j]
        hb = None if high_bits is None else high_bits[i:j]
        if (first_slice is not None and first_slice.shape[0] != n) or (
            high_bits is not None and high_bits.shape[0] != n
        ):
            raise ValueError(f"first_slice / high_bits must hold n={n} images")
        parts.append(_sample(model, j - i, temperature, generator, True, method, fs, hb, progress))
    images, log_p = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    return (images, log_p) if return_log_prob else images


def _sample(
    model: SPN,
    n: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    return_log_prob: bool = False,
    method: str = "cached",
    first_slice: torch.Tensor | None = None,
    high_bits: torch.Tensor | None = None,
    progress: bool = False,
):
    """Generates n images from ``model``.

    Args:
        n: number of images, >= 1.
        temperature: > 0; logits are divided by it before sampling.
        generator: a torch.Generator on the model's device; the same state gives the same images (same
            device and backend).
        return_log_prob: also return log p(sample) under the model at temperature 1 (float64 [n]), summed
            while sampling; it equals model.log_prob(images) up to float rounding.
        method: "cached" (fast) or "naive" (re-runs the full decoder for every sub-pixel).
        first_slice: int [n, C, N/s, N/s] in [0, 2^bits): slice 0, required exactly when the model has
            first_slice_given (size upscaling).
        high_bits: int [n, C, N, N] in [0, 2^cond_bits): the high bits, required exactly when cond_bits > 0
            (depth upscaling); the returned images are then full depth.
        progress: show a tqdm bar over sub-pixels.
    Returns:
        int64 images [n, C, N, N] with values in [0, 2^bits), and with return_log_prob the float64 [n]
        log-probabilities.
    """
    cfg = model.config
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < math.inf:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if method not in ("cached", "naive"):
        raise ValueError(f"method must be 'cached' or 'naive', got {method!r}")
    dev, N, s, ns, C = model.device, cfg.image_size, cfg.subscale, cfg.slice_size, cfg.channels
    if cfg.first_slice_given:
        if first_slice is None:
            raise ValueError("this model has first_slice_given=True: pass first_slice [n, C, N/s, N/s]")
        fs = check_int_tensor(first_slice, "first_slice", (n, C, ns, ns), cfg.bits, "[n, C, N/s, N/s]").to(dev)
    elif first_slice is not None:
        raise ValueError("first_slice is only for models with first_slice_given=True")
    high = None
    if cfg.cond_bits:
        if high_bits is None:
            raise ValueError(f"this model has cond_bits={cfg.cond_bits}: pass high_bits [n, C, N, N]")
        high = check_int_tensor(high_bits, "high_bits", (n, C, N, N), cfg.cond_bits, "[n, C, N, N]").to(dev)
    elif high_bits is not None:
        raise ValueError("high_bits is only for models with cond_bits > 0")

    low = torch.zeros(n, C, N, N, dtype=torch.int64, device=dev)
    if cfg.first_slice_given:
        sk.slice_scatter_(low, fs & (2**cfg.model_bits - 1), s, 0, backend=cfg.backend)
    log_p = torch.zeros(n, dtype=torch.float64, device=dev)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=(cfg.num_slices - cfg.first_slice) * ns * ns * C, unit="sub-pixel", desc=f"sample {method}")
    state = _Sampler(model, temperature, generator, log_p, bar)
    was_training = model.training
    model.eval()  # dropout off: sampling is the deterministic eval-mode network, like the cached steps
    try:
        with torch.no_grad():
            for k in range(cfg.first_slice, cfg.num_slices):
                t = torch.full((n,), k, dtype=torch.int64, device=dev)
                cond = model.condition(low, high, t)
                values = state.cached_slice(cond) if method == "cached" else state.naive_slice(cond)
                sk.slice_scatter_(low, values, s, k, backend=cfg.backend)
    finally:
        model.train(was_training)
    if bar is not None:
        bar.close()
    bad = int(state.bad.item())
    if bad:
        raise FloatingPointError(
            f"the model gave non-finite logits (NaN or +inf) for {bad} sub-pixels: its weights or inputs are not "
            "finite, so no meaningful sample exists"
        )
    images = low if high is None else (high << cfg.model_bits) | low
    return (images, log_p) if return_log_prob else images


class _Sampler:
    """The per-slice loops; holds what stays fixed over one sample() call (and the CUDA graphs)."""

    def __init__(self, model: SPN, temperature: float, generator, log_p: torch.Tensor, bar) -> None:
        self.model, self.temperature, self.generator, self.log_p, self.bar = model, temperature, generator, log_p, bar
        self.bad = torch.zeros((), dtype=torch.int64, device=log_p.device)  # draws from non-finite logits
        self.cache: DecoderCache | None = None
        self.graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor]] | None = (
            {} if model.device.type == "cuda" else None
        )

    def _pick(self, logits: torch.Tensor) -> torch.Tensor:
        v = draw(logits, self.temperature, self.generator)
        self.bad += (torch.isnan(logits) | (logits == math.inf)).any(-1).sum()
        self.log_p += _log_p(logits, v)
        if self.bar is not None:
            self.bar.update(1)
        return v

    def cached_slice(self, cond: torch.Tensor) -> torch.Tensor:
        """One slice by cached decoding: cond [B, cond_ch, n, n] -> int64 values [B, C, n, n]."""
        m, cfg = self.model, self.model.config
        dec, head, ns, C = m.decoder, m.head, cfg.slice_size, cfg.channels
        if self.cache is None or self.graphs is None:
            self.cache = dec.new_cache(cond)
        else:  # keep the buffers the CUDA graphs were captured on
            dec.reset_cache(self.cache, cond)
        cache = self.cache
        values = torch.zeros(cond.shape[0], C, ns, ns, dtype=torch.int64, device=cond.device)
        for r in range(ns):
            if r:
                dec.step_row(cache, r - 1)
            for c in range(ns):
                hidden = self._step(cache, r, c)  # [B, D]
                base = head.inp(hidden)
                pix = cache.pixels[:, :, r, c].clone()  # [B, C] zeros: nothing of this pixel is known yet
                for ch in range(C):
                    v = self._pick(head.channel(base, pix, ch))
                    values[:, ch, r, c] = v
                    pix[:, ch] = scale(v, cfg.model_bits, pix.dtype)
                dec.write(cache, pix, r, c)
        return values

    def _step(self, cache: DecoderCache, r: int, c: int) -> torch.Tensor:
        dec = self.model.decoder
        if self.graphs is None:
            return dec.step(cache, r, c)
        if (r, c) not in self.graphs:
            try:
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):  # warm-up; its cache writes are idempotent
                    dec.step(cache, r, c)
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    out = dec.step(cache, r, c)
                self.graphs[(r, c)] = (graph, out)
            except Exception:  # capture not supported by some kernel: stay eager for this call
                self.graphs = None
                return dec.step(cache, r, c)
        graph, out = self.graphs[(r, c)]
        graph.replay()
        return out.clone()

    def naive_slice(self, cond: torch.Tensor) -> torch.Tensor:
        """One slice by re-running the full decoder for every sub-pixel (the oracle)."""
        m, cfg = self.model, self.model.config
        ns, C = cfg.slice_size, cfg.channels
        values = torch.zeros(cond.shape[0], C, ns, ns, dtype=torch.int64, device=cond.device)
        for r in range(ns):
            for c in range(ns):
                for ch in range(C):
                    logits = m.slice_logits(values, cond)  # [B, n, n, C, K], the whole slice every time
                    values[:, ch, r, c] = self._pick(logits[:, r, c, ch])
        return values
