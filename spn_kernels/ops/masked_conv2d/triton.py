"""masked_conv2d (forward) and masked_conv2d_backward in Triton: kernels, plans, launchers and the
torch.ops.spn_triton ops (with their autograd). Imported on first use of the Triton backend. ref.py is the spec.

The taps a mask keeps are a prefix of the weight's kh x kw taps in raster order (t = i * kw + j, weight row i
being row r0 + i of the centred square kernel, ref.py): every row above the centre row, then in the centre row
the taps left of the centre ("A"), also the centre ("B"), or the whole row ("V"). With colour groups > 1 the
centre tap is kept for "A" too and masked per channel pair. So each kernel loops over t in [0, T) only, the
masked taps cost nothing (a (1, k) "A" weight runs k // 2 taps), and the mask needs no table.

Forward and grad_x are one implicit-GEMM kernel: M = output pixels of one image, N = output channels, and the
reduction runs over (tap, input-channel block) flattened into one loop, so the software pipeliner
(num_stages) overlaps the loads of later taps with the tl.dot of the current one. grad_x is the transposed
convolution: the same loop with the tap offsets negated and the kernel's channel roles swapped (the weights
are packed [T, K, N] per direction by the launcher, one small copy per call). grad_weight / grad_bias is a
second kernel: for each kept tap a [C_out, C_in] GEMM reducing over all B*H*W pixels, split over programs
(fp32 partials, summed by the launcher: deterministic, unlike atomics), grad_bias fused into the tap-0 programs.

Precision: fp32 accumulation for fp16/bf16/fp32 inputs (fp64 for fp64, which the interpreter tests'
gradcheck needs: tl.dot on fp64 tiles compiles to fp64 MMA on sm_80/sm_90, so the GPU path keeps it too).
fp32 tiles use TF32 on CUDA exactly when F.conv2d (cuDNN, the reference) does: CONV_TF32 below is where that is
chosen; the launchers pass dot_precision's answer to the plans as ``precision``.
Index math is int64 throughout (program ids, offsets, and H * W: the sizes that vary between calls, B, H, W and
the pixel ranges, are do_not_specialize, so they arrive as runtime integers and one compiled variant serves
every batch and image size).
Under the interpreter 16-bit tiles are widened to fp32 before tl.dot (its bf16 arithmetic is wrong); the
products of 16-bit values are exact in fp32, so this is what the tensor cores compute.
"""

from __future__ import annotations

from typing import Optional  # custom_op evaluates the annotations: `X | None` fails on Python 3.9

import torch
import triton
import triton.language as tl

from ..._checks import kernel_rows
from ..._triton_launch import Launch, dot_precision, interpreting, launch, pow2
from .op import check, check_backward, fake, fake_backward, register_autograd


def conv_tf32() -> bool:
    """Whether fp32 tiles may use TF32: as F.conv2d on CUDA, torch.backends.cudnn.allow_tf32 (default True)."""
    return torch.backends.cudnn.allow_tf32


# GPU launch configurations, chosen by reasoning for Hopper (H100/H200); benchmarks/gpu_check.py times them:
# - 128 x 128 output tiles with 8 warps = two warpgroups of wgmma m64n128; with C = 128 the whole channel
#   dimension is one N tile, so x is read once per tap.
# - BK: 64 for 16-bit (128-byte rows: the widest smem swizzle), 32 for TF32 (also 128 bytes).
# - num_stages: each stage holds an A and a B tile, 32 KiB at these sizes; 4 stages (16-bit) and 3 (fp32)
#   fit Hopper's 227 KiB (and Ampere's 163 KiB: the same configs compile for sm_80) and cover the
#   per-tap gather latency.
# - "-n64" variants for C_out <= 64 halve the wasted N work; fp64 (tests, gradcheck) uses small mma.sync tiles.
CONV_CONFIGS = {
    "h16-n128": dict(BM=128, BN=128, BK=64, num_warps=8, num_stages=4),
    "h16-n64": dict(BM=128, BN=64, BK=64, num_warps=4, num_stages=4),
    "f32-n128": dict(BM=128, BN=128, BK=32, num_warps=8, num_stages=3),
    "f32-n64": dict(BM=128, BN=64, BK=32, num_warps=4, num_stages=3),
    "f64": dict(BM=64, BN=64, BK=16, num_warps=4, num_stages=2),
}
# grad_weight: [BN C_out x BC C_in] per tap, reducing over BM pixels a step. BM is the GEMM's K here.
DW_CONFIGS = {
    "h16": dict(BN=128, BC=128, BM=64, num_warps=8, num_stages=3),
    "f32": dict(BN=128, BC=128, BM=32, num_warps=8, num_stages=3),
    "f64": dict(BN=64, BC=64, BM=16, num_warps=4, num_stages=2),
}
# enough programs to fill 132 SMs about twice; grad_weight splits its pixel reduction until it has them
TARGET_PROGRAMS = 264


def _kind(dtype: torch.dtype) -> str:
    return {torch.float64: "f64", torch.float32: "f32"}.get(dtype, "h16")


def conv_config(dtype: torch.dtype, n: int) -> str:
    kind = _kind(dtype)
    if kind == "f64":
        return "f64"
    return f"{kind}-n64" if n <= 64 else f"{kind}-n128"


def _interp_conv_config(m: int, n: int, k: int) -> dict:
    # the interpreter pays per program and per loop step (each tl op costs ~0.1 ms of Python): at test sizes
    # one program and one loop step do the whole convolution
    return dict(BM=pow2(m, 16, 1024), BN=pow2(n, 16, 128), BK=pow2(k, 16, 512), num_warps=4, num_stages=1)


def tap_layout(kh: int, kw: int, mask_type: str, color_groups: int) -> tuple[int, int, int]:
    """(T, DY0, CT) of a (kh, kw) weight: how many leading raster-order taps the mask keeps (module docstring),
    the image row offset of weight row 0 (r0 - kw // 2), and the raster index of the centre tap (-1 if the
    weight does not hold the centre row)."""
    r0, n = kernel_rows(kh, kw)
    p = kw // 2
    above = max(0, min(n, p - r0))  # weight rows strictly above the centre row
    ct = (p - r0) * kw + p if r0 <= p < r0 + n else -1
    if ct < 0:
        t = above * kw
    elif mask_type == "V":
        t = (above + 1) * kw
    else:
        t = above * kw + p + int(mask_type == "B" or color_groups > 1)
    return t, r0 - p, ct


def n_taps(kh: int, kw: int, mask_type: str, color_groups: int) -> int:
    return tap_layout(kh, kw, mask_type, color_groups)[0]


def kernel_flags(dtype: torch.dtype, precision: str) -> dict:
    """The constexprs every convolution kernel takes; ``precision`` is tl.dot's input precision (dot_precision)."""
    return dict(
        UPCAST=interpreting() and dtype in (torch.float16, torch.bfloat16),
        ACC64=dtype == torch.float64,
        PREC=precision,
    )


@triton.jit(do_not_specialize=["B", "H", "W"])
def _conv_kernel(
    src,  # [B, KC, H, W], strides s_b, s_c, s_h, s_w: x (forward) or grad_out (grad_x)
    wp,  # [T * KC, NC] contiguous: the kept taps, packed for this direction (row = t * KC + c)
    bias,  # [NC] (HAS_BIAS)
    out,  # [B, NC, H, W] contiguous
    B,
    H,
    W,
    KC,
    NC,
    T,
    KW,  # weight width; tap t is weight row t // KW, column t % KW
    P,  # KW // 2
    DY0,  # image row offset of weight row 0
    CT,  # raster index of the centre tap (GROUPED)
    G,  # colour groups (GROUPED)
    gk,  # channels per colour group along KC and NC (GROUPED, blocked)
    gn,
    s_b,
    s_c,
    s_h,
    s_w,
    SIGN: tl.constexpr,  # +1 forward, -1 transposed (grad_x)
    GROUPED: tl.constexpr,
    INTERLEAVED: tl.constexpr,  # colour group of channel c: c % G (else c // gk)
    STRICT: tl.constexpr,  # mask "A": the centre tap needs input group < output group
    HAS_BIAS: tl.constexpr,
    UPCAST: tl.constexpr,
    ACC64: tl.constexpr,
    PREC: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
):
    # grid: (B*H*W / BM, NC / BN); a pixel tile may span images
    i_m, i_n = tl.program_id(0).to(tl.int64), tl.program_id(1).to(tl.int64)
    HW = H.to(tl.int64) * W
    o_m = i_m * BM + tl.arange(0, BM).to(tl.int64)  # output pixels, over the batch
    o_n = i_n * BN + tl.arange(0, BN).to(tl.int64)  # output channels
    b = o_m // HW
    rem = o_m % HW
    oh = rem // W
    ow = rem % W
    m_m = o_m < B * HW
    m_n = o_n < NC
    p_row = src + b * s_b  # [BM]
    acc = tl.zeros((BM, BN), dtype=tl.float64 if ACC64 else tl.float32)
    KT = T * KC
    # With colour groups the centre tap is the last kept tap (t = CT = T - 1) and is masked per channel pair:
    # it runs in its own loop below, so this one multiplies no masked weight.
    K_MAIN = CT * KC if GROUPED else KT
    for k0 in range(0, K_MAIN, BK):
        o_k = k0 + tl.arange(0, BK).to(tl.int64)  # reduction index t * KC + c
        m_k = o_k < K_MAIN
        t = o_k // KC
        c = o_k - t * KC
        kh = t // KW
        kw = t - kh * KW
        ih = oh[:, None] + SIGN * (kh + DY0)[None, :]  # [BM, BK]
        iw = ow[:, None] + SIGN * (kw - P)[None, :]
        m_a = m_m[:, None] & m_k[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        # [BM, BK]: zero padding through the mask
        a = tl.load(p_row[:, None] + c[None, :] * s_c + ih * s_h + iw * s_w, mask=m_a, other=0)
        wt = tl.load(wp + o_k[:, None] * NC + o_n[None, :], mask=m_k[:, None] & m_n[None, :], other=0)  # [BK, BN]
        if UPCAST:
            a = a.to(tl.float32)
            wt = wt.to(tl.float32)
        acc = tl.dot(a, wt.to(a.dtype), acc, input_precision=PREC, out_dtype=acc.dtype)
    if GROUPED:
        # The centre tap over blocks of KC channels. A masked pair's weight is zeroed, and NaN * 0 is NaN, so a
        # non-finite input there would reach outputs that may not see it (ref.py): the dot gets the finite
        # inputs only, and a second dot counts, per (pixel, output channel), the non-finite inputs that a kept
        # pair reads; where there is one the output is NaN.
        n_bad = tl.zeros((BM, BN), dtype=tl.float32)
        sh = oh + SIGN * (CT // KW + DY0)  # [BM]: the centre tap reads the output pixel itself
        sw = ow + SIGN * (CT % KW - P)
        for c0 in range(0, KC, BK):
            c = c0 + tl.arange(0, BK).to(tl.int64)
            m_c = c < KC
            m_a = m_m[:, None] & m_c[None, :] & ((sh >= 0) & (sh < H) & (sw >= 0) & (sw < W))[:, None]
            a = tl.load(p_row[:, None] + c[None, :] * s_c + (sh * s_h + sw * s_w)[:, None], mask=m_a, other=0)
            o_k = CT * KC + c
            wt = tl.load(wp + o_k[:, None] * NC + o_n[None, :], mask=m_c[:, None] & m_n[None, :], other=0)
            if INTERLEAVED:
                g_c = (c % G)[:, None]
                g_n = (o_n % G)[None, :]
            else:
                g_c = (c // gk)[:, None]
                g_n = (o_n // gn)[None, :]
            if SIGN > 0:
                g_in, g_out = g_c, g_n
            else:
                g_in, g_out = g_n, g_c
            keep = ((g_in < g_out) if STRICT else (g_in <= g_out)) & m_c[:, None] & m_n[None, :]  # [BK, BN]
            wt = tl.where(keep, wt, 0.0)
            if UPCAST:
                a = a.to(tl.float32)
                wt = wt.to(tl.float32)
            bad = (a != a) | (tl.abs(a) == float("inf"))  # [BM, BK]
            a = tl.where(bad, 0.0, a)
            acc = tl.dot(a, wt.to(a.dtype), acc, input_precision=PREC, out_dtype=acc.dtype)
            # 0/1 products, exact in any precision
            n_bad = tl.dot(bad.to(tl.float32), keep.to(tl.float32), n_bad, input_precision="ieee")
        acc = tl.where(n_bad > 0, float("nan"), acc)
    if HAS_BIAS:
        acc += tl.load(bias + o_n, mask=m_n, other=0).to(acc.dtype)[None, :]
    p_out = out + b[:, None] * NC * HW + o_n[None, :] * HW + rem[:, None]
    tl.store(p_out, acc.to(out.dtype.element_ty), mask=m_m[:, None] & m_n[None, :])


@triton.jit(do_not_specialize=["H", "W", "M", "chunk"])
def _conv_dw_kernel(
    gy,  # [B, NO, H, W] contiguous
    x,  # [B, NI, H, W], strides x_b, x_c, x_h, x_w
    gw,  # partials [SPLIT, NO, NI, KH*KW] (acc dtype, zero-initialised: the masked taps stay 0)
    gb,  # partials [SPLIT, NO] (acc dtype)
    NO,
    NI,
    H,
    W,
    T,
    KHW,  # KH * KW, the taps of one (co, ci) kernel
    KW,
    P,
    DY0,
    CT,
    G,
    gi,  # channels per colour group along NI and NO (GROUPED, blocked)
    go,
    M,  # B * H * W
    chunk,  # pixels per split, a multiple of BM
    x_b,
    x_c,
    x_h,
    x_w,
    NEED_W: tl.constexpr,
    NEED_B: tl.constexpr,
    GROUPED: tl.constexpr,
    INTERLEAVED: tl.constexpr,
    STRICT: tl.constexpr,
    UPCAST: tl.constexpr,
    ACC64: tl.constexpr,
    PREC: tl.constexpr,
    BN: tl.constexpr,
    BC: tl.constexpr,
    BM: tl.constexpr,
):
    # grid: (NO / BN, T*NI / BC, SPLIT); the columns j = t * NI + c are (tap, input channel) pairs
    i_n, i_j, i_s = tl.program_id(0).to(tl.int64), tl.program_id(1).to(tl.int64), tl.program_id(2).to(tl.int64)
    HW = H.to(tl.int64) * W
    o_n = i_n * BN + tl.arange(0, BN).to(tl.int64)  # output channels
    o_j = i_j * BC + tl.arange(0, BC).to(tl.int64)
    m_n = o_n < NO
    m_j = o_j < T * NI
    t = o_j // NI
    c = o_j - t * NI
    kh = t // KW
    kw = t - kh * KW
    acc_dt = tl.float64 if ACC64 else tl.float32
    acc = tl.zeros((BN, BC), dtype=acc_dt)
    acc_b = tl.zeros((BN,), dtype=acc_dt)
    m0 = i_s * chunk
    m1 = tl.minimum(m0 + chunk, M)
    for start in range(m0, m1, BM):
        o_m = start + tl.arange(0, BM).to(tl.int64)  # pixels over the whole batch
        m_m = o_m < m1
        b = o_m // HW
        rem = o_m % HW
        p_g = gy + b[None, :] * NO * HW + o_n[:, None] * HW + rem[None, :]
        g = tl.load(p_g, mask=m_n[:, None] & m_m[None, :], other=0)  # [BN, BM]
        if UPCAST:
            g = g.to(tl.float32)
        if NEED_B:
            acc_b += tl.sum(g.to(acc_dt), axis=1)
        if NEED_W:
            ih = (rem // W)[:, None] + (kh + DY0)[None, :]  # [BM, BC]
            iw = (rem % W)[:, None] + (kw - P)[None, :]
            m_a = m_m[:, None] & m_j[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            a = tl.load(x + b[:, None] * x_b + c[None, :] * x_c + ih * x_h + iw * x_w, mask=m_a, other=0)
            if UPCAST:
                a = a.to(tl.float32)
            acc = tl.dot(g, a.to(g.dtype), acc, input_precision=PREC, out_dtype=acc.dtype)
    if NEED_W:
        if GROUPED:
            if INTERLEAVED:
                g_in = (c % G)[None, :]
                g_out = (o_n % G)[:, None]
            else:
                g_in = (c // gi)[None, :]
                g_out = (o_n // go)[:, None]
            keep = (g_in < g_out) if STRICT else (g_in <= g_out)
            acc = tl.where(keep | (t != CT)[None, :], acc, 0.0)
        p_w = gw + ((i_s * NO + o_n[:, None]) * NI + c[None, :]) * KHW + t[None, :]
        tl.store(p_w, acc, mask=m_n[:, None] & m_j[None, :])
    if NEED_B:
        tl.store(gb + i_s * NO + o_n, acc_b, mask=m_n & (i_j == 0))


def _groups(kc: int, nc: int, color_groups: int, color_layout: str) -> tuple:
    """The kernels' colour-group arguments (G, channels per group along KC and NC) and their constexprs."""
    inter = color_layout == "interleaved"
    sizes = (1, 1) if inter else (max(kc // color_groups, 1), max(nc // color_groups, 1))
    return (color_groups, *sizes), dict(GROUPED=color_groups > 1, INTERLEAVED=inter)


def plan_conv(
    src,
    weight,
    bias,
    mask_type: str,
    color_groups: int,
    transposed: bool,
    config: str | None,
    precision: str,
    color_layout: str = "blocked",
) -> tuple[Launch, torch.Tensor]:
    """The forward (transposed=False: src = x) or grad_x (transposed=True: src = grad_out) convolution: the
    launch and its output [B, NC, H, W]. config None picks one (CONV_CONFIGS, or one tile under the interpreter)."""
    B, KC, H, W = src.shape
    c_out, c_in, kh, kw = weight.shape
    NC = c_in if transposed else c_out
    T, DY0, CT = tap_layout(kh, kw, mask_type, color_groups)
    # [kh, kw, KC, NC] -> the T kept taps, [T * KC, NC], N contiguous for the B tile of tl.dot
    wk = weight.permute(2, 3, 0, 1) if transposed else weight.permute(2, 3, 1, 0)
    wp = wk.reshape(kh * kw * KC, NC)[: T * KC].contiguous()
    out = torch.empty(B, NC, H, W, dtype=src.dtype, device=src.device)
    if config is None and interpreting() and src.device.type == "cpu":
        cfg = _interp_conv_config(B * H * W, NC, T * KC)
    else:
        cfg = CONV_CONFIGS[config or conv_config(src.dtype, NC)]
    grid = (triton.cdiv(B * H * W, cfg["BM"]), triton.cdiv(NC, cfg["BN"]))
    g_args, g_meta = _groups(KC, NC, color_groups, color_layout)
    g_meta["GROUPED"] &= CT >= 0  # a weight without the centre row keeps every tap it holds
    args = (src, wp, bias if bias is not None else wp, out, B, H, W, KC, NC, T, kw, kw // 2, DY0, CT)
    args += (*g_args, *src.stride())
    meta = dict(
        SIGN=-1 if transposed else 1,
        **g_meta,
        STRICT=mask_type == "A",
        HAS_BIAS=bias is not None,
        **kernel_flags(src.dtype, precision),
        **cfg,
    )
    return Launch(_conv_kernel, grid, args, meta), out


def plan_conv_dw(
    gy,
    x,
    weight,
    mask_type: str,
    color_groups: int,
    need_w: bool,
    need_b: bool,
    config: str | None,
    precision: str,
    color_layout: str = "blocked",
) -> tuple[Launch, torch.Tensor, torch.Tensor]:
    """grad_weight / grad_bias: the launch and its fp32 (fp64) partials [SPLIT, NO, NI, kh*kw] and [SPLIT, NO],
    which the launcher sums. config None picks one (DW_CONFIGS, or one tile under the interpreter).
    A weight whose mask keeps no tap (k = 1, "A") still launches for grad_bias; its grad_weight stays zero."""
    B, NI, H, W = x.shape
    NO, _, kh, kw = weight.shape
    T, DY0, CT = tap_layout(kh, kw, mask_type, color_groups)
    M = B * H * W
    if config is None and interpreting() and x.device.type == "cpu":
        cfg = dict(BN=pow2(NO, 16, 128), BC=pow2(T * NI, 16, 512), BM=pow2(M, 16, 1024), num_warps=4, num_stages=1)
    else:
        cfg = DW_CONFIGS[config or _kind(x.dtype)]
    run_w = need_w and T * NI > 0
    n_j = triton.cdiv(T * NI, cfg["BC"]) if run_w else 1
    base = n_j * triton.cdiv(NO, cfg["BN"])
    steps = max(triton.cdiv(M, cfg["BM"]), 1)
    split = max(1, min(triton.cdiv(TARGET_PROGRAMS, max(base, 1)), steps))
    chunk = triton.cdiv(steps, split) * cfg["BM"]
    split = max(triton.cdiv(M, chunk), 1)
    acc_dt = torch.float64 if x.dtype == torch.float64 else torch.float32
    gw = torch.zeros(split, NO, NI, kh * kw, dtype=acc_dt, device=x.device) if need_w else gy.new_empty(0)
    gb = torch.zeros(split, NO, dtype=acc_dt, device=x.device) if need_b else gy.new_empty(0)
    # nothing to launch when only a grad_weight of no kept taps is asked for (the zeros above are the answer)
    grid = (triton.cdiv(NO, cfg["BN"]), n_j, split if (run_w or need_b) else 0)
    g_args, g_meta = _groups(NI, NO, color_groups, color_layout)
    args = (gy, x, gw if need_w else gb, gb if need_b else gw, NO, NI, H, W, T, kh * kw, kw, kw // 2, DY0, CT)
    args += (*g_args, M, chunk, *x.stride())
    meta = dict(
        NEED_W=run_w,
        NEED_B=need_b,
        **g_meta,
        STRICT=mask_type == "A",
        **kernel_flags(x.dtype, precision),
        **cfg,
    )
    return Launch(_conv_dw_kernel, grid, args, meta), gw, gb


def masked_conv2d(
    x, weight, bias, mask_type: str, color_groups: int, color_layout: str = "blocked", _config: str | None = None
) -> torch.Tensor:
    """The forward launcher (inputs already checked): [B, C_in, H, W] (any layout), weight [C_out, C_in, kh, kw]
    -> contiguous [B, C_out, H, W]. ``_config`` overrides the configuration (CONV_CONFIGS)."""
    prec = dot_precision(x.dtype, x.device, tf32=conv_tf32())
    p, out = plan_conv(x, weight, bias, mask_type, color_groups, False, _config, prec, color_layout)
    launch(p)
    return out


def masked_conv2d_backward(
    grad_out,
    x,
    weight,
    mask_type: str,
    color_groups: int,
    output_mask: list[bool],
    color_layout: str = "blocked",
    _config: str | None = None,
    _dw_config: str | None = None,
):
    """The backward launcher (inputs already checked): (grad_x, grad_weight, grad_bias) of masked_conv2d;
    entries not asked for in output_mask are empty."""
    gy = grad_out.contiguous()
    prec = dot_precision(x.dtype, x.device, tf32=conv_tf32())
    # each unused entry its own empty tensor: outputs may not alias each other
    gx, gw, gb = gy.new_empty(0), gy.new_empty(0), gy.new_empty(0)
    if output_mask[0]:
        p, gx = plan_conv(gy, weight, None, mask_type, color_groups, True, _config, prec, color_layout)
        launch(p)
    if output_mask[1] or output_mask[2]:
        need_w, need_b = output_mask[1], output_mask[2]
        p, gw_part, gb_part = plan_conv_dw(
            gy, x, weight, mask_type, color_groups, need_w, need_b, _dw_config, prec, color_layout
        )
        launch(p)
        gw = gw_part.sum(0).view(weight.shape).to(x.dtype) if need_w else x.new_empty(0)
        gb = gb_part.sum(0).to(x.dtype) if need_b else x.new_empty(0)
    return gx, gw, gb


# custom_op rather than torch.library.triton_op: see spn_kernels/ops/subscale_split/triton.py.
@torch.library.custom_op("spn_triton::masked_conv2d", mutates_args=())
def masked_conv2d_op(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],  # noqa: UP045
    mask_type: str,
    color_groups: int,
    color_layout: str = "blocked",
) -> torch.Tensor:
    check(x, weight, bias, mask_type, color_groups, color_layout)
    return masked_conv2d(x, weight, bias, mask_type, color_groups, color_layout)


@torch.library.custom_op("spn_triton::masked_conv2d_backward", mutates_args=())
def masked_conv2d_backward_op(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    mask_type: str,
    color_groups: int,
    output_mask: list[bool],
    color_layout: str = "blocked",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    check_backward(grad_out, x, weight, mask_type, color_groups, output_mask, color_layout)
    return masked_conv2d_backward(grad_out, x, weight, mask_type, color_groups, output_mask, color_layout)


masked_conv2d_op.register_fake(fake)
masked_conv2d_backward_op.register_fake(fake_backward)
register_autograd("spn_triton::masked_conv2d", torch.ops.spn_triton.masked_conv2d_backward)
