"""Timings on the GPU, each a Case: the kernels against the torch references, then the model end to end.

Kernel timings are medians of triton.testing.do_bench (warm-up, L2 flushed between repetitions) over inputs
rotated between calls. No timed call reads a device value on the host: slice indices are passed as Python ints
(a tensor t is range-checked on the host, a sync per call). Model-level figures come from the same harness
modules the CPU runs use (benchmarks/training.py, memory.py); sampling is timed here with the CUDA graph
capture apart from the sampling time, and the naive sampler warmed up before it is timed. Every timing runs
with TF32 on (for cuDNN, cuBLAS and the Triton kernels alike), so fp32 rows compare like with like.
"""

from __future__ import annotations

import itertools
import time
from typing import Callable

import torch
import torch.nn.functional as F

import spn_kernels as sk

from .harness import Case, TimingResult, sync
from .ops import backends_for


def _bench(fn, reps_ms=200) -> float:
    """Median microseconds of fn (warm-up and L2 flush by do_bench)."""
    import triton.testing

    return 1000 * triton.testing.do_bench(fn, warmup=25, rep=reps_ms, return_mode="median")


def _rotating(make: Callable[[], tuple], n: int = 3) -> Callable[[], tuple]:
    """n input sets used in turn, so no call finds its inputs already in L2 from the previous one."""
    sets = [make() for _ in range(n)]
    it = itertools.cycle(sets)
    return lambda: next(it)


def _dn(dtype) -> str:
    return "float32 tf32" if dtype == torch.float32 else str(dtype).replace("torch.", "")


def _forced(op: str, device) -> list[str]:
    return [b for b in backends_for(op, device) if b is not None]


# ---------------------------------------------------------------- kernels
def conv_timing(device, H, k, dtype) -> Case:
    B, C, p = 32, 128, k // 2
    name = f"conv fwd+bwd B={B} C={C} {H}x{H} k={k} {_dn(dtype)}"

    def run():
        mask = sk.conv_mask(C, C, k, "B", 1, dtype, device)

        def make():
            x = torch.randn(B, C, H, H, device=device, dtype=dtype, requires_grad=True)
            return x, torch.randn(B, C, H, H, device=device, dtype=dtype)

        w = (torch.randn(C, C, k, k, device=device) / (C * k)).to(dtype).requires_grad_()
        b = torch.zeros(C, device=device, dtype=dtype, requires_grad=True)
        w_half = w.detach()[:, :, : p + 1].clone().requires_grad_()
        nxt = _rotating(make)

        def fwd_bwd(f):
            def go():
                x, gy = nxt()
                f(x).backward(gy)

            return go

        providers = {
            "cudnn_ref": fwd_bwd(lambda x: F.conv2d(x, w * mask, b, padding=p)),
            # the causal half kernel: top k//2+1 rows, padding on top only (what a hand-written cuDNN PixelCNN does)
            "cudnn_half": fwd_bwd(lambda x: F.conv2d(F.pad(x, (p, p, p, 0)), w_half, b)),
        }
        for be in _forced("masked_conv2d", device):
            providers[be] = fwd_bwd(lambda x, be=be: sk.masked_conv2d(x, w, b, "B", 1, backend=be))
        times = {name: _bench(fn) for name, fn in providers.items()}
        ratio = times["triton"] / times["cudnn_ref"]
        ok = bool(ratio <= 0.7 and times["triton"] <= times["cudnn_half"])
        return TimingResult(name, times, "triton/cudnn_ref", ratio, "<= 0.7 and <= cudnn_half", ok)

    return Case(name, run, kind="timing", fp32="tf32", tier=3, cost_s=8.0)


def slice_timing(device, op: str, s: int) -> Case:
    B, C, H = 64, 3, 256
    n = B * C * H * H  # uint8 pixels
    S2, h = s * s, H // s
    name = f"{op} B={B} C={C} {H}x{H} s={s}"
    nbytes = {
        "subscale_split": 2 * n,
        "subscale_merge": 2 * n,
        "slice_context": n + 4 * B * S2 * (C + 1) * h * h,
        "slice_scatter_": 2 * n // S2,
    }[op]

    def run():
        def make():
            img = torch.randint(0, 256, (B, C, H, H), device=device, dtype=torch.uint8)
            return img, sk.subscale_split_ref(img, s)

        nxt = _rotating(make)
        t = S2 // 2  # an int: no host read of a device tensor inside the timed call

        def fn(be):
            if op == "subscale_split":
                return lambda: sk.subscale_split(nxt()[0], s, backend=be)
            if op == "subscale_merge":
                return lambda: sk.subscale_merge(nxt()[1], backend=be)
            if op == "slice_context":
                return lambda: sk.slice_context(nxt()[0], s, t, 8, backend=be)

            def scatter():
                img, sl = nxt()
                sk.slice_scatter_(img, sl[:, 3], s, t, backend=be)

            return scatter

        src = torch.empty(nbytes // 2, dtype=torch.uint8, device=device)
        dst = torch.empty_like(src)
        times = {"copy": _bench(lambda: dst.copy_(src)), "torch": _bench(fn("torch"))}
        for be in _forced(op, device):
            times[be] = _bench(fn(be))
        gbs = {k: nbytes / (v * 1e3) for k, v in times.items()}
        frac = gbs["triton"] / gbs["copy"]
        extra = {"GB/s": gbs, "bytes": nbytes}
        return TimingResult(name, times, "triton GB/s / copy GB/s", frac, ">= 0.8", bool(frac >= 0.8), extra)

    return Case(name, run, kind="timing", fp32="tf32", tier=3, cost_s=5.0)


def step_timing(device, mt: str, dtype) -> Case:
    B, C, H, k = 16, 128, 32, 5
    name = f"step B={B} C={C} k={k} {mt} {_dn(dtype)}"

    def run():
        cache = torch.randn(B, C, H, H, device=device, dtype=dtype)
        w = torch.randn(C, C, k, k, device=device, dtype=dtype) / (C * k)
        b = torch.randn(C, device=device, dtype=dtype)
        new = cache[:, :, 7].clone() if mt == "V" else cache[:, :, 7, 9].clone()
        times, loop = {}, {}
        for be in ["torch", *_forced("masked_conv2d_step", device)]:

            def fn(be=be):
                sk.masked_conv2d_step(cache, new, w, b, 7, 9, mt, 1, backend=be)

            times[be] = _bench(fn)
            # what a sampler sees: back-to-back steps, launch overhead included
            for _ in range(20):
                fn()
            sync(device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(200):
                fn()
            end.record()
            sync(device)
            loop[be] = 1000 * start.elapsed_time(end) / 200
        ok = bool(loop["triton"] <= 20)
        return TimingResult(name, times, "triton us/step (loop)", loop["triton"], "<= 20 us", ok, {"loop_us": loop})

    return Case(name, run, kind="timing", fp32="tf32", tier=3, cost_s=5.0)


# ---------------------------------------------------------------- end to end
def training_timing(device, preset: str, batch: int) -> Case:
    name = f"train step {preset} B={batch} bf16"

    def run():
        from benchmarks import training

        r = training.rows(preset, batch, 1, device.type, torch.bfloat16, rounds=5)[0]
        target = preset == "imagenet32"
        return TimingResult(
            name,
            {"torch": r["ref_ms"] * 1e3, "kernels": r["kernels_ms"] * 1e3},
            "kernels / torch",
            r["ratio"],
            "<= 0.8" if target else "",
            bool(r["ratio"] <= 0.8) if target else None,
            {"img_s": {"torch": r["ref_img_s"], "kernels": r["kernels_img_s"]}},
        )

    return Case(name, run, kind="timing", fp32="tf32", tier=4, cost_s=30.0 if preset == "imagenet32" else 60.0)


def sampling_timing(device, size: int, batch: int, naive_pixels: int = 4) -> Case:
    """Steady-state sampling time per image (context network + decoding, CUDA graphs replayed), the one-off
    capture apart, and the naive sampler (warmed up, then timed over a prefix and extrapolated)."""
    name = f"sample {size}x{size}x3 B={batch}"

    def run():
        import spn_kernels as sk
        from benchmarks.sampling import bench_config
        from spn import SPN
        from spn.sampling import _cached_slice

        torch.manual_seed(0)
        model = SPN(bench_config(size)).to(device).eval()
        cfg = model.config
        C, N, ns = cfg.channels, cfg.image_size, cfg.slice_size
        low = torch.zeros(batch, C, N, N, dtype=torch.int64, device=device)
        t = torch.zeros(batch, dtype=torch.int64, device=device)
        gen = torch.Generator(device=device).manual_seed(0)
        # one slice's uniforms, drawn before timing (the sampler draws them once per slice too)
        u = torch.rand(ns * ns * C, batch, generator=gen, dtype=torch.float64, device=device)
        lp = torch.zeros(ns * ns * C, batch, dtype=torch.float64, device=device)
        cache = model.allocate_inference_cache(batch)
        with torch.no_grad():

            def timed(fn):
                sync(device)
                t0 = time.perf_counter()
                res = fn()
                sync(device)
                return time.perf_counter() - t0, res

            model.condition(low, None, t)  # warm-up of the context network
            ctx_s, cond = timed(lambda: model.condition(low, None, t))
            first_s, _ = timed(lambda: _cached_slice(model, cache, cond, 1.0, u, lp))  # captures the graphs
            graphs = len(cache.graphs) if cache.graphs is not None else 0
            slice_s, _ = timed(lambda: _cached_slice(model, cache, cond, 1.0, u, lp))  # replays them
            capture_s = max(first_s - slice_s, 0.0)  # without graphs (CPU) only noise is left
            cached_img_s = cfg.num_slices * (ctx_s + slice_s) / batch
            values = torch.zeros(batch, C, ns, ns, dtype=torch.int64, device=device)
            model.slice_logits(values, cond)  # warm-up of the naive path

            def naive():
                for p in range(naive_pixels):
                    r, c = divmod(p, ns)
                    for ch in range(C):
                        i = p * C + ch
                        logits = model.slice_logits(values, cond)[:, r, c, ch]
                        values[:, ch, r, c] = sk.categorical_draw(logits, u[i], 1.0)[0]

            naive_s, _ = timed(naive)
        naive_img_s = naive_s / (naive_pixels * C) * cfg.modeled_dims / batch
        us_sub = slice_s / (ns * ns * C) * 1e6
        return TimingResult(
            name,
            {"cached": cached_img_s * 1e6, "naive(est.)": naive_img_s * 1e6, "capture(once)": capture_s * 1e6},
            "images/s cached (capture apart)",
            1 / cached_img_s,
            extra={"us_per_sub_pixel_step": us_sub, "speedup": naive_img_s / cached_img_s, "graphs": graphs},
        )

    return Case(name, run, kind="timing", fp32="tf32", tier=4, cost_s=15.0 * (size // 32) ** 2 + 5 * batch / 16)


def memory_timing(device) -> Case:
    def run():
        from benchmarks import memory

        out = []
        for r in memory.rows(device=device.type):
            target = r["s"] == 4 and r["shape"].startswith("64x64")
            out.append(
                TimingResult(
                    f"train memory {r['shape']} s={r['s']}",
                    {},
                    "peak s / s=1",
                    r["peak_ratio"],
                    "<= 0.125" if target else "",
                    bool(r["peak_ratio"] <= 0.125) if target else None,
                    {k: v for k, v in r.items() if k.endswith("mib")},
                )
            )
        return out

    return Case("train memory (subprocesses)", run, kind="timing", fp32="tf32", tier=5, cost_s=90.0)


def kernel_cases(device) -> list[Case]:
    out = [
        conv_timing(device, H, k, dt)
        for H, k, dt in itertools.product((32, 64), (3, 5), (torch.float32, torch.bfloat16))
    ]
    ops = ("subscale_split", "subscale_merge", "slice_context", "slice_scatter_")
    out += [slice_timing(device, op, s) for s in (4, 8) for op in ops]
    out += [step_timing(device, mt, dt) for dt in (torch.float32, torch.bfloat16) for mt in ("B", "V")]
    return out


def cases(device) -> list[Case]:
    out = kernel_cases(device)
    out += [training_timing(device, p, b) for p, b in (("imagenet32", 32), ("imagenet64", 16))]
    out += [sampling_timing(device, size, batch) for batch in (1, 16, 64) for size in (32, 64)]
    out.append(memory_timing(device))
    return out


# The kernel timings as lists, for benchmarks/run.py (which prints them beside the CPU kernel table).
def time_conv(device, tiny=False) -> list[TimingResult]:
    return [c.run() for c in kernel_cases(device) if c.name.startswith("conv")]


def time_slices(device, tiny=False) -> list[TimingResult]:
    return [c.run() for c in kernel_cases(device) if c.name.startswith(("subscale", "slice"))]


def time_step(device, tiny=False) -> list[TimingResult]:
    return [c.run() for c in kernel_cases(device) if c.name.startswith("step")]
