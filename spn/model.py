"""SPN: a Subscale Pixel Network with an exact log-likelihood, size and depth upscaling, and sampling.

The distribution, exactly. Slice k = i*s + j of an image x [B, C, N, N] is x[:, :, i::s, j::s] (n x n,
n = N/s). Slices are generated in order k = 0 .. s*s-1 (from 1 when slice 0 is given); inside a slice,
pixels in raster order; inside a pixel, channels 0 .. C-1. For slice k the context network sees slices < k
(spn_kernels.slice_context) and the target's index k; the slice decoder sees the slice's earlier pixels; the
channel head sees the pixel's earlier channels. With cond_bits = b the image's low bits - b bits are
modelled and the high b bits of every sub-pixel are given (to the context network and to every decoder block).
"""

from __future__ import annotations

import math

import torch
from torch import nn

import spn_kernels as sk

from .config import SPNConfig
from .context import ContextNetwork
from .decoder import SliceDecoder
from .heads import build_head

_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def check_int_tensor(x: object, name: str, shape: tuple[int, ...], bits: int, what: str) -> torch.Tensor:
    """Validates an integer image-like tensor: exact shape (-1 = any), integer dtype, values in [0, 2^bits)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor {what}, got {type(x).__name__}")
    if x.dim() != len(shape):
        raise ValueError(f"{name} must be {len(shape)}-D {what}, got shape {tuple(x.shape)}")
    if any(w != -1 and w != g for w, g in zip(shape, x.shape)):
        want = "(" + ", ".join("*" if w == -1 else str(w) for w in shape) + ")"
        raise ValueError(f"{name} must have shape {want} {what}, got shape {tuple(x.shape)}")
    if x.dtype not in _INT_DTYPES:
        raise ValueError(f"{name} must be an integer tensor (uint8/int8/int16/int32/int64) {what}, got {x.dtype}")
    # The values are read on the host, so under torch.compile they are not checked: a graph cannot branch on
    # them, and torch._check would cost a device sync per call. Callers that compile check their data once
    # outside the compiled region (spn.trainer does, on its first batch), as the kernels do for t.
    if x.numel() and not torch.compiler.is_compiling():
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi >= 2**bits:
            raise ValueError(f"{name} values must be in [0, 2^{bits}) = [0, {2**bits - 1}], got values in [{lo}, {hi}]")
    return x.long()


def scale(v: torch.Tensor, bits: int, dtype: torch.dtype) -> torch.Tensor:
    """Integer values in [0, 2^bits) -> (2v + 1) / 2^bits - 1 in (-1, 1): slice_context's scaling."""
    return (2 * v.to(dtype) + 1) / float(2**bits) - 1


class SPN(nn.Module):
    """A Subscale Pixel Network: context network + masked slice decoder + per-pixel channel head.

    ``log_prob(x)`` is exact (sum of the per-sub-pixel categorical log-probabilities in the order above);
    ``loss(x)`` is the training loss in bits/dim; ``sample(n)`` generates images (see spn/sampling.py).

    Example:
        >>> cfg = SPNConfig(image_size=4, channels=1, bits=2, subscale=2)
        >>> model = SPN(cfg)
        >>> x = torch.randint(0, 4, (3, 1, 4, 4))
        >>> model.log_prob(x).shape, model.bits_per_dim(x).dtype
        (torch.Size([3]), torch.float64)
    """

    def __init__(self, config: SPNConfig) -> None:
        super().__init__()
        if not isinstance(config, SPNConfig):
            raise ValueError(f"config must be an SPNConfig, got {type(config).__name__}")
        self.config = config.validate()
        cfg = config
        self.context = ContextNetwork(cfg)
        # The decoder's conditioning: the context embedding, plus the target slice's own high bits when
        # depth upscaling (our choice: the most informative part of the condition, handed over directly).
        self.cond_channels = cfg.context_channels + (cfg.channels if cfg.cond_bits else 0)
        self.decoder = SliceDecoder(cfg, self.cond_channels)
        self.head = build_head(
            cfg.output, cfg.decoder_channels, cfg.channels, cfg.head_channels, cfg.num_classes, cfg.mixtures
        )

    # ------------------------------------------------------------------------------------------ helpers
    @property
    def dtype(self) -> torch.dtype:
        return self.head.out_w.dtype

    @property
    def device(self) -> torch.device:
        return self.head.out_w.device

    def check_image(self, x: object, name: str = "x") -> torch.Tensor:
        """Validates a full image [B, C, N, N] with values in [0, 2^bits); returns it as int64."""
        cfg = self.config
        return check_int_tensor(
            x, name, (-1, cfg.channels, cfg.image_size, cfg.image_size), cfg.bits, f"[B, C, N, N] with {cfg.bits} bits"
        )

    def split_bits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Full-depth int64 image -> (low model_bits bits, high cond_bits bits or None)."""
        mb = self.config.model_bits
        if not self.config.cond_bits:
            return x, None
        return x & (2**mb - 1), x >> mb

    def condition(self, low: torch.Tensor, high: torch.Tensor | None, t: torch.Tensor) -> torch.Tensor:
        """The decoder's conditioning map for target slices t [B]: [B, cond_ch, n, n].

        low: int64 [B, C, N, N] (only slices < t[b] are read); high: int64 [B, C, N, N] or None."""
        cfg, be = self.config, self.config.backend
        ctx = sk.slice_context(low, cfg.subscale, t, cfg.model_bits, backend=be)
        if high is not None:
            # Every slice of the high bits is known: t = s*s marks them all present.
            ctx = torch.cat([ctx, sk.slice_context(high, cfg.subscale, cfg.num_slices, cfg.cond_bits, backend=be)], 1)
        cond = self.context(ctx.to(self.dtype), t)
        if high is not None:
            high_t = _pick(sk.subscale_split(high, cfg.subscale, backend=be), t)
            cond = torch.cat([cond, scale(high_t, cfg.cond_bits, self.dtype)], 1)
        return cond

    def slice_logits(self, target: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits of a slice: target int64 [B, C, n, n], cond [B, cond_ch, n, n] ->
        [B, n, n, C, K] (pixel-last; K = 2^(bits - cond_bits)). For output="logistic_mixture" the rows are
        normalised log-probabilities."""
        xs = scale(target, self.config.model_bits, self.dtype)
        hidden = self.decoder(xs, cond)  # [B, D, n, n]
        return self.head(hidden.permute(0, 2, 3, 1), xs.permute(0, 2, 3, 1))

    def _slice_log_prob(self, low: torch.Tensor, high: torch.Tensor | None, t: torch.Tensor) -> torch.Tensor:
        """log p(slice t[b] | its conditions) per sub-pixel: [B, n, n, C] in the model's dtype."""
        target = _pick(sk.subscale_split(low, self.config.subscale, backend=self.config.backend), t)
        xs = scale(target, self.config.model_bits, self.dtype)
        hidden = self.decoder(xs, self.condition(low, high, t))  # [B, D, n, n]
        return self.head.log_prob(hidden.permute(0, 2, 3, 1), xs.permute(0, 2, 3, 1), target.permute(0, 2, 3, 1))

    # ------------------------------------------------------------------------------------------ public API
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-likelihood in nats, float64 [B], of integer images x [B, C, N, N] in [0, 2^bits).

        First-slice-given models return log p(slices >= 1 | slice 0); depth-upscaling models take the
        full-depth image and return log p(low bits | high bits). Runs one slice at a time (memory ~ one
        slice batch)."""
        x = self.check_image(x)
        low, high = self.split_bits(x)
        B = x.shape[0]
        total = torch.zeros(B, dtype=torch.float64, device=x.device)
        for k in range(self.config.first_slice, self.config.num_slices):
            t = torch.full((B,), k, dtype=torch.int64, device=x.device)
            total = total + self._slice_log_prob(low, high, t).to(torch.float64).sum((1, 2, 3))
        return total

    def bits_per_dim(self, x: torch.Tensor) -> torch.Tensor:
        """-log2 p / (number of modelled sub-pixels), float64 [B]. The count covers only what the model
        generates (slices >= 1 for size upscaling; the low bits' sub-pixels for depth upscaling)."""
        return -self.log_prob(x) / (self.config.modeled_dims * math.log(2))

    def loss(self, x: torch.Tensor, slices_per_step: int | None = None) -> torch.Tensor:
        """Training loss: mean bits/dim over the batch (scalar, differentiable, the model's dtype).

        slices_per_step=None uses every modelled slice of every image. slices_per_step=m draws m distinct
        slices per image uniformly at random and scales their negative log-likelihood by M/m (M modelled
        slices): an unbiased estimate of the full loss at m/M of the cost."""
        x = self.check_image(x)
        if x.shape[0] == 0:
            raise ValueError(f"loss: x {tuple(x.shape)} holds no images; the mean loss of an empty batch is undefined")
        cfg = self.config
        low, high = self.split_bits(x)
        B, M = x.shape[0], cfg.num_slices - cfg.first_slice
        if slices_per_step is None:
            m = M
            ks = torch.arange(cfg.first_slice, cfg.num_slices, device=x.device).repeat(B, 1)  # [B, M]
        else:
            if not isinstance(slices_per_step, int) or not 1 <= slices_per_step <= M:
                raise ValueError(f"slices_per_step must be an int in 1..{M} (modelled slices), got {slices_per_step!r}")
            m = slices_per_step
            ks = torch.rand(B, M, device=x.device).argsort(1)[:, :m] + cfg.first_slice  # [B, m]
        rows = torch.arange(B, device=x.device).repeat_interleave(m)
        high_r = None if high is None else high[rows]
        lp = self._slice_log_prob(low[rows], high_r, ks.reshape(-1))  # [B*m, n, n, C]
        nll = -lp.reshape(B, -1).sum(1) * (M / m)
        return (nll / (cfg.modeled_dims * math.log(2))).mean()

    def needs_conditioning(self) -> bool:
        """Whether sample() needs an image to condition on: slice 0 (size upscaling) or the high bits (depth)."""
        return self.config.first_slice_given or self.config.cond_bits > 0

    def conditioning_inputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The sample() keywords that condition on images x [n, C, N, N] in [0, 2^bits): first_slice (size
        upscaling) or high_bits (depth upscaling); {} for an unconditional model."""
        cfg = self.config
        if cfg.first_slice_given:
            return {"first_slice": x[:, :, :: cfg.subscale, :: cfg.subscale].contiguous()}
        if cfg.cond_bits:
            return {"high_bits": x >> cfg.model_bits}
        return {}

    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        return_log_prob: bool = False,
        method: str = "cached",
        first_slice: torch.Tensor | None = None,
        high_bits: torch.Tensor | None = None,
        progress: bool = False,
    ):
        """Generates n images, int64 [n, C, N, N]; see spn.sampling.sample for every argument."""
        from .sampling import sample

        return sample(self, n, temperature, generator, return_log_prob, method, first_slice, high_bits, progress)

    def extra_repr(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return f"{self.config}, parameters={n:,}"


def _pick(slices: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """slices [B, S2, C, n, n], t [B] -> slices[b, t[b]] [B, C, n, n]."""
    return slices[torch.arange(slices.shape[0], device=slices.device), t]
