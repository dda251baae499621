"""Non-finite inputs (NaN, +-inf) have one meaning on every backend (spn_kernels/ops/masked_conv2d/ref.py): a
masked tap never reads its input, so an output is non-finite exactly when an input it sees through a kept tap is
(its finite outputs equal those of the same input with the non-finite values zeroed). The oracles here are
written from that definition alone, as convolutions of 0/1 indicator maps with the 0/1 mask."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import spn_kernels as sk
from spn_kernels._checks import kernel_rows
from spn_kernels.ops.masked_conv2d.ref import color_group, square_weight

from ..helpers import CONV_CASES

# (case, extra): the CONV_CASES entries that cover each mask, kernel shape and colour layout, and a many-channel
# one (C_in * C_out >= 4096: the C++ kernel's box path rather than its dense one)
CASES = {
    name: CONV_CASES[name]
    for name in ("b2-3to8-7x7-k3-B", "b1-5to7-3x3-k7-B", "b1-4to4-11x13-k5-V", "b3-6to9-7x5-k5-A-g3",
                 "b1-3to6-4x5-k1-A-g3", "b1-3to6-5x5-1x5-B-g3", "b1-3to5-4x9-1x7-A", "b3-4to5-7x5-3x5-V",
                 "b2-4to4-6x6-2x5-B", "b1-3to9-7x7-k3-B-g3i", "b1-10to10-5x4-3x5-A-g3i")
}  # fmt: skip
CASES["b1-66to66-6x7-k3-A-g3"] = (1, 66, 66, 6, 7, 3, "A", 3, "blocked")
CASES["b1-64to64-5x6-k5-B"] = (1, 64, 64, 5, 6, 5, "B", 1, "blocked")
# more input than output channels: the C++ kernel tests its (smaller) result after the fast path rather than x
# before it, and in the backward grad_out before rather than grad_x after
CASES["b2-9to6-6x7-k3-B-g3"] = (2, 9, 6, 6, 7, 3, "B", 3, "blocked")
CASES["b1-7to3-5x9-1x5-A-g3i"] = (1, 7, 3, 5, 9, (1, 5), "A", 3, "interleaved")
CASES["b1-96to48-5x6-k3-A"] = (1, 96, 48, 5, 6, 3, "A", 1, "blocked")
# kernels that multiply no masked tap (the C++ kernel runs them untested): rows "B" and "V", k = 1 "B"
CASES["b2-4to5-5x8-1x5-B"] = (2, 4, 5, 5, 8, (1, 5), "B", 1, "blocked")
CASES["b1-5to3-4x7-1x3-B"] = (1, 5, 3, 4, 7, (1, 3), "B", 1, "blocked")
CASES["b1-3to4-4x6-1x3-V"] = (1, 3, 4, 4, 6, (1, 3), "V", 1, "blocked")
CASES["b1-3to4-3x5-k1-B"] = (1, 3, 4, 3, 5, 1, "B", 1, "blocked")
# 1024-4095 channel pairs: the C++ kernel's crop (the box with oneDNN's padding), tested ("B") and exact ("V")
CASES["b1-40to32-5x6-k3-B"] = (1, 40, 32, 5, 6, 3, "B", 1, "blocked")
CASES["b1-32to36-5x6-3x5-V"] = (1, 32, 36, 5, 6, (3, 5), "V", 1, "blocked")
VALUES = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
# the Triton interpreter computes tl.dot with numpy, which warns about the NaN it is given on purpose
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


def _inputs(case, value, n_bad=2, seed=0):
    """x, weight, bias of a case, and value in x at the centre pixel of image 0's last channel (the colour group
    the centre tap masks most) and, for n_bad=2, at one random place."""
    B, ci, co, H, W, k, *_ = case
    kh, kw = (k, k) if isinstance(k, int) else k
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, ci, H, W, generator=g, dtype=torch.float64)
    w = torch.randn(co, ci, kh, kw, generator=g, dtype=torch.float64) / (ci * kw)
    b = torch.randn(co, generator=g, dtype=torch.float64)
    if n_bad:
        x[0, -1, H // 2, W // 2] = value
    if n_bad > 1:
        x.view(-1)[torch.randint(x.numel(), (1,), generator=g)] = value
    return x, w, b


def _mask(case, dtype=torch.float64):
    _, ci, co, _, _, k, mt, g, lay = case
    return sk.conv_mask(co, ci, k, mt, g, dtype, color_layout=lay)


def _seen(bad, mask, transposed=False):
    """Which outputs see a True of `bad` through a kept tap: [B, C_out, H, W] (transposed: [B, C_in, H, W])."""
    p = mask.shape[-1] // 2
    sq = square_weight(mask)
    f = bad.to(mask.dtype)
    return (F.conv_transpose2d(f, sq, padding=p) if transposed else F.conv2d(f, sq, padding=p)) > 0


def _expect(out, want_bad, want_values):
    """out is non-finite exactly at want_bad, and elsewhere equals want_values."""
    assert not want_bad.all(), "a case that cannot tell the backends apart"
    assert torch.equal(~torch.isfinite(out), want_bad), (
        f"non-finite at {(~torch.isfinite(out)).nonzero().tolist()}, want {want_bad.nonzero().tolist()}"
    )
    torch.testing.assert_close(out[~want_bad], want_values[~want_bad].to(out.dtype), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("value", VALUES.values(), ids=VALUES.keys())
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_forward_nonfinite_input(backend, case, value):
    *_, mt, g, lay = case
    x, w, b = _inputs(case, value)
    bad = ~torch.isfinite(x)
    want = sk.masked_conv2d_ref(torch.where(bad, 0.0, x), w, b, mt, g, color_layout=lay)
    for dtype in (torch.float64, torch.float32):
        out = sk.masked_conv2d(x.to(dtype), w.to(dtype), b.to(dtype), mt, g, color_layout=lay, backend=backend)
        _expect(out, _seen(bad, _mask(case)), want)


@pytest.mark.parametrize("case", ["b2-3to8-7x7-k3-B", "b3-6to9-7x5-k5-A-g3", "b1-3to9-7x7-k3-B-g3i"])
def test_masked_weights_are_never_read(backend, case):
    """NaN in every masked weight changes nothing."""
    case = CASES[case]
    *_, mt, g, lay = case
    x, w, b = _inputs(case, 0.0, n_bad=0)
    w_nan = torch.where(_mask(case) != 0, w, math.nan)
    out = sk.masked_conv2d(x, w_nan, b, mt, g, color_layout=lay, backend=backend)
    torch.testing.assert_close(out, sk.masked_conv2d_ref(x, w, b, mt, g, color_layout=lay))


@pytest.mark.parametrize("value", VALUES.values(), ids=VALUES.keys())
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_backward_nonfinite_grad_out(backend, case, value):
    """grad_x: a non-finite grad_out reaches exactly the inputs its output sees."""
    *_, mt, g, lay = case
    x, w, b = _inputs(case, 0.0, n_bad=0)
    B, _, co, H, W, *_ = case
    gy, _, _ = _inputs((B, co, co, H, W, 1, "B", 1, "blocked"), value, n_bad=1, seed=1)
    _check_grad_x(backend, case, x, w, b, gy)


def _check_grad_x(backend, case, x, w, b, gy):
    *_, mt, g, lay = case
    bad = ~torch.isfinite(gy)
    want = sk.masked_conv2d_backward_ref(torch.where(bad, 0.0, gy), x, w, mt, g, [True, False, False],
                                         color_layout=lay)[0]  # fmt: skip
    if backend == "torch":  # its autograd is PyTorch's (ref.py); the spec of the backward is the backward reference
        gx = sk.masked_conv2d_backward_ref(gy, x, w, mt, g, [True, False, False], color_layout=lay)[0]
    else:
        xr = x.clone().requires_grad_()
        sk.masked_conv2d(xr, w, b, mt, g, color_layout=lay, backend=backend).backward(gy)
        gx = xr.grad
    _expect(gx, _seen(bad, _mask(case), transposed=True), want)


# the rows that the C++ kernel runs as one product per tap over the flat image (csrc/masked_conv2d/shift_gemm.h),
# and its crop plan, whose backward pads grad_out below and right of the image
EDGE_CASES = ["b2-4to5-5x8-1x5-B", "b1-5to3-4x7-1x3-B", "b1-3to4-4x6-1x3-V", "b1-3to5-4x9-1x7-A", "b1-3to4-3x5-k1-B",
              "b1-40to32-5x6-k3-B", "b1-32to36-5x6-3x5-V"]  # fmt: skip


def _row_ends(case, value, seed=0):
    """x of a case with value at both ends of one row (first column of image 0, last column of the last image),
    where a product over the flat image reads across the row's end, and in its bottom-right pixel; grad_out
    with value at both ends of one row."""
    x, w, b = _inputs(case, value, n_bad=0, seed=seed)
    B, ci, co, H, W, *_ = case
    x[0, 0, H // 2, 0] = x[-1, -1, H // 2, W - 1] = x[0, 0, H - 1, W - 1] = value
    gy = torch.randn(B, co, H, W, dtype=x.dtype, generator=torch.Generator().manual_seed(seed + 1))
    gy[0, 0, H // 2, W - 1] = gy[-1, -1, H // 2, 0] = value
    return x, w, b, gy


@pytest.mark.parametrize("value", VALUES.values(), ids=VALUES.keys())
@pytest.mark.parametrize("case", EDGE_CASES)
def test_nonfinite_at_row_ends(backend, case, value):
    """A non-finite value at either end of a row reaches only the outputs that see it, forward and backward
    (grad_x from grad_out; grad_weight as in test_backward_grad_weight_of_nonfinite_input)."""
    case_t = CASES[case]
    *_, mt, g, lay = case_t
    x, w, b, gy = _row_ends(case_t, value)
    bad = ~torch.isfinite(x)
    want = sk.masked_conv2d_ref(torch.where(bad, 0.0, x), w, b, mt, g, color_layout=lay)
    for dtype in (torch.float64, torch.float32):
        out = sk.masked_conv2d(x.to(dtype), w.to(dtype), b.to(dtype), mt, g, color_layout=lay, backend=backend)
        _expect(out, _seen(bad, _mask(case_t)), want)
    _check_grad_x(backend, case_t, torch.where(bad, 0.0, x), w, b, gy)
    _check_grad_weight(backend, case_t, x, w, b)


@pytest.mark.parametrize("value", VALUES.values(), ids=VALUES.keys())
@pytest.mark.parametrize("case", ["b2-3to8-7x7-k3-B", "b3-6to9-7x5-k5-A-g3", "b1-3to6-5x5-1x5-B-g3"])
def test_backward_grad_weight_of_nonfinite_input(backend, case, value):
    """grad_weight: non-finite at the kept taps that read a non-finite input (for every output channel), exactly
    zero at the masked taps."""
    case = CASES[case]
    x, w, b = _inputs(case, value, n_bad=1)
    _check_grad_weight(backend, case, x, w, b)


def _check_grad_weight(backend, case, x, w, b):
    *_, mt, g, lay = case
    mask = _mask(case)
    wr = w.clone().requires_grad_()
    out = sk.masked_conv2d(x, wr, b, mt, g, color_layout=lay, backend=backend)
    out.backward(torch.ones_like(out))
    gw = wr.grad
    assert torch.equal(gw[mask == 0], torch.zeros_like(gw[mask == 0]))
    kh, kw = w.shape[2:]
    p, (r0, n) = kw // 2, kernel_rows(kh, kw)
    # does tap (i, j) of input channel ci read a non-finite x somewhere: the weight gradient of 0/1 maps
    reads = torch.nn.grad.conv2d_weight((~torch.isfinite(x)).double(), (1, x.shape[1], kw, kw),
                                        torch.ones(x.shape[0], 1, *x.shape[2:], dtype=x.dtype), padding=p)  # fmt: skip
    want_bad = (reads[:, :, r0 : r0 + n] > 0).expand_as(gw) & (mask != 0)
    x0 = torch.where(torch.isfinite(x), x, 0.0)
    want = sk.masked_conv2d_backward_ref(torch.ones_like(out), x0, w, mt, g, [False, True, False], color_layout=lay)[1]
    _expect(gw, want_bad, want)


STEP_CASES = {name: CASES[name] for name in ("b2-3to8-7x7-k3-B", "b3-6to9-7x5-k5-A-g3", "b1-3to6-4x5-k1-A-g3",
                                             "b1-3to6-5x5-1x5-B-g3", "b1-4to4-11x13-k5-V", "b1-3to9-7x7-k3-B-g3i",
                                             "b1-66to66-6x7-k3-A-g3")}  # fmt: skip


@pytest.mark.parametrize("with_new", [True, False], ids=["x_new", "cache-only"])
@pytest.mark.parametrize("case", STEP_CASES.values(), ids=STEP_CASES.keys())
def test_step_never_reads_what_it_may_not_see(backend, case, with_new):
    """NaN in every cache position a step may not see (the pixels not generated yet, and at the output pixel
    the colour channels its centre tap masks) leaves the outputs finite and equal to the forward pass; NaN at a
    position it sees makes them NaN exactly where the forward pass has them."""
    B, ci, co, H, W, k, mt, g, lay = case
    x, w, b = _inputs(case, 0.0, n_bad=0)
    row, col = H // 2, W // 2
    last = color_group(ci, g, lay) == g - 1  # the last colour group's input channels
    for pos, v in (("unseen", math.nan), ("seen", math.nan), ("seen", math.inf)):
        cache = x.clone()
        cache[:, :, row + 1 :] = math.nan  # later rows
        if mt != "V":
            cache[:, :, row, col + 1 :] = math.nan  # later pixels of the row
            cache[:, last, row, col] = math.nan  # the centre tap keeps it only for the last group's outputs ("B")
        if pos == "seen":  # left of the output pixel ("V": above it): every kernel of width > 1 sees it
            cache[0, 0, row - (mt == "V"), col - (mt != "V")] = v
        full = sk.masked_conv2d(cache, w, b, mt, g, color_layout=lay, backend="torch")
        want = full[:, :, row] if mt == "V" else full[:, :, row, col]
        if with_new:
            new = cache[:, :, row].clone() if mt == "V" else cache[:, :, row, col].clone()
            cache_in = cache.clone()
            if mt == "V":
                cache_in[:, :, row] = math.nan
            else:
                cache_in[:, :, row, col] = math.nan
        else:
            new, cache_in = None, cache.clone()
        out = sk.masked_conv2d_step(cache_in, new, w, b, row, col, mt, g, color_layout=lay, backend=backend)
        assert torch.equal(torch.isfinite(out), torch.isfinite(want)), (pos, v)
        if pos == "unseen" and mt != "B":
            assert torch.isfinite(out).all()
        f = torch.isfinite(want)
        torch.testing.assert_close(out[f], want[f])


def _bits(t):
    return t.view(torch.int32) if t.dtype == torch.float32 else t.view(torch.int64)


def _special(shape, dtype):
    """Random values with NaN (two payloads), +inf and -inf among them, spread over the rows."""
    x = torch.randn(shape, dtype=dtype)
    flat = x.view(-1)
    flat[:3] = torch.tensor([math.nan, math.inf, -math.inf], dtype=dtype)
    ints = _bits(flat)
    ints[3] = ints[0] | 0x5A5  # a NaN with another payload
    return x[:, :, torch.randperm(shape[2])]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_copy_ops_move_nonfinite_values_bit_for_bit(backend, dtype):
    x = _special((2, 3, 6, 9), dtype)
    sl = sk.subscale_split(x, 3, backend=backend)
    assert torch.equal(_bits(sl), _bits(sk.subscale_split_ref(x, 3)))
    assert torch.equal(_bits(sk.subscale_merge(sl, backend=backend)), _bits(x.contiguous()))
    dst = torch.zeros(2, 3, 6, 9, dtype=dtype)
    sk.slice_scatter_(dst, sl[:, 4], 3, 4, backend=backend)
    want = torch.zeros_like(dst)
    want[:, :, 1::3, 1::3] = sl[:, 4]
    assert torch.equal(_bits(dst), _bits(want))


def test_gated_step_reads_its_whole_window():
    """gated_step is a dense product over its window (ref.py: intended, its caller keeps unknown positions
    zero): a NaN at a masked position of the window reaches the output on the reference and the C++ kernel
    alike, and one outside the window reaches neither."""
    from ..ops.test_gated_step import clone, make_args

    args = make_args((2, 3, 4, 1, 3, 5), torch.float64)
    row, col, p = 2, 1, 1
    for where, leaks in (((p + row, p + col + 1), True), ((p + row, p + col + 2), False)):
        h_in, *rest = clone(args)
        h_in[0][:, where[0], where[1]] = math.nan
        ref = sk.gated_step_ref([t.clone() for t in h_in], *rest, row, col)
        out = sk.gated_step(h_in, *rest, row, col)
        assert torch.isnan(ref).all() == leaks and torch.isnan(out).all() == leaks
        assert torch.isfinite(ref).all() != leaks and torch.isfinite(out).all() != leaks
