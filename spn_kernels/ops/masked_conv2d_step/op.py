"""masked_conv2d_step: the public function, its fake kernel and its backend choice (spn_kernels/_backend.py)."""

from __future__ import annotations

import torch

from ..._backend import CPP, TRITON, choose
from ..._checks import check_devices, check_step
from .ref import masked_conv2d_step_ref

check = check_step


# The fake kernel lets the op trace under torch.compile(fullgraph=True) and FakeTensor mode: shapes and dtypes
# only (the cache is written in place). triton.py registers it for torch.ops.spn_triton.masked_conv2d_step too.
@torch.library.register_fake("spn::masked_conv2d_step")
def fake(cache, x_new, weight, bias, row, col, mask_type, color_groups, color_layout="blocked"):
    check(cache, x_new, weight, bias, row, col, mask_type, color_groups, color_layout)
    B, _, _, W = cache.shape
    if mask_type == "V":
        return cache.new_empty(B, weight.shape[0], W)
    return cache.new_empty(B, weight.shape[0])


def masked_conv2d_step(
    cache: torch.Tensor,
    x_new: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    row: int,
    col: int,
    mask_type: str = "B",
    color_groups: int = 1,
    *,
    color_layout: str = "blocked",
    backend: str | None = None,
) -> torch.Tensor:
    """Cached incremental masked_conv2d. cache [B, C_in, H, W] is the layer's input map (zeros where
    nothing is known yet); x_new, if given, is written first ([B, C_in] at (row, col), or [B, C_in, W] as
    row `row` for mask "V"). Returns the output at (row, col) [B, C_out] (mask "V": row `row`, [B, C_out, W]).
    weight, mask_type, color_groups and color_layout are those of masked_conv2d (every kernel shape)."""
    args = (cache, x_new, weight, bias, row, col, mask_type, color_groups, color_layout)
    impl = choose(backend, cache.device, "masked_conv2d_step")
    if impl == CPP:  # the C++ kernel checks the rest (csrc/checks.h)
        check_devices(cache, "cache", x_new=x_new, weight=weight, bias=bias)
        return torch.ops.spn.masked_conv2d_step(*args)
    if impl == TRITON:  # so does the Triton op
        return _triton_op()(*args)
    check(*args)
    return masked_conv2d_step_ref(*args[:-1], color_layout=color_layout)


def _triton_op():
    from . import triton  # noqa: F401  (registers torch.ops.spn_triton.masked_conv2d_step on first use)

    return torch.ops.spn_triton.masked_conv2d_step
