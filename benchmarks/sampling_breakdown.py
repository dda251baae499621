"""Where one cached sampling step's time goes, per part, for cpu_demo (random weights) on CPU.

    python -m benchmarks.sampling_breakdown [--batch 1 64]

Each part of the per-sub-pixel work is timed on its own on a cache in mid-slice (many calls, median of
interleaved repeats) and reported per sub-pixel: the decoder (every gated block, one gated_step call per pixel)
and the head's input (once per pixel, so / C), the channel head, the draw (into the sampler's buffers), the
write of the value into the cache, the vertical stacks (once per row, so / (n C)). "whole step" is a full
sample() divided by its sub-pixels; the rest of it is the loop's own Python and the per-slice work (context
network, slice_scatter_, the cache's refill).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import spn_kernels as sk
from spn import SPN
from spn.configs import PRESETS


def _per_call(fn, calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def breakdown(batch: int, repeats: int = 5, calls: int = 200) -> dict[str, float]:
    torch.manual_seed(0)
    model = SPN(PRESETS["cpu_demo"].stages[0]).eval()
    cfg = model.config
    n, C, B = cfg.slice_size, cfg.channels, batch
    with torch.no_grad():
        low = torch.zeros(B, C, cfg.image_size, cfg.image_size, dtype=torch.int64)
        cond = model.condition(low, None, torch.zeros(B, dtype=torch.int64))
        cache = model.allocate_inference_cache(B)
        model.start_slice(cache, cond)
        dec, r, c = model.decoder, n // 2, n // 2
        for row in range(r):  # bring the cache to row r
            dec.step_row(cache.decoder, row)
        hidden = dec.step(cache.decoder, r, c)
        base = model.head.step_base(cache.head, hidden)
        pixel = cache.decoder.pixels[:, 1 + r, 1 + c]
        logits = model.head.step_channel(cache.head, base, pixel, 1)
        u = torch.rand(B, dtype=torch.float64)
        v = sk.categorical_draw(logits, u, 1.0)[0]
        vs, lps = torch.zeros(B, dtype=torch.int64), torch.zeros(B, dtype=torch.float64)
        cache.pixel = pixel
        parts = {
            "decoder (gated_step) / C": (lambda: dec.step(cache.decoder, r, c), C),
            "head input / C": (lambda: model.head.step_base(cache.head, hidden), C),
            "channel head": (lambda: model.head.step_channel(cache.head, base, pixel, 1), 1),
            "draw (categorical_draw_)": (lambda: sk.categorical_draw_(logits, u, 1.0, vs, lps, checked=True), 1),
            "write (the value into the cache)": (lambda: model.write(cache, v, r, c, 1), 1),
            "vertical stacks / (n C)": (
                lambda: dec.step_row(cache.decoder.__class__(**{**vars(cache.decoder), "rows_done": r}), r),
                n * C,
            ),  # fmt: skip
        }
        times: dict[str, list[float]] = {k: [] for k in parts}
        times["whole step"] = []
        for _ in range(repeats):
            for k, (fn, div) in parts.items():
                times[k].append(_per_call(fn, calls) / div)
            t0 = time.perf_counter()
            model.sample(B, generator=torch.Generator().manual_seed(0))
            times["whole step"].append((time.perf_counter() - t0) / cfg.modeled_dims)
    return {k: statistics.median(t) * 1e6 for k, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    rows = {b: breakdown(b, args.repeats) for b in args.batch}
    print("| part (us per sub-pixel) | " + " | ".join(f"batch {b}" for b in rows) + " |")
    print("|---|" + "---|" * len(rows))
    keys = list(next(iter(rows.values())))
    for k in keys:
        print(f"| {k} | " + " | ".join(f"{rows[b][k]:.1f}" for b in rows) + " |")
    rest = {b: rows[b]["whole step"] - sum(v for k, v in rows[b].items() if k != "whole step") for b in rows}
    print("| rest: the loop's Python, slice setup | " + " | ".join(f"{rest[b]:.1f}" for b in rows) + " |")


if __name__ == "__main__":
    main()
