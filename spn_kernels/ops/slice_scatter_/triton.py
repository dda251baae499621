"""slice_scatter_ in Triton: its kernel (the configurations are those of every slice op,
spn_kernels/_triton_slices.py), its launcher, and the torch.ops.spn_triton.slice_scatter_ op. Imported on first
use of the Triton backend. The reference in ref.py is the spec; x is written in place, in its own layout."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..._triton_launch import Launch, launch, pow2
from ..._triton_slices import CONFIGS, pick_config
from .op import check, fake


@triton.jit
def _slice_scatter_kernel(
    x,  # [B, C, H, W], strides xb, xc, xh, xw; written in place
    v,  # [B, C, h, w], strides vb, vc, vh, vw
    t_ptr,  # int64 [B]
    C,
    h,
    w,
    s,
    xb,
    xc,
    xh,
    xw,
    vb,
    vc,
    vh,
    vw,
    BH: tl.constexpr,
    BW: tl.constexpr,
):
    i_bc, i_h, i_w = tl.program_id(0).to(tl.int64), tl.program_id(1).to(tl.int64), tl.program_id(2).to(tl.int64)
    b = i_bc // C
    c = i_bc % C
    tb = tl.load(t_ptr + b)
    i = tb // s
    j = tb % s
    o_h = i_h * BH + tl.arange(0, BH).to(tl.int64)
    o_w = i_w * BW + tl.arange(0, BW).to(tl.int64)
    # a t outside [0, s*s) (possible through torch.ops.spn_triton directly, or under torch.compile, where the
    # public function cannot check its values) writes nothing rather than out of bounds
    m = (o_h[:, None] < h) & (o_w[None, :] < w) & (tb >= 0) & (tb < s * s)  # [BH, BW]
    val = tl.load(v + b * vb + c * vc + o_h[:, None] * vh + o_w[None, :] * vw, mask=m)
    tl.store(x + b * xb + c * xc + (o_h[:, None] * s + i) * xh + (o_w[None, :] * s + j) * xw, val, mask=m)


def plan(x: torch.Tensor, values: torch.Tensor, s: int, t: torch.Tensor, config: str | None) -> Launch:
    """x[b, :, i::s, j::s] = values[b] with t[b] = i*s + j: the launch (it allocates nothing but t as int64)."""
    B, C, H, W = x.shape
    h, w = H // s, W // s
    cfg = CONFIGS[config or pick_config(x)]
    BW = pow2(w, hi=cfg["BLOCK"])
    BH = pow2(h, hi=max(1, cfg["BLOCK"] // BW))
    grid = (B * C, triton.cdiv(h, BH), triton.cdiv(w, BW))
    args = (x, values, t.to(torch.int64).contiguous(), C, h, w, s, *x.stride(), *values.stride())
    return Launch(_slice_scatter_kernel, grid, args, dict(BH=BH, BW=BW, num_warps=cfg["num_warps"]))


def slice_scatter_(x: torch.Tensor, values: torch.Tensor, s: int, t: torch.Tensor, _config: str | None = None) -> None:
    """The launcher (inputs already checked); ``_config`` overrides the configuration (CONFIGS)."""
    launch(plan(x, values, s, t, _config or pick_config(x)))


# custom_op rather than triton_op: see subscale_split/triton.py. The kernel mutates x, so it is never autotuned.
@torch.library.custom_op("spn_triton::slice_scatter_", mutates_args=("x",))
def slice_scatter_op(x: torch.Tensor, values: torch.Tensor, s: int, t: torch.Tensor) -> None:
    check(x, values, s, t)
    slice_scatter_(x, values, s, t)


slice_scatter_op.register_fake(fake)
