"""The Triton kernels beyond what test_subscale.py / test_masked_conv.py cover through the `backend` fixture:
16-bit dtypes, the GPU launch configurations (larger and multi-block tiles) under the interpreter, the
torch.ops.spn_triton registrations (schemas, opcheck, torch.compile), and the CUDA dispatch registration."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import spn_kernels as sk
from tests.helpers import assert_close_to_ref

if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
    pytest.skip("Triton kernels need a GPU or TRITON_INTERPRET=1", allow_module_level=True)
pytest.importorskip("triton")

from spn_kernels import _triton_ops  # noqa: E402
from spn_kernels.masked_conv import triton as conv  # noqa: E402
from spn_kernels.masked_conv import triton_step as step  # noqa: E402
from spn_kernels.subscale import triton as sub  # noqa: E402

HALF = [torch.bfloat16, torch.float16]


def _conv_inputs(B, ci, co, H, W, k, dtype):
    x = torch.randn(B, ci, H, W).to(dtype)
    w = (torch.randn(co, ci, k, k) / (ci * k)).to(dtype)
    b = torch.randn(co).to(dtype)
    return x, w, b


# ---------------------------------------------------------------- 16-bit dtypes
# Tolerance (tests/helpers.py): at most 2x the error of the same-dtype PyTorch reference against float64,
# plus 4 ulps at the output's scale: the interpreter truncates fp32 -> bf16 stores (1 ulp; on a GPU they
# round), and both accumulate in fp32 so neither is otherwise worse than one final rounding.
@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("mt, g", [("A", 1), ("B", 3), ("V", 1)])
def test_conv_half(dtype, mt, g):
    x, w, b = _conv_inputs(2, 6, 9, 7, 8, 5, dtype)
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


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("mt, g", [("A", 3), ("B", 1), ("V", 1)])
def test_step_half(dtype, mt, g):
    x, w, b = _conv_inputs(3, 6, 6, 5, 6, 3, dtype)
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


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_slices_half(dtype):
    x = torch.randn(2, 3, 8, 12).to(dtype)
    out = sk.subscale_split(x, 4, backend="triton")
    assert torch.equal(out, sk.subscale_split_ref(x, 4))
    assert torch.equal(sk.subscale_merge(out, backend="triton"), x)
    t = torch.tensor([5, 0])
    y, y_ref = x.clone(), x.clone()
    sk.slice_scatter_(y, out[:, 3], 4, t, backend="triton")
    sk.slice_scatter_ref_(y_ref, out[:, 3], 4, t)
    assert torch.equal(y, y_ref)


# ---------------------------------------------------------------- the GPU configurations, under the interpreter
# Shapes larger than one tile in every dimension, so partial tiles, several K blocks and the pixel split of
# grad_weight all run. float64 keeps the comparison tight (its configs have the smallest tiles).
def test_conv_gpu_config_multiblock():
    x, w, b = _conv_inputs(2, 20, 66, 6, 7, 3, torch.float64)  # 2 M blocks, 2 N blocks, 2-4 K blocks
    gy = torch.randn(2, 66, 6, 7, dtype=torch.float64)
    for mt, g in (("B", 1), ("A", 2), ("V", 1)):
        out = conv.masked_conv2d(x, w, b, mt, g, "f64")
        torch.testing.assert_close(out, sk.masked_conv2d_ref(x, w, b, mt, g))
        got = conv.masked_conv2d_backward(gy, x, w, mt, g, [True, True, True], "f64", "f64")
        want = sk.masked_conv2d_backward_ref(gy, x, w, mt, g, [True, True, True])
        for a, r in zip(got, want):
            torch.testing.assert_close(a, r)


@pytest.mark.parametrize("cfg", ["f32-n64", "f32-n128"])
def test_conv_gpu_config_fp32(cfg):
    x, w, b = _conv_inputs(1, 20, 24, 12, 12, 3, torch.float32)
    out = conv.masked_conv2d(x, w, b, "B", 1, cfg)
    ref = sk.masked_conv2d_ref(x, w, b, "B")
    assert_close_to_ref(out, ref, sk.masked_conv2d_ref(x.double(), w.double(), b.double(), "B"))


def test_backward_only_bias_grad():
    x, w, _ = _conv_inputs(2, 3, 5, 6, 6, 3, torch.float64)
    gy = torch.randn(2, 5, 6, 6, dtype=torch.float64)
    gx, gw, gb = torch.ops.spn_triton.masked_conv2d_backward(gy, x, w, "A", 1, [False, False, True])
    assert gx.numel() == 0 and gw.numel() == 0
    torch.testing.assert_close(gb, gy.sum((0, 2, 3)))


@pytest.mark.parametrize("mt, cfg", [("B", "pixel-f64"), ("A", "pixel-f64"), ("V", "row-f64")])
def test_step_gpu_config_multiblock(mt, cfg):
    B, ci, co, H, W = 20, 20, 20, 4, 5  # 2 M blocks, 2 N blocks, several K blocks
    x, w, b = _conv_inputs(B, ci, co, H, W, 3, torch.float64)
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
        out = step.masked_conv2d_step(cache, new, w, b, row, col, mt, g, cfg)
        torch.testing.assert_close(out, full[:, :, row] if mt == "V" else full[:, :, row, col])
        assert torch.equal(cache[:, :, row], x[:, :, row]) if mt == "V" else torch.equal(cache[..., row, col], new)


def test_subscale_gpu_config_multiblock():
    x = torch.randint(0, 256, (2, 3, 96, 104), dtype=torch.uint8)
    t = torch.tensor([3, 16])
    for s in (4, 8):
        out = sub.subscale_split(x, s, "gpu")
        assert torch.equal(out, sk.subscale_split_ref(x, s))
        assert torch.equal(sub.subscale_merge(out, "gpu"), x)
        assert torch.equal(sub.slice_context(x, s, t, 8, "gpu"), sk.slice_context_ref(x, s, t, 8))
        y, y_ref = x.clone(), x.clone()
        sub.slice_scatter_(y, out[:, 1], s, t.clamp(max=s * s - 1), "gpu")
        sk.slice_scatter_ref_(y_ref, out[:, 1], s, t.clamp(max=s * s - 1))
        assert torch.equal(y, y_ref)


def test_scatter_ignores_out_of_range_t():
    """Only reachable through the raw op (the public function checks t): no write, not out of bounds."""
    x = torch.zeros(1, 1, 4, 4)
    torch.ops.spn_triton.slice_scatter_(x, torch.ones(1, 1, 2, 2), 2, torch.tensor([4]))
    assert x.eq(0).all()


# ---------------------------------------------------------------- registration
def test_schemas_match_spn():
    for name in _triton_ops.LAUNCHERS:
        a = getattr(torch.ops.spn_triton, name).default._schema
        b = getattr(torch.ops.spn, name).default._schema
        assert [(x.name, str(x.type), x.alias_info is not None and x.alias_info.is_write) for x in a.arguments] == [
            (x.name, str(x.type), x.alias_info is not None and x.alias_info.is_write) for x in b.arguments
        ], name
        assert [str(r.type) for r in a.returns] == [str(r.type) for r in b.returns], name


def test_opcheck():
    f64 = dict(dtype=torch.float64)
    x = torch.randint(0, 256, (2, 3, 6, 6), dtype=torch.uint8)
    t = torch.tensor([0, 7])
    ops = torch.ops.spn_triton
    torch.library.opcheck(ops.subscale_split.default, (x, 3))
    torch.library.opcheck(ops.subscale_merge.default, (sk.subscale_split_ref(x, 3),))
    torch.library.opcheck(ops.slice_context.default, (x, 3, t, 8))
    torch.library.opcheck(ops.slice_scatter_.default, (x.clone(), torch.randint(0, 256, (2, 3, 2, 2)).byte(), 3, t))
    xc = torch.randn(2, 6, 5, 4, **f64, requires_grad=True)
    w = torch.randn(6, 6, 3, 3, **f64, requires_grad=True)
    b = torch.randn(6, **f64)
    torch.library.opcheck(ops.masked_conv2d.default, (xc, w, b, "A", 3))
    torch.library.opcheck(ops.masked_conv2d.default, (xc, w, None, "V", 1))
    gy = torch.randn(2, 6, 5, 4, **f64)
    torch.library.opcheck(ops.masked_conv2d_backward.default, (gy, xc.detach(), w.detach(), "B", 3, [True, True, True]))
    cache = torch.randn(2, 6, 5, 4, **f64)
    torch.library.opcheck(
        ops.masked_conv2d_step.default, (cache, torch.randn(2, 6, **f64), w.detach(), b, 2, 1, "B", 3)
    )
    torch.library.opcheck(ops.masked_conv2d_step.default, (cache, None, w.detach(), None, 4, 0, "V", 1))


def test_compile_fullgraph():
    def f(img, t, x, w, b, cache):
        ctx = sk.slice_context(img, 2, t, 8, backend="triton")
        sl = sk.subscale_split(img, 2, backend="triton")
        y = img.clone()
        sk.slice_scatter_(y, sl[:, 3], 2, t, backend="triton")
        h = sk.masked_conv2d(x, w, b, "A", 1, backend="triton")
        o = sk.masked_conv2d_step(cache, x[:, :, 1, 2].detach(), w, b, 1, 2, "A", 1, backend="triton")
        merged = sk.subscale_merge(sl, backend="triton")
        return ctx.sum() + merged.sum() + y.sum(), h, o

    img = torch.randint(0, 256, (2, 3, 8, 8))
    t = torch.tensor([1, 2])
    x, w, b = _conv_inputs(2, 4, 4, 6, 6, 3, torch.float32)
    x.requires_grad_()
    cache, cache2 = torch.zeros(2, 4, 6, 6), torch.zeros(2, 4, 6, 6)
    got = torch.compile(f, fullgraph=True, backend="aot_eager")(img, t, x, w, b, cache)
    want = f(img, t, x, w, b, cache2)
    for a, r in zip(got, want):
        torch.testing.assert_close(a, r)
    assert torch.equal(cache, cache2)
    got[1].sum().backward()
    assert x.grad is not None


def test_cuda_dispatch_registration():
    """register_cuda_kernels() makes every spn op without a CUDA C++ kernel dispatch to Triton on CUDA.
    Run in a fresh process: it changes the dispatcher for the whole process."""
    code = (
        "import torch, spn_kernels\n"
        "from spn_kernels import _triton_ops\n"
        "has = lambda n: torch._C._dispatch_has_kernel_for_dispatch_key(f'spn::{n}', 'CUDA')\n"
        "before = {n for n in _triton_ops.LAUNCHERS if has(n)}\n"
        "done = _triton_ops.register_cuda_kernels()\n"
        "assert set(done) == set(_triton_ops.LAUNCHERS) - before, (done, before)\n"
        "assert all(has(n) for n in _triton_ops.LAUNCHERS)\n"
        "assert _triton_ops.register_cuda_kernels() == done\n"
        "print('ok', sorted(done))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-4000:]
