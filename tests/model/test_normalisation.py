"""Exact normalisation: the probabilities of every possible image (every completion, for conditional models)
sum to one in float64. Any information leak in the ordering (a sub-pixel seeing itself or a later one)
would break it, so this proves the subscale ordering, the masks and the channel head consistent."""

from __future__ import annotations

import pytest
import torch

from spn import SPN, Pipeline, SPNConfig

from .utils import enumerate_images

ATTN = dict(context_attention=1, decoder_attention=1)
# Narrow networks: enumerating 4096 images in float64 stays fast, and width does not change the ordering.
NARROW = dict(context_channels=8, decoder_channels=8, head_channels=8)

# (id, config kwargs); every case enumerates at most 2^12 images.
CASES = [
    ("2x2-c1-b2-s1", dict(image_size=2, channels=1, bits=2, subscale=1)),
    ("2x2-c1-b2-s2", dict(image_size=2, channels=1, bits=2, subscale=2)),
    ("2x2-c3-b1-s1", dict(image_size=2, channels=3, bits=1, subscale=1)),
    ("2x2-c3-b1-s2-attn", dict(image_size=2, channels=3, bits=1, subscale=2, **ATTN)),
    ("4x4-c1-b1-s2-first-attn", dict(image_size=4, channels=1, bits=1, subscale=2, first_slice_given=True, **ATTN)),
    ("4x4-c1-b1-s2-first", dict(image_size=4, channels=1, bits=1, subscale=2, first_slice_given=True)),
    ("2x2-c3-b2-s2-cond1", dict(image_size=2, channels=3, bits=2, subscale=2, cond_bits=1)),
    ("2x2-c1-b3-s1-cond1-attn", dict(image_size=2, channels=1, bits=3, subscale=1, cond_bits=1, **ATTN)),
    (
        "4x4-c1-b2-s2-first-cond1",
        dict(image_size=4, channels=1, bits=2, subscale=2, first_slice_given=True, cond_bits=1, decoder_attention=1),
    ),
]


HEADS = [dict(output="categorical"), dict(output="logistic_mixture", mixtures=3)]
HEAD_IDS = ["categorical", "logistic"]


@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
@pytest.mark.parametrize("kw", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_probabilities_sum_to_one(kw, head):
    cfg = SPNConfig(**kw, **NARROW, **head, dropout=0.3)  # eval mode: dropout must not break normalisation
    model = SPN(cfg).double().eval()
    C, N, s, mb = cfg.channels, cfg.image_size, cfg.subscale, cfg.model_bits
    free = torch.ones(C, N, N, dtype=torch.bool)
    if cfg.first_slice_given:
        free[:, ::s, ::s] = False
    conditional = cfg.first_slice_given or cfg.cond_bits
    for _ in range(2 if conditional else 1):  # two random conditions for conditional models
        cond = torch.randint(0, 2**cfg.bits, (C, N, N))
        low = enumerate_images(cond & (2**mb - 1), free, 2**mb)
        x = (cond >> mb << mb) | low  # the high bits stay those of the condition
        assert x.shape[0] <= 2**12
        with torch.no_grad():
            total = model.log_prob(x).exp().sum().item()
        assert abs(total - 1) < 1e-6, total


@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
def test_pipeline_probabilities_sum_to_one(head):
    base = SPN(SPNConfig(image_size=1, channels=1, bits=1, subscale=1, **head))
    size = SPN(SPNConfig(image_size=2, channels=1, bits=1, subscale=2, first_slice_given=True, **ATTN, **head))
    depth = SPN(SPNConfig(image_size=2, channels=1, bits=2, subscale=2, cond_bits=1, **head))
    pipe = Pipeline([base, size, depth]).double()
    x = enumerate_images(torch.zeros(1, 2, 2, dtype=torch.int64), torch.ones(1, 2, 2, dtype=torch.bool), 4)
    with torch.no_grad():
        assert abs(pipe.log_prob(x).exp().sum().item() - 1) < 1e-6
        # Every prefix is a distribution too.
        low = enumerate_images(torch.zeros(1, 2, 2, dtype=torch.int64), torch.ones(1, 2, 2, dtype=torch.bool), 2)
        assert abs(Pipeline([base, size]).double().log_prob(low).exp().sum().item() - 1) < 1e-6
