"""masked_conv2d (forward) on every backend: [16, 128, 32, 32] float32, a 5 x 5 kernel, mask "B"."""

import torch

import spn_kernels as sk


def test_masked_conv2d(bench, backend, device, gen):
    h = torch.randn(16, 128, 32, 32, device=device, generator=gen)
    w = torch.randn(128, 128, 5, 5, device=device, generator=gen) / 100
    bench("masked_conv2d", lambda: sk.masked_conv2d(h, w, None, "B", backend=backend))
