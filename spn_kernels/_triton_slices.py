"""The Triton kernel that subscale_split, subscale_merge and slice_context share, and the launch
configurations of every slice op (slice_scatter_ included). The op folders hold the launchers and the
spn_triton ops: spn_kernels/ops/{subscale_split,subscale_merge,slice_context,slice_scatter_}/triton.py; the
references in their ref.py are the spec.

One pass each, no intermediate tensors. Image-side and slice-side strides are both passed, so any layout
(channels_last, strided views) is read, and slice_scatter_ writes, in place, without a copy; offsets are int64.

split / merge / context share one kernel. A program owns BR consecutive image rows r of one (b, c) plane
and a [BWO, BS] tile of their columns q = wi*S + j, a 3-D tile [BR, BWO, BS]. On the image side the tile is
the contiguous run of columns (vector loads/stores); on the slice side it is, for each j, a contiguous run
of wi in plane (r % S)*S + j. The compiler gives the load and the store their own coalesced layouts and
transposes between them through shared memory, so both sides move full sectors. S is a constexpr (one
compile per subscale factor, a handful in practice), so r // S, r % S are shifts when S is a power of two
and the [BWO, BS] offsets are provably contiguous.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._triton_launch import Launch, interpreting, pow2

# Launch configurations. A slice op is pure data movement, so only the bytes in flight matter:
# - "gpu": 4096 elements per program (4 KiB at uint8, 16 KiB at fp32) with 4 warps is 32 elements a thread.
#   On Hopper (132 SMs, ~3.3-4.8 TB/s HBM3) ~16 resident programs per SM then keep >= 64 KiB in flight per
#   SM, enough to cover DRAM latency; larger tiles only cut the number of programs at small sizes.
# - "interp": the interpreter pays per program, so one program covers as much as it can.
CONFIGS = {
    "gpu": dict(BLOCK=4096, num_warps=4),
    "interp": dict(BLOCK=1 << 16, num_warps=4),
}


def pick_config(x: torch.Tensor) -> str:
    return "interp" if interpreting() and x.device.type == "cpu" else "gpu"


@triton.jit
def _subscale_kernel(
    img,  # [B, C, H, W], strides ib, ic, ih, iw
    slc,  # [B, S*S, CS, h, w], strides sb, sk, sc, sh, sw
    t_ptr,  # int64 [B] (MODE 2 only)
    C,
    CS,  # channels per slice on the slice side: C, or C + 1 (the presence channel) for MODE 2
    H,
    w,
    ib,
    ic,
    ih,
    iw,
    sb,
    sk,
    sc,
    sh,
    sw,
    inv_scale,  # 2^-bits (MODE 2)
    MODE: tl.constexpr,  # 0: split (img -> slc), 1: merge (slc -> img), 2: context (img -> scaled fp32 slc)
    S: tl.constexpr,
    BR: tl.constexpr,
    BWO: tl.constexpr,
    BS: tl.constexpr,
):
    # axis 0 has no 65535 limit: B * CS programs along it
    i_bc, i_r, i_w = tl.program_id(0).to(tl.int64), tl.program_id(1).to(tl.int64), tl.program_id(2).to(tl.int64)
    b = i_bc // CS
    c = i_bc % CS
    o_r = i_r * BR + tl.arange(0, BR).to(tl.int64)  # image rows
    o_wi = i_w * BWO + tl.arange(0, BWO).to(tl.int64)  # slice columns
    o_j = tl.arange(0, BS).to(tl.int64)  # column phase
    r = o_r[:, None, None]  # [BR, 1, 1]
    wi = o_wi[None, :, None]  # [1, BWO, 1]
    j = o_j[None, None, :]  # [1, 1, BS]
    m = (r < H) & (wi < w) & (j < S)  # [BR, BWO, BS]
    k = (r % S) * S + j  # slice index
    p_img = img + b * ib + c * ic + r * ih + (wi * S + j) * iw
    p_slc = slc + b * sb + k * sk + c * sc + (r // S) * sh + wi * sw
    if MODE == 0:
        tl.store(p_slc, tl.load(p_img, mask=m), mask=m)
    elif MODE == 1:
        tl.store(p_img, tl.load(p_slc, mask=m), mask=m)
    else:
        present = k < tl.load(t_ptr + b)
        is_val = c < C  # channel C of each slice is the presence channel: nothing to read
        # absent slices are not read at all; integers <= 16 bits are exact in fp32, and so is the scaling
        v = tl.load(p_img, mask=m & present & is_val, other=0).to(tl.float32)
        val = tl.where(is_val, (2.0 * v + 1.0) * inv_scale - 1.0, 1.0)
        tl.store(p_slc, tl.where(present, val, 0.0), mask=m)


def _tile(H: int, w: int, s: int, block: int) -> tuple[int, int, int]:
    """(BR, BWO, BS): whole image rows when they fit, then as many rows as the block holds."""
    BS = pow2(s)
    BWO = pow2(w, hi=max(1, block // BS))
    BR = pow2(H, hi=max(1, block // (BWO * BS)))
    return BR, BWO, BS


def plan_subscale(mode: int, img, slc, t, C: int, CS: int, s: int, inv_scale: float, config: str | None) -> Launch:
    """The launch of _subscale_kernel between an image [B, C, H, W] and its slice stack ``slc``
    (MODE 0: split, 1: merge, 2: context, with CS = C + 1 channels per slice and t int64 [B])."""
    B, _, H, W = img.shape
    w = W // s
    cfg = CONFIGS[config or pick_config(img)]
    BR, BWO, BS = _tile(H, w, s, cfg["BLOCK"])
    grid = (B * CS, triton.cdiv(H, BR), triton.cdiv(w, BWO))
    args = (img, slc, t if t is not None else img, C, CS, H, w, *img.stride(), *slc.stride(), inv_scale)
    return Launch(_subscale_kernel, grid, args, dict(MODE=mode, S=s, BR=BR, BWO=BWO, BS=BS, num_warps=cfg["num_warps"]))
