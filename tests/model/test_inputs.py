"""Bad input and invalid configs raise ValueError naming the problem."""

from __future__ import annotations

import pytest
import torch

from spn import SPN, Pipeline, SPNConfig


@pytest.fixture(scope="module")
def model():
    return SPN(SPNConfig(image_size=4, channels=1, bits=2, subscale=2))


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.zeros(1, 4, 4, dtype=torch.int64), "4-D"),
        (torch.zeros(1, 1, 4, 8, dtype=torch.int64), r"shape \(\*, 1, 4, 4\)"),
        (torch.zeros(1, 3, 4, 4, dtype=torch.int64), r"shape \(\*, 1, 4, 4\)"),
        (torch.zeros(1, 1, 4, 4), "integer"),
        (torch.full((1, 1, 4, 4), 4), r"values must be in \[0, 2\^2\)"),
        (torch.full((1, 1, 4, 4), -1), r"values must be in \[0, 2\^2\)"),
        ([[0]], "torch.Tensor"),
    ],
    ids=["rank", "shape", "channels", "float", "too-large", "negative", "not-a-tensor"],
)
def test_bad_images(model, x, match):
    for fn in (model.log_prob, model.bits_per_dim, model.loss):
        with pytest.raises(ValueError, match=match):
            fn(x)


def test_empty_batch(model):
    x = torch.zeros(0, 1, 4, 4, dtype=torch.int64)
    assert model.log_prob(x).shape == (0,) and model.bits_per_dim(x).shape == (0,)  # per image: nothing to score
    with pytest.raises(ValueError, match="no images"):
        model.loss(x)  # a mean over no images


def test_bad_slices_per_step(model):
    with pytest.raises(ValueError, match="slices_per_step"):
        model.loss(torch.zeros(1, 1, 4, 4, dtype=torch.int64), slices_per_step=5)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(image_size=6, subscale=4), "divisible by subscale"),
        (dict(image_size=4, bits=0), "bits must be in 1..16"),
        (dict(image_size=4, bits=17), "bits must be in 1..16"),
        (dict(image_size=4, bits=3, cond_bits=3), "cond_bits"),
        (dict(image_size=4, subscale=1, first_slice_given=True), "first_slice_given"),
        (dict(image_size=4, kernel_size=2), "kernel_size"),
        (dict(image_size=4, decoder_attention=1, decoder_channels=6, heads=4), "heads"),
        (dict(image_size=4, backend="gpu"), "backend"),
    ],
    ids=["not-divisible", "bits-0", "bits-17", "cond-bits", "first-slice-s1", "kernel", "heads", "backend"],
)
def test_invalid_configs(kw, match):
    with pytest.raises(ValueError, match=match):
        SPN(SPNConfig(**kw))


def test_invalid_pipelines():
    base = SPN(SPNConfig(image_size=2, channels=1, bits=2, subscale=1))
    with pytest.raises(ValueError, match="stages\\[0\\]"):
        Pipeline([SPN(SPNConfig(image_size=4, channels=1, bits=2, subscale=2, first_slice_given=True))])
    with pytest.raises(ValueError, match="size upscaling"):
        Pipeline([base, SPN(SPNConfig(image_size=8, channels=1, bits=2, subscale=2, first_slice_given=True))])
    with pytest.raises(ValueError, match="depth upscaling"):
        Pipeline([base, SPN(SPNConfig(image_size=2, channels=1, bits=4, subscale=1, cond_bits=1))])
