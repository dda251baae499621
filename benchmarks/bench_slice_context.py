"""slice_context on every backend: [64, 3, 64, 64] uint8, s = 4, a random target slice per image."""

import torch

import spn_kernels as sk


def test_slice_context(bench, backend, device, gen):
    x = torch.randint(0, 256, (64, 3, 64, 64), dtype=torch.uint8, device=device, generator=gen)
    t = torch.randint(0, 16, (64,), device=device, generator=gen)
    bench("slice_context", lambda: sk.slice_context(x, 4, t, backend=backend))
