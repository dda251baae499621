"""The C++ CPU kernels side by side with their pure-PyTorch references, in one run.

    python -m benchmarks.cpu_kernels            # the full table (a few minutes on 2 cores)
    python -m benchmarks.cpu_kernels --quick    # one shape per op, small repeat counts

    python -m benchmarks.cpu_kernels --threads 1

`rows()` returns the table as a list of dicts for a harness (`benchmarks.run`). Every candidate of a row
is timed in the same rounds, one call each in turn, so load from other processes hits them alike; a
row reports the best round (the minimum: on a shared machine, the round least disturbed by others; the
median is kept in the dicts too). Ratios are C++ time / reference time (below 1 is faster).

masked_conv2d rows also time the "strong baseline": F.conv2d on the kernel's top k//2 + 1 rows with the
input padded on top only (every tap below the centre row is masked), with its autograd backward.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from typing import Callable

import torch
import torch.nn.functional as F

from spn_kernels import (  # importing spn_kernels loads the C++ kernels into torch.ops.spn
    conv_mask,
    masked_conv2d_ref,
    masked_conv2d_step_ref,
    slice_context_ref,
    slice_scatter_ref_,
    subscale_merge_ref,
    subscale_split_ref,
)


def time_side_by_side(
    fns: dict[str, Callable[[], object]], rounds: int, inner: int = 1, stat: Callable = min
) -> dict[str, float]:
    """Milliseconds per call of each fn (`stat` over rounds); every round runs each fn `inner` times, in turn."""
    for fn in fns.values():  # warm-up: oneDNN primitive creation, allocator, page faults
        fn()
        fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            samples[name].append((time.perf_counter() - t0) * 1e3 / inner)
    return {name: stat(v) for name, v in samples.items()}


def _row(op: str, shape: str, t: dict[str, float], **extra) -> dict:
    row = {"op": op, "shape": shape, "ref_ms": t["ref"], "cpp_ms": t["cpp"], "ratio": t["cpp"] / t["ref"]}
    row.update(extra)
    return row


# ------------------------------------------------------------------------------------------------ slice ops
def slice_rows(quick: bool = False) -> list[dict]:
    out = []
    B, C, N = (64, 3, 64)
    rounds, inner = (5, 5) if quick else (15, 20)
    for s in (2,) if quick else (2, 4):
        g = torch.Generator().manual_seed(s)
        x = torch.randint(0, 256, (B, C, N, N), dtype=torch.uint8, generator=g)
        t = torch.randint(0, s * s + 1, (B,), generator=g)
        t_w = t.clamp(max=s * s - 1)
        shape = f"B={B} C={C} {N}x{N} s={s} uint8"
        sl = subscale_split_ref(x, s)
        vals = sl[:, 0].contiguous()
        y_ref, y_cpp = x.clone(), x.clone()
        cases = {
            "subscale_split": (lambda: subscale_split_ref(x, s), lambda: torch.ops.spn.subscale_split(x, s)),
            "subscale_merge": (lambda: subscale_merge_ref(sl), lambda: torch.ops.spn.subscale_merge(sl)),
            "slice_context": (
                lambda: slice_context_ref(x, s, t, 8),
                lambda: torch.ops.spn.slice_context(x, s, t, 8),
            ),
            "slice_scatter_": (
                lambda: slice_scatter_ref_(y_ref, vals, s, t_w),
                lambda: torch.ops.spn.slice_scatter_(y_cpp, vals, s, t_w),
            ),
        }
        for op, (ref, cpp) in cases.items():
            out.append(_row(op, shape, time_side_by_side({"ref": ref, "cpp": cpp}, rounds, inner)))
    return out


# ------------------------------------------------------------------------------------------------ masked_conv2d
def _conv_fns(x, w, b, gy, mt, p):
    mask = conv_mask(*w.shape[:3], mt, dtype=w.dtype)

    def ref_fb():
        y = masked_conv2d_ref(x, w, b, mt)
        torch.autograd.grad(y, (x, w, b), gy)

    def strong_fb():
        y = F.conv2d(F.pad(x, (p, p, p, 0)), (w * mask)[:, :, : p + 1], b)
        torch.autograd.grad(y, (x, w, b), gy)

    def cpp_fb():
        y = torch.ops.spn.masked_conv2d(x, w, b, mt, 1)
        torch.autograd.grad(y, (x, w, b), gy)

    def ref_f():
        with torch.no_grad():
            masked_conv2d_ref(x, w, b, mt)

    def strong_f():
        with torch.no_grad():
            F.conv2d(F.pad(x, (p, p, p, 0)), (w * mask)[:, :, : p + 1], b)

    def cpp_f():
        with torch.no_grad():
            torch.ops.spn.masked_conv2d(x, w, b, mt, 1)

    return (ref_fb, strong_fb, cpp_fb), (ref_f, strong_f, cpp_f)


def conv_rows(quick: bool = False) -> list[dict]:
    out = []
    B, C, N = (4, 32, 16) if quick else (16, 128, 32)
    rounds = 3 if quick else 9
    for k in (3,) if quick else (3, 5, 7):
        for mt in ("A",) if quick else ("A", "B"):
            g = torch.Generator().manual_seed(k)
            x = torch.randn(B, C, N, N, generator=g).requires_grad_()
            w = (torch.randn(C, C, k, k, generator=g) / (C * k)).requires_grad_()
            b = torch.randn(C, generator=g).requires_grad_()
            gy = torch.randn(B, C, N, N, generator=g)
            (ref_fb, strong_fb, cpp_fb), (ref_f, strong_f, cpp_f) = _conv_fns(x, w, b, gy, mt, k // 2)
            shape = f"B={B} C={C} {N}x{N} k={k} {mt}"
            tb = time_side_by_side({"ref": ref_fb, "strong": strong_fb, "cpp": cpp_fb}, rounds)
            out.append(
                _row("masked_conv2d fwd+bwd", shape, tb, strong_ms=tb["strong"], vs_strong=tb["cpp"] / tb["strong"])
            )
            tf = time_side_by_side({"ref": ref_f, "strong": strong_f, "cpp": cpp_f}, rounds)
            out.append(_row("masked_conv2d fwd", shape, tf, strong_ms=tf["strong"], vs_strong=tf["cpp"] / tf["strong"]))
    return out


# ------------------------------------------------------------------------------------------------ step
def step_rows(quick: bool = False) -> list[dict]:
    out = []
    B, C, N, k = (4, 32, 16, 5) if quick else (16, 128, 32, 5)
    rounds, inner = (5, 5) if quick else (15, 50)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(C, C, k, k, generator=g) / (C * k)
    b = torch.randn(C, generator=g)
    cache = torch.randn(B, C, N, N, generator=g)
    x_new = torch.randn(B, C, generator=g)
    row, col = N // 2, N // 2
    for mt in ("A", "B"):
        # x_new is written each call (as when sampling); the output is the same every call
        t = time_side_by_side(
            {
                "ref": lambda: masked_conv2d_step_ref(cache, x_new, w, b, row, col, mt, 1),
                "cpp": lambda: torch.ops.spn.masked_conv2d_step(cache, x_new, w, b, row, col, mt, 1),
            },
            rounds,
            inner,
        )
        out.append(
            _row(
                "masked_conv2d_step",
                f"B={B} C={C} {N}x{N} k={k} {mt} at ({row}, {col})",
                t,
                ref_us=t["ref"] * 1e3,
                cpp_us=t["cpp"] * 1e3,
            )
        )
    return out


def rows(quick: bool = False) -> list[dict]:
    """Every row of the table: dicts with op, shape, ref_ms, cpp_ms, ratio (+ strong_ms/vs_strong, *_us)."""
    with torch.random.fork_rng():
        return slice_rows(quick) + conv_rows(quick) + step_rows(quick)


def format_table(table: list[dict]) -> str:
    lines = [
        "| op | shape | reference ms | C++ ms | C++ / ref | strong baseline ms | C++ / strong |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in table:
        strong = f"{r['strong_ms']:.2f} | {r['vs_strong']:.2f}" if "strong_ms" in r else "| "
        ref, cpp = f"{r['ref_ms']:.3f}", f"{r['cpp_ms']:.3f}"
        if "ref_us" in r:
            ref, cpp = f"{r['ref_ms']:.3f} ({r['ref_us']:.0f} us)", f"{r['cpp_ms']:.3f} ({r['cpp_us']:.0f} us)"
        lines.append(f"| {r['op']} | {r['shape']} | {ref} | {cpp} | {r['ratio']:.2f} | {strong} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small shapes and few rounds (a smoke run)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"# {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, load average {load:.1f} at start"
    )
    print(format_table(rows(args.quick)))


if __name__ == "__main__":
    main()
