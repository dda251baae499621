"""categorical_draw in Triton: one program per row of logits (the sampler's draw on a GPU, where a CUDA graph
replays it with the rest of a pixel). Imported on first use on a GPU (or under TRITON_INTERPRET=1); ref.py is the
spec.

A row (K = 2^bits values) is one block: its maximum, the exponentials in float64, their running sum (tl.cumsum),
and the drawn value as the number of cumulative sums below u * total (what the reference's searchsorted returns),
clamped to K - 1. The log-probability at temperature 1 is (z_v - max) - log sum exp(z - max). One launch replaces
the reference's ~10 ops.
Specialisation: B and the temperature are do_not_specialize: one compiled variant per K block size. Rows of
more than MAX_K values are left to the reference (op.py).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..._triton_launch import Launch, launch, pow2

# A row is one block of registers: up to 12 bits. Wider rows (13-16 bit values) take the reference's ops.
MAX_K = 4096


@triton.jit(do_not_specialize=["B", "temperature"])
def _draw_kernel(
    z,  # logits [B, K], strides s_b, s_k
    u,  # float64 [B], stride s_u
    values,  # int64 [B] contiguous
    log_p,  # float64 [B] contiguous
    B,
    K,
    s_b,
    s_k,
    s_u,
    temperature,
    BK: tl.constexpr,  # pow2 >= K
):
    i_b = tl.program_id(0).to(tl.int64)
    o_k = tl.arange(0, BK).to(tl.int64)
    m_k = o_k < K
    x = tl.load(z + i_b * s_b + o_k * s_k, mask=m_k, other=float("-inf")).to(tl.float64)  # [BK]
    mx = tl.max(x, 0)
    n_nan = tl.sum((x != x).to(tl.int32), 0)
    ok = (n_nan == 0) & (mx < float("inf")) & (mx > float("-inf"))  # else no distribution: NaN, value 0
    y = x - mx
    e = tl.where(m_k, tl.exp(y / temperature), 0.0)  # [BK]
    cdf = tl.cumsum(e, 0)
    total = tl.sum(e, 0)
    target = tl.load(u + i_b * s_u) * total
    v = tl.minimum(tl.sum((cdf < target).to(tl.int64), 0), K - 1)
    log_total1 = tl.log(tl.sum(tl.where(m_k, tl.exp(y), 0.0), 0))
    lp = tl.sum(tl.where(o_k == v, y, 0.0), 0) - log_total1
    tl.store(values + i_b, tl.where(ok, v, 0))
    tl.store(log_p + i_b, tl.where(ok, lp, float("nan")))


def plan(logits, u, temperature, values, log_p) -> Launch:
    B, K = logits.shape
    args = (logits, u, values, log_p, B, K, *logits.stride(), u.stride(0), float(temperature))
    return Launch(_draw_kernel, (B,), args, dict(BK=pow2(K, 16), num_warps=4))


def categorical_draw_(logits, u, temperature, values, log_p) -> None:
    """The launcher (inputs already checked): writes the draws into values and log_p."""
    launch(plan(logits, u, temperature, values, log_p))


def categorical_draw(logits, u, temperature):
    B = logits.shape[0]
    values = torch.empty(B, dtype=torch.int64, device=logits.device)
    log_p = torch.empty(B, dtype=torch.float64, device=logits.device)
    categorical_draw_(logits, u, temperature, values, log_p)
    return values, log_p
