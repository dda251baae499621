"""subscale_merge on every backend: the 16 slices of [64, 3, 64, 64] uint8 (s = 4)."""

import torch

import spn_kernels as sk


def test_subscale_merge(bench, backend, device, gen):
    x = torch.randint(0, 256, (64, 3, 64, 64), dtype=torch.uint8, device=device, generator=gen)
    sl = sk.subscale_split(x, 4)
    bench("subscale_merge", lambda: sk.subscale_merge(sl, backend=backend))
