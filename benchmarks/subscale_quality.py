"""Quality against the subscale factor s at equal compute: per image size, one model per s, each trained for the
same wall-clock seconds on the embedded photos with the `spn demo` recipe, then scored on the held-out crops.

    python -m benchmarks.subscale_quality                          # 32, 64, 128; 150 s per setting
    python -m benchmarks.subscale_quality --sizes 32 --subscales 1,2,4 --budget 60

Model and training: spn.demo.RECIPE (preset cpu_demo's widths and depths, the discretised logistic mixture, lr,
batch, EMA, augmented crops, one slice per image per step) with image_size and subscale changed, and a warm-up of
--warmup steps (a short one, so that the slowest setting also reaches the peak learning rate). The settings of
one size run back to back in this process, so they share the machine's conditions; the load average before and
after each run is recorded, and the CPU seconds the run's process got (training plus its final evaluation):
other jobs on the same core take the rest. Training stops after --budget seconds of optimisation steps; the final
held-out evaluation (every non-overlapping crop of the held-out photographs, EMA weights) is not counted in the budget.

Per run it also reports the held-out bits/dim of slice 0 and of the later slices separately (slice 0 is modelled
from nothing but itself: its pixels are s apart in the image), and once per size the mean absolute difference
between a held-out pixel and its neighbour d pixels to the right, for d = 1, 2, 4, 8, 16: how much a known
pixel d away says about a pixel.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
import os
import time
from pathlib import Path

import torch

from spn import data as D
from spn.checkpoint import load_checkpoint
from spn.demo import RECIPE
from spn.train import TrainArgs, train


def default_subscales(size: int) -> list[int]:
    """s = 1 (one slice), and s giving slices of 32 and 16 pixels (where s >= 2), as in benchmarks.scaling."""
    return sorted({1} | {size // n for n in (32, 16) if size // n >= 2})


def neighbour_gaps(images: torch.Tensor, distances=(1, 2, 4, 8, 16)) -> dict[int, float]:
    """Mean |x[.., j] - x[.., j + d]| over uint8 images [M, C, N, N] (8-bit levels)."""
    x = images.to(torch.float64)
    return {d: float((x[..., d:] - x[..., :-d]).abs().mean()) for d in distances if d < x.shape[-1]}


def per_slice_bpd(model, images: torch.Tensor, batch: int = 32) -> list[float]:
    """Held-out bits per sub-pixel of each slice k (mean over images), from uint8 images [M, C, N, N]."""
    cfg = model.config
    tot = torch.zeros(cfg.num_slices, dtype=torch.float64)
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = D.quantize(images[i : i + batch], cfg.bits)
            low, high = model.split_bits(x)
            for k in range(cfg.first_slice, cfg.num_slices):
                t = torch.full((x.shape[0],), k, dtype=torch.int64)
                tot[k] += -model._slice_log_prob(low, high, t).double().sum()
    dims = len(images) * cfg.channels * cfg.slice_size**2 * math.log(2)
    return (tot / dims).tolist()


def one_run(size: int, s: int, budget: float, warmup: int, out: Path, seed: int) -> dict:
    from spn.model import SPN

    recipe = RECIPE
    cfg = dataclasses.replace(recipe.model_config(), image_size=size, subscale=s)
    aug = D.Augment(recipe.hflip, recipe.crop_scale, recipe.channel_perm, recipe.invert, recipe.color_jitter)
    train_set = D.build_dataset("photos", "train", size, cfg.channels, seed=seed, augment=aug)
    test_set = D.build_dataset("photos", "test", size, cfg.channels)
    torch.manual_seed(seed)
    model = SPN(cfg)
    args = TrainArgs(
        out_dir=str(out / f"{size}-s{s}"), force=True, steps=1_000_000, time_budget=budget,
        batch_size=recipe.batch_size, lr=recipe.lr, warmup=warmup, weight_decay=recipe.weight_decay,
        ema_decay=recipe.ema_decay, slices_per_step=recipe.slices_per_step, eval_every=0, sample_every=-1,
        checkpoint_every=0, keep=1, log_every=10, seed=seed, device="cpu", progress=False,
    )  # fmt: skip
    load0, t0, cpu0 = os.getloadavg()[0], time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        res = train(model, train_set, test_set, args, log=lambda *a, **k: None)
    cpu = time.process_time() - cpu0  # CPU seconds this process got: other jobs on the core take the rest
    ema = load_checkpoint(res.checkpoint, map_location="cpu")
    crops = torch.stack([test_set[i] for i in range(len(test_set))])
    slices = per_slice_bpd(ema, crops)
    later = slices[1:]
    return {
        "image_size": size, "subscale": s, "slice_size": size // s, "steps": res.step,
        "train_seconds": res.train_seconds, "cpu_seconds": cpu, "images_seen": res.step * recipe.batch_size,
        "pixels_per_step": recipe.batch_size * (size // s) ** 2 * (recipe.slices_per_step or s * s),
        "parameters": sum(p.numel() for p in model.parameters()), "held_out_crops": len(crops),
        "bpd": res.eval_bpd, "ci95": res.eval_ci95, "bpd_slice0": slices[0],
        "bpd_later": sum(later) / len(later) if later else None,
        "load_before": load0, "load_after": os.getloadavg()[0], "wall": time.perf_counter() - t0,
    }  # fmt: skip


def table(rs: list[dict]) -> str:
    lines = [
        "| image | s | slice | steps | images seen | CPU s | held-out bits/dim | slice 0 | slices >= 1 "
        "| load before / after |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in rs:
        later = f"{r['bpd_later']:.3f}" if r["bpd_later"] is not None else "-"
        lines.append(
            f"| {r['image_size']}x{r['image_size']} ({r['held_out_crops']} crops) | {r['subscale']} "
            f"| {r['slice_size']}x{r['slice_size']} | {r['steps']} | {r['images_seen']:,} | {r['cpu_seconds']:.0f} "
            f"| {r['bpd']:.3f} ± {r['ci95']:.3f} | {r['bpd_slice0']:.3f} | {later} "
            f"| {r['load_before']:.1f} / {r['load_after']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="32,64,128", help="comma-separated image sizes")
    ap.add_argument("--subscales", default=None, help="comma-separated s for every size (default: per size, "
                    "1 and slices of 32 and 16)")  # fmt: skip
    ap.add_argument("--budget", type=float, default=150.0, help="training seconds per setting")
    ap.add_argument("--warmup", type=int, default=10, help="warm-up steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", default="bench-results/subscale-quality", help="folder for each run's files")
    ap.add_argument("--out", default=None, metavar="JSON", help="write the rows here")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)  # as `spn demo` does; this process ends after the runs
    rs, gaps = [], {}
    print(f"budget {a.budget:.0f} s per setting, warm-up {a.warmup}, {a.threads} thread(s), recipe {RECIPE}\n")
    for size in (int(x) for x in a.sizes.split(",")):
        test = D.build_dataset("photos", "test", size, 3)
        gaps[size] = neighbour_gaps(torch.stack([test[i] for i in range(len(test))]))
        print(f"{size}x{size}: mean |x - neighbour d to the right| (8-bit levels): "
              + ", ".join(f"d={d}: {g:.1f}" for d, g in gaps[size].items()), flush=True)  # fmt: skip
        subs = [int(x) for x in a.subscales.split(",")] if a.subscales else default_subscales(size)
        for s in subs:
            if size % s:
                continue
            rs.append(one_run(size, s, a.budget, a.warmup, Path(a.runs), a.seed))
            print(json.dumps(rs[-1]), flush=True)
    print()
    print(table(rs))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps({"rows": rs, "neighbour_gaps": gaps, "budget": a.budget}, indent=1) + "\n")


if __name__ == "__main__":
    main()
