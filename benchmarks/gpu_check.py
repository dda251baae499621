"""GPU check: every CUDA-capable spn op on every GPU backend against the references, then timings against the
torch references, in one run (at most ~8 minutes on one H100/H200). Builds nothing: spn_kernels must be
installed (its CUDA C++ kernels are used where it was built with them).

    python -m benchmarks.gpu_check                 # on a GPU: checks at real sizes, then timings
    python -m benchmarks.gpu_check --tiny          # checks only, tiny sizes; on CPU under TRITON_INTERPRET=1
    python -m benchmarks.gpu_check --json out.json # where the results go (default benchmarks/gpu_check.json)

The work is two lists of cases, CHECKS and TIMINGS, each entry a function (device, tiny) -> cases. Another
benchmark (a training step, a sampling run) adds itself with @check or @timing and appears in the same table
and JSON. Timings are medians (triton.testing.do_bench: warm-up, L2 flushed between repetitions) over inputs
rotated between calls; each row names the reference it is compared with and the target it is held to.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

import spn_kernels as sk

GPU_BACKENDS = ("triton", "cuda")


@dataclass
class CheckResult:
    name: str
    backend: str
    dtype: str
    err: float  # max |out - ref64|
    bound: float  # what err may be: 2x the same-dtype reference's error + 2 ulps (0 for exact ops)
    ok: bool


@dataclass
class TimingResult:
    name: str
    times_us: dict  # provider -> median microseconds
    metric: str = ""  # e.g. "triton / cudnn_ref" or "GB/s"
    value: float = float("nan")
    target: str = ""
    met: bool | None = None
    extra: dict = field(default_factory=dict)


CHECKS: list[Callable] = []
TIMINGS: list[Callable] = []


def check(fn):
    CHECKS.append(fn)
    return fn


def timing(fn):
    TIMINGS.append(fn)
    return fn


# ---------------------------------------------------------------- helpers
def cuda_cpp_ops() -> set[str]:
    """Ops whose CUDA kernel is CUDA C++ (torch.ops.spn.<op>); on CUDA tensors the others run Triton."""
    if not torch.cuda.is_available():
        return set()
    from spn_kernels._backend import CUDA_CPP_OPS

    return set(CUDA_CPP_OPS)


def backends_for(op: str, device: torch.device) -> list[str]:
    if device.type != "cuda":
        return ["triton"]  # the interpreter
    cpp = cuda_cpp_ops()
    return [b for b in GPU_BACKENDS if b != "cuda" or op in cpp]


def _bound(out: torch.Tensor, ref: torch.Tensor, ref64: torch.Tensor) -> tuple[float, float]:
    """(kernel error, allowed error): the rule of tests/helpers.assert_close_to_ref."""
    err = (out.double() - ref64).abs().max().item()
    err_ref = (ref.double() - ref64).abs().max().item()
    eps = torch.finfo(out.dtype).eps * max(ref64.abs().max().item(), 1.0)
    return err, 2 * err_ref + 2 * eps


def _result(name, backend, dtype, pairs) -> CheckResult:
    """pairs: [(out, ref, ref64)] or [(out, exact)]; the worst ratio decides."""
    worst = (0.0, 0.0)
    ok = True
    for p in pairs:
        if len(p) == 2:
            same = torch.equal(p[0], p[1])
            ok &= same
            worst = max(worst, (0.0 if same else float("inf"), 0.0))
        else:
            err, bound = _bound(*p)
            ok &= err <= bound
            worst = max(worst, (err, bound), key=lambda e: e[0] / max(e[1], 1e-300))
    return CheckResult(name, backend, str(dtype).replace("torch.", ""), worst[0], worst[1], bool(ok))


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- correctness
@check
def check_slices(device, tiny):
    B, C, H, s_list = (2, 3, 16, (2, 4)) if tiny else (64, 3, 256, (4, 8))
    out = []
    for s, dtype in itertools.product(s_list, (torch.uint8, torch.float32, torch.bfloat16)):
        img = (torch.randint(0, 256, (B, C, H, H), device=device)).to(dtype)
        t = torch.randint(0, s * s, (B,), device=device)
        for be in backends_for("subscale_split", device):
            sl = sk.subscale_split(img, s, backend=be)
            pairs = [(sl, sk.subscale_split_ref(img, s)), (sk.subscale_merge(sl, backend=be), img)]
            y, y_ref = img.clone(), img.clone()
            sk.slice_scatter_(y, sl[:, 1], s, t, backend=be)
            sk.slice_scatter_ref_(y_ref, sl[:, 1], s, t)
            pairs.append((y, y_ref))
            if not dtype.is_floating_point:
                pairs.append((sk.slice_context(img, s, t, 8, backend=be), sk.slice_context_ref(img, s, t, 8)))
            out.append(_result(f"slices s={s}", be, dtype, pairs))
    return out


@check
def check_conv(device, tiny):
    shapes = [(2, 8, 8, 3), (1, 16, 6, 5)] if tiny else [(32, 128, 32, 3), (32, 128, 32, 5), (8, 128, 64, 5)]
    out = []
    for (B, C, H, k), dtype, (mt, g) in itertools.product(
        shapes, (torch.float32, torch.bfloat16), (("A", 1), ("B", 1), ("V", 1), ("B", 4))
    ):
        x = torch.randn(B, C, H, H, device=device).to(dtype)
        w = (torch.randn(C, C, k, k, device=device) / (C * k)).to(dtype)
        b = torch.randn(C, device=device).to(dtype)
        gy = torch.randn(B, C, H, H, device=device).to(dtype)

        def run(x, w, b, gy, be):
            x, w, b = (t.detach().clone().requires_grad_() for t in (x, w, b))
            y = sk.masked_conv2d(x, w, b, mt, g, backend=be)
            return (y, *torch.autograd.grad(y, (x, w, b), gy))

        ref = run(x, w, b, gy, "torch")
        ref64 = run(x.double(), w.double(), b.double(), gy.double(), "torch")
        for be in backends_for("masked_conv2d", device):
            got = run(x, w, b, gy, be)
            out.append(_result(f"conv fwd+bwd B={B} C={C} {H}x{H} k={k} {mt} g={g}", be, dtype, zip(got, ref, ref64)))
    return out


@check
def check_step(device, tiny):
    B, C, H, k = (3, 8, 6, 5) if tiny else (16, 128, 32, 5)
    out = []
    for dtype, mt in itertools.product((torch.float32, torch.bfloat16), ("A", "B", "V")):
        x = torch.randn(B, C, H, H, device=device).to(dtype)
        w = (torch.randn(C, C, k, k, device=device) / (C * k)).to(dtype)
        b = torch.randn(C, device=device).to(dtype)
        for be in backends_for("masked_conv2d_step", device):
            pairs = []
            for row, col in ((0, 0), (H // 2, 1), (H - 1, H - 1)):
                new = x[:, :, row] if mt == "V" else x[:, :, row, col]
                cache = x.clone()
                cache[:, :, row:] = 0
                cache_ref = cache.clone()
                y = sk.masked_conv2d_step(cache, new, w, b, row, col, mt, 1, backend=be)
                ref = sk.masked_conv2d_step_ref(cache_ref, new, w, b, row, col, mt, 1)
                ref64 = sk.masked_conv2d_step_ref(cache_ref.double(), None, w.double(), b.double(), row, col, mt, 1)
                pairs += [(cache, cache_ref), (y, ref, ref64)]
            out.append(_result(f"step B={B} C={C} k={k} {mt}", be, dtype, pairs))
    return out


# ---------------------------------------------------------------- timings (GPU only)
def _bench(fn, reps_ms=200) -> float:
    """Median microseconds of fn (warm-up and L2 flush by do_bench)."""
    import triton.testing

    return 1000 * triton.testing.do_bench(fn, warmup=25, rep=reps_ms, return_mode="median")


def _rotating(make: Callable[[], tuple], n: int = 3) -> Callable[[], tuple]:
    """n input sets used in turn, so no call finds its inputs already in L2 from the previous one."""
    sets = [make() for _ in range(n)]
    it = itertools.cycle(sets)
    return lambda: next(it)


@timing
def time_conv(device, tiny):
    out = []
    for H, k, dtype in itertools.product((32, 64), (3, 5), (torch.float32, torch.bfloat16)):
        B, C, p = 32, 128, k // 2
        mask = sk.conv_mask(C, C, k, "B", 1, dtype, device)

        def make():
            x = torch.randn(B, C, H, H, device=device, dtype=dtype, requires_grad=True)
            return x, torch.randn(B, C, H, H, device=device, dtype=dtype)

        w = (torch.randn(C, C, k, k, device=device) / (C * k)).to(dtype).requires_grad_()
        b = torch.zeros(C, device=device, dtype=dtype, requires_grad=True)
        w_half = w.detach()[:, :, : p + 1].clone().requires_grad_()
        nxt = _rotating(make)

        def fwd_bwd(f):
            def run():
                x, gy = nxt()
                f(x).backward(gy)

            return run

        providers = {
            "cudnn_ref": fwd_bwd(lambda x: F.conv2d(x, w * mask, b, padding=p)),
            # the causal half kernel: top k//2+1 rows, padding on top only (what a hand-written cuDNN PixelCNN does)
            "cudnn_half": fwd_bwd(lambda x: F.conv2d(F.pad(x, (p, p, p, 0)), w_half, b)),
        }
        for be in backends_for("masked_conv2d", device):
            providers[be] = fwd_bwd(lambda x, be=be: sk.masked_conv2d(x, w, b, "B", 1, backend=be))
        times = {name: _bench(fn) for name, fn in providers.items()}
        ratio = times["triton"] / times["cudnn_ref"]
        out.append(
            TimingResult(
                f"conv fwd+bwd B={B} C={C} {H}x{H} k={k} {str(dtype)[6:]}",
                times,
                "triton/cudnn_ref",
                ratio,
                "<= 0.7 and <= cudnn_half",
                bool(ratio <= 0.7 and times["triton"] <= times["cudnn_half"]),
            )
        )
    return out


@timing
def time_slices(device, tiny):
    out = []
    B, C, H = 64, 3, 256
    n = B * C * H * H  # uint8 pixels
    for s in (4, 8):
        S2, h = s * s, H // s

        def make():
            img = torch.randint(0, 256, (B, C, H, H), device=device, dtype=torch.uint8)
            return img, sk.subscale_split_ref(img, s), torch.randint(0, S2, (B,), device=device)

        nxt = _rotating(make)
        ctx_bytes = n + 4 * B * S2 * (C + 1) * h * h
        cases = {
            # op: (bytes moved, {provider: fn})
            "subscale_split": (2 * n, lambda be: lambda: sk.subscale_split(nxt()[0], s, backend=be)),
            "subscale_merge": (2 * n, lambda be: lambda: sk.subscale_merge(nxt()[1], backend=be)),
            "slice_context": (ctx_bytes, lambda be: lambda: sk.slice_context(nxt()[0], s, nxt()[2], 8, backend=be)),
            "slice_scatter_": (
                2 * n // S2,
                lambda be: lambda: (lambda a: sk.slice_scatter_(a[0], a[1][:, 3], s, a[2], backend=be))(nxt()),
            ),
        }
        for op, (nbytes, fn) in cases.items():
            src = torch.empty(nbytes // 2, dtype=torch.uint8, device=device)
            dst = torch.empty_like(src)
            times = {"copy": _bench(lambda: dst.copy_(src)), "torch": _bench(fn("torch"))}
            for be in backends_for(op, device):
                times[be] = _bench(fn(be))
            gbs = {k: nbytes / (v * 1e3) for k, v in times.items()}
            frac = gbs["triton"] / gbs["copy"]
            out.append(
                TimingResult(
                    f"{op} B={B} C={C} {H}x{H} s={s}",
                    times,
                    "triton GB/s / copy GB/s",
                    frac,
                    ">= 0.8",
                    bool(frac >= 0.8),
                    {"GB/s": gbs, "bytes": nbytes},
                )
            )
    return out


@timing
def time_step(device, tiny):
    out = []
    B, C, H, k = 16, 128, 32, 5
    for dtype, mt in itertools.product((torch.float32, torch.bfloat16), ("B", "V")):
        cache = torch.randn(B, C, H, H, device=device, dtype=dtype)
        w = torch.randn(C, C, k, k, device=device, dtype=dtype) / (C * k)
        b = torch.randn(C, device=device, dtype=dtype)
        new = cache[:, :, 7].clone() if mt == "V" else cache[:, :, 7, 9].clone()
        times = {}
        loop = {}
        for be in ["torch", *backends_for("masked_conv2d_step", device)]:

            def fn(be=be):
                sk.masked_conv2d_step(cache, new, w, b, 7, 9, mt, 1, backend=be)

            times[be] = _bench(fn)
            # what a sampler sees: back-to-back steps, launch overhead included
            for _ in range(20):
                fn()
            _sync(device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(200):
                fn()
            end.record()
            _sync(device)
            loop[be] = 1000 * start.elapsed_time(end) / 200
        out.append(
            TimingResult(
                f"step B={B} C={C} k={k} {mt} {str(dtype)[6:]}",
                times,
                "triton us/step (loop)",
                loop["triton"],
                "<= 20 us",
                bool(loop["triton"] <= 20),
                {"loop_us": loop},
            )
        )
    return out


# ---------------------------------------------------------------- end to end
# The model-level figures on the GPU, from the same harness modules the CPU runs use (benchmarks/training.py,
# sampling.py, memory.py), so CPU and GPU numbers are measured the same way.
@timing
def time_training(device, tiny):
    from benchmarks import training

    out = []
    for preset, batch in (("imagenet32", 32), ("imagenet64", 16)):
        r = training.rows(preset, batch, 1, device.type, torch.bfloat16, rounds=5)[0]
        out.append(
            TimingResult(
                f"train step {preset} B={batch} bf16",
                {"torch": r["ref_ms"] * 1e3, "kernels": r["kernels_ms"] * 1e3},
                "kernels / torch",
                r["ratio"],
                "<= 0.8" if preset == "imagenet32" else "",
                bool(r["ratio"] <= 0.8) if preset == "imagenet32" else None,
                {"img_s": {"torch": r["ref_img_s"], "kernels": r["kernels_img_s"]}},
            )
        )
    return out


@timing
def time_sampling(device, tiny):
    from benchmarks import sampling

    out = []
    for batch in (1, 16, 64):
        for r in sampling.rows(sizes=(32, 64), batch=batch, device=device.type):
            cached_us = r["cached_s_per_image"] * batch / r["sub_pixels_per_image"] * 1e6
            out.append(
                TimingResult(
                    f"sample {r['image_size']}x{r['image_size']}x3 B={batch}",
                    {"cached": r["cached_s_per_image"] * 1e6, "naive(est.)": r["naive_s_per_image"] * 1e6},
                    "images/s cached",
                    1 / r["cached_s_per_image"],
                    extra={"us_per_sub_pixel_step": cached_us, "speedup": r["speedup"]},
                )
            )
    return out


@timing
def time_memory(device, tiny):
    from benchmarks import memory

    return [
        TimingResult(
            f"train memory {r['shape']} s={r['s']}",
            {},
            "peak s / s=1",
            r["peak_ratio"],
            "<= 0.125" if r["s"] == 4 and r["shape"].startswith("64x64") else "",
            bool(r["peak_ratio"] <= 0.125) if r["s"] == 4 and r["shape"].startswith("64x64") else None,
            {k: v for k, v in r.items() if k.endswith("mib")},
        )
        for r in memory.rows(device=device.type)
    ]


# ---------------------------------------------------------------- driver
def _machine(device) -> dict:
    info = {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform()}
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda_cpp_ops"] = sorted(cuda_cpp_ops())
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    return info


def _fmt_us(v: float) -> str:
    return f"{v:.1f}" if v < 1000 else f"{v / 1000:.2f}ms"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="checks only, tiny sizes (CPU: the Triton interpreter)")
    ap.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "gpu_check.json"))
    ap.add_argument("--no-timings", action="store_true")
    args = ap.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        print("no GPU: run with --tiny and TRITON_INTERPRET=1 (the Triton interpreter on CPU)", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    t0 = time.time()
    checks = [r for fn in CHECKS for r in fn(device, args.tiny)]
    timings = []
    if device.type == "cuda" and not args.tiny and not args.no_timings:
        timings = [r for fn in TIMINGS for r in fn(device, args.tiny)]
    report = {
        "machine": _machine(device),
        "tiny": args.tiny,
        "seconds": time.time() - t0,
        "checks": [asdict(r) for r in checks],
        "timings": [asdict(r) for r in timings],
    }
    with open(args.json, "w") as f:
        json.dump(report, f, indent=1, default=str)

    print(f"\n{'check':<50} {'backend':<7} {'dtype':<9} {'err':>10} {'bound':>10}  ok")
    for r in checks:
        print(f"{r.name:<50} {r.backend:<7} {r.dtype:<9} {r.err:>10.2e} {r.bound:>10.2e}  {'ok' if r.ok else 'FAIL'}")
    if timings:
        print(f"\n{'timing (median us)':<44} {'providers':<70} {'metric':>8}  target")
        for r in timings:
            prov = " ".join(f"{k}={_fmt_us(v)}" for k, v in r.times_us.items())
            val = f"{r.value:.2f}" if math.isfinite(r.value) else "-"
            met = {True: "met", False: "MISSED", None: ""}[r.met]
            print(f"{r.name:<44} {prov:<70} {val:>8}  {r.metric} {r.target} {met}")
    failed = [r for r in checks if not r.ok]
    print(f"\n{len(checks) - len(failed)}/{len(checks)} checks ok, {len(timings)} timings, {time.time() - t0:.0f} s")
    print(f"json: {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
