"""gated_step: the C++ and Triton kernels against the reference (float64 and float32, the 2x-reference rule), the
cache they leave, the input checks, the registration (opcheck), and the decoder's fused step against forward."""

from __future__ import annotations

import pytest
import torch

import spn_kernels as sk
from tests.helpers import assert_close_to_ref

# (batch, first block's channels, width d, blocks, kernel size, n); b16-d32 takes the vectorised gate (B * d >= 512)
CASES = {
    "b1-c3-d8-L1-k3-n5": (1, 3, 8, 1, 3, 5),
    "b2-c1-d5-L3-k3-n7": (2, 1, 5, 3, 3, 7),
    "b3-c3-d16-L2-k5-n6": (3, 3, 16, 2, 5, 6),
    "b2-c2-d4-L2-k1-n3": (2, 2, 4, 2, 1, 3),
    "b16-c3-d32-L3-k3-n8": (16, 3, 32, 3, 3, 8),
}
POSITIONS = [(0, 0), (2, 0), (1, 2), (-1, -1)]  # -1: the last row / column


def make_args(case, dtype, seed=0):
    B, c0, d, L, k, n = case
    g = torch.Generator().manual_seed(seed)
    p = k // 2

    def r(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64).mul_(scale).to(dtype)

    chans = [c0] + [d] * (L - 1)
    h_in = [r(B, n + p, n + 2 * p, c) for c in chans]
    row_term = [r(B, n, 2 * d) for _ in chans]
    w_h = [r((p + 1) * k * c, 2 * d, scale=((p + 1) * k * c) ** -0.5) for c in chans]
    w_out = [r(d, d, scale=d**-0.5) for _ in chans]
    b_out = [r(d) for _ in chans]
    return h_in, row_term, w_h, w_out, b_out


def clone(args):
    return tuple([t.clone() for t in lst] for lst in args)


@pytest.mark.parametrize("backend", ["cpu", "triton"], ids=["cpp", "triton"])  # triton: the interpreter here
@pytest.mark.parametrize("pos", POSITIONS, ids=["0-0", "2-0", "1-2", "last"])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_kernel_matches_reference(case, pos, backend):
    n = case[-1]
    row, col = (min(v, n - 1) if v >= 0 else n - 1 for v in pos)
    a64 = make_args(case, torch.float64)
    out64 = sk.gated_step_ref(*(c := clone(a64)), row, col)
    got64 = sk.gated_step(*(k := clone(a64)), row, col, backend=backend)
    torch.testing.assert_close(got64, out64, rtol=1e-12, atol=1e-12)
    for x, y in zip(k[0], c[0]):  # the cache writes: the blocks' outputs at the position
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)
    a32 = tuple([t.float() for t in lst] for lst in a64)
    ref32 = sk.gated_step_ref(*clone(a32), row, col)
    got32 = sk.gated_step(*clone(a32), row, col, backend=backend)
    assert_close_to_ref(got32, ref32, out64)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda a: a[1].pop(), "same number"),
        (lambda a: a.__setitem__(2, [a[2][0][:-1]] + a[2][1:]), r"w_h\[0\] must have shape"),
        (lambda a: a.__setitem__(3, [a[3][0].double()] + a[3][1:]), r"w_out\[0\] is torch.float64"),
        (lambda a: a.__setitem__(0, [a[0][0][:, :-1]] + a[0][1:]), "padded"),
        (lambda a: a.__setitem__(0, [a[0][0], a[0][1].transpose(1, 2).contiguous().transpose(1, 2)]),
         "must be contiguous"),
    ],
    ids=["lengths", "w_h-shape", "dtype", "padding", "noncontiguous"],
)  # fmt: skip
def test_bad_input(mutate, match):
    a = list(list(x) for x in make_args((2, 3, 4, 2, 3, 5), torch.float32))
    mutate(a)
    with pytest.raises(ValueError, match=match):
        sk.gated_step(*a, 1, 1)


def test_bad_position():
    a = make_args((2, 3, 4, 2, 3, 5), torch.float32)
    with pytest.raises(ValueError, match="outside the 5 x 5 map"):
        sk.gated_step(*a, 5, 0)
    with pytest.raises(ValueError, match="outside the 5 x 5 map"):
        torch.ops.spn.gated_step(*a, 0, -1)


def test_opcheck():
    a = make_args((2, 3, 4, 2, 3, 5), torch.float32)
    torch.library.opcheck(torch.ops.spn.gated_step, (*a, 2, 3))


@pytest.mark.parametrize("backend", ["torch", None], ids=["reference", "cpu-kernel"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_decoder_fused_step_equals_forward(dtype, backend):
    """The decoder's step (one gated_step call per position) against its forward pass, every position."""
    from spn import SPN, SPNConfig

    torch.manual_seed(0)
    cfg = SPNConfig(image_size=6, channels=3, bits=2, subscale=1, decoder_blocks=3, decoder_channels=8)
    model = SPN(cfg).eval()
    n, B = 6, 2
    x = torch.randn(B, 3, n, n, dtype=torch.float64)
    cond = torch.randn(B, model.cond_channels, n, n, dtype=torch.float64)
    with torch.no_grad():
        full64 = model.double().decoder(x, cond)
        full = model.to(dtype).decoder(x.to(dtype), cond.to(dtype))
        model.decoder.step_backend = backend
        cache = model.decoder.allocate_inference_cache(B, dtype, torch.device("cpu"))
        model.decoder.start_slice(cache, cond.to(dtype))
        for r in range(n):
            if r:
                model.decoder.step_row(cache, r - 1)
            for c in range(n):
                got = model.decoder.step(cache, r, c)
                if dtype == torch.float64:
                    torch.testing.assert_close(got, full64[:, :, r, c], rtol=1e-10, atol=1e-12)
                else:
                    assert_close_to_ref(got, full[:, :, r, c], full64[:, :, r, c])
                model.decoder.write(cache, x[:, :, r, c].to(dtype), r, c)
