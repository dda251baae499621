"""The two client styles of clients.py on spn: strict state_dict loads both ways, equal outputs and gradients
in float64, sk.incremental equal to the full model along a raster walk, and cached samples equal to naive ones."""

from __future__ import annotations

import functools

import pytest
import torch

import spn_kernels as sk

from .clients import (
    GatedMaskedConv2d,
    GatedNet,
    StackMaskedConv2d,
    StackNet,
    channel_logits,
    gated_spn_conv,
    sample_cached,
    sample_naive,
    stack_spn_conv,
)

CLIENTS = {
    "stack": (StackNet, StackMaskedConv2d, stack_spn_conv, dict(channels=8, layers=3), (2, 1, 28, 28)),
    "gated": (GatedNet, GatedMaskedConv2d, gated_spn_conv, dict(dim=10, blocks=2, k=5), (2, 3, 7, 6)),
}


def build(client: str, spn: bool, **extra):
    Net, theirs, ours, kw, _ = CLIENTS[client]
    conv = functools.partial(ours, **extra) if spn else theirs
    return Net(conv, **kw).double()


def randomise_bn(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_()


@pytest.mark.parametrize("client", list(CLIENTS))
def test_strict_loads_both_ways(client):
    orig, ours = build(client, spn=False), build(client, spn=True)
    ours = build(client, spn=True, persistent_mask=False)
    ours.load_state_dict(orig.state_dict(), strict=True)  # the client's mask buffers are checked, not loaded
    persistent = build(client, spn=True, persistent_mask=True)
    persistent.load_state_dict(ours.state_dict(), strict=True)  # no mask entries: the module's own masks
    build(client, spn=False).load_state_dict(persistent.state_dict(), strict=True)
    sd = persistent.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in orig.state_dict().items() if k.endswith("mask"))
    if client == "stack":  # without persistent_mask the spn state_dict has no masks, as plain nn.Conv2d's
        with pytest.raises(RuntimeError, match="Missing key"):
            build(client, spn=False).load_state_dict(ours.state_dict(), strict=True)


@pytest.mark.parametrize("client", list(CLIENTS))
def test_equal_outputs_and_gradients(client):
    orig, ours = build(client, spn=False), build(client, spn=True)
    ours.load_state_dict(orig.state_dict())
    assert all(isinstance(m, torch.nn.Conv2d) for m in ours.modules() if isinstance(m, sk.MaskedConv2d))
    x = torch.rand(CLIENTS[client][4], dtype=torch.float64)
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    outs = [orig(xs[0]), ours(xs[1])]
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-12, atol=1e-12)
    g = torch.randn_like(outs[0])
    for o in outs:
        o.backward(g)
    torch.testing.assert_close(xs[1].grad, xs[0].grad, rtol=1e-12, atol=1e-12)
    for (name, p0), p1, m0 in zip(orig.named_parameters(), ours.parameters(), _owners(orig)):
        g0 = p0.grad
        if name.endswith("weight") and hasattr(m0, "mask"):
            g0 = g0 * m0.mask  # the client's `weight.data *= mask` leaves gradients at masked taps
        torch.testing.assert_close(p1.grad, g0, rtol=1e-12, atol=1e-12, msg=name)


def _owners(model):
    return [m for m in model.modules() for _ in m.parameters(recurse=False)]


@pytest.mark.parametrize("client", list(CLIENTS))
def test_incremental_equals_full_model_on_a_raster_walk(client):
    model = build(client, spn=True).eval()
    randomise_bn(model)
    shape = (2, 1, 9, 8) if client == "stack" else CLIENTS[client][4]
    x = torch.rand(shape, dtype=torch.float64)
    inc = sk.incremental(model, torch.zeros(shape, dtype=torch.float64))
    seen = torch.zeros_like(x)
    B, C, H, W = shape
    with torch.no_grad():
        for r in range(H):
            for c in range(W):
                for ch in range(C):
                    torch.testing.assert_close(inc.step(r, c), model(seen)[..., r, c], rtol=1e-12, atol=1e-12)
                    inc.write(x[:, ch, r, c], r, c, channel=ch if C > 1 else None)
                    seen[:, ch, r, c] = x[:, ch, r, c]
        # causal: stepped again from scratch over the finished image, each sub-pixel's logits equal the full
        # model's (a sub-pixel's logits are read before it is written)
        inc.reset()
        full = model(x)
        for r in range(H):
            for c in range(W):
                for ch in range(C):
                    got, want = inc.step(r, c), full[..., r, c]
                    torch.testing.assert_close(
                        channel_logits(got, ch), channel_logits(want, ch), rtol=1e-12, atol=1e-12
                    )
                    inc.write(x[:, ch, r, c], r, c, channel=ch)


def test_incremental_on_mnist_size_equals_the_full_model():
    """The stack at 28x28: the causal check (each step on the finished prefix equals the full model there)."""
    model = build("stack", spn=True).eval()
    randomise_bn(model)
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    inc = sk.incremental(model, torch.zeros_like(x))
    with torch.no_grad():
        full = model(x)
        got = torch.empty_like(full)
        for r in range(28):
            for c in range(28):
                got[..., r, c] = inc.step(r, c)
                inc.write(x[:, :, r, c], r, c)
    torch.testing.assert_close(got, full, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("client", list(CLIENTS))
def test_cached_samples_equal_naive_ones(client):
    model = build(client, spn=True).eval()
    randomise_bn(model)
    shape = (2, 1, 8, 7) if client == "stack" else (2, 3, 5, 4)
    B, C, H, W = shape
    draws = torch.rand(H, W, C, B, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        naive = sample_naive(model, shape, draws)
        cached = sample_cached(model, shape, draws)
    assert torch.equal(cached, naive)
    assert naive.float().std() > 0  # the draws produced varied images


@pytest.mark.parametrize("client", list(CLIENTS))
def test_client_models_are_causal(client):
    """Each output sub-pixel's logits depend only on earlier sub-pixels (raster order, channels in order)."""
    model = build(client, spn=True).eval()
    _, C, H, W = shape = (1, *CLIENTS[client][4][1:2], 5, 4)
    x = torch.rand(shape, dtype=torch.float64, requires_grad=True)
    out = model(x)
    for r, c, ch in [(0, 0, 0), (2, 1, C - 1), (4, 3, 0)]:
        logits = out[:, :, ch, r, c] if out.dim() == 5 else out[:, :, r, c]
        (g,) = torch.autograd.grad(logits.sum(), x, retain_graph=True)
        order = torch.arange(H * W * C).reshape(H, W, C).permute(2, 0, 1)
        here = (r * W + c) * C + ch
        assert g[0][order >= here].abs().max() == 0
        assert here == 0 or g[0][order < here].abs().max() > 0
