"""Correctness of every op on every backend of the device, against the references: one Case per op, shape,
dtype, fp32 mode and backend.

backend None is what the model runs (the dispatcher's pick: CUDA C++ where built, else Triton; on CPU the C++
kernels); "triton" and "cuda" are forced. fp32 runs exact (TF32 off) against the exact bound, and on CUDA also
with TF32 on against the explicit TF32 bound (harness.tf32_bound).
"""

from __future__ import annotations

from typing import Callable

import torch

import spn_kernels as sk

from .harness import Case, compare, fp32_mode

F32, BF16 = torch.float32, torch.bfloat16


def cuda_cpp_ops() -> set[str]:
    """Ops whose CUDA kernel is CUDA C++ (torch.ops.spn.<op>); on CUDA tensors the others run Triton."""
    if not torch.cuda.is_available():
        return set()
    from spn_kernels._backend import CUDA_CPP_OPS

    return set(CUDA_CPP_OPS)


def backends_for(op: str, device: torch.device) -> list[str | None]:
    """None (the model's path) and every backend forced: triton (the interpreter on CPU), cuda where built."""
    if device.type != "cuda":
        return [None, "triton"]
    return [None, "triton"] + (["cuda"] if op in cuda_cpp_ops() else [])


def _abs(*ts):
    return tuple(None if t is None else t.abs() for t in ts)


# ---------------------------------------------------------------- slice ops
def slices_case(device, B, C, H, s, dtype, be, cost_s=2.0) -> Case:
    def run():
        img = torch.randint(0, 256, (B, C, H, H), device=device).to(dtype)
        t = torch.randint(0, s * s, (B,), device=device)
        sl = sk.subscale_split(img, s, backend=be)
        pairs = [(sl, sk.subscale_split_ref(img, s)), (sk.subscale_merge(sl, backend=be), img)]
        y, y_ref = img.clone(), img.clone()
        sk.slice_scatter_(y, sl[:, 1], s, t, backend=be)
        sk.slice_scatter_ref_(y_ref, sl[:, 1], s, t)
        pairs.append((y, y_ref))
        if not dtype.is_floating_point:
            pairs.append((sk.slice_context(img, s, t, 8, backend=be), sk.slice_context_ref(img, s, t, 8)))
        return compare(f"slices B={B} C={C} {H}x{H} s={s}", be, dtype, "-", pairs)

    return Case(f"slices B={B} C={C} {H}x{H} s={s} {_dt(dtype)} {be}", run, tier=0, cost_s=cost_s)


# ---------------------------------------------------------------- masked_conv2d
def _conv(x, w, b, gy, mt, g, be, layout="blocked"):
    x, w, b = (t.detach().clone().requires_grad_() for t in (x, w, b))
    y = sk.masked_conv2d(x, w, b, mt, g, color_layout=layout, backend=be)
    return (y, *torch.autograd.grad(y, (x, w, b), gy))


def conv_case(device, B, Ci, Co, H, k, mt, g, dtype, be, precision="exact", cost_s=4.0) -> Case:
    """k: an int (a k x k kernel) or (kh, kw), the gated-PixelCNN rows; g < 0 means |g| interleaved groups."""
    kh, kw = (k, k) if isinstance(k, int) else k
    layout, g = ("interleaved", -g) if g < 0 else ("blocked", g)
    inter = " interleaved" if layout == "interleaved" else ""
    what = f"conv fwd+bwd B={B} {Ci}->{Co} {H}x{H} k={kh}x{kw} {mt} g={g}{inter}"

    def run():
        x = torch.randn(B, Ci, H, H, device=device).to(dtype)
        w = (torch.randn(Co, Ci, kh, kw, device=device) / (Ci * kw)).to(dtype)
        b = torch.randn(Co, device=device).to(dtype)
        gy = torch.randn(B, Co, H, H, device=device).to(dtype)
        ref = _conv(x, w, b, gy, mt, g, "torch", layout)  # exact fp32: every check starts with TF32 off
        ref64 = _conv(x.double(), w.double(), b.double(), gy.double(), mt, g, "torch", layout)
        if precision == "exact":
            return compare(what, be, dtype, precision, zip(_conv(x, w, b, gy, mt, g, be, layout), ref, ref64))
        mag64 = _conv(*_abs(x.double(), w.double(), b.double(), gy.double()), mt, g, "torch", layout)
        with fp32_mode("tf32"):
            got = _conv(x, w, b, gy, mt, g, be, layout)
        return compare(what, be, dtype, precision, zip(got, ref, ref64, mag64))

    tier = 0 if precision == "exact" else 2
    return Case(f"{what} {_dt(dtype)} {precision} {be}", run, tier=tier, cost_s=cost_s)


# ---------------------------------------------------------------- masked_conv2d_step
def _step_inputs(device, B, Ci, Co, H, k, dtype):
    x = torch.randn(B, Ci, H, H, device=device).to(dtype)
    w = (torch.randn(Co, Ci, k, k, device=device) / (Ci * k)).to(dtype)
    b = torch.randn(Co, device=device).to(dtype)
    return x, w, b


def _known(x: torch.Tensor, row: int, col: int, mt: str, through: bool) -> torch.Tensor:
    """The cache at (row, col): x where generation has reached (through=True: the position itself too)."""
    cache = x.clone()
    if mt == "V":
        cache[:, :, row + through :] = 0
    else:
        cache[:, :, row + 1 :] = 0
        cache[:, :, row, col + through :] = 0
    return cache


def step_case(device, B, Ci, Co, H, k, mt, dtype, be, given=True, precision="exact", cost_s=4.0) -> Case:
    """Three positions (first, middle, last); given=False passes x_new=None (the model's first block: the
    position is already in the cache)."""
    what = f"step B={B} {Ci}->{Co} {H}x{H} k={k} {mt} x_new={'given' if given else 'None'}"

    def run():
        x, w, b = _step_inputs(device, B, Ci, Co, H, k, dtype)
        pairs = []
        for row, col in ((0, 0), (H // 2, 1), (H - 1, H - 1)):
            new = (x[:, :, row] if mt == "V" else x[:, :, row, col]) if given else None
            cache = _known(x, row, col, mt, through=not given)
            cache_ref = cache.clone()
            args = (w, b, row, col, mt, 1)
            ref = sk.masked_conv2d_step_ref(cache_ref, new, *args)
            ref64 = sk.masked_conv2d_step_ref(cache_ref.double(), None, w.double(), b.double(), row, col, mt, 1)
            if precision == "exact":
                y = sk.masked_conv2d_step(cache, new, *args, backend=be)
                pairs += [(cache, cache_ref), (y, ref, ref64)]
            else:
                mag = sk.masked_conv2d_step_ref(
                    *_abs(cache_ref.double(), None, w.double(), b.double()), row, col, mt, 1
                )
                with fp32_mode("tf32"):
                    y = sk.masked_conv2d_step(cache, new, *args, backend=be)
                pairs += [(cache, cache_ref), (y, ref, ref64, mag)]
        return compare(what, be, dtype, precision, pairs)

    tier = 0 if precision == "exact" else 2
    return Case(f"{what} {_dt(dtype)} {precision} {be}", run, tier=tier, cost_s=cost_s)


def gated_case(device, B, c0, d, L, k, n, dtype, be, cost_s=4.0) -> Case:
    """gated_step (every block's horizontal step of the sampler) at three positions, against the reference:
    the output and each block's cache write."""
    what = f"gated_step B={B} c0={c0} d={d} L={L} k={k} n={n}"

    def run():
        g = torch.Generator(device=device).manual_seed(0)
        p = k // 2

        def r(*shape, scale=1.0):
            return (torch.randn(*shape, generator=g, device=device, dtype=torch.float64) * scale).to(dtype)

        chans = [c0] + [d] * (L - 1)
        args = (
            [r(B, n + p, n + 2 * p, c) for c in chans],
            [r(B, n, 2 * d) for _ in chans],
            [r((p + 1) * k * c, 2 * d, scale=((p + 1) * k * c) ** -0.5) for c in chans],
            [r(d, d, scale=d**-0.5) for _ in chans],
            [r(d) for _ in chans],
        )
        pairs = []
        for row, col in ((0, 0), (n // 2, 1), (n - 1, n - 1)):
            mine, ref = ([t.clone() for t in a] for a in args), ([t.clone() for t in a] for a in args)
            mine, ref, ref64 = list(mine), list(ref), [[t.detach().clone().double() for t in a] for a in args]
            y = sk.gated_step(*mine, row, col, backend=be)
            y_ref = sk.gated_step_ref(*ref, row, col)
            y64 = sk.gated_step_ref(*ref64, row, col)
            pairs.append((y, y_ref, y64))
            pairs += [(a, b, c) for a, b, c in zip(mine[0][1:], ref[0][1:], ref64[0][1:])]
        return compare(what, be, dtype, "exact", pairs)

    return Case(f"{what} {_dt(dtype)} exact {be}", run, tier=0, cost_s=cost_s)


def draw_case(device, B, K, dtype, be, cost_s=3.0) -> Case:
    """categorical_draw (the sampler's inverse-CDF draw): the same values as the reference, log p to rounding."""
    what = f"categorical_draw B={B} K={K}"

    def run():
        g = torch.Generator(device=device).manual_seed(0)
        logits = (torch.randn(B, K, generator=g, device=device, dtype=torch.float64) * 3).to(dtype)
        u = torch.rand(B, generator=g, device=device, dtype=torch.float64)
        v, lp = sk.categorical_draw(logits, u, 0.8, backend=be)
        v_ref, lp_ref = sk.categorical_draw_ref(logits, u, 0.8)
        return compare(what, be, dtype, "exact", [(v, v_ref), (lp, lp_ref, lp_ref)])

    return Case(f"{what} {_dt(dtype)} exact {be}", run, tier=0, cost_s=cost_s)


def _dt(dtype) -> str:
    return str(dtype).replace("torch.", "")


def _group(device, op: str, make: Callable, tf32: bool, compile_s: float) -> list[Case]:
    """make(backend, precision, cost_s) for every backend, and on CUDA the TF32 variant where `tf32`. The
    budget's estimate: one Triton JIT compile (compile_s) for the first case of the group that runs Triton in
    each fp32 mode; the others reuse its kernels or run C++ (0.5 s)."""
    cuda = device.type == "cuda"
    out, compiled = [], set()
    for be in backends_for(op, device):
        runs_triton = be == "triton" or (be is None and cuda and op not in cuda_cpp_ops())
        for precision in ("exact", "tf32") if tf32 and cuda and be is not None else ("exact",):
            first = runs_triton and precision not in compiled
            if runs_triton:
                compiled.add(precision)
            out.append(make(be, precision, compile_s if first else 0.5))
    return out


# ---------------------------------------------------------------- the lists
def cases(device: torch.device, tiny: bool) -> list[Case]:
    out: list[Case] = []
    # slices: the model's int64 images, uint8 data, float maps; s=2 is what imagenet32 uses
    B, C, H, s_list = (2, 3, 8, (2, 4)) if tiny else (64, 3, 256, (2, 4, 8))
    dtypes = (torch.uint8, torch.int64, F32) if tiny else (torch.uint8, torch.int64, F32, BF16)
    for s in s_list:
        for dt in dtypes:
            make = lambda be, _, cost, s=s, dt=dt: slices_case(device, B, C, H, s, dt, be, cost)  # noqa: E731
            out += _group(device, "subscale_split", make, False, 4.0)

    # conv: (B, C_in, C_out, H, k, masks, color groups, dtypes). C_in=3 -> 2d is the decoder's first layer,
    # d -> 2d every later one (gated blocks); k=1 has almost no taps; odd sizes catch tile edges.
    if tiny:
        convs = [
            (2, 8, 8, 8, 3, "ABV", 1, (F32, BF16)),
            (2, 8, 8, 8, 3, "B", 4, (F32,)),
            (2, 3, 16, 7, 3, "AV", 1, (F32,)),
            (1, 8, 16, 6, 5, "BV", 1, (F32,)),
            (2, 4, 6, 5, 1, "ABV", 1, (F32,)),
            (2, 8, 8, 7, (1, 5), "AB", 1, (F32,)),  # gated PixelCNN rows: horizontal stack
            (2, 8, 8, 7, (3, 5), "V", 1, (F32,)),  # vertical stack, rows through the centre
            (2, 8, 8, 7, (2, 5), "V", 1, (F32,)),  # vertical stack, rows strictly above
            (2, 10, 10, 6, 3, "AB", -3, (F32,)),  # interleaved colour groups, 4/3/3
        ]
    else:
        convs = [
            (32, 128, 256, 32, 5, "BV", 1, (F32, BF16)),
            (32, 3, 256, 32, 5, "AV", 1, (F32, BF16)),
            (32, 128, 128, 32, 3, "ABV", 1, (F32, BF16)),
            (32, 128, 128, 32, 3, "B", 4, (F32,)),
            (8, 128, 128, 64, 5, "B", 1, (F32, BF16)),
            (3, 24, 40, 17, 3, "ABV", 1, (F32,)),
            (16, 128, 128, 32, 1, "ABV", 1, (F32,)),
            (32, 128, 128, 32, (1, 7), "AB", 1, (F32, BF16)),
            (32, 128, 128, 32, (4, 7), "V", 1, (F32, BF16)),
            (32, 120, 120, 32, 5, "AB", -3, (F32,)),
        ]
    for B, Ci, Co, H, k, masks, g, dts in convs:
        for mt in masks:
            for dt in dts:

                def make(be, prec, cost, B=B, Ci=Ci, Co=Co, H=H, k=k, mt=mt, g=g, dt=dt):
                    return conv_case(device, B, Ci, Co, H, k, mt, g, dt, be, prec, cost)

                out += _group(device, "masked_conv2d", make, dt == F32, 4.5)

    # step: the sampler's shapes; x_new=None as the first block calls it
    if tiny:
        steps = [
            (3, 8, 8, 6, 5, "ABV", True, (F32, BF16)),
            (2, 3, 8, 5, 3, "AV", False, (F32,)),
            (2, 8, 16, 5, 3, "BV", True, (F32,)),
        ]
    else:
        steps = [
            (16, 128, 256, 32, 5, "BV", True, (F32, BF16)),
            (16, 3, 256, 32, 5, "AV", False, (F32, BF16)),
            (16, 128, 128, 32, 5, "ABV", True, (F32,)),
            (16, 128, 128, 32, 1, "AB", True, (F32,)),
        ]
    for B, Ci, Co, H, k, masks, given, dts in steps:
        for mt in masks:
            for dt in dts:

                def make(be, prec, cost, B=B, Ci=Ci, Co=Co, H=H, k=k, mt=mt, dt=dt, given=given):
                    return step_case(device, B, Ci, Co, H, k, mt, dt, be, given, prec, cost)

                out += _group(device, "masked_conv2d_step", make, dt == F32, 4.5)

    # gated_step: the decoder step of the cached sampler (cpu_demo's width, imagenet32's, d not a power of two)
    gated = [(2, 3, 8, 2, 3, 5)] if tiny else [(64, 3, 32, 3, 3, 8), (64, 3, 256, 8, 3, 16), (16, 96, 96, 2, 5, 9)]
    for B, c0, d, L, k, n in gated:
        for dt in (F32, torch.float64):

            def make(be, prec, cost, B=B, c0=c0, d=d, L=L, k=k, n=n, dt=dt):
                return gated_case(device, B, c0, d, L, k, n, dt, be, cost)

            out += [make(be, "exact", 4.5) for be in (None, "triton")]

    # categorical_draw: 8-bit rows at the sampler's batch sizes, a 1-bit row, 12 bits (the Triton kernel's widest)
    for B, K in [(3, 256), (2, 2)] if tiny else [(64, 256), (1, 256), (64, 2), (16, 4096)]:
        for dt in (F32, torch.float64):
            out += [draw_case(device, B, K, dt, be) for be in (None, "triton")]
    return out
