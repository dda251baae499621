"""`spn demo --labels`: a class-conditional SPN whose classes are the embedded training photographs.

Each random training crop is labelled with the photograph it comes from (spn.labels.LabelledCrops), the model is
the demo's (spn.demo.RECIPE) with one class per photograph, and the sample grid has one row per photograph: each
row should look like crops of its photograph. The bits/dim it prints are per photograph, on the fixed grid of
non-overlapping crops of the training photographs: crops of images the model was trained on (the held-out
photographs of `spn demo` belong to no class), so they measure fit, not generalisation.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import torch

from . import data as D
from .checkpoint import load_checkpoint
from .evaluate import eval_indices, evaluate, per_class
from .labels import Labelled, LabelledCrops
from .train import TrainArgs, train


def run_label_demo(
    out: str = "spn-demo-labels",
    time_budget: float = 300.0,
    quick: bool = False,
    seed: int = 0,
    device: str | None = None,
    force: bool = False,
) -> int:
    from . import configs
    from .demo import RECIPE
    from .model import SPN

    t_start = time.perf_counter()
    recipe = RECIPE
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    photos = D.load_photos("train")
    names = list(photos)
    if quick:
        fields = {k: v for k, v in recipe.config if k in ("output", "mixtures", "dropout")}
        cfg = dataclasses.replace(configs.get("cpu_tiny"), image_size=4, bits=8, subscale=2, **fields)
        targs = dict(steps=4, time_budget=None, batch_size=8, warmup=2, slices_per_step=1, eval_every=2)
        per_class_crops, per_row = 4, 1
    else:
        cfg = recipe.model_config()
        targs = dict(steps=100_000, time_budget=time_budget, batch_size=recipe.batch_size, warmup=recipe.warmup)
        targs.update(slices_per_step=recipe.slices_per_step, eval_every=recipe.eval_every)
        targs.update(eval_every_max_images=recipe.eval_every_images)
        per_class_crops, per_row = 32, 8
    cfg = dataclasses.replace(cfg, classes=len(names))
    size = cfg.image_size
    augment = D.Augment(recipe.hflip, recipe.crop_scale, recipe.channel_perm, recipe.invert, recipe.color_jitter)
    train_set = LabelledCrops(photos, size, 4096, seed, augment)
    crops = [D.grid_crops([img], size) for img in photos.values()]
    crops = [c[torch.as_tensor(eval_indices(len(c), per_class_crops).astype("int64"))] for c in crops]
    labels = torch.cat([torch.full((len(c),), k, dtype=torch.int64) for k, c in enumerate(crops)])
    fit_set = Labelled(D.TensorImages(torch.cat(crops)), labels.numpy(), names)
    torch.manual_seed(seed)
    model = SPN(cfg)
    print(
        f"spn demo --labels: {sum(p.numel() for p in model.parameters()):,}-parameter class-conditional SPN "
        f"({size}x{size}x{cfg.channels}, {cfg.bits} bits) on {dev}; one class per photograph: {', '.join(names)}"
    )
    args = TrainArgs(out_dir=out, lr=recipe.lr, weight_decay=recipe.weight_decay,
                     sample_every=0, n_samples=per_row * len(names), checkpoint_every=0, keep=1,
                     log_every=1 if quick else 10, seed=seed, device=str(dev), ema_decay=recipe.ema_decay,
                     force=force, **targs)  # fmt: skip
    res = train(model, train_set, fit_set, args)
    scored = load_checkpoint(res.checkpoint, map_location=dev) if res.checkpoint is not None else model.eval()
    r = evaluate(scored, fit_set, bits=cfg.bits, device=dev)
    rows = per_class(r, cfg.classes)
    print(f"\nbits/dim per photograph on {per_class_crops} evenly spaced {size}x{size} grid crops of each training "
          "photograph (seen in training; EMA weights):")  # fmt: skip
    for row in rows:
        print(f"  {names[row['label']]:<20s} {row['bpd']:6.3f} ± {row['ci95']:.3f} ({row['n']} crops)")
    print(f"  {'all':<20s} {r['bpd']:6.3f} ± {r['ci95']:.3f}")
    print(f"\ntrained {res.step} steps in {res.train_seconds:.0f} s; whole demo {time.perf_counter() - t_start:.0f} s")
    print(f"  samples     {res.samples} (one row per photograph, in the order above)")
    print(f"  checkpoint  {res.checkpoint}")
    results = {
        "classes": names,
        "bits_per_dim": r["bpd"],
        "per_class": [{**row, "name": names[row["label"]]} for row in rows],
        "steps": res.step,
        "train_seconds": res.train_seconds,
        "config": dataclasses.asdict(cfg),
        "paths": {"samples": str(res.samples), "checkpoint": str(res.checkpoint)},
    }
    (Path(out) / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0 if res.interrupted is None else 128 + res.interrupted
