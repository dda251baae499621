"""gated_step (the sampler's decoder step) in Triton: kernel, plan, launcher. Imported on first use on a GPU (or
under TRITON_INTERPRET=1); ref.py is the spec.

One launch per gated block, in order on the stream (so block i + 1 reads block i's output with no barrier): a
program owns BB images of the batch and the whole width d, computes hp = row_term + window @ w_h as the two
halves [BB, d] that the gate pairs, the gate in registers, and the output 1x1 in BN-column chunks, which it
writes straight into the next block's cache at the position (the last block: into the output). Everything is
L2-resident between positions; a step is latency-bound, so the tiles are small and the launch count is what
matters: L launches per position replace the reference's ~7 ops per block, and a CUDA graph replays them.

tanh: Triton's core language has none (libdevice's does not run in the interpreter), so tanh(x) = sign(x) (1 - t)
/ (1 + t) with t = exp(-2|x|): its error is below one ulp of 1 (absolute), the reference's order.
Precision: fp32 tiles are exact ("ieee", never TF32), like the masked_conv2d step (see dot_precision).
Specialisation: B, row and col are do_not_specialize, so sampling compiles one variant, not one per position.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..._triton_launch import Launch, interpreting, launch, pow2

# Per dtype: the batch tile BB, the reduction step BK of the window and the output chunk BN (GPU; reasoned for
# Hopper, timed by benchmarks/gpu_check). tl.dot needs every tile dimension >= 16.
CONFIGS = {
    "f32": dict(BB=16, BK=32, BN=32, num_warps=4, num_stages=2),
    "f64": dict(BB=16, BK=16, BN=16, num_warps=4, num_stages=1),
}


@triton.jit
def _tanh(x):
    t = tl.exp(-2.0 * tl.abs(x))
    y = (1.0 - t) / (1.0 + t)
    return tl.where(x < 0, -y, y)


@triton.jit(do_not_specialize=["B", "row", "col"])
def _gated_block_kernel(
    x,  # h_in[i] [B, Hp, Wp, c] contiguous: the block's padded input map
    rt,  # row_term[i] [B, n, 2d] contiguous
    wh,  # w_h[i] [WL, 2d] contiguous, WL = (p+1) * k * c
    wo,  # w_out[i] [d, d] contiguous
    bo,  # b_out[i] [d]
    dst,  # where h_i goes: the next block's map at the position, or the output [B, d]
    B,
    Hp,
    Wp,
    n,
    c,
    d,
    WL,
    SEG,  # k * c: one window row, contiguous in the map
    P,  # k // 2
    row,
    col,
    dst_b,  # dst's batch stride; dst_off: the position's offset in dst
    dst_off,
    HAS_RES: tl.constexpr,  # block i >= 1: + h_{i-1}, which sits in x at the position
    D: tl.constexpr,  # pow2 >= d
    BB: tl.constexpr,
    BK: tl.constexpr,
    BN: tl.constexpr,
):
    i_b = tl.program_id(0).to(tl.int64)
    o_b = i_b * BB + tl.arange(0, BB).to(tl.int64)  # images
    m_b = o_b < B
    o_d = tl.arange(0, D).to(tl.int64)
    m_d = o_d < d
    row64, col64 = row.to(tl.int64), col.to(tl.int64)
    p_rt = rt + (o_b[:, None] * n + col64) * 2 * d + o_d[None, :]  # [BB, D]
    m_bd = m_b[:, None] & m_d[None, :]
    acc_a = tl.load(p_rt, mask=m_bd, other=0)  # [BB, D]: the tanh half
    acc_b = tl.load(p_rt + d, mask=m_bd, other=0)  # [BB, D]: the sigmoid half
    for k0 in range(0, WL, BK):
        o_k = k0 + tl.arange(0, BK).to(tl.int64)  # window index: (window row q, then k * c contiguous)
        m_k = o_k < WL
        q = o_k // SEG
        p_x = x + ((o_b[:, None] * Hp + row64 + q[None, :]) * Wp + col64) * c + (o_k - q * SEG)[None, :]
        a = tl.load(p_x, mask=m_b[:, None] & m_k[None, :], other=0)  # [BB, BK]
        p_w = wh + o_k[:, None] * 2 * d + o_d[None, :]  # [BK, D]
        m_w = m_k[:, None] & m_d[None, :]
        acc_a = tl.dot(a, tl.load(p_w, mask=m_w, other=0), acc_a, input_precision="ieee", out_dtype=acc_a.dtype)
        acc_b = tl.dot(a, tl.load(p_w + d, mask=m_w, other=0), acc_b, input_precision="ieee", out_dtype=acc_b.dtype)
    g = (_tanh(acc_a) * tl.sigmoid(acc_b)).to(acc_a.dtype)  # [BB, D], zero in the padding columns
    p_centre = x + ((o_b * Hp + P + row64) * Wp + P + col64) * c  # [BB]: h_{i-1} (c == d)
    for n0 in range(0, D, BN):
        o_n = n0 + tl.arange(0, BN).to(tl.int64)
        m_n = o_n < d
        w = tl.load(wo + o_d[:, None] * d + o_n[None, :], mask=m_d[:, None] & m_n[None, :], other=0)  # [D, BN]
        out = (
            tl.dot(g, w, input_precision="ieee", out_dtype=g.dtype) + tl.load(bo + o_n, mask=m_n, other=0)[None, :]
        )  # [BB, BN]
        m_out = m_b[:, None] & m_n[None, :]
        if HAS_RES:
            out += tl.load(p_centre[:, None] + o_n[None, :], mask=m_out, other=0)
        tl.store(dst + dst_off + o_b[:, None] * dst_b + o_n[None, :], out, mask=m_out)


def config_name(dtype: torch.dtype) -> str:
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"gated_step's Triton kernel takes float32 or float64, got {dtype}")
    return "f64" if dtype == torch.float64 else "f32"


def plan(h_in, row_term, w_h, w_out, b_out, row: int, col: int, config: str | None = None):
    """The L launches (one per block, in order) and the output [B, d]. config None picks CONFIGS by dtype."""
    x0 = h_in[0]
    B, Hp, Wp, _ = x0.shape
    n = row_term[0].shape[1]
    p = (Wp - n) // 2
    k = 2 * p + 1
    d = w_out[0].shape[-1]
    cfg = dict(CONFIGS[config or config_name(x0.dtype)])
    if interpreting() and x0.device.type == "cpu":
        cfg["num_stages"] = 1
    out = torch.empty(B, d, dtype=x0.dtype, device=x0.device)
    D = pow2(d, 16)
    launches = []
    for i in range(len(h_in)):
        c = h_in[i].shape[-1]
        last = i == len(h_in) - 1
        dst = out if last else h_in[i + 1]
        dst_b, dst_off = (d, 0) if last else (Hp * Wp * d, ((p + row) * Wp + p + col) * d)
        args = (h_in[i], row_term[i], w_h[i], w_out[i], b_out[i], dst, B, Hp, Wp, n, c, d, (p + 1) * k * c, k * c, p)
        args += (row, col, dst_b, dst_off)
        meta = dict(HAS_RES=i > 0, D=D, **cfg)
        launches.append(Launch(_gated_block_kernel, (triton.cdiv(B, cfg["BB"]),), args, meta))
    return launches, out


def gated_step(h_in, row_term, w_h, w_out, b_out, row: int, col: int) -> torch.Tensor:
    """The launcher (inputs already checked): writes each block's output into the next block's cache at the
    position and returns the last block's [B, d]."""
    launches, out = plan(h_in, row_term, w_h, w_out, b_out, row, col)
    for p in launches:
        launch(p)
    return out
