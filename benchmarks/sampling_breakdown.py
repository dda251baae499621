"""Where one cached sample's time goes, per part, for cpu_demo (random weights) on CPU.

    python -m benchmarks.sampling_breakdown [--batch 1 64] [--threads 2]

Per slice the cached sampler runs the context network (SPN.condition), refills the cache with the slice's
conditioning projections (SPN.start_slice) and decodes the slice (SPN.decode_slice: one fused decode_rows call on
CPU, every sub-pixel's decoder step, channel head, draw and cache writes), then writes the slice into the image
(slice_scatter_). Each part is timed on its own (median of interleaved repeats) and reported per sub-pixel of the
batch's step (per slice / (n*n*C)); "whole step" is a full sample() divided by its sub-pixels, and the rest of it
is the per-slice Python, the uniforms and slice_scatter_.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from spn import SPN
from spn.configs import PRESETS


def _per_call(fn, calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def breakdown(batch: int, repeats: int = 5, calls: int = 3) -> dict[str, float]:
    torch.manual_seed(0)
    model = SPN(PRESETS["cpu_demo"].stages[0]).eval()
    cfg = model.config
    n, C, B = cfg.slice_size, cfg.channels, batch
    per = n * n * C  # sub-pixels of a slice
    with torch.no_grad():
        low = torch.zeros(B, C, cfg.image_size, cfg.image_size, dtype=torch.int64)
        t = torch.full((B,), cfg.num_slices // 2, dtype=torch.int64)
        cond = model.condition(low, None, t)
        cache = model.allocate_inference_cache(B)
        u = torch.rand(per, B, dtype=torch.float64)
        values = torch.zeros(per, B, dtype=torch.int64)
        lp = torch.zeros(per, B, dtype=torch.float64)

        def decode():
            model.start_slice(cache, cond)
            model.decode_slice(cache, u, 1.0, values, lp)

        parts = {
            "context network (condition)": (lambda: model.condition(low, None, t), 0.0),
            "start_slice (conditioning projections, cache refill)": (lambda: model.start_slice(cache, cond), 0.0),
            "decode_slice (fused decode_rows)": (decode, 1.0),  # minus start_slice, below
        }
        times: dict[str, list[float]] = {k: [] for k in parts}
        times["whole step"] = []
        for _ in range(repeats):
            for k, (fn, _) in parts.items():
                times[k].append(_per_call(fn, calls) / per)
            t0 = time.perf_counter()
            model.sample(B, generator=torch.Generator().manual_seed(0))
            times["whole step"].append((time.perf_counter() - t0) / cfg.modeled_dims)
    out = {k: statistics.median(v) * 1e6 for k, v in times.items()}
    out["decode_slice (fused decode_rows)"] -= out["start_slice (conditioning projections, cache refill)"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    rows = {b: breakdown(b, args.repeats) for b in args.batch}
    print("| part (us per sub-pixel) | " + " | ".join(f"batch {b}" for b in rows) + " |")
    print("|---|" + "---|" * len(rows))
    keys = list(next(iter(rows.values())))
    for k in keys:
        print(f"| {k} | " + " | ".join(f"{rows[b][k]:.1f}" for b in rows) + " |")
    rest = {b: rows[b]["whole step"] - sum(v for k, v in rows[b].items() if k != "whole step") for b in rows}
    print("| rest: per-slice Python, uniforms, slice_scatter_ | " + " | ".join(f"{rest[b]:.1f}" for b in rows) + " |")


if __name__ == "__main__":
    main()
