"""masked_conv2d_step on every backend: one sampling step of a [16, 128, 32, 32] float32 cache, 5 x 5, mask "B"."""

import torch

import spn_kernels as sk


def test_masked_conv2d_step(bench, backend, device, gen):
    w = torch.randn(128, 128, 5, 5, device=device, generator=gen) / 100
    cache = torch.randn(16, 128, 32, 32, device=device, generator=gen)
    bench("masked_conv2d_step", lambda: sk.masked_conv2d_step(cache, None, w, None, 16, 16, "B", backend=backend))
