"""Registers the Triton kernels: torch.ops.spn_triton.<op>, with the schemas of torch.ops.spn.<op>, and (on
request) as the CUDA kernels of torch.ops.spn.<op> where no CUDA C++ kernel is built. Registration and
launch only: the kernels and launchers live beside the references (subscale/triton.py, masked_conv/triton*.py).

Why torch.library.custom_op and not triton_op: in torch 2.13 triton_op cannot be fake-traced under the
Triton interpreter, so opcheck and torch.compile could not be tested in CI (no GPU). custom_op + the shared
fake kernels (FAKES) + the shared autograd formula give eager, opcheck and torch.compile on CPU tensors under
TRITON_INTERPRET=1 and on CUDA tensors alike; torch.compile treats the op as opaque, which is what we want
for a hand-written kernel.
"""

from __future__ import annotations

from typing import Optional  # custom_op evaluates the annotations: `X | None` fails on Python 3.9

import torch

from ._library import FAKES, register_masked_conv_autograd
from .masked_conv import triton as _conv
from .masked_conv import triton_step as _step
from .subscale import triton as _sub

NS = "spn_triton"

# op name -> launcher, with the op's schema (the CUDA dispatch kernels of spn::<op> are these same launchers)
LAUNCHERS = {
    "subscale_split": _sub.subscale_split,
    "subscale_merge": _sub.subscale_merge,
    "slice_context": _sub.slice_context,
    "slice_scatter_": _sub.slice_scatter_,
    "masked_conv2d": _conv.masked_conv2d,
    "masked_conv2d_backward": _conv.masked_conv2d_backward,
    "masked_conv2d_step": _step.masked_conv2d_step,
}


@torch.library.custom_op(f"{NS}::subscale_split", mutates_args=())
def subscale_split(x: torch.Tensor, s: int) -> torch.Tensor:
    return _sub.subscale_split(x, s)


@torch.library.custom_op(f"{NS}::subscale_merge", mutates_args=())
def subscale_merge(slices: torch.Tensor) -> torch.Tensor:
    return _sub.subscale_merge(slices)


@torch.library.custom_op(f"{NS}::slice_context", mutates_args=())
def slice_context(x: torch.Tensor, s: int, t: torch.Tensor, bits: int) -> torch.Tensor:
    return _sub.slice_context(x, s, t, bits)


@torch.library.custom_op(f"{NS}::slice_scatter_", mutates_args=("x",))
def slice_scatter_(x: torch.Tensor, values: torch.Tensor, s: int, t: torch.Tensor) -> None:
    _sub.slice_scatter_(x, values, s, t)


@torch.library.custom_op(f"{NS}::masked_conv2d", mutates_args=())
def masked_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],  # noqa: UP045
    mask_type: str,
    color_groups: int,
) -> torch.Tensor:
    return _conv.masked_conv2d(x, weight, bias, mask_type, color_groups)


@torch.library.custom_op(f"{NS}::masked_conv2d_backward", mutates_args=())
def masked_conv2d_backward(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    mask_type: str,
    color_groups: int,
    output_mask: list[bool],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _conv.masked_conv2d_backward(grad_out, x, weight, mask_type, color_groups, output_mask)


@torch.library.custom_op(f"{NS}::masked_conv2d_step", mutates_args=("cache",))
def masked_conv2d_step(
    cache: torch.Tensor,
    x_new: Optional[torch.Tensor],  # noqa: UP045
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],  # noqa: UP045
    row: int,
    col: int,
    mask_type: str,
    color_groups: int,
) -> torch.Tensor:
    return _step.masked_conv2d_step(cache, x_new, weight, bias, row, col, mask_type, color_groups)


for _name, _fake in FAKES.items():
    torch.library.register_fake(f"{NS}::{_name}")(_fake)
register_masked_conv_autograd(f"{NS}::masked_conv2d", torch.ops.spn_triton.masked_conv2d_backward)


_CUDA_REGISTERED: list[str] = []


def register_cuda_kernels() -> list[str]:
    """Makes the Triton launchers the CUDA kernels of every spn::<op> that has no CUDA C++ kernel.

    Called once by spn_kernels._library at import (when CUDA and triton are both present), after _C has
    registered whatever CUDA C++ kernels were built. Returns the ops it registered.
    """
    if _CUDA_REGISTERED:
        return list(_CUDA_REGISTERED)
    for name, fn in LAUNCHERS.items():
        if not torch._C._dispatch_has_kernel_for_dispatch_key(f"spn::{name}", "CUDA"):
            torch.library.impl(f"spn::{name}", "CUDA")(fn)
            _CUDA_REGISTERED.append(name)
    return list(_CUDA_REGISTERED)
