"""slice_scatter_ on every backend: one slice into [64, 3, 64, 64] uint8, s = 4, in place."""

import torch

import spn_kernels as sk


def test_slice_scatter_(bench, backend, device, gen):
    x = torch.randint(0, 256, (64, 3, 64, 64), dtype=torch.uint8, device=device, generator=gen)
    t = torch.randint(0, 16, (64,), device=device, generator=gen)
    sl = sk.subscale_split(x, 4)
    bench("slice_scatter_", lambda: sk.slice_scatter_(x, sl[:, 5], 4, t.clamp(max=15), backend=backend))
