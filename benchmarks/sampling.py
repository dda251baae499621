"""Sampling speed: cached incremental decoding against the naive sampler (full decoder per sub-pixel).

    python -m benchmarks.sampling               # the reference setting, the size sweep, and the plot
    python -m benchmarks.sampling --quick       # a smaller run

`rows()` returns the measurements as dicts for a harness. The naive sampler is too slow to run to the end
at 32x32 and above, so it is timed over a measured prefix of the sub-pixels (the first `naive_pixels`
pixels of the first slice, every channel) and extrapolated linearly: each naive sub-pixel costs the same (one
full decoder pass over a slice), so seconds/image = measured seconds / measured sub-pixels * total / batch.
Each row says which sub-pixel count was measured.
"""

from __future__ import annotations

import argparse
import time

import torch

from spn import SPN, SPNConfig
from spn.sampling import draw


def bench_config(image_size: int, subscale: int = 2, backend: str | None = None) -> SPNConfig:
    """The reference setting: 8-bit RGB, a decoder of 8 gated blocks with 64 channels."""
    return SPNConfig(
        image_size=image_size,
        channels=3,
        bits=8,
        subscale=subscale,
        context_channels=64,
        context_blocks=2,
        decoder_channels=64,
        decoder_blocks=8,
        head_channels=64,
        backend=backend,
    )


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_cached(model: SPN, batch: int) -> float:
    """Seconds for one full cached sample() of `batch` images."""
    dev = model.device
    g = torch.Generator(device=dev).manual_seed(0)
    _sync(dev)
    t0 = time.perf_counter()
    model.sample(batch, generator=g)
    _sync(dev)
    return time.perf_counter() - t0


def time_naive(model: SPN, batch: int, naive_pixels: int) -> tuple[float, int]:
    """Seconds for the naive sampler over the first `naive_pixels` pixels (all channels) of slice 0, and
    the number of sub-pixels that covers."""
    cfg = model.config
    n, C = cfg.slice_size, cfg.channels
    dev = model.device
    low = torch.zeros(batch, C, cfg.image_size, cfg.image_size, dtype=torch.int64, device=dev)
    gen = torch.Generator(device=dev).manual_seed(0)
    with torch.no_grad():
        cond = model.condition(low, None, torch.zeros(batch, dtype=torch.int64, device=dev))
        values = torch.zeros(batch, C, n, n, dtype=torch.int64, device=dev)
        _sync(dev)
        pixels = min(naive_pixels, n * n)
        t0 = time.perf_counter()
        for p in range(pixels):
            r, c = divmod(p, n)
            for ch in range(C):
                logits = model.slice_logits(values, cond)
                values[:, ch, r, c] = draw(logits[:, r, c, ch], 1.0, gen)
        _sync(dev)
        return time.perf_counter() - t0, pixels * C


def rows(
    sizes=(16, 32, 64), batch: int = 4, naive_pixels: int = 8, backend: str | None = None, device: str = "cpu"
) -> list[dict]:
    """One row per image size: seconds per image for both samplers and their ratio."""
    out = []
    for size in sizes:
        torch.manual_seed(0)
        model = SPN(bench_config(size, backend=backend)).to(device).eval()
        cfg = model.config
        total = cfg.modeled_dims
        cached = time_cached(model, batch)
        naive_s, measured = time_naive(model, batch, naive_pixels)
        naive = naive_s / measured * total
        out.append(
            dict(
                image_size=size,
                subscale=cfg.subscale,
                batch=batch,
                sub_pixels_per_image=total,
                cached_s_per_image=cached / batch,
                naive_s_per_image=naive / batch,
                naive_measured_sub_pixels=measured,
                speedup=naive / cached,
                threads=torch.get_num_threads(),
            )
        )
    return out


def table(rs: list[dict]) -> str:
    lines = [
        "| image | slices | batch | cached s/image | naive s/image (est.) | naive sub-pixels timed | speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rs:
        lines.append(
            f"| {r['image_size']}x{r['image_size']}x3 | {r['subscale'] ** 2} x {r['image_size'] // r['subscale']}^2 "
            f"| {r['batch']} | {r['cached_s_per_image']:.3f} | {r['naive_s_per_image']:.1f} "
            f"| {r['naive_measured_sub_pixels']} of {r['sub_pixels_per_image']} | {r['speedup']:.0f}x |"
        )
    return "\n".join(lines)


def plot(rs: list[dict], path: str = "benchmarks/sampling_vs_size.png") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["image_size"] for r in rs]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(sizes, [r["naive_s_per_image"] for r in rs], "o-", label="naive (extrapolated from a prefix)")
    ax.plot(sizes, [r["cached_s_per_image"] for r in rs], "s-", label="cached")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sizes, [f"{s}x{s}" for s in sizes])
    ax.set_xlabel("image size (RGB, 8 bits, s=2)")
    ax.set_ylabel("seconds per image (batch of 4)")
    ax.set_title("SPN sampling on CPU: 8 blocks x 64 channels")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="sizes 16 and 32 only, no plot")
    ap.add_argument("--backend", default=None)
    ap.add_argument("--naive-pixels", type=int, default=8)
    ap.add_argument(
        "--threads", type=int, default=1, help="intra-op threads for both samplers (1: the step's ops are tiny)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sizes = (16, 32) if args.quick else (16, 32, 64)
    rs = rows(sizes, naive_pixels=args.naive_pixels, backend=args.backend)
    print(table(rs))
    if not args.quick:
        plot(rs)


if __name__ == "__main__":
    main()
