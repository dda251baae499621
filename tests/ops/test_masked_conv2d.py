"""masked_conv2d and its backward op: the masks, every backend against the references (forward, backward,
gradcheck), the module, the input checks, the registrations (opcheck, torch.compile), the Triton kernels' own
dtypes and configurations, and backend=None on a GPU (marked gpu)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import spn_kernels as sk
from tests.helpers import CONV_CASES, HALF, LAYOUTS, assert_close_to_ref, conv_inputs, layout, make_conv


def test_mask_definition_kernel_shapes():
    """Each (kh, kw) weight is a set of rows of the centred square mask."""
    sq_a, sq_b, sq_v = (sk.conv_mask(1, 1, 5, mt)[0, 0] for mt in "ABV")
    assert torch.equal(sk.conv_mask(1, 1, (1, 5), "A")[0, 0], sq_a[2:3])
    assert torch.equal(sk.conv_mask(1, 1, (1, 5), "B")[0, 0], torch.tensor([[1.0, 1, 1, 0, 0]]))
    assert torch.equal(sk.conv_mask(1, 1, (1, 5), "V")[0, 0], torch.ones(1, 5))
    assert torch.equal(sk.conv_mask(1, 1, (3, 5), "V")[0, 0], sq_v[:3])
    assert torch.equal(sk.conv_mask(1, 1, (3, 5), "B")[0, 0], sq_b[:3])
    for mt in "ABV":
        assert torch.equal(sk.conv_mask(1, 1, (2, 5), mt)[0, 0], torch.ones(2, 5))
    assert torch.equal(sk.conv_mask(1, 1, (1, 1), "A")[0, 0], torch.zeros(1, 1))
    # the positional call of earlier releases, and kernel_size as a tuple
    assert torch.equal(sk.conv_mask(6, 3, 3, "B", 3, torch.float64, "cpu"), sk.conv_mask(6, 3, (3, 3), "B", 3).double())


def test_mask_interleaved_unequal_groups():
    """group(c) = c % 3: 10 channels are R G B R G B R G B R (4/3/3)."""
    m = sk.conv_mask(10, 10, (1, 3), "A", 3, color_layout="interleaved")[:, :, 0, 1]
    g = torch.arange(10) % 3
    assert torch.equal(m, (g[None, :] < g[:, None]).float())
    mb = sk.conv_mask(10, 10, 3, "B", 3, color_layout="interleaved")[:, :, 1, 1]
    assert torch.equal(mb, (g[None, :] <= g[:, None]).float())
    with pytest.raises(ValueError, match="divisible by color_groups=3 for color_layout='blocked'"):
        sk.conv_mask(10, 10, 3, "B", 3)


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


@pytest.mark.parametrize("case", CONV_CASES.values(), ids=CONV_CASES.keys())
@pytest.mark.parametrize("kind", LAYOUTS)
def test_forward(backend, case, kind):
    *_, mt, g, lay = case
    x, w, b = make_conv(case, torch.float32)
    out = sk.masked_conv2d(layout(x, kind), w, b, mt, g, color_layout=lay, backend=backend)
    ref = sk.masked_conv2d_ref(x, w, b, mt, g, color_layout=lay)
    ref64 = sk.masked_conv2d_ref(x.double(), w.double(), b.double(), mt, g, color_layout=lay)
    assert_close_to_ref(out, ref, ref64)


def test_reference_definition():
    """The reference equals the formula of ref.py's docstring, written as loops over the taps."""
    for case in ("b1-3to6-5x5-1x5-B-g3", "b2-4to4-6x6-2x5-B", "b1-10to10-5x4-3x5-A-g3i"):
        _, ci, co, H, W, (kh, kw), mt, g, lay = CONV_CASES[case]
        x, w, b = make_conv(CONV_CASES[case], torch.float64)
        r0 = {1: kw // 2}.get(kh, 0)
        wm = w * sk.conv_mask(co, ci, (kh, kw), mt, g, torch.float64, color_layout=lay)
        xp = F.pad(x, (kw, kw, kw, kw))
        want = b[None, :, None, None].expand(x.shape[0], co, H, W).clone()
        for i in range(kh):
            for j in range(kw):
                dy, dx = r0 + i - kw // 2, j - kw // 2
                patch = xp[:, :, kw + dy : kw + dy + H, kw + dx : kw + dx + W]
                want += torch.einsum("oc,bchw->bohw", wm[:, :, i, j], patch)
        torch.testing.assert_close(sk.masked_conv2d_ref(x, w, b, mt, g, color_layout=lay), want)


@pytest.mark.parametrize("case", CONV_CASES.values(), ids=CONV_CASES.keys())
def test_backward(backend, case):
    *_, mt, g, lay = case
    x, w, b = make_conv(case, torch.float32)
    gy = torch.randn(x.shape[0], w.shape[0], *x.shape[2:])

    def grads(x, w, b, gy, be):
        x, w, b = (t.clone().requires_grad_() for t in (x, w, b))
        out = sk.masked_conv2d(x, w, b, mt, g, color_layout=lay, backend=be)
        return torch.autograd.grad(out, (x, w, b), gy)

    got = grads(x, w, b, gy, backend)
    ref = grads(x, w, b, gy, "torch")
    ref64 = grads(x.double(), w.double(), b.double(), gy.double(), "torch")
    mask = sk.conv_mask(*w.shape[:2], tuple(w.shape[2:]), mt, g, color_layout=lay)
    assert torch.all(got[1][mask == 0] == 0), "masked taps must get exactly zero gradient"
    for a, r, r64 in zip(got, ref, ref64):
        assert_close_to_ref(a, r, r64)


def test_k1_mask_a_backward(backend):
    """A 1 x 1 "A" convolution keeps no tap: the output is the bias, grad_x and grad_weight are zero, and
    grad_bias is grad_out summed (the Triton backward once divided by zero here)."""
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    w = torch.randn(6, 4, 1, 1, requires_grad=True)
    b = torch.randn(6, requires_grad=True)
    out = sk.masked_conv2d(x, w, b, "A", backend=backend)
    torch.testing.assert_close(out, b[None, :, None, None].expand(2, 6, 5, 5))
    gy = torch.randn(2, 6, 5, 5)
    gx, gw, gb = torch.autograd.grad(out, (x, w, b), gy)
    assert torch.equal(gx, torch.zeros_like(x)) and torch.equal(gw, torch.zeros_like(w))
    torch.testing.assert_close(gb, gy.sum((0, 2, 3)))
    (gb_only,) = torch.autograd.grad(sk.masked_conv2d(x.detach(), w.detach(), b, "A", backend=backend), (b,), gy)
    torch.testing.assert_close(gb_only, gy.sum((0, 2, 3)))


# (B, C_in, C_out, H, W, kernel, mask_type, color_groups, color_layout): tiny, so gradcheck through the Triton
# interpreter stays at a few seconds
GRADCHECK_CASES = {
    "k3-B": (1, 2, 3, 4, 4, 3, "B", 1, "blocked"),
    "k3-A-g3": (1, 3, 3, 3, 4, 3, "A", 3, "blocked"),
    "1x5-A-g3i": (1, 4, 5, 3, 5, (1, 5), "A", 3, "interleaved"),
    "3x5-V": (1, 2, 2, 4, 3, (3, 5), "V", 1, "blocked"),
    "2x5-B": (1, 2, 2, 4, 3, (2, 5), "B", 1, "blocked"),
    "k1-A": (1, 2, 3, 2, 3, 1, "A", 1, "blocked"),
    "1x3-B": (2, 2, 3, 3, 4, (1, 3), "B", 1, "blocked"),
}


@pytest.mark.parametrize("case", GRADCHECK_CASES.values(), ids=GRADCHECK_CASES.keys())
def test_gradcheck(backend, case):
    *_, mt, g, lay = case
    x, w, b = (t.requires_grad_() for t in make_conv(case, torch.float64))
    # the interpreter pays ~10 ms per launch: fast mode (random projections) keeps the Triton case to seconds
    fast = backend == "triton"
    assert torch.autograd.gradcheck(
        lambda x, w, b: sk.masked_conv2d(x, w, b, mt, g, color_layout=lay, backend=backend), (x, w, b), fast_mode=fast
    )


def test_backward_without_bias_and_frozen_input(backend):
    x, w, _ = make_conv(CONV_CASES["b2-3to8-7x7-k3-B"], torch.float64)
    w.requires_grad_()
    out = sk.masked_conv2d(x, w, None, "B", backend=backend)
    (gw,) = torch.autograd.grad(out.sum(), (w,))
    (gw_ref,) = torch.autograd.grad(sk.masked_conv2d_ref(x, w, None, "B").sum(), (w,))
    torch.testing.assert_close(gw, gw_ref)


def test_module_drop_in():
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(3, 8, 5)
    m = sk.MaskedConv2d(3, 8, 5, mask_type="A")
    assert m.state_dict().keys() == conv.state_dict().keys()
    assert m.weight.shape == conv.weight.shape and m.bias.shape == conv.bias.shape
    m.load_state_dict(conv.state_dict())
    x = torch.randn(2, 3, 9, 9)
    torch.testing.assert_close(m(x), F.conv2d(x, conv.weight * m.mask, conv.bias, padding=2))
    # PixelCNN code that keeps its mask as a buffer
    sd = dict(conv.state_dict(), mask=m.mask.clone())
    m.load_state_dict(sd)
    sd["mask"] = sk.conv_mask(8, 3, 5, "B")
    with pytest.raises(ValueError, match="mask"):
        m.load_state_dict(sd)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(w=torch.zeros(6, 3, 4, 5)), r"kernel height must be one of 5 .* got kernel \(kh, kw\)=\(4, 5\)"),
        (dict(w=torch.zeros(6, 3, 3, 1)), r"kernel height must be one of 1"),
        (dict(w=torch.zeros(4, 3, 4, 4)), "odd"),
        (dict(w=torch.zeros(4, 3, 1, 4)), "width must be odd"),
        (dict(mask_type="C"), "mask_type"),
        (dict(color_layout="planar"), "color_layout must be one of 'blocked', 'interleaved'"),
        (dict(w=torch.zeros(4, 3, 3, 3), color_groups=3, mask_type="B"), "divisible by color_groups=3"),
        (dict(w=torch.zeros(6, 3, 3, 3), color_groups=3, mask_type="V"), "mask 'V' needs 1"),
        (dict(x=torch.zeros(2, 5, 7, 7)), "x has 5 channels but weight expects C_in=3"),
        (dict(x=torch.zeros(5, 7, 7)), "x must be 4-D"),
        (dict(w=torch.zeros(4, 3, 3, 3, dtype=torch.float64)), "dtype"),
        (dict(b=torch.zeros(5)), r"bias must have shape \[C_out\]"),
        (dict(x=torch.zeros(2, 3, 7, 7, dtype=torch.int64), w=torch.zeros(4, 3, 3, 3, dtype=torch.int64)), "float"),
    ],
    ids=[
        "bad-rows",
        "tall-k1",
        "even",
        "even-width",
        "mask-type",
        "color-layout",
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
    lay = kwargs.get("color_layout", "blocked")
    with pytest.raises(ValueError, match=match):
        sk.masked_conv2d(
            x, w, b, kwargs.get("mask_type", "B"), kwargs.get("color_groups", 1), color_layout=lay, backend=backend
        )


def test_opcheck():
    x, w, b = make_conv(CONV_CASES["b3-6to9-7x5-k5-A-g3"], torch.float64)
    x.requires_grad_()
    w.requires_grad_()
    torch.library.opcheck(torch.ops.spn.masked_conv2d.default, (x, w, b, "A", 3))
    torch.library.opcheck(torch.ops.spn.masked_conv2d.default, (x, w, None, "B", 1))
    torch.library.opcheck(torch.ops.spn.masked_conv2d.default, (x, w[:, :, 2:3], b, "A", 2, "interleaved"))
    torch.library.opcheck(torch.ops.spn.masked_conv2d.default, (x, w[:, :, :3].contiguous(), b, "V", 1))
    gy = torch.randn(3, 9, 7, 5, dtype=torch.float64)
    torch.library.opcheck(
        torch.ops.spn.masked_conv2d_backward.default, (gy, x.detach(), w.detach(), "A", 3, [True, True, False])
    )
    torch.library.opcheck(
        torch.ops.spn.masked_conv2d_backward.default,
        (gy, x.detach(), w.detach()[:, :, 2:3], "B", 4, [True, True, True], "interleaved"),
    )


def test_compile_fullgraph():
    m = sk.MaskedConv2d(3, 8, 3, mask_type="A")
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    out = torch.compile(m, fullgraph=True, backend="aot_eager")(x)
    torch.testing.assert_close(out, m(x))
    out.sum().backward()
    assert x.grad is not None


@pytest.mark.parametrize("kernel, mt", [(5, "A"), ((1, 3), "B"), ((1, 5), "A")], ids=["k5-A-g3", "1x3-B", "1x5-A"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_cpu_half_precision(dtype, kernel, mt):
    """Half-precision inputs run (oneDNN's convolution; rows too, which float32 and float64 run on BLAS) and
    stay within 2x the reference's own error."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    g = 3 if kh > 1 else 1
    x = torch.randn(2, 6, 9, 9)
    w = torch.randn(6, 6, kh, kw) / 30
    b = torch.randn(6)
    out = sk.masked_conv2d(x.to(dtype), w.to(dtype), b.to(dtype), mt, g, backend="cpu")
    ref = sk.masked_conv2d_ref(x.to(dtype), w.to(dtype), b.to(dtype), mt, g)
    assert_close_to_ref(out, ref, sk.masked_conv2d_ref(x.double(), w.double(), b.double(), mt, g))


@pytest.mark.parametrize(
    "kernel, mt, g, lay",
    [
        (3, "A", 3, "blocked"),
        (5, "B", 3, "interleaved"),
        ((3, 5), "V", 1, "blocked"),
        ((2, 5), "A", 1, "blocked"),
        ((1, 5), "A", 1, "blocked"),
        ((1, 3), "B", 3, "interleaved"),
        (1, "B", 1, "blocked"),
        ((1, 3), "B", 1, "blocked"),
        ((1, 3), "V", 1, "blocked"),
        ((1, 7), "A", 1, "blocked"),
    ],
    ids=["k3-A-g3", "k5-B-g3i", "3x5-V", "2x5-A", "1x5-A", "1x3-B-g3i", "k1-B", "1x3-B", "1x3-V", "1x7-A"],
)
@pytest.mark.parametrize("channels", [(6, 9), (39, 33), (66, 72)], ids=["dense", "crop", "box"])
def test_cpu_both_paths(kernel, mt, g, lay, channels):
    """The C++ kernel runs few-channel convolutions with the masked weight embedded in a centred kernel, from
    about a thousand channel pairs the kept box of taps with oneDNN's padding and a crop, and many-channel ones
    on the box over a shifted input (csrc/masked_conv2d/cpu.cpp: choose); a lone row of kept taps without colour
    groups runs as one BLAS product per tap at every channel count (the shift plan): each equals the reference,
    forward and backward, in float64."""
    ci, co = channels
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = torch.randn(2, ci, 5, 6, dtype=torch.float64)
    w = torch.randn(co, ci, kh, kw, dtype=torch.float64)
    b = torch.randn(co, dtype=torch.float64)
    gy = torch.randn(2, co, 5, 6, dtype=torch.float64)
    out = sk.masked_conv2d(x, w, b, mt, g, color_layout=lay, backend="cpu")
    torch.testing.assert_close(out, sk.masked_conv2d_ref(x, w, b, mt, g, color_layout=lay))
    got = torch.ops.spn.masked_conv2d_backward(gy, x, w, mt, g, [True, True, True], lay)
    want = sk.masked_conv2d_backward_ref(gy, x, w, mt, g, [True, True, True], color_layout=lay)
    for a, r in zip(got, want):
        torch.testing.assert_close(a, r)


@pytest.mark.parametrize("batch", [1, 2, 5])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_cpu_rows_any_thread_count(threads, batch):
    """The C++ kernel splits a (1, k) row's products over images, and with fewer images than threads over pixel
    ranges of each image too (csrc/masked_conv2d/shift_gemm.h): every split equals the reference in float64."""
    x = torch.randn(batch, 5, 4, 9, dtype=torch.float64)
    w = torch.randn(6, 5, 1, 5, dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64)
    gy = torch.randn(batch, 6, 4, 9, dtype=torch.float64)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = sk.masked_conv2d(x, w, b, "B", backend="cpu")
        got = torch.ops.spn.masked_conv2d_backward(gy, x, w, "B", 1, [True, True, True], "blocked")
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(out, sk.masked_conv2d_ref(x, w, b, "B"))
    for a, r in zip(got, sk.masked_conv2d_backward_ref(gy, x, w, "B", 1, [True, True, True])):
        torch.testing.assert_close(a, r)


def test_cpu_backward_channels_last_grad():
    """A channels_last grad_out and input (as autograd may hand them over) give the same gradients."""
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64)
    w = torch.randn(8, 4, 3, 3, dtype=torch.float64)
    gy = torch.randn(2, 8, 7, 7, dtype=torch.float64)
    cl = torch.channels_last
    got = torch.ops.spn.masked_conv2d_backward(
        gy.contiguous(memory_format=cl), x.contiguous(memory_format=cl), w, "B", 1, [True, True, True]
    )
    want = sk.masked_conv2d_backward_ref(gy, x, w, "B", 1, [True, True, True])
    for g, r in zip(got, want):
        assert g.is_contiguous()
        torch.testing.assert_close(g, r)


# ---------------------------------------------------------------- Triton
# Tolerance (tests/helpers.py): at most 2x the error of the same-dtype PyTorch reference against float64,
# plus 4 ulps at the output's scale: the interpreter truncates fp32 -> bf16 stores (1 ulp; on a GPU they
# round), and both accumulate in fp32 so neither is otherwise worse than one final rounding.
@pytest.mark.triton
@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("mt, g", [("A", 1), ("B", 3), ("V", 1)])
def test_triton_half(dtype, mt, g):
    x, w, b = conv_inputs(2, 6, 9, 7, 8, 5, dtype)
    gy = torch.randn(2, 9, 7, 8).to(dtype)

    def run(x, w, b, gy, backend):
        x, w, b = (t.clone().requires_grad_() for t in (x, w, b))
        out = sk.masked_conv2d(x, w, b, mt, g, backend=backend)
        return (out, *torch.autograd.grad(out, (x, w, b), gy))

    got = run(x, w, b, gy, "triton")
    ref = run(x, w, b, gy, "torch")
    ref64 = run(x.double(), w.double(), b.double(), gy.double(), "torch")
    for a, r, r64 in zip(got, ref, ref64):
        assert_close_to_ref(a, r, r64)


# The GPU configurations, under the interpreter: shapes larger than one tile in every dimension, so partial
# tiles, several K blocks and the pixel split of grad_weight all run. float64 keeps the comparison tight (its
# configs have the smallest tiles).
@pytest.mark.triton
def test_triton_gpu_config_multiblock():
    from spn_kernels.ops.masked_conv2d import triton as conv

    x, w, b = conv_inputs(2, 20, 66, 6, 7, 3, torch.float64)  # 2 M blocks, 2 N blocks, 2-4 K blocks
    gy = torch.randn(2, 66, 6, 7, dtype=torch.float64)
    for mt, g in (("B", 1), ("A", 2), ("V", 1)):
        out = conv.masked_conv2d(x, w, b, mt, g, _config="f64")
        torch.testing.assert_close(out, sk.masked_conv2d_ref(x, w, b, mt, g))
        got = conv.masked_conv2d_backward(gy, x, w, mt, g, [True, True, True], _config="f64", _dw_config="f64")
        want = sk.masked_conv2d_backward_ref(gy, x, w, mt, g, [True, True, True])
        for a, r in zip(got, want):
            torch.testing.assert_close(a, r)


@pytest.mark.triton
@pytest.mark.parametrize("cfg", ["f32-n64", "f32-n128"])
def test_triton_gpu_config_fp32(cfg):
    from spn_kernels.ops.masked_conv2d import triton as conv

    x, w, b = conv_inputs(1, 20, 24, 12, 12, 3, torch.float32)
    out = conv.masked_conv2d(x, w, b, "B", 1, _config=cfg)
    ref = sk.masked_conv2d_ref(x, w, b, "B")
    assert_close_to_ref(out, ref, sk.masked_conv2d_ref(x.double(), w.double(), b.double(), "B"))


@pytest.mark.triton
def test_triton_backward_only_bias_grad():
    from spn_kernels.ops.masked_conv2d import triton  # noqa: F401  (registers torch.ops.spn_triton.masked_conv2d*)

    x, w, _ = conv_inputs(2, 3, 5, 6, 6, 3, torch.float64)
    gy = torch.randn(2, 5, 6, 6, dtype=torch.float64)
    gx, gw, gb = torch.ops.spn_triton.masked_conv2d_backward(gy, x, w, "A", 1, [False, False, True])
    assert gx.numel() == 0 and gw.numel() == 0
    torch.testing.assert_close(gb, gy.sum((0, 2, 3)))


@pytest.mark.triton
def test_triton_opcheck():
    from spn_kernels.ops.masked_conv2d import triton  # noqa: F401  (registers torch.ops.spn_triton.masked_conv2d*)

    f64 = dict(dtype=torch.float64)
    ops = torch.ops.spn_triton
    xc = torch.randn(2, 6, 5, 4, **f64, requires_grad=True)
    w = torch.randn(6, 6, 3, 3, **f64, requires_grad=True)
    b = torch.randn(6, **f64)
    torch.library.opcheck(ops.masked_conv2d.default, (xc, w, b, "A", 3))
    torch.library.opcheck(ops.masked_conv2d.default, (xc, w, None, "V", 1))
    gy = torch.randn(2, 6, 5, 4, **f64)
    torch.library.opcheck(ops.masked_conv2d_backward.default, (gy, xc.detach(), w.detach(), "B", 3, [True, True, True]))


@pytest.mark.triton
def test_triton_compile_fullgraph():
    def f(x, w, b):
        return sk.masked_conv2d(x, w, b, "A", 1, backend="triton")

    x, w, b = conv_inputs(2, 4, 4, 6, 6, 3, torch.float32)
    x.requires_grad_()
    got = torch.compile(f, fullgraph=True, backend="aot_eager")(x, w, b)
    torch.testing.assert_close(got, f(x, w, b))
    got.sum().backward()
    assert x.grad is not None


# ---------------------------------------------------------------- on a GPU
@pytest.mark.gpu
def test_cuda_backend_none_uses_triton():
    """masked_conv2d has no CUDA C++ kernel: backend=None on CUDA tensors runs the Triton op, gradients too."""
    x, w, b = (t.cuda() for t in conv_inputs(2, 8, 16, 9, 9, 3, torch.float32))
    x.requires_grad_()
    out = sk.masked_conv2d(x, w, b, "B")
    torch.testing.assert_close(out, sk.masked_conv2d(x, w, b, "B", backend="triton"))
    (gx,) = torch.autograd.grad(out.sum(), (x,))
    (gx_triton,) = torch.autograd.grad(sk.masked_conv2d(x, w, b, "B", backend="triton").sum(), (x,))
    torch.testing.assert_close(gx, gx_triton)
