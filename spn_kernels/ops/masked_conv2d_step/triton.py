"""masked_conv2d_step (the sampler's cached step) in Triton: kernel, plan, launcher and the
torch.ops.spn_triton.masked_conv2d_step op. Imported on first use of the Triton backend. ref.py is the spec.

One launch does both halves of the op: it writes x_new into the cache and computes the output at (row, col)
for the whole batch (mask "V": the whole row). The output is a small GEMM, M = B pixels (B*W for "V"),
N = C_out, reduced over the kept taps x C_in (the same raster-order tap prefix as the convolution, see
masked_conv2d/triton.py). Programs do not wait for each other's cache write: a tap that lands on a position
being written reads x_new itself instead of the cache, so the result never depends on program order.

The kernel mutates the cache, so it is never autotuned (a benchmark re-run would write it again); its
configuration comes from a fixed table. It reads the weight in its own [C_out, C_in, kh, kw] layout and
masks the grouped centre tap in registers, so a step launches exactly one kernel and copies nothing.

Precision: fp32 tiles are always exact ("ieee", never TF32; see dot_precision), as in the CUDA C++ step.
Specialisation: B, row and col0 are do_not_specialize, so sampling compiles one variant, not one per
(row, col) class (== 1, divisible by 16); the cache offset row * c_h is int64.
"""

from __future__ import annotations

from typing import Optional  # custom_op evaluates the annotations: `X | None` fails on Python 3.9

import torch
import triton
import triton.language as tl

from ..._triton_launch import Launch, dot_precision, interpreting, launch, pow2
from ..masked_conv2d.triton import _groups, kernel_flags, tap_layout
from .op import check, fake

# A step's fp32 tiles are exact (dot_precision explains why).
STEP_TF32 = False

# GPU configurations, chosen by reasoning for Hopper; benchmarks/gpu_check.py times them.
# A step is latency-bound: B=16 pixels x C_out=128 is far too little work to fill 132 SMs, so the tiles are
# small to spread the weight reads (C_out x C_in x T, L2-resident between steps) over more programs, and the
# whole C_in is one BK step per tap so each program runs only T loop iterations; 3 stages keep the next
# taps' loads in flight. The reduction runs over (tap, channel) pairs flattened, as in masked_conv2d/triton.py.
# "row" (mask V, M = B*W) is an ordinary small convolution tile.
STEP_CONFIGS = {
    "pixel": dict(BM=16, BN=16, BK=128, num_warps=4, num_stages=3),
    "row": dict(BM=64, BN=64, BK=64, num_warps=4, num_stages=3),
    "pixel-f64": dict(BM=16, BN=16, BK=32, num_warps=4, num_stages=2),
    "row-f64": dict(BM=32, BN=32, BK=32, num_warps=4, num_stages=2),
}


def step_config(dtype: torch.dtype, mask_type: str) -> str:
    name = "row" if mask_type == "V" else "pixel"
    return f"{name}-f64" if dtype == torch.float64 else name


@triton.jit(do_not_specialize=["B", "row", "col0"])
def _conv_step_kernel(
    cache,  # [B, KC, H, W], strides c_b, c_c, c_h, c_w; written at (row, col) / row `row`
    xn,  # x_new [B, KC] or [B, KC, W] (V), strides n_b, n_c, n_w (n_w = 0 for A/B)
    w,  # weight [NC, KC, kh, KW], strides w_o, w_i, w_h, w_w
    bias,  # [NC] (HAS_BIAS)
    out,  # [B, NC, NPIX] contiguous
    B,
    KC,
    NC,
    W,
    T,
    KW,
    P,
    DY0,  # image row offset of weight row 0
    CT,  # raster index of the centre tap (GROUPED)
    row,
    col0,  # the first output column: col (A/B), 0 (V)
    NPIX,  # output pixels per image: 1 (A/B), W (V)
    G,
    gk,
    gn,
    c_b,
    c_c,
    c_h,
    c_w,
    n_b,
    n_c,
    n_w,
    w_o,
    w_i,
    w_h,
    w_w,
    IS_V: tl.constexpr,
    HAS_NEW: tl.constexpr,
    GROUPED: tl.constexpr,
    INTERLEAVED: tl.constexpr,
    STRICT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    UPCAST: tl.constexpr,
    ACC64: tl.constexpr,
    PREC: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
):
    i_n, i_m = tl.program_id(0).to(tl.int64), tl.program_id(1).to(tl.int64)
    row64 = row.to(tl.int64)
    o_m = i_m * BM + tl.arange(0, BM).to(tl.int64)  # (image, pixel) pairs
    o_n = i_n * BN + tl.arange(0, BN).to(tl.int64)  # output channels
    m_m = o_m < B.to(tl.int64) * NPIX
    m_n = o_n < NC
    b = o_m // NPIX
    ow = col0 + o_m % NPIX
    p_cache = cache + b[:, None] * c_b + ow[:, None] * c_w  # [BM, 1]
    p_new = xn + b[:, None] * n_b + (ow - col0)[:, None] * n_w  # [BM, 1]
    if HAS_NEW:
        # the cache write: one program column (i_n == 0) writes each M block's new inputs
        if i_n == 0:
            for c0 in range(0, KC, BK):
                o_k = c0 + tl.arange(0, BK).to(tl.int64)
                m_w = m_m[:, None] & (o_k < KC)[None, :]
                v = tl.load(p_new + o_k[None, :] * n_c, mask=m_w)
                tl.store(p_cache + o_k[None, :] * c_c + row64 * c_h, v, mask=m_w)
    acc = tl.zeros((BM, BN), dtype=tl.float64 if ACC64 else tl.float32)
    KT = T * KC
    # With colour groups the centre tap is the last kept tap (CT = T - 1), masked per channel pair: it runs in
    # its own loop below (as in masked_conv2d/triton.py), so this one multiplies no masked weight.
    K_MAIN = CT * KC if GROUPED else KT
    for k0 in range(0, K_MAIN, BK):
        o_k = k0 + tl.arange(0, BK).to(tl.int64)  # reduction index t * KC + c
        m_k = o_k < K_MAIN
        t = o_k // KC
        c = o_k - t * KC
        kh = t // KW
        kw = t - kh * KW
        ih = row64 + kh + DY0  # [BK], <= row: the kept taps never reach below the centre row
        iw = ow[:, None] + (kw - P)[None, :]  # [BM, BK]
        m_a = m_m[:, None] & m_k[None, :] & (ih >= 0)[None, :] & (iw >= 0) & (iw < W)
        p_a = p_cache + (c * c_c + ih * c_h + (kw - P) * c_w)[None, :]
        if HAS_NEW:
            # the positions being written this step: read them from x_new (see the module docstring)
            if IS_V:
                from_new = ih == row64
            else:
                from_new = (ih == row64) & (kw == P)
            p_a = tl.where(from_new[None, :], p_new + (c * n_c + (kw - P) * n_w)[None, :], p_a)
        a = tl.load(p_a, mask=m_a, other=0)  # [BM, BK]
        p_b = w + o_n[None, :] * w_o + (c * w_i + kh * w_h + kw * w_w)[:, None]
        wt = tl.load(p_b, mask=m_k[:, None] & m_n[None, :], other=0)  # [BK, BN]
        if UPCAST:
            a = a.to(tl.float32)
            wt = wt.to(tl.float32)
        acc = tl.dot(a, wt.to(a.dtype), acc, input_precision=PREC, out_dtype=acc.dtype)
    if GROUPED:
        # The centre pixel (row, col) itself, over blocks of KC channels: the dot gets its finite values only, a
        # second dot counts the non-finite ones a kept pair reads, and there the output is NaN (NaN * a masked
        # pair's zero weight would be NaN for outputs that may not see it; ref.py).
        n_bad = tl.zeros((BM, BN), dtype=tl.float32)
        ch = CT // KW
        for c0 in range(0, KC, BK):
            c = c0 + tl.arange(0, BK).to(tl.int64)
            m_c = c < KC
            m_a = m_m[:, None] & m_c[None, :]
            if HAS_NEW:
                p_a = p_new + (c * n_c)[None, :]
            else:
                p_a = p_cache + (c * c_c + row64 * c_h)[None, :]
            a = tl.load(p_a, mask=m_a, other=0)  # [BM, BK]
            p_b = w + o_n[None, :] * w_o + (c * w_i + ch * w_h + P * w_w)[:, None]
            wt = tl.load(p_b, mask=m_c[:, None] & m_n[None, :], other=0)  # [BK, BN]
            if INTERLEAVED:
                g_in = (c % G)[:, None]
                g_out = (o_n % G)[None, :]
            else:
                g_in = (c // gk)[:, None]
                g_out = (o_n // gn)[None, :]
            keep = ((g_in < g_out) if STRICT else (g_in <= g_out)) & m_c[:, None] & m_n[None, :]  # [BK, BN]
            wt = tl.where(keep, wt, 0.0)
            if UPCAST:
                a = a.to(tl.float32)
                wt = wt.to(tl.float32)
            bad = (a != a) | (tl.abs(a) == float("inf"))
            a = tl.where(bad, 0.0, a)
            acc = tl.dot(a, wt.to(a.dtype), acc, input_precision=PREC, out_dtype=acc.dtype)
            n_bad = tl.dot(bad.to(tl.float32), keep.to(tl.float32), n_bad, input_precision="ieee")
        acc = tl.where(n_bad > 0, float("nan"), acc)
    if HAS_BIAS:
        acc += tl.load(bias + o_n, mask=m_n, other=0).to(acc.dtype)[None, :]
    p_out = out + b[:, None] * NC * NPIX + o_n[None, :] * NPIX + (o_m % NPIX)[:, None]
    tl.store(p_out, acc.to(out.dtype.element_ty), mask=m_m[:, None] & m_n[None, :])


def plan(
    cache: torch.Tensor,
    x_new: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    row: int,
    col: int,
    mask_type: str,
    color_groups: int,
    config: str | None,
    precision: str,
    color_layout: str = "blocked",
) -> tuple[Launch, torch.Tensor]:
    """The launch and its output [B, C_out, 1] (A/B) or [B, C_out, W] (V). config None picks one
    (STEP_CONFIGS, or one tile under the interpreter); precision: tl.dot's input precision (dot_precision)."""
    B, KC, H, W = cache.shape
    NC, _, kh, kw = weight.shape
    T, DY0, CT = tap_layout(kh, kw, mask_type, color_groups)
    is_v = mask_type == "V"
    npix, col0 = (W, 0) if is_v else (1, col)
    out = torch.empty(B, NC, npix, dtype=cache.dtype, device=cache.device)
    if x_new is None:
        xn, n_strides = cache, (0, 0, 0)
    else:
        xn = x_new
        n_strides = tuple(x_new.stride()) if is_v else (*x_new.stride(), 0)
    if config is None and interpreting() and cache.device.type == "cpu":
        cfg = dict(
            BM=pow2(B * npix, 16, 256), BN=pow2(NC, 16, 128), BK=pow2(T * KC, 16, 512), num_warps=4, num_stages=1
        )
    else:
        cfg = STEP_CONFIGS[config or step_config(cache.dtype, mask_type)]
    grid = (triton.cdiv(NC, cfg["BN"]), triton.cdiv(B * npix, cfg["BM"]))
    g_args, g_meta = _groups(KC, NC, color_groups, color_layout)
    g_meta["GROUPED"] &= CT >= 0  # a weight without the centre row keeps every tap it holds
    args = (cache, xn, weight, bias if bias is not None else weight, out, B, KC, NC, W, T, kw, kw // 2, DY0, CT)
    args += (row, col0, npix, *g_args, *cache.stride(), *n_strides, *weight.stride())
    meta = dict(
        IS_V=is_v,
        HAS_NEW=x_new is not None,
        **g_meta,
        STRICT=mask_type == "A",
        HAS_BIAS=bias is not None,
        **kernel_flags(cache.dtype, precision),
        **cfg,
    )
    return Launch(_conv_step_kernel, grid, args, meta), out


def masked_conv2d_step(
    cache: torch.Tensor,
    x_new: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    row: int,
    col: int,
    mask_type: str,
    color_groups: int,
    color_layout: str = "blocked",
    _config: str | None = None,
) -> torch.Tensor:
    """The launcher (inputs already checked): writes x_new into cache (in place, any layout), returns
    [B, C_out] (A/B) or [B, C_out, W] (V). ``_config`` overrides the configuration (STEP_CONFIGS)."""
    prec = dot_precision(cache.dtype, cache.device, tf32=STEP_TF32)
    p, out = plan(cache, x_new, weight, bias, row, col, mask_type, color_groups, _config, prec, color_layout)
    launch(p)
    return out if mask_type == "V" else out.view(cache.shape[0], weight.shape[0])


# custom_op rather than torch.library.triton_op: see spn_kernels/ops/subscale_split/triton.py.
@torch.library.custom_op("spn_triton::masked_conv2d_step", mutates_args=("cache",))
def masked_conv2d_step_op(
    cache: torch.Tensor,
    x_new: Optional[torch.Tensor],  # noqa: UP045
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],  # noqa: UP045
    row: int,
    col: int,
    mask_type: str,
    color_groups: int,
    color_layout: str = "blocked",
) -> torch.Tensor:
    check(cache, x_new, weight, bias, row, col, mask_type, color_groups, color_layout)
    return masked_conv2d_step(cache, x_new, weight, bias, row, col, mask_type, color_groups, color_layout)


masked_conv2d_step_op.register_fake(fake)
