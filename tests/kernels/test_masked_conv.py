"""masked_conv2d (forward, backward) and masked_conv2d_step: every backend against the references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import spn_kernels as sk
from tests.helpers import LAYOUTS, assert_close_to_ref, layout

# (B, C_in, C_out, H, W, k, mask_type, color_groups)
CASES = {
    "b1-1to1-5x5-k3-A": (1, 1, 1, 5, 5, 3, "A", 1),
    "b2-3to8-7x7-k3-B": (2, 3, 8, 7, 7, 3, "B", 1),
    "b1-4to4-11x13-k5-V": (1, 4, 4, 11, 13, 5, "V", 1),
    "b3-6to9-7x5-k5-A-g3": (3, 6, 9, 7, 5, 5, "A", 3),
    "b2-6to6-9x9-k7-B-g3": (2, 6, 6, 9, 9, 7, "B", 3),
    "b1-5to7-3x3-k7-B": (1, 5, 7, 3, 3, 7, "B", 1),
    "b2-16to16-8x8-k1-B": (2, 16, 16, 8, 8, 1, "B", 1),
    "b1-2to2-1x1-k3-V": (1, 2, 2, 1, 1, 3, "V", 1),
}


def _make(case, dtype, bias=True):
    B, ci, co, H, W, k, _, _ = case
    x = torch.randn(B, ci, H, W, dtype=dtype)
    w = torch.randn(co, ci, k, k, dtype=dtype) / (ci * k)
    b = torch.randn(co, dtype=dtype) if bias else None
    return x, w, b


def test_mask_definition():
    m = sk.conv_mask(1, 1, 5, "A")[0, 0]
    want_a = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0] * 5, [0] * 5], dtype=m.dtype)
    want_b = want_a.clone()
    want_b[2, 2] = 1
    assert torch.equal(sk.conv_mask(1, 1, 5, "B")[0, 0], want_b)
    assert torch.equal(sk.conv_mask(1, 1, 3, "V")[0, 0], torch.tensor([[1.0, 1, 1], [1, 1, 1], [0, 0, 0]]))
    # R->G->B centre taps
    a = sk.conv_mask(3, 3, 1, "A", 3)[:, :, 0, 0]
    b = sk.conv_mask(6, 3, 1, "B", 3)[:, :, 0, 0]
    assert torch.equal(a, torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 1, 0]]))
    assert torch.equal(b, torch.tensor([[1.0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 0], [1, 1, 1], [1, 1, 1]]))


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("kind", LAYOUTS)
def test_forward(backend, case, kind):
    *_, mt, g = case
    x, w, b = _make(case, torch.float32)
    out = sk.masked_conv2d(layout(x, kind), w, b, mt, g, backend=backend)
    ref = sk.masked_conv2d_ref(x, w, b, mt, g)
    ref64 = sk.masked_conv2d_ref(x.double(), w.double(), b.double(), mt, g)
    assert_close_to_ref(out, ref, ref64)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_backward(backend, case):
    *_, mt, g = case
    x, w, b = _make(case, torch.float32)
    gy = torch.randn(x.shape[0], w.shape[0], *x.shape[2:])

    def grads(x, w, b, gy, be):
        x, w, b = (t.clone().requires_grad_() for t in (x, w, b))
        out = sk.masked_conv2d(x, w, b, mt, g, backend=be)
        return torch.autograd.grad(out, (x, w, b), gy)

    got = grads(x, w, b, gy, backend)
    ref = grads(x, w, b, gy, "torch")
    ref64 = grads(x.double(), w.double(), b.double(), gy.double(), "torch")
    mask = sk.conv_mask(*w.shape[:3], mt, g)
    assert torch.all(got[1][mask == 0] == 0), "masked taps must get exactly zero gradient"
    for a, r, r64 in zip(got, ref, ref64):
        assert_close_to_ref(a, r, r64)


@pytest.mark.parametrize(
    "case",
    [CASES["b2-3to8-7x7-k3-B"], CASES["b3-6to9-7x5-k5-A-g3"], CASES["b1-4to4-11x13-k5-V"]],
    ids=["B", "A-g3", "V"],
)
def test_gradcheck(backend, case):
    *_, mt, g = case
    x, w, b = (t.requires_grad_() for t in _make(case, torch.float64))
    assert torch.autograd.gradcheck(lambda x, w, b: sk.masked_conv2d(x, w, b, mt, g, backend=backend), (x, w, b))


def test_backward_without_bias_and_frozen_input(backend):
    x, w, _ = _make(CASES["b2-3to8-7x7-k3-B"], torch.float64)
    w.requires_grad_()
    out = sk.masked_conv2d(x, w, None, "B", backend=backend)
    (gw,) = torch.autograd.grad(out.sum(), (w,))
    (gw_ref,) = torch.autograd.grad(sk.masked_conv2d_ref(x, w, None, "B").sum(), (w,))
    torch.testing.assert_close(gw, gw_ref)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_step_reproduces_forward(backend, case):
    """Running the step over every position in raster order (rows for mask V) gives masked_conv2d's
    output everywhere, and the cache ends equal to the input, exactly as the reference's cache."""
    B, ci, co, H, W, k, mt, g = case
    x, w, b = _make(case, torch.float64)
    full = sk.masked_conv2d_ref(x, w, b, mt, g)
    cache = torch.zeros_like(x)
    cache_ref = torch.zeros_like(x)
    for r in range(H):
        if mt == "V":
            out = sk.masked_conv2d_step(cache, x[:, :, r], w, b, r, 0, mt, g, backend=backend)
            sk.masked_conv2d_step_ref(cache_ref, x[:, :, r], w, b, r, 0, mt, g)
            torch.testing.assert_close(out, full[:, :, r])
            assert torch.equal(cache, cache_ref)
            continue
        for c in range(W):
            out = sk.masked_conv2d_step(cache, x[:, :, r, c], w, b, r, c, mt, g, backend=backend)
            sk.masked_conv2d_step_ref(cache_ref, x[:, :, r, c], w, b, r, c, mt, g)
            torch.testing.assert_close(out, full[:, :, r, c])
            assert torch.equal(cache, cache_ref)
    assert torch.equal(cache, x)


def test_step_without_x_new_leaves_cache(backend):
    x, w, b = _make(CASES["b2-3to8-7x7-k3-B"], torch.float32)
    cache = x.clone()
    out = sk.masked_conv2d_step(cache, None, w, b, 3, 4, "A", backend=backend)
    assert torch.equal(cache, x)
    ref = sk.masked_conv2d_ref(x, w, b, "A")[:, :, 3, 4]
    ref64 = sk.masked_conv2d_ref(x.double(), w.double(), b.double(), "A")[:, :, 3, 4]
    assert_close_to_ref(out, ref, ref64)


def test_module_drop_in():
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(3, 8, 5)
    m = sk.MaskedConv2d(3, 8, 5, mask_type="A")
    assert m.state_dict().keys() == conv.state_dict().keys()
    assert m.weight.shape == conv.weight.shape and m.bias.shape == conv.bias.shape
    m.load_state_dict(conv.state_dict())
    x = torch.randn(2, 3, 9, 9)
    torch.testing.assert_close(m(x), F.conv2d(x, conv.weight * m.mask(), conv.bias, padding=2))
    # PixelCNN code that keeps its mask as a buffer
    sd = dict(conv.state_dict(), mask=m.mask().clone())
    m.load_state_dict(sd)
    sd["mask"] = sk.conv_mask(8, 3, 5, "B")
    with pytest.raises(ValueError, match="mask"):
        m.load_state_dict(sd)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(w=torch.zeros(4, 3, 3, 5)), "square kernel"),
        (dict(w=torch.zeros(4, 3, 4, 4)), "odd"),
        (dict(mask_type="C"), "mask_type"),
        (dict(w=torch.zeros(4, 3, 3, 3), color_groups=3, mask_type="B"), "divisible by color_groups=3"),
        (dict(w=torch.zeros(6, 3, 3, 3), color_groups=3, mask_type="V"), "mask 'V' needs 1"),
        (dict(x=torch.zeros(2, 5, 7, 7)), "x has 5 channels but weight expects C_in=3"),
        (dict(x=torch.zeros(5, 7, 7)), "x must be 4-D"),
        (dict(w=torch.zeros(4, 3, 3, 3, dtype=torch.float64)), "dtype"),
        (dict(b=torch.zeros(5)), r"bias must have shape \[C_out\]"),
        (dict(x=torch.zeros(2, 3, 7, 7, dtype=torch.int64), w=torch.zeros(4, 3, 3, 3, dtype=torch.int64)), "float"),
    ],
    ids=[
        "nonsquare",
        "even",
        "mask-type",
        "groups-indivisible",
        "V-groups",
        "channels",
        "rank",
        "dtype-mismatch",
        "bias-shape",
        "int-weight",
    ],
)
def test_conv_bad_input(backend, kwargs, match):
    x = kwargs.get("x", torch.zeros(2, 3, 7, 7))
    w = kwargs.get("w", torch.zeros(6, 3, 3, 3))
    b = kwargs.get("b")
    with pytest.raises(ValueError, match=match):
        sk.masked_conv2d(x, w, b, kwargs.get("mask_type", "B"), kwargs.get("color_groups", 1), backend=backend)


@pytest.mark.parametrize(
    "args, match",
    [
        (dict(row=7), r"row must be in \[0, 7\)"),
        (dict(col=-1), r"col must be in \[0, 7\)"),
        (dict(x_new=torch.zeros(2, 4)), r"x_new must have shape \(2, 3\)"),
        (dict(x_new=torch.zeros(2, 3), mask_type="V"), r"x_new must have shape \(2, 3, 7\)"),
        (dict(cache=torch.zeros(2, 4, 7, 7)), "cache has 4 channels"),
    ],
    ids=["row", "col", "x-new-shape", "x-new-V", "cache-channels"],
)
def test_step_bad_input(backend, args, match):
    a = dict(cache=torch.zeros(2, 3, 7, 7), x_new=None, row=0, col=0, mask_type="B")
    a.update(args)
    with pytest.raises(ValueError, match=match):
        sk.masked_conv2d_step(
            a["cache"], a["x_new"], torch.zeros(6, 3, 3, 3), None, a["row"], a["col"], a["mask_type"], backend=backend
        )


def test_opcheck():
    x, w, b = _make(CASES["b3-6to9-7x5-k5-A-g3"], torch.float64)
    x.requires_grad_()
    w.requires_grad_()
    torch.library.opcheck(torch.ops.spn.masked_conv2d.default, (x, w, b, "A", 3))
    torch.library.opcheck(torch.ops.spn.masked_conv2d.default, (x, w, None, "B", 1))
    gy = torch.randn(3, 9, 7, 5, dtype=torch.float64)
    torch.library.opcheck(
        torch.ops.spn.masked_conv2d_backward.default, (gy, x.detach(), w.detach(), "A", 3, [True, True, False])
    )
    cache = torch.randn(3, 6, 7, 5, dtype=torch.float64)
    torch.library.opcheck(
        torch.ops.spn.masked_conv2d_step.default,
        (cache, torch.randn(3, 6, dtype=torch.float64), w.detach(), b, 2, 3, "B", 3),
    )
    torch.library.opcheck(
        torch.ops.spn.masked_conv2d_step.default,
        (cache, torch.randn(3, 6, 5, dtype=torch.float64), w.detach()[:, :, :, :], b, 4, 0, "V", 1),
    )


def test_compile_fullgraph():
    m = sk.MaskedConv2d(3, 8, 3, "A")
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    out = torch.compile(m, fullgraph=True, backend="aot_eager")(x)
    torch.testing.assert_close(out, m(x))
    out.sum().backward()
    assert x.grad is not None


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_step_accuracy_at_sampling_size(backend, mask_type):
    """At a real sampling size (C=128, k=5: ~1500 terms per output) the step's float32 error stays within
    the rule of assert_close_to_ref; one long accumulation chain would not."""
    g = torch.Generator().manual_seed(3)
    cache = torch.randn(16, 128, 32, 32, generator=g)
    w = torch.randn(128, 128, 5, 5, generator=g) / 40
    b = torch.randn(128, generator=g)
    out = sk.masked_conv2d_step(cache.clone(), None, w, b, 16, 16, mask_type, backend=backend)
    ref = sk.masked_conv2d_step_ref(cache.clone(), None, w, b, 16, 16, mask_type)
    ref64 = sk.masked_conv2d_step_ref(cache.double(), None, w.double(), b.double(), 16, 16, mask_type)
    assert_close_to_ref(out, ref, ref64)
