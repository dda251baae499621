"""Loads the compiled op library and registers what the dispatcher needs beyond the kernels themselves.

- `spn_kernels._C` holds the schemas (csrc/ops.cpp) and the C++ kernels (CPU; CUDA when built with it).
- Fake kernels let every op trace under torch.compile(fullgraph=True) and FakeTensor mode.
- Autograd for masked_conv2d goes through the masked_conv2d_backward op, so each backend supplies its
  own backward kernel and the formula is registered once.
"""

from __future__ import annotations

from typing import Callable

import torch

from . import _C  # noqa: F401  (loads the shared object: schemas + C++ kernels)
from ._checks import check_conv, check_slices, check_step, check_subscale


def _has_kernel(op: str, key: str) -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"spn::{op}", key)


OPS = (
    "subscale_split",
    "subscale_merge",
    "slice_context",
    "slice_scatter_",
    "masked_conv2d",
    "masked_conv2d_backward",
    "masked_conv2d_step",
)


# ---------------------------------------------------------------- fake kernels (shapes, dtypes only)
# Each is shared by every namespace that carries the same schema (spn, and spn_triton in triton/).
def subscale_split_fake(x, s):
    check_subscale(x, s)
    B, C, H, W = x.shape
    return x.new_empty(B, s * s, C, H // s, W // s)


def subscale_merge_fake(slices):
    s = check_slices(slices)
    B, _, C, h, w = slices.shape
    return slices.new_empty(B, C, h * s, w * s)


def slice_context_fake(x, s, t, bits):
    check_subscale(x, s)
    B, C, H, W = x.shape
    return x.new_empty(B, s * s * (C + 1), H // s, W // s, dtype=torch.float32)


def slice_scatter_fake(x, values, s, t):
    return None


def masked_conv2d_fake(x, weight, bias, mask_type, color_groups):
    check_conv(x, weight, bias, mask_type, color_groups)
    B, _, H, W = x.shape
    return x.new_empty(B, weight.shape[0], H, W)


def masked_conv2d_backward_fake(grad_out, x, weight, mask_type, color_groups, output_mask):
    empty = grad_out.new_empty(0)
    return (
        torch.empty_like(x) if output_mask[0] else empty,
        torch.empty_like(weight) if output_mask[1] else empty,
        grad_out.new_empty(weight.shape[0]) if output_mask[2] else empty,
    )


def masked_conv2d_step_fake(cache, x_new, weight, bias, row, col, mask_type, color_groups):
    check_step(cache, x_new, weight, bias, row, col, mask_type, color_groups)
    B, _, _, W = cache.shape
    if mask_type == "V":
        return cache.new_empty(B, weight.shape[0], W)
    return cache.new_empty(B, weight.shape[0])


FAKES: dict[str, Callable] = {
    "subscale_split": subscale_split_fake,
    "subscale_merge": subscale_merge_fake,
    "slice_context": slice_context_fake,
    "slice_scatter_": slice_scatter_fake,
    "masked_conv2d": masked_conv2d_fake,
    "masked_conv2d_backward": masked_conv2d_backward_fake,
    "masked_conv2d_step": masked_conv2d_step_fake,
}

for _name, _fake in FAKES.items():
    torch.library.register_fake(f"spn::{_name}")(_fake)


# ---------------------------------------------------------------- autograd
def register_masked_conv_autograd(forward_op: str, backward_op: Callable) -> None:
    """Registers the backward of a masked_conv2d op (``forward_op`` is "ns::masked_conv2d").

    Only x and weight are saved; grad_bias is asked for only when there is a bias.
    """

    def setup_context(ctx, inputs, output):
        x, weight, bias, mask_type, color_groups = inputs
        ctx.save_for_backward(x, weight)
        ctx.mask_type, ctx.color_groups, ctx.has_bias = mask_type, color_groups, bias is not None

    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        need = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
        gx, gw, gb = backward_op(grad.contiguous(), x, weight, ctx.mask_type, ctx.color_groups, need)
        return (gx if need[0] else None, gw if need[1] else None, gb if need[2] else None, None, None)

    torch.library.register_autograd(forward_op, backward, setup_context=setup_context)


register_masked_conv_autograd("spn::masked_conv2d", torch.ops.spn.masked_conv2d_backward)


# ---------------------------------------------------------------- CUDA kernels from Triton
# Where no CUDA C++ kernel was built for an op (csrc/cuda), its Triton kernel serves CUDA tensors. Only with
# a GPU and triton present: spn_kernels imports and runs without triton. Last in this module because
# _triton_ops imports FAKES and register_masked_conv_autograd from it.
TRITON_CUDA_OPS: set[str] = set()  # ops whose CUDA dispatch kernel is the Triton launcher, not CUDA C++


def _register_triton_cuda_kernels() -> None:
    import importlib.util

    if torch.cuda.is_available() and importlib.util.find_spec("triton") is not None:
        from . import _triton_ops

        TRITON_CUDA_OPS.update(_triton_ops.register_cuda_kernels())


_register_triton_cuda_kernels()
