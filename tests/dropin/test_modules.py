"""sk.MaskedConv2d against a masked-weight F.conv2d computed here from the definition: every masked-kernel shape,
both colour layouts, nn.Conv2d-style paddings and dilation; its step; bad arguments; state_dict."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import spn_kernels as sk


def expected_mask(m: sk.MaskedConv2d, top: int, left: int) -> torch.Tensor:
    """The mask from its definition: tap (a, b) sits at (a * dh - top, b * dw - left) from the output pixel."""
    c_out, c_in, kh, kw = m.weight.shape
    dh, dw = m.dilation
    g = m.color_groups
    group = (lambda c, n: c % g) if m.color_layout == "interleaved" else (lambda c, n: c // (n // g))
    mask = torch.zeros(c_out, c_in, kh, kw, dtype=torch.float64)
    for a in range(kh):
        for b in range(kw):
            di, dj = a * dh - top, b * dw - left
            if di < 0 or (m.mask_type == "V" and di == 0) or (di == 0 and dj < 0):
                mask[:, :, a, b] = 1
            elif di == 0 and dj == 0:
                for o in range(c_out):
                    for i in range(c_in):
                        gi, go = group(i, c_in), group(o, c_out)
                        mask[o, i, a, b] = float(gi < go if m.mask_type == "A" else gi <= go)
    return mask


# (id, kwargs, padding of the equivalent F.conv2d as (top, bottom, left, right), output rows/cols kept)
CASES = [
    ("5x5-B", dict(kernel_size=5), (2, 2, 2, 2)),
    ("5x5-A-g3-blocked", dict(kernel_size=5, mask_type="A", color_groups=3), (2, 2, 2, 2)),
    ("3x3-B-g3-interleaved-10ch", dict(kernel_size=3, color_groups=3, color_layout="interleaved"), (1, 1, 1, 1)),
    ("1x5-A-g3-interleaved", dict(kernel_size=(1, 5), mask_type="A", color_groups=3, color_layout="interleaved"),
     (0, 0, 2, 2)),
    ("1x7-B", dict(kernel_size=(1, 7)), (0, 0, 3, 3)),
    ("3x5-V", dict(kernel_size=(3, 5), mask_type="V"), (2, 0, 2, 2)),
    ("2x5-B-above", dict(kernel_size=(2, 5)), (2, -1, 2, 2)),
    ("1x1-B-g3-interleaved", dict(kernel_size=1, color_groups=3, color_layout="interleaved"), (0, 0, 0, 0)),
    ("3x5-V-padded-2-2", dict(kernel_size=(3, 5), mask_type="V", padding=(2, 2)), (2, 2, 2, 2)),
    ("1x3-A-padded-0-2", dict(kernel_size=(1, 3), mask_type="A", padding=(0, 2)), (0, 0, 2, 2)),
    ("1x4-B-padded-0-3", dict(kernel_size=(1, 4), padding=(0, 3)), (0, 0, 3, 3)),
    ("3x3-B-dilation-2", dict(kernel_size=3, dilation=2), (2, 2, 2, 2)),
    ("5x5-B-padded-2", dict(kernel_size=5, padding=2), (2, 2, 2, 2)),
    ("3x3-B-same", dict(kernel_size=3, padding="same"), (1, 1, 1, 1)),
]  # fmt: skip


@pytest.mark.parametrize("kwargs, pads", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_forward_and_backward_match_masked_conv2d(kwargs, pads):
    c_in, c_out = (10, 10) if kwargs.get("color_layout") == "interleaved" and kwargs["kernel_size"] == 3 else (3, 6)
    m = sk.MaskedConv2d(c_in, c_out, dtype=torch.float64, **kwargs)
    assert isinstance(m, torch.nn.Conv2d)
    mask = expected_mask(m, pads[0], pads[2])
    torch.testing.assert_close(m.mask, mask, rtol=0, atol=0)
    x = torch.randn(2, c_in, 7, 6, dtype=torch.float64, requires_grad=True)
    out = m(x)
    top, bottom, left, right = pads
    xp = F.pad(x, (left, right, top, bottom))
    ref = F.conv2d(xp, m.weight * mask, m.bias, dilation=m.dilation)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, (x, m.weight, m.bias), g)
    want = torch.autograd.grad(ref, (x, m.weight, m.bias), g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_square_blocked_mask_is_conv_mask():
    for mt in "ABV":
        g = 1 if mt == "V" else 3
        m = sk.MaskedConv2d(6, 9, 5, mask_type=mt, color_groups=g)
        assert torch.equal(m.mask, sk.conv_mask(9, 6, 5, mt, g))


STEP_CASES = [
    ("5x5-B-g3", dict(kernel_size=5, color_groups=3)),
    ("3x3-A-interleaved", dict(kernel_size=3, mask_type="A", color_groups=3, color_layout="interleaved")),
    ("1x5-A", dict(kernel_size=(1, 5), mask_type="A")),
    ("3x5-V", dict(kernel_size=(3, 5), mask_type="V")),
    ("2x5-B", dict(kernel_size=(2, 5))),
]


@pytest.mark.parametrize("kwargs", [c[1] for c in STEP_CASES], ids=[c[0] for c in STEP_CASES])
def test_step_matches_forward(kwargs):
    m = sk.MaskedConv2d(3, 6, dtype=torch.float64, **kwargs)
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64)
    full = m(x)
    cache = torch.zeros_like(x)
    for r, c in [(0, 0), (2, 3), (5, 4)]:
        if m.mask_type == "V":
            cache[:, :, :r] = x[:, :, :r]
            torch.testing.assert_close(m.step(cache, x[:, :, r], r, 0), full[:, :, r])
        else:
            cache[:, :, : r + 1] = x[:, :, : r + 1]
            torch.testing.assert_close(m.step(cache, x[:, :, r, c], r, c), full[:, :, r, c])


def test_nn_conv2d_positional_arguments():
    m = sk.MaskedConv2d(1, 64, 7, 1, 3, bias=False, mask_type="A")
    conv = torch.nn.Conv2d(1, 64, 7, 1, 3, bias=False)
    assert m.weight.shape == conv.weight.shape and m.bias is None and m.padding == (3, 3)
    assert m.state_dict().keys() == conv.state_dict().keys()
    m.load_state_dict(conv.state_dict(), strict=True)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(stride=2), "stride"),
        (dict(groups=3), "groups"),
        (dict(padding_mode="reflect"), "padding_mode"),
        (dict(padding=0), "padding=0 puts taps"),
        (dict(kernel_size=(3, 3), padding=(2, 1)), r"padding=\(2, 1\) puts taps"),
        (dict(kernel_size=(2, 4)), "kernel_size"),
        (dict(kernel_size=(4, 7), padding="same"), "padding='same'"),
        (dict(mask_type="C"), "mask_type"),
        (dict(mask_type="V", color_groups=3), "color_groups must be 1"),
        (dict(color_groups=4), "divisible by color_groups=4"),
        (dict(color_layout="striped"), "color_layout"),
    ],
    ids=["stride", "groups", "padding-mode", "padding-0", "padding-right", "shape", "same-even", "mask-type",
         "V-colours", "blocked-indivisible", "layout"],
)  # fmt: skip
def test_bad_arguments(kwargs, match):
    kw = dict(kernel_size=3)
    kw.update(kwargs)
    with pytest.raises(ValueError, match=match):
        sk.MaskedConv2d(6, 6, **kw)


def test_state_dict_masks():
    m = sk.MaskedConv2d(3, 6, 3, mask_type="A", color_groups=3)
    assert "mask" not in m.state_dict()
    p = sk.MaskedConv2d(3, 6, 3, mask_type="A", color_groups=3, persistent_mask=True)
    assert torch.equal(p.state_dict()["mask"], m.mask)
    m.load_state_dict(p.state_dict(), strict=True)  # a stored mask is checked
    p.load_state_dict(m.state_dict(), strict=True)  # a missing one is the module's own
    bad = dict(p.state_dict(), mask=sk.conv_mask(6, 3, 3, "B", 3))
    for mod in (m, p):
        with pytest.raises(ValueError, match="mask"):
            mod.load_state_dict(bad)
    assert p.to(torch.float64).mask.dtype == torch.float64


def test_down_shift():
    x = torch.randn(2, 3, 4, 5)
    want = torch.cat([torch.zeros(2, 3, 1, 5), x[:, :, :-1]], 2)
    assert torch.equal(sk.down_shift(x), want) and torch.equal(sk.DownShift()(x), want)


@pytest.mark.parametrize("kernel, padding", [((1, 3), (1, 1)), ((1, 5), (1, 2)), ((2, 3), (2, 1))],
                         ids=["row-above-k3", "row-above-k5", "vstack-k3-nn-padding"])  # fmt: skip
def test_rows_strictly_above_through_the_op(kernel, padding):
    # the kernel sits wholly above the output pixel: every tap is kept, so it is nn.Conv2d with that padding
    torch.manual_seed(0)
    m = sk.MaskedConv2d(4, 5, kernel, padding=padding).double()
    x = torch.randn(2, 4, 6, 7, dtype=torch.float64)
    torch.testing.assert_close(m(x), F.conv2d(x, m.weight, m.bias, padding=padding), rtol=0, atol=1e-12)
