"""subscale_split in Triton: the shared slice kernel (spn_kernels/_triton_slices.py) in MODE 0, its launcher, and
the torch.ops.spn_triton.subscale_split op. Imported on first use of the Triton backend."""

from __future__ import annotations

import torch

from ..._triton_launch import Launch, launch
from ..._triton_slices import pick_config, plan_subscale
from .op import check, fake


def plan(x: torch.Tensor, s: int, config: str | None) -> tuple[Launch, torch.Tensor]:
    """[B, C, H, W] (any layout) -> the launch and its output, contiguous [B, s*s, C, H/s, W/s]."""
    B, C, H, W = x.shape
    out = x.new_empty(B, s * s, C, H // s, W // s)
    return plan_subscale(0, x, out, None, C, C, s, 0.0, config), out


def subscale_split(x: torch.Tensor, s: int, _config: str | None = None) -> torch.Tensor:
    """The launcher (inputs already checked); ``_config`` overrides the configuration (CONFIGS)."""
    p, out = plan(x, s, _config or pick_config(x))
    launch(p)
    return out


# custom_op rather than torch.library.triton_op: under the Triton interpreter triton_op cannot be fake-traced,
# so opcheck and torch.compile could not be tested on CPU. custom_op + the fake kernel give eager, opcheck and
# torch.compile on CPU tensors under TRITON_INTERPRET=1 and on CUDA tensors alike; torch.compile treats the op
# as opaque, which is what a hand-written kernel wants.
@torch.library.custom_op("spn_triton::subscale_split", mutates_args=())
def subscale_split_op(x: torch.Tensor, s: int) -> torch.Tensor:
    check(x, s)
    return subscale_split(x, s)


subscale_split_op.register_fake(fake)
