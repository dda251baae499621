"""SPNConfig: every hyperparameter of one Subscale Pixel Network, as a plain dataclass.

Plain ints/bools/strs/floats only, so ``SPNConfig(**dataclasses.asdict(cfg))`` round-trips (checkpoints store
the dict). Validation runs when a model is built (``SPN(cfg)`` calls ``cfg.validate()``), so a config can be
edited field by field before that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from spn_kernels import BACKENDS

from .heads import OUTPUTS


@dataclass
class SPNConfig:
    """Hyperparameters of one SPN.

    The distribution:
        image_size: N, the image is [B, channels, N, N].
        channels: C, number of colour channels per pixel.
        bits: bit depth of the image: values in [0, 2^bits), 1..16.
        subscale: s, divides N; the image is cut into s*s slices x[:, :, i::s, j::s] of size n = N/s.
        first_slice_given: size upscaling; the model covers slices 1..s*s-1 given slice 0 (needs s > 1).
        cond_bits: depth upscaling when > 0; the model covers the low (bits - cond_bits) bits of every
            sub-pixel given the high cond_bits bits of the whole image.
        classes: K > 0 makes the model class-conditional: every call takes labels [B] in [0, K); 0 = none.
        cond_channels: D > 0 makes the model take a conditioning input cond, [B, D] or [B, D, N, N], with
            every call; 0 = none. Labels and cond are given, not modelled (see spn/conditioning.py).
        backend: passed to every spn_kernels op (None: the device picks; "torch": pure-PyTorch references).

    The networks (our choices; defaults make a small model that builds instantly):
        context_channels: width D_c of the context network.
        context_blocks: residual 3x3 conv blocks in the context network.
        context_attention: full (unmasked) self-attention blocks over the n x n grid after the conv blocks.
        decoder_channels: width D of the slice decoder.
        decoder_blocks: gated masked-conv blocks (vertical stack "V" -> horizontal stack "A", then "B").
        decoder_attention: causal self-attention blocks over the slice's raster sequence, after the conv blocks.
        kernel_size: odd kernel size of every masked convolution.
        heads: attention heads (must divide context_channels and decoder_channels where attention is used).
        head_channels: hidden width of the per-pixel channel head.
        output: the per-sub-pixel distribution: "categorical" (the paper's 2^bits-way softmax) or
            "logistic_mixture" (PixelCNN++'s discretised mixture of logistics; exact for every bit depth).
        mixtures: mixture components per sub-pixel for output="logistic_mixture".
        dropout: dropout probability inside the context network's residual blocks and the decoder's gated
            blocks, in training only (log_prob in eval mode and sampling are deterministic).
    """

    image_size: int
    channels: int = 3
    bits: int = 8
    subscale: int = 2
    first_slice_given: bool = False
    cond_bits: int = 0
    context_channels: int = 16
    context_blocks: int = 1
    context_attention: int = 0
    decoder_channels: int = 16
    decoder_blocks: int = 2
    decoder_attention: int = 0
    kernel_size: int = 3
    heads: int = 2
    head_channels: int = 16
    output: str = "categorical"
    mixtures: int = 10
    dropout: float = 0.0
    classes: int = 0
    cond_channels: int = 0
    # Optional[str], not str | None: `spn train --set` reads the hints at run time (typing.get_type_hints), which
    # cannot evaluate X | None before Python 3.10.
    backend: Optional[str] = None  # noqa: UP045

    # ------------------------------------------------------------------ derived sizes
    @property
    def num_slices(self) -> int:
        """s*s, the number of slices of an image."""
        return self.subscale * self.subscale

    @property
    def slice_size(self) -> int:
        """n = N / s."""
        return self.image_size // self.subscale

    @property
    def first_slice(self) -> int:
        """Index of the first slice the model generates (1 when slice 0 is given)."""
        return 1 if self.first_slice_given else 0

    @property
    def model_bits(self) -> int:
        """Bits per sub-pixel the model predicts: bits - cond_bits."""
        return self.bits - self.cond_bits

    @property
    def num_classes(self) -> int:
        """Size of the categorical per sub-pixel: 2^(bits - cond_bits)."""
        return 2**self.model_bits

    @property
    def modeled_dims(self) -> int:
        """Number of sub-pixels the model's log-likelihood covers per image."""
        return (self.num_slices - self.first_slice) * self.channels * self.slice_size**2

    # ------------------------------------------------------------------ validation
    def validate(self) -> SPNConfig:
        """Raises ValueError naming the first invalid field; returns self."""

        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(f"SPNConfig: {msg}")

        for name in ("image_size", "channels", "subscale", "context_channels", "decoder_channels", "heads"):
            v = getattr(self, name)
            need(isinstance(v, int) and v >= 1, f"{name} must be an int >= 1, got {v!r}")
        for name in ("context_blocks", "context_attention", "decoder_attention"):
            v = getattr(self, name)
            need(isinstance(v, int) and v >= 0, f"{name} must be an int >= 0, got {v!r}")
        need(
            isinstance(self.decoder_blocks, int) and self.decoder_blocks >= 1,
            f"decoder_blocks must be an int >= 1, got {self.decoder_blocks!r}",
        )
        need(
            isinstance(self.head_channels, int) and self.head_channels >= 1,
            f"head_channels must be an int >= 1, got {self.head_channels!r}",
        )
        need(
            self.image_size % self.subscale == 0,
            f"image_size={self.image_size} must be divisible by subscale={self.subscale}",
        )
        need(isinstance(self.bits, int) and 1 <= self.bits <= 16, f"bits must be in 1..16, got {self.bits!r}")
        need(
            isinstance(self.cond_bits, int) and 0 <= self.cond_bits < self.bits,
            f"cond_bits must be in 0..bits-1 = 0..{self.bits - 1}, got {self.cond_bits!r}",
        )
        need(
            not (self.first_slice_given and self.subscale == 1),
            "first_slice_given=True needs subscale > 1 (with subscale=1 slice 0 is the whole image)",
        )
        need(
            isinstance(self.kernel_size, int) and self.kernel_size >= 1 and self.kernel_size % 2 == 1,
            f"kernel_size must be an odd int >= 1, got {self.kernel_size!r}",
        )
        if self.context_attention:
            need(
                self.context_channels % self.heads == 0,
                f"context_channels={self.context_channels} must be divisible by heads={self.heads}",
            )
        if self.decoder_attention:
            need(
                self.decoder_channels % self.heads == 0,
                f"decoder_channels={self.decoder_channels} must be divisible by heads={self.heads}",
            )
        need(self.output in OUTPUTS, f"output must be one of {OUTPUTS}, got {self.output!r}")
        need(
            isinstance(self.mixtures, int) and not isinstance(self.mixtures, bool) and self.mixtures >= 1,
            f"mixtures must be an int >= 1, got {self.mixtures!r}",
        )
        need(
            isinstance(self.dropout, (int, float)) and not isinstance(self.dropout, bool) and 0 <= self.dropout < 1,
            f"dropout must be a float in [0, 1), got {self.dropout!r}",
        )
        for name in ("classes", "cond_channels"):
            v = getattr(self, name)
            need(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                f"{name} must be an int >= 0 (0: no conditioning), got {v!r}",
            )
        need(
            self.backend is None or self.backend in BACKENDS,
            f"backend must be None or one of {BACKENDS}, got {self.backend!r}",
        )
        return self
