"""slice_context in Triton: the shared slice kernel (spn_kernels/_triton_slices.py) in MODE 2, its launcher, and
the torch.ops.spn_triton.slice_context op. Imported on first use of the Triton backend."""

from __future__ import annotations

import torch

from ..._triton_launch import Launch, launch
from ..._triton_slices import pick_config, plan_subscale
from .op import check, fake


def plan(x: torch.Tensor, s: int, t: torch.Tensor, bits: int, config: str | None) -> tuple[Launch, torch.Tensor]:
    """Integer image [B, C, H, W], t [B] -> the launch and its output, float32 [B, s*s*(C+1), H/s, W/s]."""
    B, C, H, W = x.shape
    out = torch.empty(B, s * s, C + 1, H // s, W // s, dtype=torch.float32, device=x.device)
    p = plan_subscale(2, x, out, t.to(torch.int64).contiguous(), C, C + 1, s, 2.0**-bits, config)
    return p, out.view(B, s * s * (C + 1), H // s, W // s)


def slice_context(x: torch.Tensor, s: int, t: torch.Tensor, bits: int, _config: str | None = None) -> torch.Tensor:
    """The launcher (inputs already checked); ``_config`` overrides the configuration (CONFIGS)."""
    p, out = plan(x, s, t, bits, _config or pick_config(x))
    launch(p)
    return out


# custom_op rather than triton_op: see subscale_split/triton.py.
@torch.library.custom_op("spn_triton::slice_context", mutates_args=())
def slice_context_op(x: torch.Tensor, s: int, t: torch.Tensor, bits: int) -> torch.Tensor:
    check(x, s, t, bits)
    return slice_context(x, s, t, bits)


slice_context_op.register_fake(fake)
