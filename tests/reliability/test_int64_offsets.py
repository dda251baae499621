"""64-bit index math: the step op on a cache whose element offsets pass 2^31 (a 10 GB virtual map of which
only the last rows are ever touched: torch.empty does not write memory, the kernel reads only its window), and
the Triton convolution on an image plane of more than 2^31 pixels (one launched program, the first pixels).
A 32-bit offset would wrap and read the wrong pixels (or crash)."""

from __future__ import annotations

import pytest
import torch

import spn_kernels as sk

H = W = 50_000  # one plane has 2.5e9 > 2^31 elements


@pytest.mark.parametrize("backend", ["torch", "cpu", pytest.param("triton", marks=pytest.mark.triton)])
@pytest.mark.parametrize("mask_type", ["A", "B", "V"])
@pytest.mark.parametrize("write", [False, True], ids=["read", "write"])
def test_step_past_2_31_elements(backend, mask_type, write):
    """The Triton kernel runs through the interpreter, whose int32 arithmetic wraps as a GPU's does: a 32-bit
    row * stride product reads (or writes x_new into) the wrong rows here."""
    k, p = 5, 2
    cache = torch.empty(1, 2, H, W)  # untouched virtual memory
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 2, k, k, generator=g)
    row, col = H - 1, W - 3
    visible = torch.randn(1, 2, p + 1, W, generator=g)  # every row the mask can see, whole width
    cache[:, :, row - p : row + 1] = visible
    x_new = None
    if write:
        if mask_type == "V":
            x_new = visible[:, :, p].clone()
            cache[:, :, row] = 0
        else:
            x_new = visible[:, :, p, col].clone()
            cache[:, :, row, col] = 0
    assert row * W + col > 2**31
    out = sk.masked_conv2d_step(cache, x_new, w, None, row, col, mask_type, backend=backend)
    # the same output from a small map holding only the visible rows
    ref = sk.masked_conv2d_step_ref(visible.clone(), None, w, None, p, col, mask_type)
    torch.testing.assert_close(out, ref)
    if write:
        written = cache[:, :, row] if mask_type == "V" else cache[:, :, row, col]
        assert torch.equal(written, x_new)


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_slice_scatter_past_2_31_elements(backend):
    """slice_scatter_ into a 2.5 GB virtual uint8 image: only the written slice's pages are touched (~50 MB)."""
    s = 50
    x = torch.empty(1, 1, H, W, dtype=torch.uint8)
    t = s * s - 1  # the last slice: offsets up to ~H * W > 2^31
    g = torch.Generator().manual_seed(1)
    vals = torch.randint(0, 256, (1, 1, H // s, W // s), generator=g, dtype=torch.uint8)
    sk.slice_scatter_(x, vals, s, t, backend=backend)
    i, j = divmod(t, s)
    assert (H - s + i) * W + (W - s + j) > 2**31
    assert torch.equal(x[:, :, i::s, j::s], vals)


@pytest.mark.triton
@pytest.mark.parametrize("transposed", [False, True], ids=["forward", "grad_x"])
def test_triton_conv_plane_past_2_31_pixels(transposed):
    """H * W > 2^31: the kernels' pixel count H * W must be int64. Only the first program of the launch runs
    (the first BM pixels of row 0), which reads rows 0 and 1 only."""
    import dataclasses

    from spn_kernels._triton_launch import launch
    from spn_kernels.ops.masked_conv2d import triton as conv

    g = torch.Generator().manual_seed(2)
    x = torch.empty(1, 1, H, W)
    x[:, :, :2] = torch.randn(1, 1, 2, W, generator=g)
    w = torch.randn(1, 1, 3, 3, generator=g)
    plan, out = conv.plan_conv(x, w, None, "B", 1, transposed, "f32-n64", "ieee")
    assert H * W > 2**31
    launch(dataclasses.replace(plan, grid=(1, 1)))
    BM = plan.meta["BM"]
    small = x[:, :, :2, : BM + 2].clone()
    if transposed:  # grad_x of rows 0..1 reads grad_out rows 0..1 (the adjoint looks down)
        want = sk.masked_conv2d_backward_ref(small, small, w, "B", 1, [True, False, False])[0]
    else:
        want = sk.masked_conv2d_ref(small, w, None, "B")
    torch.testing.assert_close(out[:, :, 0, :BM], want[:, :, 0, :BM])
