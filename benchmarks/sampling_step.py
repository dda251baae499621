"""Per-sub-pixel cost of cached sampling, the cached/naive ratio, and where a step's time goes (CPU).

    python -m benchmarks.sampling_step                 # every row below
    python -m benchmarks.sampling_step --repeats 3     # fewer alternating repeats

Rows:
- ``cpu_demo`` (random weights) sampled whole at batch 1, 16 and 64: microseconds per sub-pixel (per image in
  the batch: wall time / (images x sub-pixels)) and images per second;
- the default ``SPNConfig(image_size=32)`` at batch 2, cached against naive: the naive sampler is timed over a
  prefix of slice 0 (each naive sub-pixel costs one full decoder pass over the slice, so it extrapolates
  linearly) and the cached one over whole samples;
- one whole sample at batch 1 of cpu_demo's networks on a 512x512 image with s=16 (32x32 slices);
- a torch.profiler breakdown of one cpu_demo sample at batch 1 (the top operators by self CPU time).

Subnormal floats are flushed, as the ``spn`` command does. Only public API is used: ``SPN.sample``,
``SPN.condition``, ``SPN.slice_logits`` and ``spn.sampling.draw``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from spn import SPN, SPNConfig
from spn.configs import PRESETS
from spn.sampling import draw


def cpu_demo() -> SPN:
    torch.manual_seed(0)
    return SPN(PRESETS["cpu_demo"].stages[0]).eval()


def time_sample(model: SPN, batch: int) -> float:
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    model.sample(batch, generator=g)
    return time.perf_counter() - t0


def time_naive_prefix(model: SPN, batch: int, pixels: int) -> tuple[float, int]:
    """Seconds for the naive sampler's first `pixels` pixels (every channel) of slice 0, and the sub-pixels."""
    cfg = model.config
    n, C = cfg.slice_size, cfg.channels
    low = torch.zeros(batch, C, cfg.image_size, cfg.image_size, dtype=torch.int64)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        cond = model.condition(low, None, torch.zeros(batch, dtype=torch.int64))
        values = torch.zeros(batch, C, n, n, dtype=torch.int64)
        t0 = time.perf_counter()
        for p in range(pixels):
            r, c = divmod(p, n)
            for ch in range(C):
                values[:, ch, r, c] = draw(model.slice_logits(values, cond)[:, r, c, ch], 1.0, g)
        return time.perf_counter() - t0, pixels * C


def demo_rows(repeats: int, batches=(1, 16, 64)) -> list[dict]:
    model = cpu_demo()
    dims = model.config.modeled_dims
    times: dict[int, list[float]] = {b: [] for b in batches}
    for b in batches:
        time_sample(model, b)  # warm-up
    for _ in range(repeats):  # interleaved, so a change of load hits every batch alike
        for b in batches:
            times[b].append(time_sample(model, b))
    out = []
    for b in batches:
        t = statistics.median(times[b])
        out.append(dict(model="cpu_demo", batch=b, us_per_sub_pixel=t / (b * dims) * 1e6, images_per_s=b / t))
    return out


def ratio_row(repeats: int, batch: int = 2, naive_pixels: int = 4) -> dict:
    torch.manual_seed(0)
    model = SPN(SPNConfig(image_size=32)).eval()
    dims = model.config.modeled_dims
    cached, naive = [], []
    time_sample(model, batch)
    for _ in range(repeats):
        cached.append(time_sample(model, batch) / dims)
        s, m = time_naive_prefix(model, batch, naive_pixels)
        naive.append(s / m)
    c, nv = statistics.median(cached), statistics.median(naive)
    return dict(model="SPNConfig(image_size=32)", batch=batch, cached_us_per_sub_pixel=c * 1e6,
                naive_us_per_sub_pixel=nv * 1e6, naive_over_cached=nv / c)  # fmt: skip


def large_row(size: int = 512, subscale: int = 16) -> dict:
    """One whole cached sample at batch 1 of cpu_demo's networks on a size x size image (s = subscale)."""
    torch.manual_seed(0)
    model = SPN(dataclasses.replace(PRESETS["cpu_demo"].stages[0], image_size=size, subscale=subscale)).eval()
    t = time_sample(model, 1)
    return dict(model=f"cpu_demo widths, {size}x{size}, s={subscale}", batch=1, seconds=t,
                us_per_sub_pixel=t / model.config.modeled_dims * 1e6)  # fmt: skip


def breakdown(top: int = 15) -> str:
    model = cpu_demo()
    time_sample(model, 1)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        time_sample(model, 1)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-breakdown", action="store_true")
    ap.add_argument("--no-large", action="store_true", help="skip the 512x512 (s=16) sample")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    print("| model | batch | us / sub-pixel | images/s |\n|---|---|---|---|")
    for r in demo_rows(args.repeats):
        print(f"| {r['model']} | {r['batch']} | {r['us_per_sub_pixel']:.1f} | {r['images_per_s']:.1f} |")
    r = ratio_row(args.repeats)
    print(
        f"\n{r['model']}, batch {r['batch']}: cached {r['cached_us_per_sub_pixel']:.1f} us, naive "
        f"{r['naive_us_per_sub_pixel']:.0f} us per sub-pixel: naive/cached = {r['naive_over_cached']:.1f}x"
    )
    if not args.no_large:
        r = large_row()
        print(f"\n{r['model']}, batch 1: {r['seconds']:.1f} s ({r['us_per_sub_pixel']:.1f} us per sub-pixel)")
    if not args.no_breakdown:
        print("\n" + breakdown())


if __name__ == "__main__":
    main()
