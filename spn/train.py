"""Training: AdamW, warm-up then cosine decay, gradient clipping, bf16 autocast on GPU, an EMA of the weights (used
for evaluation and sampling), optional torch.compile, periodic held-out bits/dim, a JSONL metrics log, a loss-curve
PNG, sample grids, atomic checkpoints that --resume continues exactly, and DistributedDataParallel under torchrun
(NCCL on GPUs, gloo on CPU; rank 0 alone logs and writes files).

It is written against a small model interface, so any nn.Module with `.config` (a dataclass with `bits`),
`loss(x, slices_per_step=...)`, `bits_per_dim(x)`, `sample(n, generator=..., progress=...)` and
`needs_conditioning()` (with `conditioning_inputs(x)` when it returns True) trains here.

train() is the loop; spn/trainer.py holds its pieces.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from .outputs import plot_loss_curve
from .trainer import NonFiniteLossError, Resume, StopSignals, Trainer, find_resume


@dataclasses.dataclass
class TrainArgs:
    out_dir: str = "runs/spn"
    steps: int = 20000  # total optimiser steps (the cosine schedule's length)
    time_budget: float | None = None  # seconds of training steps; the cosine then runs on time, `steps` caps it
    batch_size: int = 32  # global, split evenly over the ranks
    lr: float = 3e-4
    min_lr_ratio: float = 0.05  # cosine decays to lr * min_lr_ratio
    warmup: int = 200
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    slices_per_step: int | None = None  # forwarded to model.loss; None = the model's default
    eval_every: int = 1000  # 0: only at the end
    eval_max_images: int | None = None  # evaluate on an evenly spaced subset of the held-out set
    eval_batch_size: int = 64
    sample_every: int = 0  # 0: only at the end; < 0: never
    n_samples: int = 16
    checkpoint_every: int = 1000
    keep: int = 3  # step checkpoints kept on disk (<= 0: all)
    log_every: int = 10
    seed: int = 0
    compile: bool = False
    amp: bool | None = None  # bf16 autocast; None = on for CUDA
    workers: int = 0
    device: str | None = None
    resume: str | None = None  # "auto": latest checkpoint in out_dir (if any); or a path
    stop_at: int | None = None  # stop (with a checkpoint) once this step is reached, as if interrupted
    skip_nonfinite: bool = False  # a non-finite loss/gradient skips that update (counted) instead of stopping
    progress: bool = True


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
) -> TrainResult:
    """Trains `model` in place (under torchrun: on every rank) and returns where the files went. `resume` is the
    checkpoint find_resume(args.resume, args.out_dir) read, for a caller that needed it first; else it is read
    here."""
    resume = resume if resume is not None else find_resume(args.resume, args.out_dir)
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
    if not t.interrupted:
        t.evaluate()
        if args.sample_every >= 0:
            t.sample()
    t.save()
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


__all__ = ["NonFiniteLossError", "Resume", "TrainArgs", "TrainResult", "find_resume", "train"]
