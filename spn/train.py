"""Training: AdamW, warm-up then cosine decay, gradient clipping, bf16 autocast on GPU, an EMA of the weights (used
for evaluation and sampling), optional torch.compile, periodic held-out bits/dim, a JSONL metrics log, a loss-curve
PNG, sample grids, atomic checkpoints that --resume continues exactly, and DistributedDataParallel under torchrun
(NCCL on GPUs, gloo on CPU; rank 0 alone logs and writes files).

It is written against a small model interface, so any nn.Module with `.config` (a dataclass with `bits`),
`loss(x, slices_per_step=...)`, `bits_per_dim(x)`, `sample(n, generator=..., progress=...)` and
`needs_conditioning()` (with `conditioning_inputs(x)` when it returns True) trains here; on a labelled dataset
(items (image, label), spn.labels) loss, bits_per_dim and sample also take `labels=`.

TrainArgs is the one statement of the options: `spn train` builds its flags from its fields (type, default, and
the help text and flag group in each field's metadata). train() is the loop; spn/trainer.py holds its pieces.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from .outputs import plot_loss_curve
from .rundir import RunDir, RunDirError, claim
from .trainer import NonFiniteLossError, Resume, StopSignals, Trainer, find_resume, resume_step


def option(default: Any, help: str, group: str | None, **argparse_kw: Any) -> Any:
    """A TrainArgs field with its command-line help. `group`: where `spn train --help` lists it (None: Python
    only, no flag); `argparse_kw`: extra add_argument keywords (flag= renames the flag)."""
    return dataclasses.field(default=default, metadata={"help": help, "group": group, "argparse": argparse_kw})


@dataclasses.dataclass
class TrainArgs:
    # Optional[X], not X | None: spn train reads these hints at run time (typing.get_type_hints), which cannot
    # evaluate X | None before Python 3.10.
    out_dir: str = option("runs/spn", "output directory: checkpoints, metrics.jsonl, PNGs", "output", flag="--out")
    force: bool = option(
        False,
        "start a new run in an --out that holds another run: its files are moved into a replaced-<time> subfolder "
        "first (never deleted)",
        "output",
    )
    workers: int = option(0, "DataLoader worker processes", "data")

    steps: int = option(20000, "optimiser steps (the cosine schedule's length)", "optimisation")
    time_budget: Optional[float] = option(  # noqa: UP045
        None,
        "seconds of training steps: the cosine decay then runs on the clock and training stops when they are spent "
        "(--steps caps it)",
        "optimisation",
    )
    batch_size: int = option(32, "global batch (split over torchrun ranks)", "optimisation")
    lr: float = option(3e-4, "peak AdamW learning rate", "optimisation")
    min_lr_ratio: float = option(0.05, "final lr = lr * this", "optimisation")
    warmup: int = option(200, "linear warm-up steps", "optimisation")
    weight_decay: float = option(0.01, "AdamW weight decay", "optimisation")
    betas: tuple[float, float] = option((0.9, 0.99), "AdamW betas", None)
    grad_clip: float = option(1.0, "max global gradient norm", "optimisation")
    ema_decay: float = option(0.999, "EMA decay of the weights used for eval/samples", "optimisation")
    slices_per_step: Optional[int] = option(  # noqa: UP045
        None, "random slices per image per step (unbiased, cheaper); default: all", "optimisation"
    )
    seed: int = option(0, "seed of weights, data order, crops and slice choice", "optimisation")
    compile: bool = option(False, "torch.compile the training step", "optimisation")
    amp: Optional[bool] = option(None, "bf16 autocast (default: on for CUDA)", "optimisation")  # noqa: UP045
    device: Optional[str] = option(  # noqa: UP045
        None, "torch device (default: cuda:LOCAL_RANK if available, else cpu)", "optimisation"
    )

    eval_every: int = option(1000, "held-out eval period in steps (0: only at the end)", "evaluation")
    eval_max_images: Optional[int] = option(  # noqa: UP045
        None, "evaluate on this many evenly spaced held-out images", "evaluation"
    )
    eval_every_max_images: Optional[int] = option(  # noqa: UP045
        None,
        "the periodic evals score this many evenly spaced held-out images (default: as the final one)",
        "evaluation",
    )
    eval_batch_size: int = option(64, "eval batch per rank", "evaluation")
    sample_every: int = option(0, "sample-grid period (0: at the end; -1: never)", "evaluation")
    n_samples: int = option(16, "images per sample grid", "evaluation")
    checkpoint_every: int = option(1000, "checkpoint period in steps (and at the end)", "evaluation")
    keep: int = option(3, "step checkpoints kept (<= 0: all)", "evaluation")
    log_every: int = option(10, "metrics.jsonl / progress-bar period in steps", "evaluation")
    resume: Optional[str] = option(  # noqa: UP045
        None,
        "continue exactly from PATH, or (bare flag) from the latest checkpoint in --out",
        "evaluation",
        nargs="?",
        const="auto",
        metavar="PATH",
    )
    stop_at: Optional[int] = option(  # noqa: UP045
        None,
        "stop (with a checkpoint) at this step, as if interrupted; --resume continues the same schedule",
        "evaluation",
    )
    progress: bool = option(True, "no tqdm bars", "evaluation")
    skip_nonfinite: bool = option(
        False,
        "skip (and count in metrics.jsonl) an update whose loss is NaN/inf instead of stopping with an error (exit "
        "3) and the last good checkpoint",
        "evaluation",
    )

    def flag(self, name: str) -> str:
        """The command-line flag of field `name`."""
        f = next(f for f in dataclasses.fields(self) if f.name == name)
        return f.metadata["argparse"].get("flag", "--" + name.replace("_", "-"))

    def validate(self) -> TrainArgs:
        """Checks every option before any work; ValueError naming the flag. Returns self."""

        def bad(name: str, rule: str) -> None:
            raise ValueError(f"{self.flag(name)} must be {rule}, got {getattr(self, name)!r}")

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)

        lows = dict(steps=1, batch_size=1, warmup=0, workers=0, eval_every=0, eval_batch_size=1, sample_every=-1,
                    n_samples=0, checkpoint_every=0, log_every=1, seed=0)  # fmt: skip
        for name, lo in lows.items():
            if not is_int(getattr(self, name)) or getattr(self, name) < lo:
                bad(name, f"an integer >= {lo}")
        if not is_int(self.keep):
            bad("keep", "an integer")
        for name in ("slices_per_step", "eval_max_images", "eval_every_max_images", "stop_at"):
            v = getattr(self, name)
            if v is not None and (not is_int(v) or v < 1):
                bad(name, "an integer >= 1")
        if self.time_budget is not None and not (is_num(self.time_budget) and 0 < self.time_budget < math.inf):
            bad("time_budget", "a number of seconds > 0")
        if not (is_num(self.lr) and 0 < self.lr < math.inf):
            bad("lr", "a number > 0")
        if not (is_num(self.min_lr_ratio) and 0 <= self.min_lr_ratio <= 1):
            bad("min_lr_ratio", "a number in [0, 1]")
        if not (is_num(self.weight_decay) and 0 <= self.weight_decay < math.inf):
            bad("weight_decay", "a number >= 0")
        if not (is_num(self.grad_clip) and self.grad_clip > 0):
            bad("grad_clip", "a number > 0 (inf: no clipping)")
        if not (is_num(self.ema_decay) and 0 <= self.ema_decay < 1):
            bad("ema_decay", "a number in [0, 1)")
        if len(self.betas) != 2 or not all(is_num(b) and 0 <= b < 1 for b in self.betas):
            bad("betas", "two numbers in [0, 1)")
        if not self.out_dir:
            bad("out_dir", "a directory")
        return self


@dataclasses.dataclass
class TrainResult:
    step: int
    checkpoint: Path | None
    metrics: Path | None
    loss_curve: Path | None
    samples: Path | None
    eval_bpd: float | None
    eval_ci95: float | None
    train_seconds: float
    interrupted: int | None  # the signal number that stopped training, if any


def train(
    model: nn.Module,
    train_set: Dataset,
    eval_set: Dataset | None,
    args: TrainArgs,
    *,
    log: Callable[[str], None] = print,
    resume: Resume | None = None,
    run_dir: RunDir | None = None,
) -> TrainResult:
    """Trains `model` in place (under torchrun: on every rank) and returns where the files went. `resume` is the
    checkpoint find_resume(args.resume, args.out_dir) read, for a caller that needed it first; else it is read
    here. `run_dir`: --out already claimed (rundir.claim) by the caller; else rank 0 claims it here, and releases
    it on return."""
    args.validate()
    resume = resume if resume is not None else find_resume(args.resume, args.out_dir)
    owned = run_dir is None and int(os.environ.get("RANK", "0")) == 0
    if owned:
        run_dir = claim(args.out_dir, resume_step=resume_step(resume), force=args.force, log=log)
    try:
        return _train(model, train_set, eval_set, args, log, resume)
    finally:
        if owned:
            run_dir.release()


def _train(model, train_set, eval_set, args: TrainArgs, log, resume: Resume | None) -> TrainResult:
    t = Trainer(model, train_set, eval_set, args, log=log, resume=resume)
    with StopSignals() as signals:
        for batch in t.batches():
            t.step(batch)
            last = t.at_end()
            if t.iter_num % args.log_every == 0 or last:
                last = t.sync(signals, last)
                t.log()
            if t.stopped():
                break
            t.maybe_eval()
            t.maybe_sample()
            t.maybe_save()
            if last:
                break
    t.close()

    if t.stop_signal is not None:
        t.echo(f"caught signal {t.stop_signal} at step {t.iter_num}: saving a checkpoint")
    t.save()  # first: a signal or an error in the final eval or sampling cannot cost the finished training
    if not t.interrupted:
        t.evaluate()
        if args.sample_every >= 0:
            t.sample()
    if t.main and plot_loss_curve(t.records, t.curve_path) is None:
        t.echo("loss curve skipped: matplotlib is not installed (pip install matplotlib, or spn[demo])")
    if t.world > 1:
        dist.barrier()
    return TrainResult(
        step=t.iter_num,
        checkpoint=t.last_ckpt,
        metrics=t.metrics_path if t.main else None,
        loss_curve=t.curve_path if t.main and t.curve_path.is_file() else None,
        samples=t.samples_path,
        eval_bpd=t.last_eval["bpd"] if t.last_eval else None,
        eval_ci95=t.last_eval["ci95"] if t.last_eval else None,
        train_seconds=t.clock.spent,
        interrupted=t.stop_signal,
    )


__all__ = ["NonFiniteLossError", "Resume", "RunDir", "RunDirError", "TrainArgs", "TrainResult", "find_resume", "train"]
