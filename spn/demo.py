"""`spn demo`: train a small SPN on the embedded photos and compare its held-out bits/dim with PNG and lossless
WebP on exactly the same held-out crops. Every number it prints is measured by that run.

Data: 32x32 crops of the photographs scikit-image ships in its wheel (spn.data: train = 7 photos, random crops,
flipped, rescaled and colour-jittered; held-out = every non-overlapping 32x32 crop of chelsea and coffee). Beyond
the held-out crops of the embedded set, the demo also scores crops of photographs from other packages, which it
never saw in any form (matplotlib's grace_hopper.jpg; scikit-learn's china.jpg and flower.jpg where scikit-learn is
installed). Model and recipe: `RECIPE` (preset cpu_demo with the fields it overrides), the best of a measured
ablation (RESULTS.md). Training stops after `time_budget` seconds of optimisation steps (the cosine schedule is
sized from the measured speed), with held-out evaluations along the way; evaluation, sampling and the codecs come
after, so the whole run takes roughly budget + 1-2 minutes on 2 CPU cores.
"""

from __future__ import annotations

import dataclasses
import io
import json
import platform
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from . import data as D
from .checkpoint import load_checkpoint
from .evaluate import eval_indices, evaluate
from .train import TrainArgs, train


def _score_unseen(model, size: int, cfg, dev: torch.device, max_images: int | None) -> dict[str, dict[str, Any]]:
    """Bits/dim of the model (EMA weights, as trained) and of the codecs on every non-overlapping crop of each
    unseen photograph."""
    out = {}
    for name, img in unseen_photos(cfg.channels).items():
        crops = D.grid_crops([img], size)
        r = evaluate(model, D.TensorImages(crops), bits=cfg.bits, device=dev, max_images=max_images)
        picked = crops[torch.as_tensor(eval_indices(len(crops), max_images).astype(np.int64))]
        png, webp = codec_bits_per_dim(picked, "png"), codec_bits_per_dim(picked, "webp")
        out[name] = {
            "crops": r["n"],
            "spn": r["bpd"],
            "spn_ci95": r["ci95"],
            "spn_max": float(r["per_image"].max()),
            "png": float(png.mean()),
            "webp_lossless": float(webp.mean()),
        }
    return out


def codec_bits_per_dim(images: torch.Tensor, codec: str) -> np.ndarray:
    """Per-image bits/dim of a lossless codec: 8 * file bytes / (C*H*W), for uint8 images [M, C, H, W].

    "png": Pillow PNG at compress_level 9 with optimize=True; "webp": Pillow lossless WebP, quality 100 (the
    lossless effort knob), method 6 (slowest, smallest). Each file is decoded and checked to be exact."""
    from PIL import Image

    out = np.empty(images.shape[0])
    for i, x in enumerate(images):
        arr = x.permute(1, 2, 0).numpy()
        im = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
        buf = io.BytesIO()
        if codec == "png":
            im.save(buf, format="PNG", optimize=True, compress_level=9)
        elif codec == "webp":
            im.save(buf, format="WEBP", lossless=True, quality=100, method=6, exact=True)
        else:
            raise ValueError(f"codec must be 'png' or 'webp', got {codec!r}")
        back = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert(im.mode)).reshape(arr.shape)
        if not np.array_equal(back, arr):
            raise RuntimeError(f"{codec} round trip of held-out crop {i} is not lossless")
        out[i] = 8 * buf.getbuffer().nbytes / x.numel()
    return out


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What the demo trains: preset cpu_demo with `config` overriding its fields, and the training settings."""

    config: tuple[tuple[str, Any], ...] = ()
    lr: float = 1e-2
    warmup: int = 30
    batch_size: int = 32
    slices_per_step: Optional[int] = 1  # noqa: UP045
    ema_decay: float = 0.99  # a short run: an EMA window of ~100 steps
    weight_decay: float = 0.01
    hflip: bool = False
    crop_scale: float = 1.0
    channel_perm: bool = False
    invert: bool = False
    color_jitter: float = 0.0
    eval_every: int = 2000
    eval_every_images: int = 64  # the periodic evals: enough for the curve's shape, cheap next to the final one
    unseen_crops: int = 64  # evenly spaced crops scored per unseen photograph

    def model_config(self):
        from . import configs

        return dataclasses.replace(configs.get("cpu_demo"), **dict(self.config))


# The measured best (benchmarks/RESULTS.md, "spn demo recipe"): the discretised logistic mixture, 16x16 slices
# (s=2), and augmented crops: flips, 1-2x random-resized crops, and per-channel colour jitter, which lets seven
# photographs cover colours they lack.
RECIPE = Recipe(
    config=(("output", "logistic_mixture"), ("subscale", 2)),
    lr=3e-3,
    batch_size=16,
    hflip=True,
    crop_scale=2.0,
    color_jitter=0.5,
    eval_every=1000,
)


def train_command(recipe: Recipe, time_budget: float, out: str = "runs/demo") -> str:
    """The `spn train` command line that trains what the demo trains (same model, data, augmentation, schedule)."""
    args = ["spn", "train", "--out", out, "--data", "photos", "--preset", "cpu_demo"]
    args += [f"--set {k}={v}" for k, v in recipe.config]
    flags = {"lr": "--lr", "warmup": "--warmup", "batch_size": "--batch-size", "ema_decay": "--ema-decay",
             "weight_decay": "--weight-decay", "crop_scale": "--crop-scale", "color_jitter": "--color-jitter",
             "eval_every": "--eval-every", "eval_every_images": "--eval-every-max-images"}  # fmt: skip
    for field, flag in flags.items():
        args.append(f"{flag} {getattr(recipe, field)}")
    if recipe.slices_per_step is not None:
        args.append(f"--slices-per-step {recipe.slices_per_step}")
    args += [flag for field, flag in (("hflip", "--hflip"), ("channel_perm", "--channel-perm"),
                                      ("invert", "--invert")) if getattr(recipe, field)]  # fmt: skip
    return " ".join(args + ["--steps 100000", f"--time-budget {time_budget:g}"])


UNSEEN_PHOTOS = {  # package -> its bundled natural photographs, relative to the package directory
    "matplotlib": ("mpl-data/sample_data/grace_hopper.jpg",),
    "sklearn": ("datasets/images/china.jpg", "datasets/images/flower.jpg"),
}


def unseen_photos(channels: int = 3) -> dict[str, np.ndarray]:
    """Natural photographs outside the embedded set, from the installed packages of UNSEEN_PHOTOS (matplotlib comes
    with the demo extra; scikit-learn's two photographs count where it is installed): {name: uint8 [H, W, C]}."""
    import importlib.util

    out = {}
    for package, files in UNSEEN_PHOTOS.items():
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        for rel in files:
            path = Path(list(spec.submodule_search_locations)[0]) / rel
            if path.is_file():
                out[f"{path.stem} ({package})"] = D.load_image(path, channels)
    return out


def _ci95(v: np.ndarray) -> float:
    return float(1.96 * v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")


def run_demo(
    out: str = "spn-demo",
    time_budget: float = 300.0,
    quick: bool = False,
    seed: int = 0,
    device: str | None = None,
    recipe: Recipe = RECIPE,
    force: bool = False,
) -> int:
    from . import configs
    from .model import SPN

    t_start = time.perf_counter()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if quick:
        # The same code path at toy size, so a test can keep the demo from rotting in seconds.
        fields = {k: v for k, v in recipe.config if k in ("output", "mixtures", "dropout")}
        cfg = dataclasses.replace(configs.get("cpu_tiny"), image_size=4, bits=8, subscale=2, **fields)
        size, eval_max, n_samples = 4, 16, 2
        targs = dict(steps=4, time_budget=None, batch_size=8, warmup=2, slices_per_step=1, eval_every=2)
    else:
        cfg = recipe.model_config()
        size, eval_max, n_samples = cfg.image_size, None, 16
        batch = recipe.batch_size * (4 if dev.type == "cuda" else 1)
        targs = dict(steps=100_000, time_budget=time_budget, batch_size=batch, warmup=recipe.warmup)
        targs.update(slices_per_step=recipe.slices_per_step, eval_every=recipe.eval_every)
        targs.update(eval_every_max_images=recipe.eval_every_images)
    augment = D.Augment(recipe.hflip, recipe.crop_scale, recipe.channel_perm, recipe.invert, recipe.color_jitter)
    train_set = D.build_dataset("photos", "train", size, cfg.channels, seed=seed, augment=augment)
    test_set = D.build_dataset("photos", "test", size, cfg.channels)
    torch.manual_seed(seed)
    model = SPN(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    threads = torch.get_num_threads() if dev.type == "cpu" else None
    print(
        f"spn demo: {n_params:,}-parameter SPN ({size}x{size}x{cfg.channels}, {cfg.bits} bits, s={cfg.subscale}) on "
        f"{dev}{f' ({threads} threads)' if threads else ''}; training "
        + ("a few steps (--quick)" if quick else f"for {time_budget:.0f} s")
        + f" on random crops of {', '.join(D.PHOTO_SPLITS['train'])}; held out: {', '.join(D.PHOTO_SPLITS['test'])}"
    )
    args = TrainArgs(
        out_dir=out,
        lr=recipe.lr,
        weight_decay=recipe.weight_decay,
        eval_max_images=eval_max,
        sample_every=0,
        n_samples=n_samples,
        checkpoint_every=0,
        keep=1,
        log_every=10 if not quick else 1,
        seed=seed,
        device=str(dev),
        ema_decay=recipe.ema_decay,
        force=force,
        **targs,
    )
    res = train(model, train_set, test_set, args)

    # The codecs see exactly the crops the model was scored on.
    idx = eval_indices(len(test_set), eval_max)
    crops = torch.stack([test_set[int(i)] for i in idx])
    png = codec_bits_per_dim(crops, "png")
    webp = codec_bits_per_dim(crops, "webp")
    # The EMA weights, as evaluated and saved (the model object itself holds the raw weights).
    scored = load_checkpoint(res.checkpoint, map_location=dev) if res.checkpoint is not None else model
    unseen = _score_unseen(scored, size, cfg, dev, eval_max or recipe.unseen_crops)
    total = time.perf_counter() - t_start
    rows = [
        ("SPN (this run, EMA weights, exact log-likelihood)", res.eval_bpd, res.eval_ci95),
        ("PNG (Pillow, compress_level=9, optimize)", float(png.mean()), _ci95(png)),
        ("WebP lossless (Pillow, quality=100, method=6)", float(webp.mean()), _ci95(webp)),
    ]
    where = "+".join(D.PHOTO_SPLITS["test"])
    print(f"\nheld-out bits/dim on {len(idx)} {size}x{size} crops of {where} (lower is better):")
    for name, b, c in rows:
        print(f"  {name:<52s} {b:6.3f} ± {c:.3f}")
    for name, r in unseen.items():
        print(f"\nunseen photograph {name}, {r['crops']} evenly spaced {size}x{size} crops (never seen in training):")
        print(f"  {'SPN':<52s} {r['spn']:6.3f} ± {r['spn_ci95']:.3f}  (worst crop {r['spn_max']:.3f})")
        print(f"  {'PNG':<52s} {r['png']:6.3f}")
        print(f"  {'WebP lossless':<52s} {r['webp_lossless']:6.3f}")
    print(f"\ntrained {res.step} steps in {res.train_seconds:.0f} s; whole demo {total:.0f} s")
    if not quick:
        print(f"  the same training as a command: {train_command(recipe, time_budget)}")
    paths = [("checkpoint", res.checkpoint), ("samples", res.samples), ("loss curve", res.loss_curve)]
    for name, p in paths:
        print(f"  {name:<11s} {p if p is not None else '(not written: matplotlib is not installed)'}")
    results = {
        "held_out_crops": len(idx),
        "image_size": size,
        "bits_per_dim": {"spn": res.eval_bpd, "png": float(png.mean()), "webp_lossless": float(webp.mean())},
        "ci95": {"spn": res.eval_ci95, "png": _ci95(png), "webp_lossless": _ci95(webp)},
        "unseen": unseen,
        "recipe": dataclasses.asdict(recipe),
        "steps": res.step,
        "train_seconds": res.train_seconds,
        "total_seconds": total,
        "parameters": n_params,
        "device": str(dev),
        "machine": f"{platform.machine()}, {threads} torch threads" if threads else torch.cuda.get_device_name(dev),
        "config": dataclasses.asdict(cfg),
        "paths": {k: str(p) for k, p in paths if p is not None},
    }
    (Path(out) / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"  {'results':<11s} {Path(out) / 'results.json'}")
    return 0 if res.interrupted is None else 128 + res.interrupted
