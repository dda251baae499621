"""Causality: a sub-pixel's logits never depend on itself or on anything later in the generation order, and
do depend on far-away earlier sub-pixels (no blind spot). Inputs are integers, so dependence is measured by
perturbation (change one sub-pixel, see which logits move), which is exact; the decoder's own causality is
also checked by gradients on a continuous input."""

from __future__ import annotations

import pytest
import torch

from spn import SPN, SPNConfig

from .utils import all_logits, order_index


def dependence(model: SPN, x: torch.Tensor) -> torch.Tensor:
    """dep[i, j] = the logits of sub-pixel i (in generation order) move when sub-pixel j changes: bool [D, D]."""
    cfg = model.config
    C, N, K = cfg.channels, cfg.image_size, 2**cfg.bits
    order = order_index(C, N, cfg.subscale).flatten()
    D = order.numel()
    batch = x.expand(D + 1, C, N, N).clone().view(D + 1, -1)
    j = torch.arange(D)
    batch[1 + j, j] = (batch[1 + j, j] + K // 2) % K  # flip the top bit of sub-pixel j
    with torch.no_grad():
        lg = all_logits(model, batch.view(D + 1, C, N, N)).view(D + 1, D, -1)
    moved = (lg[1:] - lg[:1]).abs().amax(-1) > 1e-9  # [D perturbed j, D logits i]
    dep = torch.zeros(D, D, dtype=torch.bool)
    dep[order[:, None], order[None, :]] = moved.T  # rows: i, cols: j, both in generation order
    return dep


@pytest.mark.parametrize("attention", [True, False], ids=["attention", "conv-only"])
def test_logits_depend_exactly_on_earlier_subpixels(attention):
    attn = dict(context_attention=1, decoder_attention=1) if attention else {}
    cfg = SPNConfig(image_size=8, channels=3, bits=2, subscale=2, decoder_blocks=3, **attn)
    model = SPN(cfg).double().eval()
    dep = dependence(model, torch.randint(0, 4, (1, 3, 8, 8)))
    D = dep.shape[0]
    earlier = torch.ones(D, D, dtype=torch.bool).tril(-1)
    assert not (dep & ~earlier).any(), "a sub-pixel's logits depend on itself or on a later sub-pixel"
    if attention:
        # Full attention in the context network and causal attention in the decoder: every earlier sub-pixel.
        assert torch.equal(dep, earlier)
    else:
        # The receptive field of 3 blocks covers a 4x4 slice: the last sub-pixel sees every earlier one,
        # including those above and to the right (the classic blind spot), and every earlier slice.
        assert dep[-1, :-1].all()
        n, C = 4, 3
        # Pixel (1, 0) of slice 0 sees pixel (0, 3) of slice 0: above and three columns right.
        assert dep[(1 * n + 0) * C, (0 * n + 3) * C]
        # The first pixel of the last slice sees the last pixel of slice 0 (far away, two slices back).
        assert dep[(3 * n * n) * C, (n * n - 1) * C]


def test_given_slice_and_high_bits_condition_the_likelihood():
    cfg = SPNConfig(image_size=4, channels=1, bits=2, subscale=2, first_slice_given=True, cond_bits=1)
    model = SPN(cfg).double().eval()
    x = torch.randint(0, 4, (1, 1, 4, 4))
    base = model.log_prob(x)
    # Slice 0 is given (not modelled) but conditions the rest: changing it moves the likelihood.
    y = x.clone()
    y[0, 0, 2, 2] ^= 1
    assert not torch.equal(model.log_prob(y), base)


@pytest.mark.parametrize("attention", [True, False], ids=["attention", "conv-only"])
def test_decoder_hidden_state_is_causal_by_gradients(attention):
    cfg = SPNConfig(image_size=4, channels=2, bits=2, subscale=1, decoder_blocks=3, decoder_attention=int(attention))
    model = SPN(cfg).double()
    n, C = 4, 2
    x = torch.randn(1, C, n, n, dtype=torch.float64, requires_grad=True)
    cond = torch.randn(1, model.cond_channels, n, n, dtype=torch.float64)
    hidden = model.decoder(x, cond)  # [1, D, n, n]
    for p in range(n * n):
        (g,) = torch.autograd.grad(hidden[0, :, p // n, p % n].sum(), x, retain_graph=True)
        touched = g[0].abs().sum(0).flatten() > 0  # [n*n] positions that position p depends on
        assert not touched[p:].any(), f"position {p} depends on itself or later positions"
        if attention or p == n * n - 1:
            assert touched[:p].all(), f"position {p} is blind to some earlier position"
