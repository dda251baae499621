"""subscale_merge in Triton: the shared slice kernel (spn_kernels/_triton_slices.py) in MODE 1, its launcher, and
the torch.ops.spn_triton.subscale_merge op. Imported on first use of the Triton backend."""

from __future__ import annotations

import torch

from ..._triton_launch import Launch, launch
from ..._triton_slices import pick_config, plan_subscale
from .op import check, fake


def plan(slices: torch.Tensor, config: str | None) -> tuple[Launch, torch.Tensor]:
    """[B, s*s, C, h, w] (any layout) -> the launch and its output, contiguous [B, C, h*s, w*s]."""
    B, S2, C, h, w = slices.shape
    s = int(round(S2**0.5))
    out = slices.new_empty(B, C, h * s, w * s)
    return plan_subscale(1, out, slices, None, C, C, s, 0.0, config), out


def subscale_merge(slices: torch.Tensor, _config: str | None = None) -> torch.Tensor:
    """The launcher (inputs already checked); ``_config`` overrides the configuration (CONFIGS)."""
    p, out = plan(slices, _config or pick_config(slices))
    launch(p)
    return out


# custom_op rather than triton_op: see subscale_split/triton.py.
@torch.library.custom_op("spn_triton::subscale_merge", mutates_args=())
def subscale_merge_op(slices: torch.Tensor) -> torch.Tensor:
    check(slices)
    return subscale_merge(slices)


subscale_merge_op.register_fake(fake)
