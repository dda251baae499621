"""subscale_split on every backend: [64, 3, 64, 64] uint8, s = 4."""

import torch

import spn_kernels as sk


def test_subscale_split(bench, backend, device, gen):
    x = torch.randint(0, 256, (64, 3, 64, 64), dtype=torch.uint8, device=device, generator=gen)
    bench("subscale_split", lambda: sk.subscale_split(x, 4, backend=backend))
