"""masked_conv2d_step: the cached step on every backend reproduces masked_conv2d everywhere and leaves the cache
exactly as the reference does, the input checks, the registrations (opcheck, torch.compile), the accuracy at a
real sampling size, the Triton kernel's own dtypes and configurations, and the CUDA C++ kernel (marked gpu)."""

from __future__ import annotations

import pytest
import torch

import spn_kernels as sk
from tests.helpers import CONV_CASES, HALF, assert_close_to_ref, conv_inputs, make_conv


@pytest.mark.parametrize("case", CONV_CASES.values(), ids=CONV_CASES.keys())
def test_step_reproduces_forward(backend, case):
    """Running the step over every position in raster order (rows for mask V) gives masked_conv2d's
    output everywhere, and the cache ends equal to the input, exactly as the reference's cache."""
    B, ci, co, H, W, k, mt, g, lay = case
    x, w, b = make_conv(case, torch.float64)
    full = sk.masked_conv2d_ref(x, w, b, mt, g, color_layout=lay)
    cache = torch.zeros_like(x)
    cache_ref = torch.zeros_like(x)
    for r in range(H):
        if mt == "V":
            out = sk.masked_conv2d_step(cache, x[:, :, r], w, b, r, 0, mt, g, color_layout=lay, backend=backend)
            sk.masked_conv2d_step_ref(cache_ref, x[:, :, r], w, b, r, 0, mt, g, color_layout=lay)
            torch.testing.assert_close(out, full[:, :, r])
            assert torch.equal(cache, cache_ref)
            continue
        for c in range(W):
            out = sk.masked_conv2d_step(cache, x[:, :, r, c], w, b, r, c, mt, g, color_layout=lay, backend=backend)
            sk.masked_conv2d_step_ref(cache_ref, x[:, :, r, c], w, b, r, c, mt, g, color_layout=lay)
            torch.testing.assert_close(out, full[:, :, r, c])
            assert torch.equal(cache, cache_ref)
    assert torch.equal(cache, x)


@pytest.mark.parametrize(
    "case", ["b1-3to6-5x5-1x5-B-g3", "b2-10to7-5x6-1x5-A-g3i", "b3-4to5-7x5-3x5-V", "b2-4to4-6x6-2x5-B"]
)
def test_step_kernel_shapes_without_x_new(backend, case):
    """On a filled cache (x_new=None) the step equals the full convolution at every position, for the gated
    PixelCNN shapes and the interleaved layout, and leaves the cache alone."""
    B, ci, co, H, W, k, mt, g, lay = CONV_CASES[case]
    x, w, b = make_conv(CONV_CASES[case], torch.float32)
    x = x.contiguous(memory_format=torch.channels_last)
    ref = sk.masked_conv2d_ref(x, w, b, mt, g, color_layout=lay)
    ref64 = sk.masked_conv2d_ref(x.double(), w.double(), b.double(), mt, g, color_layout=lay)
    cache = x.clone()
    for r, c in ((0, 0), (H // 2, W // 2), (H - 1, W - 1)):
        out = sk.masked_conv2d_step(cache, None, w, b, r, c, mt, g, color_layout=lay, backend=backend)
        if mt == "V":
            assert_close_to_ref(out, ref[:, :, r], ref64[:, :, r])
        else:
            assert_close_to_ref(out, ref[:, :, r, c], ref64[:, :, r, c])
    assert torch.equal(cache, x)


def test_step_without_x_new_leaves_cache(backend):
    x, w, b = make_conv(CONV_CASES["b2-3to8-7x7-k3-B"], torch.float32)
    cache = x.clone()
    out = sk.masked_conv2d_step(cache, None, w, b, 3, 4, "A", backend=backend)
    assert torch.equal(cache, x)
    ref = sk.masked_conv2d_ref(x, w, b, "A")[:, :, 3, 4]
    ref64 = sk.masked_conv2d_ref(x.double(), w.double(), b.double(), "A")[:, :, 3, 4]
    assert_close_to_ref(out, ref, ref64)


@pytest.mark.parametrize(
    "args, match",
    [
        (dict(row=7), r"row must be in \[0, 7\)"),
        (dict(col=-1), r"col must be in \[0, 7\)"),
        (dict(x_new=torch.zeros(2, 4)), r"x_new must have shape \(2, 3\)"),
        (dict(x_new=torch.zeros(2, 3), mask_type="V"), r"x_new must have shape \(2, 3, 7\)"),
        (dict(cache=torch.zeros(2, 4, 7, 7)), "cache has 4 channels"),
        (dict(w=torch.zeros(6, 3, 5, 7)), r"kernel height must be one of 7"),
        (dict(color_layout="rgb"), "color_layout must be one of"),
        (dict(w=torch.zeros(4, 3, 1, 3), color_groups=3), "divisible by color_groups=3"),
    ],
    ids=["row", "col", "x-new-shape", "x-new-V", "cache-channels", "bad-rows", "color-layout", "groups-indivisible"],
)
def test_step_bad_input(backend, args, match):
    a = dict(cache=torch.zeros(2, 3, 7, 7), x_new=None, row=0, col=0, mask_type="B", w=torch.zeros(6, 3, 3, 3))
    a.update(args)
    with pytest.raises(ValueError, match=match):
        sk.masked_conv2d_step(
            a["cache"], a["x_new"], a["w"], None, a["row"], a["col"], a["mask_type"], a.get("color_groups", 1),
            color_layout=a.get("color_layout", "blocked"), backend=backend,
        )  # fmt: skip


def test_opcheck():
    _, w, b = make_conv(CONV_CASES["b3-6to9-7x5-k5-A-g3"], torch.float64)
    cache = torch.randn(3, 6, 7, 5, dtype=torch.float64)
    torch.library.opcheck(
        torch.ops.spn.masked_conv2d_step.default,
        (cache, torch.randn(3, 6, dtype=torch.float64), w, b, 2, 3, "B", 3),
    )
    torch.library.opcheck(
        torch.ops.spn.masked_conv2d_step.default,
        (cache, torch.randn(3, 6, 5, dtype=torch.float64), w[:, :, :, :], b, 4, 0, "V", 1),
    )
    torch.library.opcheck(
        torch.ops.spn.masked_conv2d_step.default,
        (cache, torch.randn(3, 6, dtype=torch.float64), w[:, :, 2:3], b, 2, 3, "A", 4, "interleaved"),
    )


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


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_cpu_half_precision(dtype):
    """Half-precision inputs run and stay within 2x the reference's own error."""
    x = torch.randn(2, 6, 9, 9)
    w = torch.randn(6, 6, 5, 5) / 30
    b = torch.randn(6)
    cache = x.to(dtype)
    step = sk.masked_conv2d_step(cache, None, w.to(dtype), b.to(dtype), 4, 5, "B", 3, backend="cpu")
    ref_step = sk.masked_conv2d_step_ref(cache, None, w.to(dtype), b.to(dtype), 4, 5, "B", 3)
    full64 = sk.masked_conv2d_ref(x.to(dtype).double(), w.to(dtype).double(), b.to(dtype).double(), "B", 3)
    assert_close_to_ref(step, ref_step, full64[:, :, 4, 5])


def test_compile_fullgraph():
    def f(cache, x_new, w, b):
        return sk.masked_conv2d_step(cache, x_new, w, b, 1, 2, "A", 1)

    x, w, b = conv_inputs(2, 4, 4, 6, 6, 3, torch.float32)
    cache, cache2 = torch.zeros(2, 4, 6, 6), torch.zeros(2, 4, 6, 6)
    got = torch.compile(f, fullgraph=True, backend="aot_eager")(cache, x[:, :, 1, 2], w, b)
    torch.testing.assert_close(got, f(cache2, x[:, :, 1, 2], w, b))
    assert torch.equal(cache, cache2)


# ---------------------------------------------------------------- Triton
@pytest.mark.triton
@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("mt, g", [("A", 3), ("B", 1), ("V", 1)])
def test_triton_half(dtype, mt, g):
    x, w, b = conv_inputs(3, 6, 6, 5, 6, 3, dtype)
    row, col = 3, 2
    new = x[:, :, row] if mt == "V" else x[:, :, row, col]
    cache = x.clone()
    cache[:, :, row:] = 0
    cache_ref = cache.clone()
    out = sk.masked_conv2d_step(cache, new, w, b, row, col, mt, g, backend="triton")
    ref = sk.masked_conv2d_step_ref(cache_ref, new, w, b, row, col, mt, g)
    ref64 = sk.masked_conv2d_step_ref(cache_ref.double(), None, w.double(), b.double(), row, col, mt, g)
    assert torch.equal(cache, cache_ref)
    assert_close_to_ref(out, ref, ref64)


@pytest.mark.triton
@pytest.mark.parametrize("mt, cfg", [("B", "pixel-f64"), ("A", "pixel-f64"), ("V", "row-f64")])
def test_triton_gpu_config_multiblock(mt, cfg):
    """The GPU configurations under the interpreter: 2 M blocks, 2 N blocks, several K blocks."""
    from spn_kernels.ops.masked_conv2d_step import triton as step

    B, ci, co, H, W = 20, 20, 20, 4, 5
    x, w, b = conv_inputs(B, ci, co, H, W, 3, torch.float64)
    g = 2 if mt == "A" else 1
    full = sk.masked_conv2d_ref(x, w, b, mt, g)
    for row, col in ((0, 0), (2, 3), (3, 4)):
        new = x[:, :, row] if mt == "V" else x[:, :, row, col]
        cache = x.clone()
        cache[:, :, row + 1 :] = 0
        if mt == "V":
            cache[:, :, row] = 0
        else:
            cache[:, :, row, col:] = 0
        out = step.masked_conv2d_step(cache, new, w, b, row, col, mt, g, _config=cfg)
        torch.testing.assert_close(out, full[:, :, row] if mt == "V" else full[:, :, row, col])
        assert torch.equal(cache[:, :, row], x[:, :, row]) if mt == "V" else torch.equal(cache[..., row, col], new)


@pytest.mark.triton
def test_triton_opcheck():
    from spn_kernels.ops.masked_conv2d_step import triton  # noqa: F401  (registers the spn_triton op)

    f64 = dict(dtype=torch.float64)
    ops = torch.ops.spn_triton
    w = torch.randn(6, 6, 3, 3, **f64)
    b = torch.randn(6, **f64)
    cache = torch.randn(2, 6, 5, 4, **f64)
    torch.library.opcheck(ops.masked_conv2d_step.default, (cache, torch.randn(2, 6, **f64), w, b, 2, 1, "B", 3))
    torch.library.opcheck(ops.masked_conv2d_step.default, (cache, None, w, None, 4, 0, "V", 1))


@pytest.mark.triton
def test_triton_compile_fullgraph():
    def f(cache, x_new, w, b):
        return sk.masked_conv2d_step(cache, x_new, w, b, 1, 2, "A", 1, backend="triton")

    x, w, b = conv_inputs(2, 4, 4, 6, 6, 3, torch.float32)
    cache, cache2 = torch.zeros(2, 4, 6, 6), torch.zeros(2, 4, 6, 6)
    got = torch.compile(f, fullgraph=True, backend="aot_eager")(cache, x[:, :, 1, 2], w, b)
    torch.testing.assert_close(got, f(cache2, x[:, :, 1, 2], w, b))
    assert torch.equal(cache, cache2)


# ---------------------------------------------------------------- CUDA C++ (backend="cuda")
# (B, C_in, C_out, H, W, k, mask_type, color_groups)
CUDA_STEP_CASES = {
    "b16-128to128-k5-B": (16, 128, 128, 6, 8, 5, "B", 1),
    "b1-3to8-k3-A": (1, 3, 8, 5, 5, 3, "A", 1),
    "b5-6to9-k5-A-g3": (5, 6, 9, 7, 5, 5, "A", 3),
    "b6-6to6-k7-B-g3": (6, 6, 6, 9, 9, 7, "B", 3),
    "b2-16to16-k1-B": (2, 16, 16, 4, 4, 1, "B", 1),
    "b3-4to5-k5-V": (3, 4, 5, 6, 11, 5, "V", 1),
    "b1-2to2-k3-V-1x1": (1, 2, 2, 1, 1, 3, "V", 1),
}
CUDA_STEP_DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]


def _positions(H, W, mt):
    """Corners, edges and the middle."""
    cols = [0] if mt == "V" else sorted({0, W // 2, W - 1})
    return [(r, c) for r in sorted({0, H // 2, H - 1}) for c in cols]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", CUDA_STEP_DTYPES, ids=str)
@pytest.mark.parametrize("case", CUDA_STEP_CASES.values(), ids=CUDA_STEP_CASES.keys())
def test_cuda(case, dtype):
    B, ci, co, H, W, k, mt, g = case
    x = torch.randn(B, ci, H, W, device="cuda", dtype=torch.float64)
    w = torch.randn(co, ci, k, k, device="cuda", dtype=torch.float64) / (ci * k)
    b = torch.randn(co, device="cuda", dtype=torch.float64)
    for row, col in _positions(H, W, mt):
        x_new = x[:, :, row] if mt == "V" else x[:, :, row, col]
        for use_new, bias in [(True, b), (False, None)]:
            cache = x.clone()
            if use_new:
                cache[:, :, row] = 0  # the step must write x_new before reading it
            new = x_new if use_new else None
            c_k, c_r = cache.to(dtype, copy=True), cache.to(dtype, copy=True)
            args = (w.to(dtype), None if bias is None else bias.to(dtype), row, col, mt, g)
            out = sk.masked_conv2d_step(c_k, None if new is None else new.to(dtype), *args, backend="cuda")
            ref = sk.masked_conv2d_step_ref(c_r, None if new is None else new.to(dtype), *args)
            ref64 = sk.masked_conv2d_step_ref(cache.clone(), new, w, bias, row, col, mt, g)
            assert torch.equal(c_k, c_r), (row, col, use_new)
            if dtype == torch.float64:
                # no wider oracle: float64 against float64 in another summation order
                torch.testing.assert_close(out, ref)
            else:
                assert_close_to_ref(out, ref, ref64)


@pytest.mark.gpu
def test_cuda_noncontiguous():
    x = torch.randn(4, 6, 7, 9, device="cuda")
    w = torch.randn(8, 6, 5, 5, device="cuda")
    cache = x.contiguous(memory_format=torch.channels_last)
    cache_ref = x.clone()
    x_new = torch.randn(6, 4, device="cuda").t()  # strided [B, C_in]
    w_strided = w.transpose(2, 3).contiguous().transpose(2, 3)
    out = sk.masked_conv2d_step(cache, x_new, w_strided, None, 3, 8, "B", backend="cuda")
    ref = sk.masked_conv2d_step_ref(cache_ref, x_new, w, None, 3, 8, "B")
    ref64 = sk.masked_conv2d_step_ref(x.double().clone(), x_new.double(), w.double(), None, 3, 8, "B")
    assert torch.equal(cache, cache_ref)
    assert_close_to_ref(out, ref, ref64)


@pytest.mark.gpu
def test_cuda_bad_input_names_argument():
    dev = "cuda"
    with pytest.raises(ValueError, match="x_new must have shape"):
        torch.ops.spn.masked_conv2d_step(
            torch.zeros(2, 3, 5, 5, device=dev), torch.zeros(2, 4, device=dev), torch.zeros(4, 3, 3, 3, device=dev),
            None, 0, 0, "B", 1,
        )  # fmt: skip
