"""masked_conv2d and its backward op: the public function, the fake kernels, autograd, and the backend choice
(spn_kernels/_backend.py)."""

from __future__ import annotations

from typing import Callable

import torch

from ..._backend import CPP, TRITON, choose
from ..._checks import check_conv, check_conv_backward, check_devices
from .ref import masked_conv2d_ref

check = check_conv
check_backward = check_conv_backward


# The fake kernels let the ops trace under torch.compile(fullgraph=True) and FakeTensor mode: shapes and dtypes
# only. triton.py registers them for torch.ops.spn_triton.* too.
@torch.library.register_fake("spn::masked_conv2d")
def fake(x, weight, bias, mask_type, color_groups, color_layout="blocked"):
    check(x, weight, bias, mask_type, color_groups, color_layout)
    B, _, H, W = x.shape
    return x.new_empty(B, weight.shape[0], H, W)


@torch.library.register_fake("spn::masked_conv2d_backward")
def fake_backward(grad_out, x, weight, mask_type, color_groups, output_mask, color_layout="blocked"):
    check_backward(grad_out, x, weight, mask_type, color_groups, output_mask, color_layout)
    empty = grad_out.new_empty(0)
    return (
        torch.empty_like(x) if output_mask[0] else empty,
        torch.empty_like(weight) if output_mask[1] else empty,
        grad_out.new_empty(weight.shape[0]) if output_mask[2] else empty,
    )


def register_autograd(forward_op: str, backward_op: Callable) -> None:
    """Registers the backward of a masked_conv2d op (``forward_op`` is "ns::masked_conv2d") through its
    backward op, so each backend supplies its own backward kernel and the formula is written once.

    Only x and weight are saved; grad_bias is asked for only when there is a bias.
    """

    def setup_context(ctx, inputs, output):
        x, weight, bias, mask_type, color_groups, color_layout = inputs
        ctx.save_for_backward(x, weight)
        ctx.mask_type, ctx.color_groups, ctx.color_layout = mask_type, color_groups, color_layout
        ctx.has_bias = bias is not None

    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        need = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
        gx, gw, gb = backward_op(grad.contiguous(), x, weight, ctx.mask_type, ctx.color_groups, need, ctx.color_layout)
        return (gx if need[0] else None, gw if need[1] else None, gb if need[2] else None, None, None, None)

    torch.library.register_autograd(forward_op, backward, setup_context=setup_context)


# torch.ops.spn.masked_conv2d registers its autograd in C++ (csrc/masked_conv2d/cpu.cpp: the Python path's
# per-call cost exceeded the convolution itself at the CPU presets' shapes); the Triton op registers this one.


def _autocast(x: torch.Tensor, *ts: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
    """Under torch.autocast, casts floating inputs to the autocast dtype, as autocast does for F.conv2d
    (the custom ops are invisible to autocast's own op lists). Outside autocast: no-op."""
    dev = x.device.type
    if not torch.is_autocast_enabled(dev):
        return (x, *ts)
    dt = torch.get_autocast_dtype(dev)
    return tuple(None if t is None else t.to(dt) if t.is_floating_point() else t for t in (x, *ts))


def masked_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    mask_type: str = "B",
    color_groups: int = 1,
    *,
    color_layout: str = "blocked",
    backend: str | None = None,
) -> torch.Tensor:
    """PixelCNN masked convolution: [B, C_in, H, W], weight [C_out, C_in, kh, kw] -> [B, C_out, H, W].

    kw is odd; kh selects rows of the centred kw x kw kernel: kw (all), 1 (the centre row), kw//2 + 1 (rows
    through the centre row) or kw//2 (rows strictly above it). color_layout: "blocked" or "interleaved"
    colour groups. Equals F.conv2d(x, square(weight * mask), bias, padding=kw // 2); ref.py is the spec.
    Under torch.autocast the inputs are cast to the autocast dtype (like F.conv2d)."""
    x, weight, bias = _autocast(x, weight, bias)
    impl = choose(backend, x.device, "masked_conv2d")
    if impl == CPP:  # the C++ kernel checks the rest (csrc/checks.h)
        if weight.device != x.device or (bias is not None and bias.device != x.device):
            check_devices(x, "x", weight=weight, bias=bias)
        return torch.ops.spn.masked_conv2d(x, weight, bias, mask_type, color_groups, color_layout)
    if impl == TRITON:  # so does the Triton op
        return _triton_op()(x, weight, bias, mask_type, color_groups, color_layout)
    check(x, weight, bias, mask_type, color_groups, color_layout)
    return masked_conv2d_ref(x, weight, bias, mask_type, color_groups, color_layout=color_layout)


def _triton_op():
    from . import triton  # noqa: F401  (registers torch.ops.spn_triton.masked_conv2d(_backward) on first use)

    return torch.ops.spn_triton.masked_conv2d
