"""Presets: the paper's settings at full scale, and small CPU presets.

Every paper-scale preset is our architecture sized toward the setting of Menick & Kalchbrenner (2019): the
image size, bit depth, subscaling factor and upscaling stages follow the paper's experiments, while the widths
and depths are our choice. Each preset quotes the test bits/dim reported for SPN on that setting and says how
firm the figure is. Parameter counts are computed, not quoted: ``python -m spn.configs`` prints them (models
are built on the meta device, so nothing is allocated).

    >>> from spn import configs
    >>> model = configs.build("cpu_tiny")           # an SPN (or a Pipeline for multi-stage presets)
    >>> cfgs = configs.get("imagenet128")           # list of SPNConfig, one per stage
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from .config import SPNConfig


@dataclass(frozen=True)
class Preset:
    """A named setting: one SPNConfig per stage (one stage = a plain SPN), and the paper's result."""

    name: str
    description: str
    stages: tuple[SPNConfig, ...]
    paper_bpd: str = "-"
    provenance: str = ""
    notes: str = field(default="")


def _big(d: int, blocks: int, attn: int, heads: int, **kw) -> dict:
    return dict(
        context_channels=d,
        context_blocks=blocks,
        context_attention=attn,
        decoder_channels=d,
        decoder_blocks=blocks,
        decoder_attention=attn,
        heads=heads,
        head_channels=d,
        **kw,
    )


def _photo_stages(size: int) -> tuple[SPNConfig, ...]:
    """The large-photo chain on CPU: a 3-bit 32x32 image (16x16 slices), its size upscaling to 3-bit size x size
    with slice 0 given (s = size/32: 32x32 slices), then the depth upscaling to 8 bits given the 3 high bits (same
    slices). Every stage has preset cpu_demo's widths and depths."""
    net = dict(channels=3, context_channels=32, context_blocks=2, decoder_channels=32, decoder_blocks=3,
               head_channels=32)  # fmt: skip
    s = size // 32
    return (
        SPNConfig(image_size=32, bits=3, subscale=2, **net),
        SPNConfig(image_size=size, bits=3, subscale=s, first_slice_given=True, **net),
        SPNConfig(image_size=size, bits=8, subscale=s, cond_bits=3, **net),
    )


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "imagenet32",
            "ImageNet 32x32, 8 bits, s=2 (16x16 slices)",
            (SPNConfig(image_size=32, channels=3, bits=8, subscale=2, **_big(256, 8, 2, 8)),),
            "3.85",
            "Menick & Kalchbrenner 2019, ImageNet 32x32 result as listed by others (unverified); widths: our choice",
        ),
        Preset(
            "imagenet64",
            "ImageNet 64x64, 8 bits, s=4 (16x16 slices)",
            (SPNConfig(image_size=64, channels=3, bits=8, subscale=4, **_big(512, 8, 4, 8)),),
            "3.52",
            "Menick & Kalchbrenner 2019, ImageNet 64x64 result (their model: 150M parameters); widths: our choice",
        ),
        Preset(
            "imagenet128",
            "ImageNet 128: 3-bit 32x32 -> 3-bit 128x128 (size, s=4) -> 8-bit 128x128 (depth, s=4)",
            (
                SPNConfig(image_size=32, channels=3, bits=3, subscale=2, **_big(256, 8, 2, 8)),
                SPNConfig(image_size=128, channels=3, bits=3, subscale=4, first_slice_given=True, **_big(256, 8, 2, 8)),
                SPNConfig(image_size=128, channels=3, bits=8, subscale=4, cond_bits=3, **_big(256, 8, 2, 8)),
            ),
            "-",
            "no bits/dim quoted for this setting; widths: our choice",
        ),
        Preset(
            "celebahq256",
            "CelebA-HQ 256, 5 bits: 3-bit 32x32 -> 3-bit 256x256 (size, s=8) -> 5-bit 256x256 (depth, s=8)",
            (
                SPNConfig(image_size=32, channels=3, bits=3, subscale=2, **_big(256, 8, 2, 8)),
                SPNConfig(image_size=256, channels=3, bits=3, subscale=8, first_slice_given=True, **_big(256, 8, 2, 8)),
                SPNConfig(image_size=256, channels=3, bits=5, subscale=8, cond_bits=3, **_big(256, 8, 2, 8)),
            ),
            "0.61 (5-bit)",
            "Menick & Kalchbrenner 2019, CelebA-HQ 256 5-bit result (unverified); widths: our choice",
        ),
        Preset(
            "cpu_demo",
            "32x32x3, 8 bits, s=4 (8x8 slices): trains in minutes on 2 CPU cores (`spn demo`)",
            (
                SPNConfig(
                    image_size=32,
                    channels=3,
                    bits=8,
                    subscale=4,
                    context_channels=32,
                    context_blocks=2,
                    decoder_channels=32,
                    decoder_blocks=3,
                    head_channels=32,
                ),
            ),
            notes="no paper counterpart",
        ),
        Preset(
            "cpu_photo256",
            "photos 256x256, 8 bits: 3-bit 32x32 (s=2) -> 3-bit 256x256 (size, s=8) -> 8-bit 256x256 (depth, s=8); "
            "32x32 slices throughout, cpu_demo's widths (`python -m spn.demo_large`)",
            _photo_stages(256),
            notes="no paper counterpart",
        ),
        Preset(
            "cpu_photo512",
            "photos 512x512, 8 bits: 3-bit 32x32 (s=2) -> 3-bit 512x512 (size, s=16) -> 8-bit 512x512 (depth, s=16); "
            "32x32 slices throughout, cpu_demo's widths",
            _photo_stages(512),
            notes="no paper counterpart",
        ),
        Preset(
            "cpu_tiny",
            "8x8x3, 4 bits, s=2: builds and trains in seconds (tests, smoke runs)",
            (SPNConfig(image_size=8, channels=3, bits=4, subscale=2),),
            notes="no paper counterpart",
        ),
        Preset(
            "cpu_pipeline",
            "3-bit 8x8 -> 3-bit 16x16 (size, s=2) -> 8-bit 16x16 (depth, s=2): the upscaling chain in miniature",
            (
                SPNConfig(image_size=8, channels=3, bits=3, subscale=2),
                SPNConfig(image_size=16, channels=3, bits=3, subscale=2, first_slice_given=True),
                SPNConfig(image_size=16, channels=3, bits=8, subscale=2, cond_bits=3),
            ),
            notes="no paper counterpart",
        ),
    ]
}


def get(name: str, **overrides) -> SPNConfig | list[SPNConfig]:
    """The preset's config (a list of configs, one per stage, for pipelines), with fields overridden
    (applied to every stage, e.g. backend="torch")."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    stages = [dataclasses.replace(c, **overrides) for c in PRESETS[name].stages]
    return stages[0] if len(stages) == 1 else stages


def build(name: str, **overrides):
    """An SPN for a one-stage preset, a Pipeline for the others (fields overridden as in get())."""
    from .model import SPN
    from .pipeline import Pipeline

    cfg = get(name, **overrides)
    return SPN(cfg) if isinstance(cfg, SPNConfig) else Pipeline([SPN(c) for c in cfg])


def parameter_count(name: str) -> int:
    """Parameters of the preset (all stages), counted on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        model = build(name)
    return sum(p.numel() for p in model.parameters())


def table() -> str:
    """A Markdown table of every preset: stages, parameters, the paper's bits/dim and its provenance."""
    rows = ["| preset | setting | parameters | paper bits/dim | provenance |", "|---|---|---|---|---|"]
    for p in PRESETS.values():
        params = parameter_count(p.name)
        rows.append(f"| {p.name} | {p.description} | {params / 1e6:.2f}M | {p.paper_bpd} | {p.provenance or p.notes} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
