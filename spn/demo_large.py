"""The large-image demo: train the three stages of a size- and depth-upscaling pipeline (preset cpu_photo256 or
cpu_photo512) briefly on photographs, sample the pipeline, and score it on held-out crops, stage by stage.

    spn demo --size 256                 # ~5 min of training on 2 CPU cores, then sampling (or python -m spn.demo_large)
    spn demo --size 512 --data PHOTOS/  # 512 needs photographs of at least 512x512 (see below)

The chain: (0) a 3-bit 32x32 image: slice 0 of the final image, trained on size x size crops strided by size/32;
(1) the 3-bit size x size image given that slice 0 (s = size/32: 32x32 slices); (2) the 8-bit image given its 3
high bits (same slices). Each stage trains for a third of --time-budget with the `spn demo` recipe's settings
(spn.demo.RECIPE: lr, EMA, augmented crops, one slice per image per step) at batch 8, then its EMA weights are
loaded. Held-out bits/dim per stage come from Pipeline.stage_bits_per_dim on every non-overlapping crop of the
held-out photographs (and of the unseen ones, spn.demo.unseen_photos); PNG and lossless WebP are scored on the
same crops. The embedded photos suffice at 256 (3 held-out crops); at 512 two of the seven training photographs
and both held-out ones are smaller than 512 on a side, so 512 needs --data: a folder of larger photographs (it
holds out the last 5% of its files).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from . import data as D
from .checkpoint import load_checkpoint
from .config import SPNConfig
from .demo import RECIPE, codec_bits_per_dim, unseen_photos
from .outputs import save_grid
from .pipeline import Pipeline
from .train import TrainArgs, train

PRESETS = {256: "cpu_photo256", 512: "cpu_photo512"}
BATCH_SIZE = 8


def stage_configs(size: int, quick: bool = False) -> list[SPNConfig]:
    """The preset's stages; quick: the same chain in miniature (3-bit 4x4 -> 3-bit 16x16, s=4 -> 8-bit 16x16)."""
    from . import configs

    if quick:
        net = dict(channels=3, context_channels=8, context_blocks=1, decoder_channels=8, decoder_blocks=1,
                   head_channels=8)  # fmt: skip
        return [
            SPNConfig(image_size=4, bits=3, subscale=2, **net),
            SPNConfig(image_size=16, bits=3, subscale=4, first_slice_given=True, **net),
            SPNConfig(image_size=16, bits=8, subscale=4, cond_bits=3, **net),
        ]
    if size not in PRESETS:
        raise ValueError(f"size must be one of {sorted(PRESETS)}, got {size!r}")
    return configs.get(PRESETS[size])


def train_commands(size: int, time_budget: float, data: str = "photos", out: str = "runs/photo") -> list[str]:
    """The `spn train` command lines that train what the demo trains, one per stage."""
    r = RECIPE
    common = (f"--data {data} --batch-size {BATCH_SIZE} --lr {r.lr} --warmup 10 --ema-decay {r.ema_decay} "
              f"--weight-decay {r.weight_decay} --slices-per-step {r.slices_per_step} --hflip "
              f"--crop-scale {r.crop_scale} --color-jitter {r.color_jitter} --steps 100000 "
              f"--time-budget {time_budget / 3:g}")  # fmt: skip
    cmds = []
    for i in range(3):
        sub = f" --subsample {size // 32}" if i == 0 else ""
        cmds.append(f"spn train --preset {PRESETS[size]} --stage {i} --out {out}{size}/stage{i}{sub} {common}")
    return cmds


def _held_out(data: str, size: int, channels: int, max_images: int | None) -> dict[str, torch.Tensor]:
    """uint8 crops [M, C, N, N] to score: the held-out split of `data`, and every unseen photograph large enough."""
    out = {}
    test = D.build_dataset(data, "test", size, channels)
    if len(test):
        out["held-out"] = torch.stack([test[i] for i in range(min(len(test), max_images or len(test)))])
    for name, img in unseen_photos(channels).items():
        if min(img.shape[:2]) >= size:
            crops = D.grid_crops([img], size)
            out[name] = crops[: max_images or len(crops)]
    return out


def _score(pipe: Pipeline, crops: torch.Tensor) -> dict:
    per = pipe.stage_bits_per_dim(D.quantize(crops, 8))  # [M, S + 1]
    return {
        "crops": len(crops),
        "stages": per.mean(0)[:-1].tolist(),
        "total": float(per[:, -1].mean()),
        "png": float(codec_bits_per_dim(crops, "png").mean()),
        "webp_lossless": float(codec_bits_per_dim(crops, "webp").mean()),
    }


def run_large_demo(
    out: str = "spn-demo-large",
    size: int = 256,
    time_budget: float = 300.0,
    quick: bool = False,
    seed: int = 0,
    device: str | None = None,
    data: str = "photos",
    n_samples: int = 4,
    force: bool = False,
) -> int:
    """Trains, scores and samples the chain (see the module docstring); returns the exit status (0, or 128 + the
    signal that stopped a stage's training, whose checkpoint is kept)."""
    t_start = time.perf_counter()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cfgs = stage_configs(size, quick)
    final = cfgs[-1].image_size
    r = RECIPE
    augment = D.Augment(r.hflip, r.crop_scale, r.channel_perm, r.invert, r.color_jitter)
    chain = " -> ".join(f"{c.bits}-bit {c.image_size}x{c.image_size} (s={c.subscale})" for c in cfgs)
    per = "a few steps per stage (--quick)" if quick else f"{time_budget / 3:.0f} s of training per stage"
    print(f"spn demo (large): {chain} on {dev}; {per}")
    stages, trained = [], []
    from .model import SPN

    for i, cfg in enumerate(cfgs):
        sub = final // cfg.image_size if i == 0 else 1
        train_set = D.build_dataset(data, "train", cfg.image_size, cfg.channels, seed=seed, augment=augment,
                                    subsample=sub)  # fmt: skip
        torch.manual_seed(seed + i)
        model = SPN(cfg)
        steps = dict(steps=3, time_budget=None) if quick else dict(steps=100_000, time_budget=time_budget / 3)
        args = TrainArgs(
            out_dir=str(Path(out) / f"stage{i}"), force=force, batch_size=BATCH_SIZE, lr=r.lr,
            warmup=2 if quick else 10,
            weight_decay=r.weight_decay, ema_decay=r.ema_decay, slices_per_step=r.slices_per_step, eval_every=0,
            sample_every=-1, checkpoint_every=0, keep=1, log_every=1 if quick else 10, seed=seed, device=str(dev),
            progress=not quick, **steps,
        )  # fmt: skip
        n_params = sum(p.numel() for p in model.parameters())
        how = f", trained on {final}x{final} crops strided by {sub}" if sub > 1 else ""
        print(f"\nstage {i}: {n_params:,} parameters, {cfg.bits}-bit {cfg.image_size}x{cfg.image_size}, "
              f"s={cfg.subscale}{how}")  # fmt: skip
        res = train(model, train_set, None, args, log=lambda *a, **k: None)
        print(f"  {res.step} steps in {res.train_seconds:.0f} s -> {res.checkpoint}")
        if res.interrupted is not None:
            print(f"stopped by signal {res.interrupted} while training stage {i}")
            return 128 + res.interrupted
        trained.append({"steps": res.step, "train_seconds": res.train_seconds, "parameters": n_params,
                        "checkpoint": str(res.checkpoint)})  # fmt: skip
        stages.append(load_checkpoint(res.checkpoint, map_location=dev))
    pipe = Pipeline(stages).eval()

    scores = {}
    with torch.no_grad():
        for name, crops in _held_out(data, final, cfgs[-1].channels, 8 if quick else None).items():
            scores[name] = _score(pipe, crops.to(dev))
    print(f"\nbits/dim, EMA weights (per stage: bits per sub-pixel that stage models; total: per sub-pixel of the "
          f"8-bit {final}x{final} image):")  # fmt: skip
    head = "".join(f"{f'stage {i}':>9s}" for i in range(len(cfgs)))
    print(f"  {'crops':<32s}{head}{'total':>9s}{'PNG':>8s}{'WebP':>8s}")
    for name, sc in scores.items():
        cols = "".join(f"{v:9.3f}" for v in sc["stages"])
        label = f"{name} ({sc['crops']})"
        print(f"  {label:<32s}{cols}{sc['total']:9.3f}{sc['png']:8.3f}{sc['webp_lossless']:8.3f}")

    # Samples stage by stage, so each stage's output can be seen: 3-bit 32x32, 3-bit size x size, 8-bit.
    g = torch.Generator(device=dev).manual_seed(seed)
    t0 = time.perf_counter()
    y, grids = None, {}
    with torch.no_grad():
        for i, st in enumerate(pipe.stages):
            c = st.config
            kw = {"first_slice": y} if c.first_slice_given else ({"high_bits": y} if c.cond_bits else {})
            y = st.sample(n_samples, generator=g, progress=not quick, **kw)
            scale = final // c.image_size if i == 0 else 1
            grids[f"stage{i}"] = str(save_grid(y, c.bits, Path(out) / f"samples_stage{i}.png", scale=scale))
    sample_s = time.perf_counter() - t0
    print(f"\n{n_samples} samples through the pipeline in {sample_s:.0f} s:")
    for k, p in grids.items():
        print(f"  {k}: {p}")
    total = time.perf_counter() - t_start
    print(f"whole demo {total:.0f} s")
    if not quick:
        print("the same training as commands:\n  " + "\n  ".join(train_commands(final, time_budget, data)))
    results = {
        "image_size": final, "stages": [dataclasses.asdict(c) for c in cfgs], "training": trained,
        "bits_per_dim": scores, "samples": grids, "n_samples": n_samples, "sample_seconds": sample_s,
        "total_seconds": total, "threads": torch.get_num_threads() if dev.type == "cpu" else None,
        "device": str(dev), "time_budget": time_budget, "data": data,
    }  # fmt: skip
    (Path(out) / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {Path(out) / 'results.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m spn.demo_large", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--size", type=int, default=256, choices=sorted(PRESETS), help="final image size")
    ap.add_argument("--out", default="spn-demo-large", help="output directory")
    ap.add_argument("--time-budget", type=float, default=300.0, help="seconds of training, split over the stages")
    ap.add_argument("--data", default="photos", help="'photos' (the embedded ones) or a folder of photographs")
    ap.add_argument("--samples", type=int, default=4, help="images sampled through the pipeline")
    ap.add_argument("--quick", action="store_true", help="a few-second run of the same chain in miniature")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    ap.add_argument("--force", action="store_true", help="run again into a used --out")
    a = ap.parse_args(argv)
    if a.samples < 1:
        ap.error(f"--samples must be >= 1, got {a.samples}")
    from .runtime import flush_denormal

    with flush_denormal():
        return run_large_demo(a.out, a.size, a.time_budget, a.quick, a.seed, a.device, a.data, a.samples, a.force)


if __name__ == "__main__":
    raise SystemExit(main())
