"""The `spn` command: train, eval, sample, demo. `spn <command> --help` explains every flag.

spn demo                                   # train a small SPN on the embedded photos, compare with PNG/WebP
spn train --out runs/a --data photos       # train (defaults: preset cpu_demo, 32x32x3, 8 bits)
torchrun --nproc_per_node=8 -m spn train --preset imagenet32 --data imagenet32/ --out runs/i32
spn eval --checkpoint runs/a/ckpt_00020000.pt --data photos
spn sample --checkpoint runs/a/ckpt_00020000.pt --n 16 --out grid.png
spn train --labels --data pets/ --out runs/pets   # class-conditional: one subfolder per class
spn sample --checkpoint runs/pets/ckpt_00020000.pt --labels 0,1,2 --n 8 --out pets.png
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any

import numpy as np
import torch

import spn_kernels

from . import data as D
from .checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from .evaluate import evaluate, per_class
from .labels import build_labelled_dataset, sample_labels
from .outputs import save_array, save_grid
from .pipeline import Pipeline
from .rundir import claim
from .runtime import flush_denormal, tune_malloc
from .train import NonFiniteLossError, TrainArgs, find_resume, train
from .trainer import PER_CALL_OPTIONS, resume_step

MODEL_FLAGS = ("image_size", "channels", "bits", "subscale", "first_slice_given", "cond_bits", "backend")
BACKEND_CHOICES = ["auto", *spn_kernels.BACKENDS]


def _device(name: str | None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


_UNIONS = (typing.Union, types.UnionType) if sys.version_info >= (3, 10) else (typing.Union,)


def _field_type(hint: Any) -> tuple[Any, bool]:
    """A dataclass field's type hint -> (its type, whether None is allowed): int | None -> (int, True)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in _UNIONS and type(None) in args:
        rest = [t for t in args if t is not type(None)]
        return (rest[0] if len(rest) == 1 else hint), True
    return hint, False


def _field_types(cls: type) -> dict[str, tuple[Any, bool]]:
    hints = typing.get_type_hints(cls)
    return {f.name: _field_type(hints[f.name]) for f in dataclasses.fields(cls)}


def parse_value(text: str, kind: Any, optional: bool = False) -> Any:
    """A command-line string as a value of type `kind` (int, float, bool or str); "none"/"null" -> None when
    `optional`. Booleans are true/false, yes/no, on/off or 1/0."""
    low = text.lower()
    if optional and low in ("none", "null"):
        return None
    if kind is bool:
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, got {text!r}")
    if kind in (int, float, str):
        return kind(text)
    raise ValueError(f"cannot parse a value of type {kind}")


def _dataset(
    a: argparse.Namespace,
    path: str,
    split: str,
    size: int,
    channels: int,
    held_out: bool = True,
    augment=None,
    labelled: bool = False,
    classes: list[str] | None = None,
):
    """build_dataset with the data flags; `labelled`: spn.labels.build_labelled_dataset, mapped to `classes`."""
    build, extra = (build_labelled_dataset, {"classes": classes}) if labelled else (D.build_dataset, {})
    return build(
        path,
        split,
        size,
        channels,
        **extra,
        fmt=a.data_format,
        seed=getattr(a, "seed", 0),
        crop=getattr(a, "crop", None),
        held_out=held_out,
        on_bad_image=getattr(a, "on_bad_image", "skip"),
        subsample=getattr(a, "subsample", 1) or 1,
        augment=augment,
        max_pixels=getattr(a, "max_image_pixels", D.MAX_IMAGE_PIXELS),
    )


# --------------------------------------------------------------------------------------------------- train
def _model_config(a: argparse.Namespace, resume_cfg: dict[str, Any] | None):
    from . import configs
    from .config import SPNConfig

    if a.preset:
        cfg = configs.get(a.preset)
        if isinstance(cfg, list):
            if a.stage is None:
                raise SystemExit(f"--preset {a.preset} has {len(cfg)} stages: pick one with --stage 0..{len(cfg) - 1}")
            cfg = cfg[a.stage]
        cfg = dataclasses.asdict(cfg)
    elif resume_cfg is not None:
        cfg = dict(resume_cfg)
    else:
        cfg = dataclasses.asdict(configs.get("cpu_demo"))
    for k in MODEL_FLAGS:
        v = getattr(a, k)
        if v is not None:
            cfg[k] = None if (k == "backend" and v == "auto") else v
    kinds = _field_types(SPNConfig)
    for item in a.set or []:
        key, sep, val = item.partition("=")
        if not sep or key not in kinds:
            raise SystemExit(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {', '.join(kinds)}")
        try:
            cfg[key] = parse_value(val, *kinds[key])
        except ValueError as e:
            raise SystemExit(f"--set {item!r}: {e}") from None
    try:
        return SPNConfig(**cfg).validate()
    except (TypeError, ValueError) as e:
        raise SystemExit(f"invalid model config: {e}") from None


def _continued_args(targs: TrainArgs, saved: dict[str, Any], given: set[str]) -> TrainArgs:
    """On --resume, the options not given on the command line are the checkpoint's run's; those that are given
    replace them (the trainer reports the differences)."""
    keep = {f.name for f in dataclasses.fields(TrainArgs) if f.name in PER_CALL_OPTIONS or f.name in given}
    kw = {k: (tuple(v) if k == "betas" else v) for k, v in saved.items() if k not in keep and hasattr(targs, k)}
    return dataclasses.replace(targs, **kw)


def _check_data_flags(a: argparse.Namespace) -> None:
    if getattr(a, "subsample", 1) is not None and getattr(a, "subsample", 1) < 1:
        raise ValueError(f"--subsample must be an integer >= 1, got {a.subsample}")
    if getattr(a, "max_image_pixels", 1) < 1:
        raise ValueError(f"--max-image-pixels must be an integer >= 1, got {a.max_image_pixels}")


def cmd_train(a: argparse.Namespace) -> int:
    rank = int(os.environ.get("RANK", "0"))
    log = print if rank == 0 else (lambda *x, **k: None)
    targs = TrainArgs(**{f.name: getattr(a, f.name) for f in dataclasses.fields(TrainArgs) if hasattr(a, f.name)})
    targs.validate()
    _check_data_flags(a)
    resume = find_resume(targs.resume, targs.out_dir)  # read once: its config builds the model, train() resumes it
    if targs.resume == "auto" and resume is None:
        log(f"--resume: no checkpoint in {targs.out_dir} yet, starting fresh")
    targs = dataclasses.replace(targs, resume=str(resume.path) if resume else None)
    if resume is not None and resume.state.get("train_args"):
        targs = _continued_args(targs, resume.state["train_args"], getattr(a, "given", set())).validate()
    cfg = _model_config(a, resume.state["config"] if resume else None)
    run_dir = claim(targs.out_dir, resume_step=resume_step(resume), force=targs.force, log=log) if rank == 0 else None
    try:
        return _run_train(a, targs, cfg, resume, run_dir, log)
    finally:
        if run_dir is not None:
            run_dir.release()


def _labelled_config(cfg, classes: list[str]):
    """The config of a class-conditional model of `classes` (classes inferred from the data unless set)."""
    if cfg.classes and cfg.classes != len(classes):
        raise SystemExit(f"spn train --labels: the model has classes={cfg.classes} but the data has {len(classes)} "
                         f"classes ({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''})")  # fmt: skip
    return dataclasses.replace(cfg, classes=len(classes))


def _run_train(a: argparse.Namespace, targs: TrainArgs, cfg, resume, run_dir, log) -> int:
    from .model import SPN

    try:
        augment = D.Augment(a.hflip, a.crop_scale, a.channel_perm, a.invert, a.color_jitter)
        augment = augment if augment != D.Augment() else None
    except ValueError as e:
        raise SystemExit(f"spn train: augmentation flags: {e}") from None
    labelled = bool(a.labels or cfg.classes)
    train_set = None
    if labelled:  # the classes come from the training data (or, resumed, from the checkpoint)
        known = resume.state.get("class_names") if resume else None
        train_set = _dataset(a, a.data, "train", cfg.image_size, cfg.channels, held_out=not a.eval_data,
                             augment=augment, labelled=True, classes=known)  # fmt: skip
        cfg = _labelled_config(cfg, train_set.classes)
        log(f"labels: {len(train_set.classes)} classes ({', '.join(train_set.classes[:8])}"
            f"{', ...' if len(train_set.classes) > 8 else ''})")  # fmt: skip
    names = train_set.classes if labelled else None
    torch.manual_seed(a.seed)
    model = SPN(cfg)
    if a.eval_data:
        eval_set = _dataset(a, a.eval_data, "test", cfg.image_size, cfg.channels, held_out=False, labelled=labelled,
                            classes=names)  # fmt: skip
    else:
        eval_set = _dataset(a, a.data, "test", cfg.image_size, cfg.channels, labelled=labelled, classes=names)
    if train_set is None:
        train_set = _dataset(
            a, a.data, "train", cfg.image_size, cfg.channels, held_out=not a.eval_data, augment=augment
        )
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params:,} parameters; {cfg}")
    log(f"data: {a.data} -> {len(train_set)} train / {len(eval_set)} held-out images per epoch")
    res = train(model, train_set, eval_set, targs, log=log, resume=resume, run_dir=run_dir)
    if res.eval_bpd is not None:
        log(f"held-out bits/dim (EMA weights): {res.eval_bpd:.4f} ± {res.eval_ci95:.4f} (95% CI)")
    for name, p in (("checkpoint", res.checkpoint), ("metrics", res.metrics), ("loss curve", res.loss_curve)):
        if p is not None:
            log(f"{name}: {p}")
    if res.samples is not None:
        log(f"samples: {res.samples}")
    if res.interrupted:
        log(f"stopped by signal {res.interrupted} at step {res.step}; continue with --resume")
        return 128 + res.interrupted
    return 0


# --------------------------------------------------------------------------------------------------- eval
def load_models(paths: list[str], device: torch.device, backend: str | None):
    """One checkpoint -> its SPN; several -> a Pipeline of them, in the order given."""
    kw = {} if backend is None else {"backend": None if backend == "auto" else backend}
    models = [load_checkpoint(p, map_location=device, **kw) for p in paths]
    if len(models) == 1:
        return models[0]
    try:
        return Pipeline(models)
    except ValueError as e:
        raise SystemExit(f"these checkpoints do not form a pipeline: {e}") from None


def class_names(path: str, classes: int) -> list[str] | None:
    """The class names a class-conditional checkpoint was trained with (None: not recorded, or no classes)."""
    names = read_checkpoint(path).get("class_names") if classes else None
    return list(names) if names else None


def cmd_eval(a: argparse.Namespace) -> int:
    _check_data_flags(a)
    if a.batch_size < 1:
        raise ValueError(f"--batch-size must be an integer >= 1, got {a.batch_size}")
    if a.max_images is not None and a.max_images < 1:
        raise ValueError(f"--max-images must be an integer >= 1, got {a.max_images}")
    device = _device(a.device)
    model = load_models(a.checkpoint, device, a.backend)
    cfg = model.config
    names = class_names(a.checkpoint[-1], cfg.classes)
    ds = _dataset(a, a.data, a.split, cfg.image_size, cfg.channels, held_out=not a.no_held_out,
                  labelled=cfg.classes > 0, classes=names)  # fmt: skip
    names = names or getattr(ds, "classes", None)
    if cfg.classes and len(names) > cfg.classes:
        raise ValueError(f"--data {a.data!r} has {len(names)} classes but the model has classes={cfg.classes}")
    stages = model.stages if isinstance(model, Pipeline) else []
    fn = model.stage_bits_per_dim if stages else None  # [B, S + 1]: every stage, then the whole pipeline
    r = evaluate(
        model, ds, bits=cfg.bits, batch_size=a.batch_size, device=device, max_images=a.max_images, progress=True, fn=fn
    )
    labels = [f"stage {i} ({Path(p).name})" for i, p in enumerate(a.checkpoint)] + ["pipeline"] if stages else ["model"]
    bpd, ci = np.atleast_1d(r["bpd"]), np.atleast_1d(r["ci95"])
    print(f"bits/dim on {r['n']} {a.split} images of {a.data} ({cfg.image_size}x{cfg.image_size}x{cfg.channels}):")
    worst = np.atleast_1d(r["per_image"].max(0).values.numpy()) if r["n"] else np.full(len(labels), np.nan)
    for name, b, c, w in zip(labels, bpd, ci, worst):
        print(f"  {name:<40s} {b:.4f} ± {c:.4f} (95% CI); worst image {w:.4f}")
    classes = per_class(r, cfg.classes)
    if classes:
        print("per class:")
        for row in classes:
            row["name"] = names[row["label"]]
            print(f"  {row['label']:>4d} {row['name']:<34s} {row['bpd']:.4f} ± {row['ci95']:.4f} ({row['n']} images)")
    if a.json:
        rows = [
            {"name": n, "bpd": float(b), "ci95": float(c), "worst": float(w)}
            for n, b, c, w in zip(labels, bpd, ci, worst)
        ]
        out = {"n": r["n"], "data": a.data, "split": a.split, "results": rows}
        if classes:
            out["classes"] = classes
        Path(a.json).write_text(json.dumps(out) + "\n")
    return 0


# --------------------------------------------------------------------------------------------------- sample
SAMPLE_EXTENSIONS = (".png",)


def cmd_sample(a: argparse.Namespace) -> int:
    if a.n < 1:
        raise ValueError(f"--n must be an integer >= 1, got {a.n}")
    if a.scale < 1:
        raise ValueError(f"--scale must be an integer >= 1, got {a.scale}")
    if not (math.isfinite(a.temperature) and a.temperature > 0):
        raise ValueError(f"--temperature must be a finite number > 0, got {a.temperature}")
    if Path(a.out).suffix.lower() not in SAMPLE_EXTENSIONS:
        raise ValueError(f"--out {a.out!r} must end in .png (the grid is written as a PNG)")
    if a.save_array and Path(a.save_array).suffix != ".npy":
        raise ValueError(f"--save-array {a.save_array!r} must end in .npy")
    for flag, path in (("--out", a.out), ("--save-array", a.save_array)):
        if path and Path(path).is_dir():
            raise ValueError(f"{flag} {path!r} is a directory")
    device = _device(a.device)
    model = load_models(a.checkpoint, device, a.backend)
    kw: dict[str, Any] = {}
    classes = model.config.classes
    labels, ncols = sample_labels(a.label, a.labels, a.n, classes, class_names(a.checkpoint[-1], classes))
    n = a.n if labels is None else len(labels)
    if labels is not None:
        kw["labels"] = labels.to(device)
    if model.needs_conditioning():
        if not a.cond_data:
            print(
                "spn sample: this checkpoint is a conditional stage (size/depth upscaling): pass --cond-data D to "
                "take its conditioning from real images, or give the whole pipeline's checkpoints in order",
                file=sys.stderr,
            )
            return 2
        cfg = model.config
        ds = _dataset(a, a.cond_data, "test", cfg.image_size, cfg.channels)
        images = D.quantize(torch.stack([ds[i % len(ds)] for i in range(n)]), cfg.bits)
        kw.update({k: v.to(device) for k, v in model.conditioning_inputs(images).items()})
    g = torch.Generator(device=device).manual_seed(a.seed)
    with torch.no_grad():
        imgs = model.sample(n, temperature=a.temperature, generator=g, method=a.method, progress=True, **kw)
    bits = model.config.bits
    print(f"samples: {save_grid(imgs, bits, a.out, scale=a.scale, ncols=ncols)}")
    if a.save_array:
        arr = save_array(imgs, bits, a.save_array)  # [n, C, N, N], values < 2^bits
        print(f"array: {a.save_array} ({arr.dtype} {list(arr.shape)}, values in [0, {2**bits}))")
    return 0


# --------------------------------------------------------------------------------------------------- parser
def _add_data_flags(p: argparse.ArgumentParser, default: str | None = "photos") -> None:
    p.add_argument(
        "--data",
        default=default,
        required=default is None,
        help="'photos' (the embedded scikit-image photographs), an image folder, a .npy/.npz file or folder of "
        "them, or a CIFAR-10 'cifar-10-batches-py' folder",
    )
    p.add_argument(
        "--data-format",
        default="auto",
        choices=D.FORMATS,
        help="how to read --data (default: detected from the path)",
    )
    p.add_argument(
        "--subsample",
        type=int,
        default=1,
        help="load images at K times the model size and keep every K-th pixel (x[::K, ::K]): the data of the "
        "first stage of a size-upscaling pipeline",
    )
    p.add_argument(
        "--on-bad-image",
        choices=["skip", "fail"],
        default="skip",
        help="an image-folder file that cannot be decoded: skip it (a warning names it and counts the skipped "
        "files; the next file stands in) or stop with an error naming it",
    )
    p.add_argument(
        "--max-image-pixels",
        type=int,
        default=D.MAX_IMAGE_PIXELS,
        metavar="P",
        help="image files larger than this (width x height) are refused before any decoding, like --on-bad-image "
        "says (a decompression bomb, or a photograph to downscale first)",
    )


def _add_train_flags(p: argparse.ArgumentParser | argparse._ArgumentGroup, group: str) -> None:
    """The TrainArgs fields of one group as flags, typed, defaulted and explained by the fields themselves:
    --name-with-dashes, or --no-name for a bool that defaults to True; bool | None takes --name / --no-name."""
    kinds = _field_types(TrainArgs)
    for f in dataclasses.fields(TrainArgs):
        if f.metadata["group"] != group:
            continue
        kind, optional = kinds[f.name]
        kw = dict(f.metadata["argparse"])
        flag = kw.pop("flag", "--" + f.name.replace("_", "-"))
        kw.update(dest=f.name, default=f.default, help=f.metadata["help"])
        if kind is bool and optional:
            kw["action"] = argparse.BooleanOptionalAction
        elif kind is bool:
            kw["action"] = "store_false" if f.default else "store_true"
            flag = "--no-" + flag[2:] if f.default else flag
        else:
            kw.setdefault("type", kind)
            kw.setdefault("metavar", flag[2:].replace("-", "_").upper())
        p.add_argument(flag, **kw)


class _HelpFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" unless the help already explains the default or there is none to show (no default,
    or a switch that takes no value)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        h = action.help or ""
        shown = action.default is not None and action.default is not False and action.default != argparse.SUPPRESS
        if "default" not in h and action.option_strings and shown and action.nargs != 0:
            h += " (default: %(default)s)"
        return h


def _train_parser_flags(t: argparse.ArgumentParser) -> None:
    _add_train_flags(t, "output")
    _add_data_flags(t)
    t.add_argument("--eval-data", default=None, help="separate held-out data (default: the held-out split of --data)")
    t.add_argument("--crop", choices=["center", "random"], default=None, help="image-folder crops (default: random "
                   "for training, center for evaluation)")  # fmt: skip
    t.add_argument("--hflip", action="store_true", help="augment training crops: mirror half of them left-right")
    t.add_argument("--crop-scale", type=float, default=1.0, metavar="S", help="augment training crops: each is a "
                   "square of side log-uniform in [N, S*N], resized to N (1: native-resolution crops)")  # fmt: skip
    t.add_argument("--channel-perm", action="store_true", help="augment training crops: colour channels in a random "
                   "order per crop")  # fmt: skip
    t.add_argument("--invert", action="store_true", help="augment training crops: invert half of them (255 - x)")
    t.add_argument("--color-jitter", type=float, default=0.0, metavar="J", help="augment training crops: per-channel "
                   "contrast and brightness: x -> g (x - 128) + 128 + o, log g, o/128 uniform in [-J, J]")  # fmt: skip
    t.add_argument("--labels", action="store_true", help="train a class-conditional model on the data's labels: an "
                   "image folder's subfolders (one per class), CIFAR-10's labels, or an .npz's 'labels' array; the "
                   "number of classes comes from the data")  # fmt: skip
    _add_train_flags(t, "data")
    m = t.add_argument_group("model (default: preset cpu_demo; with --resume: the checkpoint's config)")
    m.add_argument("--preset", default=None, help="a preset from spn.configs (python -m spn.configs lists them)")
    m.add_argument("--stage", type=int, default=None, help="which stage of a multi-stage preset to train")
    m.add_argument("--image-size", type=int, default=None, help="N: images are N x N")
    m.add_argument("--channels", type=int, default=None, help="colour channels (1 or 3)")
    m.add_argument("--bits", type=int, default=None, help="bit depth modelled (data keeps its top bits)")
    m.add_argument("--subscale", type=int, default=None, help="s: s*s slices of (N/s) x (N/s)")
    m.add_argument("--first-slice-given", action=argparse.BooleanOptionalAction, default=None,
                   help="size upscaling: model slices 1.. given slice 0")  # fmt: skip
    m.add_argument("--cond-bits", type=int, default=None, help="depth upscaling: model the low bits given this many "
                   "high bits")  # fmt: skip
    m.add_argument("--backend", default=None, choices=BACKEND_CHOICES,
                   help="kernel backend of every op (auto: chosen by the tensors' device)")  # fmt: skip
    m.add_argument("--set", action="append", metavar="FIELD=VALUE", help="any other SPNConfig field, e.g. "
                   "--set decoder_channels=64 (repeatable)")  # fmt: skip
    _add_train_flags(t.add_argument_group("optimisation"), "optimisation")
    _add_train_flags(t.add_argument_group("evaluation, logging, checkpoints"), "evaluation")


def build_parser() -> argparse.ArgumentParser:
    fmt = _HelpFormatter
    p = argparse.ArgumentParser(prog="spn", description="Subscale Pixel Networks: train, evaluate, sample, demo.")
    sub = p.add_subparsers(dest="command", required=True, metavar="{demo,train,eval,sample}")

    d = sub.add_parser("demo", formatter_class=fmt, help="train a small SPN on the embedded photos (~7 min, 2 CPUs)")
    d.add_argument("--out", default="spn-demo", help="output directory")
    d.add_argument("--time-budget", type=float, default=300.0, help="seconds of training")
    d.add_argument("--quick", action="store_true", help="a few-second run (4x4 crops, 4 steps) to check the setup")
    d.add_argument("--seed", type=int, default=0, help="random seed")
    d.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    d.add_argument("--force", action="store_true", help="run again into a used --out (its files are moved into "
                   "<out>/replaced-<time>/ first)")  # fmt: skip
    d.add_argument("--labels", action="store_true", help="a class-conditional demo: each training photograph is a "
                   "class; samples one row per photograph")  # fmt: skip
    d.add_argument("--size", type=int, default=32, choices=[32, 256, 512], help="final image size; 256 and 512 "
                   "train the three-stage size- and depth-upscaling pipeline (presets cpu_photo256/512, a third "
                   "of --time-budget per stage); 512 needs --data")  # fmt: skip
    d.add_argument("--data", default="photos", help="with --size 256/512: the photographs (default: the embedded "
                   "ones; an image folder holds out its last 5%% of files)")  # fmt: skip

    t = sub.add_parser("train", formatter_class=fmt, help="train one SPN (or one stage of a pipeline)")
    _train_parser_flags(t)

    e = sub.add_parser("eval", formatter_class=fmt, help="bits/dim of checkpoint(s) on a dataset, with 95%% CI")
    e.add_argument("--checkpoint", action="append", required=True, help="a checkpoint; repeat for a pipeline, "
                   "first stage first")  # fmt: skip
    _add_data_flags(e)
    e.add_argument("--split", choices=["test", "train"], default="test", help="which split of --data")
    e.add_argument("--crop", choices=["center", "grid"], default=None, help="image-folder images: one centre crop "
                   "resized to N, or every non-overlapping N x N crop at native resolution")  # fmt: skip
    e.add_argument("--no-held-out", action="store_true", help="use all of a folder/array --data (no 5%% split)")
    e.add_argument("--batch-size", type=int, default=64, help="images per batch")
    e.add_argument("--max-images", type=int, default=None, help="evaluate on this many evenly spaced images")
    e.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    e.add_argument("--backend", default=None, choices=BACKEND_CHOICES,
                   help="override the checkpoint's kernel backend")  # fmt: skip
    e.add_argument("--json", default=None, metavar="PATH", help="also write the numbers as JSON")

    s = sub.add_parser("sample", formatter_class=fmt, help="sample a model or pipeline into a PNG grid")
    s.add_argument("--checkpoint", action="append", required=True, help="a checkpoint; repeat for a pipeline, "
                   "first stage first")  # fmt: skip
    s.add_argument("--n", type=int, default=16, help="number of images")
    s.add_argument("--out", default="samples.png", help="PNG grid path")
    s.add_argument("--save-array", default=None, metavar="PATH.npy", help="also save the images [n, C, N, N]")
    s.add_argument("--temperature", type=float, default=1.0, help="softmax temperature")
    s.add_argument("--method", choices=["cached", "naive"], default="cached", help="cached (fast) or naive sampling")
    s.add_argument("--seed", type=int, default=0, help="sampling seed")
    s.add_argument("--scale", type=int, default=2, help="pixel upscaling of the PNG grid")
    s.add_argument("--label", default=None, metavar="K", help="class-conditional model: sample class K (a number "
                   "or a class name)")  # fmt: skip
    s.add_argument("--labels", default=None, metavar="K1,K2,...", help="class-conditional model: a row of --n "
                   "images per class (default: every class)")  # fmt: skip
    s.add_argument("--cond-data", default=None, help="for a lone conditional stage: images to take slice 0 / the "
                   "high bits from (held-out split)")  # fmt: skip
    s.add_argument("--data-format", default="auto", choices=D.FORMATS,
                   help="how to read --cond-data")  # fmt: skip
    s.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    s.add_argument("--backend", default=None, choices=BACKEND_CHOICES,
                   help="override the checkpoint's kernel backend")  # fmt: skip
    return p


def _given(argv: list[str]) -> set[str]:
    """The `spn train` options given on the command line (not defaulted)."""
    probe = argparse.ArgumentParser(add_help=False)
    _train_parser_flags(probe)
    for act in probe._actions:
        act.default = argparse.SUPPRESS
    return set(vars(probe.parse_known_args(argv)[0]))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = build_parser().parse_args(argv)
    if a.command == "train":
        a.given = _given(argv[argv.index("train") + 1 :])
    if a.command in ("train", "demo"):
        tune_malloc()
    with flush_denormal(a.command in ("train", "demo")):
        return _run(a)


def _run(a: argparse.Namespace) -> int:
    try:
        if a.command == "train":
            return cmd_train(a)
        if a.command == "eval":
            return cmd_eval(a)
        if a.command == "sample":
            return cmd_sample(a)
        if a.size != 32:
            if a.labels:
                raise ValueError("--labels is a 32x32 demo: it does not combine with --size 256/512")
            from .demo_large import run_large_demo

            return run_large_demo(out=a.out, size=a.size, time_budget=a.time_budget, quick=a.quick, seed=a.seed,
                                  device=a.device, data=a.data, force=a.force)  # fmt: skip
        if a.data != "photos":
            raise ValueError("--data is for --size 256/512; the 32x32 demo trains on the embedded photos")
        if a.labels:
            from .labeldemo import run_label_demo

            return run_label_demo(out=a.out, time_budget=a.time_budget, quick=a.quick, seed=a.seed, device=a.device,
                                  force=a.force)  # fmt: skip
        from .demo import run_demo

        return run_demo(
            out=a.out, time_budget=a.time_budget, quick=a.quick, seed=a.seed, device=a.device, force=a.force
        )
    except (CheckpointError, FileNotFoundError, ValueError) as e:  # ValueError: bad input (flags, files, data)
        print(f"spn {a.command}: {e}", file=sys.stderr)
        return 2
    except (NonFiniteLossError, FloatingPointError) as e:
        print(f"spn {a.command}: {e}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    raise SystemExit(main())
