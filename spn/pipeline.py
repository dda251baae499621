"""Multidimensional upscaling: a chain of SPNs that grows an image in size, then in depth.

The paper's chain (Menick & Kalchbrenner 2019): (a) an SPN on the small, low-depth image; (b) a
size-upscaling SPN (first_slice_given) whose slice 0 is (a)'s image; (c) a depth-upscaling SPN (cond_bits)
whose high bits are (b)'s image. Any prefix of such a chain is a Pipeline. Our generalisation: after the first
stage, each stage is either a size or a depth upscaler and must fit the previous stage's output.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .conditioning import stage_cond
from .model import SPN


def _kind(stage: SPN) -> str:
    cfg = stage.config
    if cfg.first_slice_given and cfg.cond_bits:
        return "both"
    return "size" if cfg.first_slice_given else ("depth" if cfg.cond_bits else "base")


class Pipeline(nn.Module):
    """A chain of SPN stages whose log_prob is the exact sum over stages and whose sample runs them in order.

    stages[0] models an image unconditionally; each later stage is a size upscaler (first_slice_given,
    image_size = previous image_size * subscale, same bits and channels) or a depth upscaler (cond_bits =
    previous bits, same image_size and channels). log_prob(x) takes the final image and returns
    log p(x) = sum over stages of log p(stage's part | previous stages' image), in nats, float64 [B].

    Conditional pipelines: every stage has the same classes and cond_channels and takes the same labels and cond;
    a full-resolution cond [B, D, N, N] reaches a smaller stage as the image does, every (N/size)-th position.

    Example (3-bit 8x8 -> 3-bit 16x16 -> 8-bit 16x16):
        >>> base = SPN(SPNConfig(image_size=8, channels=3, bits=3, subscale=2))
        >>> size = SPN(SPNConfig(image_size=16, channels=3, bits=3, subscale=2, first_slice_given=True))
        >>> depth = SPN(SPNConfig(image_size=16, channels=3, bits=8, subscale=2, cond_bits=3))
        >>> pipe = Pipeline([base, size, depth])
    """

    def __init__(self, stages: list[SPN]) -> None:
        super().__init__()
        stages = list(stages)
        if not stages:
            raise ValueError("Pipeline needs at least one stage")
        for i, st in enumerate(stages):
            if not isinstance(st, SPN):
                raise ValueError(f"stages[{i}] must be an SPN, got {type(st).__name__}")
        if _kind(stages[0]) != "base":
            raise ValueError(
                f"stages[0] must be an unconditional SPN (first_slice_given=False, cond_bits=0), got {stages[0].config}"
            )
        for i in range(1, len(stages)):
            prev, cur = stages[i - 1].config, stages[i].config
            kind = _kind(stages[i])
            if cur.channels != prev.channels:
                raise ValueError(f"stages[{i}] has channels={cur.channels} but stages[{i - 1}] has {prev.channels}")
            if kind == "size":
                if cur.image_size != prev.image_size * cur.subscale or cur.bits != prev.bits:
                    raise ValueError(
                        f"stages[{i}] (size upscaling) must have image_size = {prev.image_size} * subscale and "
                        f"bits = {prev.bits}; got image_size={cur.image_size}, subscale={cur.subscale}, bits={cur.bits}"
                    )
            elif kind == "depth":
                if cur.image_size != prev.image_size or cur.cond_bits != prev.bits:
                    raise ValueError(
                        f"stages[{i}] (depth upscaling) must have image_size={prev.image_size} and "
                        f"cond_bits={prev.bits}; got image_size={cur.image_size}, cond_bits={cur.cond_bits}"
                    )
            else:
                raise ValueError(
                    f"stages[{i}] must upscale either size (first_slice_given) or depth (cond_bits > 0); got {cur}"
                )
            if (cur.classes, cur.cond_channels) != (prev.classes, prev.cond_channels):
                raise ValueError(
                    f"stages[{i}] has classes={cur.classes}, cond_channels={cur.cond_channels} but stages[{i - 1}] "
                    f"has classes={prev.classes}, cond_channels={prev.cond_channels}: every stage takes the same "
                    "labels and cond"
                )
        self.stages = nn.ModuleList(stages)

    @property
    def config(self):
        """The last stage's config (the final image's size, depth and channels)."""
        return self.stages[-1].config

    def needs_conditioning(self) -> bool:
        """False: the first stage is unconditional and each later stage is conditioned on the one before."""
        return False

    def conditioning_inputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """{}: a pipeline's samples need no image to condition on (see needs_conditioning)."""
        return {}

    def stage_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The image each stage models, first stage first, from final images x [B, C, N, N]: slice 0 below a size
        upscaler, the high bits below a depth upscaler."""
        xs = [x]
        for st in reversed(self.stages[1:]):
            cfg, y = st.config, xs[0]
            y = y[:, :, :: cfg.subscale, :: cfg.subscale] if cfg.first_slice_given else y >> cfg.model_bits
            xs.insert(0, y)
        return xs

    def _checked(self, x, labels, cond):
        """x, labels and cond checked once against the final image (before any stage runs)."""
        x = self.stages[-1].check_image(x)
        return (x, *self.stages[-1].check_conditioning(labels, cond, x.shape[0]))

    def log_prob(self, x: torch.Tensor, labels: torch.Tensor | None = None, cond: torch.Tensor | None = None):
        """Exact log p(x) in nats, float64 [B], of final images x [B, C, N, N] in [0, 2^bits) (given labels
        and cond for a conditional pipeline)."""
        x, labels, cond = self._checked(x, labels, cond)
        return sum(
            st.log_prob(xi, labels, stage_cond(cond, st.config.image_size))
            for st, xi in zip(self.stages, self.stage_inputs(x))
        )

    def bits_per_dim(self, x: torch.Tensor, labels: torch.Tensor | None = None, cond: torch.Tensor | None = None):
        """-log2 p(x) / (C N N), float64 [B]: per sub-pixel of the final image."""
        cfg = self.config
        return -self.log_prob(x, labels, cond) / (cfg.channels * cfg.image_size**2 * math.log(2))

    def stage_bits_per_dim(self, x: torch.Tensor, labels: torch.Tensor | None = None, cond: torch.Tensor | None = None):
        """float64 [B, S + 1]: each stage's bits per its own modelled dim, then the whole pipeline's per dim of the
        final image (the last column equals bits_per_dim(x))."""
        x, labels, cond = self._checked(x, labels, cond)
        cols = [
            st.bits_per_dim(xi, labels, stage_cond(cond, st.config.image_size))
            for st, xi in zip(self.stages, self.stage_inputs(x))
        ]
        dims = [st.config.modeled_dims for st in self.stages]
        cfg = self.config
        total = sum(c * d for c, d in zip(cols, dims)) / (cfg.channels * cfg.image_size**2)
        return torch.stack([*cols, total], 1)

    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        return_log_prob: bool = False,
        method: str = "cached",
        progress: bool = False,
        *,
        labels: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
    ):
        """Runs the stages in order; returns int64 [n, C, N, N] (and with return_log_prob the float64 [n]
        log p of the final images, summed over stages). Other arguments as in SPN.sample."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        labels, cond = self.stages[-1].check_conditioning(labels, cond, n)
        y, total = None, 0
        for i, st in enumerate(self.stages):
            stage_progress = f"stage {i + 1}/{len(self.stages)}" if progress else False
            cfg = st.config
            kw = {}
            if cfg.first_slice_given:
                kw["first_slice"] = y
            elif cfg.cond_bits:
                kw["high_bits"] = y
            kw.update(labels=labels, cond=stage_cond(cond, cfg.image_size))
            y, lp = st.sample(n, temperature, generator, True, method, progress=stage_progress, **kw)
            total = total + lp
        return (y, total) if return_log_prob else y
