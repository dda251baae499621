"""The training loop: AdamW, warm-up then cosine decay, gradient clipping, bf16 autocast on GPU, an EMA of the
weights (used for evaluation and sampling), optional torch.compile, periodic held-out bits/dim, a JSONL metrics log,
a loss-curve PNG, sample grids, atomic checkpoints that --resume continues exactly, and DistributedDataParallel
under torchrun (NCCL on GPUs, gloo on CPU; rank 0 alone logs and writes files).

It is written against a small model interface, so any nn.Module with `.config` (a dataclass with `bits`),
`loss(x, slices_per_step=...)`, `bits_per_dim(x)` and `sample(n, generator=...)` trains here.

Exactness of --resume: the batch of step k is a pure function of (seed, k) (DistributedSampler permutation per
epoch, crops seeded by (seed, epoch, index)) and the global RNG is reseeded from (seed, rank, k) before every
step, so a resumed run repeats the uninterrupted one's losses bit for bit on CPU. A --time-budget run is the
exception: its schedule length follows the measured speed, so it is not reproducible step for step.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import random
import signal
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .checkpoint import (
    CheckpointError,
    config_dict,
    config_diff,
    list_checkpoints,
    prune_checkpoints,
    read_checkpoint,
    save_checkpoint,
    unwrap,
)
from .data import quantize
from .outputs import conditioning, plot_loss_curve, write_sample_grid


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


class NonFiniteLossError(RuntimeError):
    """Training met a non-finite loss or gradient norm; no checkpoint of that state was written."""


class WarmupCosine:
    """lr factor: linear warm-up over `warmup` steps, then cosine from 1 to `min_ratio` at step `total`, or, when
    `time_frac` is set (a --time-budget run), at the end of the budget: progress = time spent / budget, so the
    decay stays monotone and ends on time however the step speed varies.

    A class (not a lambda) so LambdaLR.state_dict() keeps its fields."""

    def __init__(self, warmup: int, total: int, min_ratio: float):
        self.warmup, self.total, self.min_ratio = warmup, total, min_ratio
        self.time_frac: float | None = None

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.time_frac is not None:
            p = min(1.0, self.time_frac)
        else:
            p = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * p))


class EMA:
    """Exponential moving average of a module's parameters (buffers copied), warmed up as min(decay, (1+n)/(10+n))
    so short runs are not dominated by the initial weights."""

    def __init__(self, model: nn.Module, decay: float):
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, model: nn.Module, n: int) -> None:
        d = min(self.decay, (1 + n) / (10 + n))
        ema_p = [p for p in self.module.parameters()]
        src_p = [p.detach().to(q.dtype) for p, q in zip(model.parameters(), ema_p)]
        torch._foreach_lerp_(ema_p, src_p, 1.0 - d)
        for b, src in zip(self.module.buffers(), model.buffers()):
            b.copy_(src)


class _LossModule(nn.Module):
    """forward(x) = model.loss(x): DDP synchronises gradients only through a module's forward."""

    _spn_wrapper = True

    def __init__(self, model: nn.Module, slices_per_step: int | None):
        super().__init__()
        self.module = model
        self.slices_per_step = slices_per_step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.slices_per_step is None:
            return self.module.loss(x)
        return self.module.loss(x, slices_per_step=self.slices_per_step)


def init_distributed() -> tuple[int, int, int]:
    """(rank, world_size, local_rank); joins the process group torchrun describes (NCCL on GPU, else gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), local
    return 0, 1, local


def _step_seed(seed: int, rank: int, step: int) -> int:
    return (seed * 1_000_003 + rank * 7_919 + step) % (2**63 - 1)


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    *,
    bits: int,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    max_images: int | None = None,
    progress: bool = False,
    fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Held-out bits/dim: mean over images and its 95% confidence interval (1.96 standard errors).

    `fn(x) -> [B]` replaces model.bits_per_dim; `fn(x) -> [B, K]` gives K numbers (lists of K means and CIs).
    Under torch.distributed each rank scores every world_size-th image and all ranks get the full result."""
    n = len(dataset)
    idx = np.arange(n) if not max_images or max_images >= n else np.unique(np.linspace(0, n - 1, max_images).round())
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    mine = idx[rank::world]
    was_training = model.training
    model.eval()
    fn = fn or model.bits_per_dim
    out = []
    it = range(0, len(mine), batch_size)
    if progress and rank == 0:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="eval", unit="batch", leave=False)
    for i in it:
        x = torch.stack([dataset[int(j)] for j in mine[i : i + batch_size]])
        out.append(fn(quantize(x, bits).to(device)).double().cpu())
    per = torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)
    if world > 1:
        parts: list[Any] = [None] * world
        dist.all_gather_object(parts, per)
        per = torch.cat(parts)
    model.train(was_training)
    mean = per.mean(0)
    ci = 1.96 * per.std(0, unbiased=True) / math.sqrt(len(per)) if len(per) > 1 else torch.full_like(mean, math.nan)
    if per.dim() == 1:
        mean, ci = mean.item(), ci.item()
    else:
        mean, ci = mean.tolist(), ci.tolist()
    return {"bpd": mean, "ci95": ci, "n": int(len(per)), "per_image": per}


class _Signals:
    """Turns the first SIGINT/SIGTERM into a flag the loop polls (a second SIGINT interrupts at once)."""

    def __init__(self):
        self.caught: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.caught is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.caught = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


def _resolve_resume(args: TrainArgs) -> Path | None:
    if not args.resume:
        return None
    if args.resume == "auto":
        found = list_checkpoints(args.out_dir)
        return found[-1] if found else None
    return Path(args.resume)


def _read_metrics(path: Path, upto: int) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in recs if r.get("step", 0) <= upto]


def train(
    model: nn.Module,
    train_set: Dataset,
    eval_set: Dataset | None,
    args: TrainArgs,
    *,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Trains `model` in place (under torchrun: on every rank) and returns where the files went."""
    rank, world, local = init_distributed()
    main = rank == 0
    log = log if main else (lambda s: None)
    device = torch.device(args.device or (f"cuda:{local}" if torch.cuda.is_available() else "cpu"))
    amp = (device.type == "cuda") if args.amp is None else args.amp
    bits = model.config.bits
    if args.batch_size % world:
        raise ValueError(f"batch_size={args.batch_size} must be divisible by the world size {world}")
    local_bs = args.batch_size // world
    out = Path(args.out_dir)
    if main:
        out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(args.seed)
    model.to(device).train()
    ema = EMA(model, args.ema_decay)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=tuple(args.betas), weight_decay=args.weight_decay)
    schedule = WarmupCosine(args.warmup, args.steps, args.min_lr_ratio)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    step = 0
    train_time = 0.0  # seconds spent in training steps (what --time-budget counts), across resumes
    skipped = 0  # updates dropped for a non-finite loss (skip_nonfinite), across resumes

    ckpt_path = _resolve_resume(args)
    if ckpt_path is not None:
        state = read_checkpoint(ckpt_path, map_location=device)
        diff = config_diff(state["config"], config_dict(model))
        if diff:
            raise CheckpointError(
                f"--resume {ckpt_path}: the model config differs from the checkpoint's: " + "; ".join(diff)
            )
        model.load_state_dict(state["model"])
        if state.get("ema") is not None:
            ema.module.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        schedule = sched.lr_lambdas[0]
        step = int(state["step"])
        train_time = float(state.get("train_seconds", 0.0))
        skipped = int(state.get("skipped_steps", 0))
        if main and state.get("rng") is not None:
            set_rng_state(state["rng"])
        log(f"resumed from {ckpt_path} at step {step}")
    total = schedule.total

    net: nn.Module = _LossModule(model, args.slices_per_step)
    if world > 1:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if args.compile:
        net = torch.compile(net)

    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=args.seed, drop_last=True)
    steps_per_epoch = len(sampler) // local_bs
    if steps_per_epoch == 0:
        raise ValueError(f"the training set ({len(train_set)} images) is smaller than one batch ({args.batch_size})")

    metrics_path = out / "metrics.jsonl"
    records = _read_metrics(metrics_path, step) if main else []
    if main:
        with open(metrics_path, "w") as f:  # drop lines past the resumed step
            f.writelines(json.dumps(r) + "\n" for r in records)
    curve_path = out / "loss_curve.png"
    last_eval: dict[str, Any] | None = None
    last_ckpt: Path | None = None
    samples_path: Path | None = None

    def emit(rec: dict[str, Any]) -> None:
        if main:
            records.append(rec)
            with open(metrics_path, "a") as f:
                f.write(json.dumps(rec) + "\n")

    def do_eval() -> None:
        nonlocal last_eval
        if eval_set is None:
            return
        r = evaluate(
            ema.module,
            eval_set,
            bits=bits,
            batch_size=args.eval_batch_size,
            device=device,
            max_images=args.eval_max_images,
            progress=args.progress,
        )
        last_eval = r
        emit({"step": step, "eval_bpd": r["bpd"], "eval_ci95": r["ci95"], "eval_n": r["n"]})
        if main:
            plot_loss_curve(records, curve_path)

    def do_checkpoint() -> None:
        nonlocal last_ckpt
        if main:
            last_ckpt = save_checkpoint(
                out / f"ckpt_{step:08d}.pt",
                model,
                ema=ema.module.state_dict(),
                optimizer=opt.state_dict(),
                scheduler=sched.state_dict(),
                step=step,
                rng=rng_state(),
                world_size=world,
                train_seconds=train_time,
                skipped_steps=skipped,
                train_args={k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(args).items()},
            )
            prune_checkpoints(out, args.keep)

    def do_samples() -> None:
        nonlocal samples_path
        if main and args.n_samples > 0:
            cond = None
            if conditioning(model.config, torch.zeros(1, 1, 1, 1, dtype=torch.uint8)):
                src = eval_set if eval_set is not None else train_set
                cond = torch.stack([src[i % len(src)] for i in range(args.n_samples)])
            samples_path = write_sample_grid(
                ema.module, out / f"samples_{step:08d}.png", args.n_samples, args.seed, device, args.progress, cond
            )

    bar = None
    if main and args.progress:
        from tqdm.auto import tqdm

        bar_total = None if args.time_budget else total  # under a budget: estimated at the first sync point
        bar = tqdm(total=bar_total, initial=step, desc="train", unit="step", dynamic_ncols=True)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    n_since, t_log, imgs_since = 0, time.perf_counter(), 0
    win_time, win_steps = 0.0, 0  # recent step times: the progress bar's estimate under a time budget
    step_start = step
    stop_reason: int | None = None
    finished = step >= total

    with _Signals() as sig:
        while not finished:
            epoch, offset = divmod(step, steps_per_epoch)
            sampler.set_epoch(epoch)
            if hasattr(train_set, "set_epoch"):
                train_set.set_epoch(epoch)
            order = list(sampler)
            batches = [order[i * local_bs : (i + 1) * local_bs] for i in range(offset, steps_per_epoch)]
            loader = DataLoader(
                train_set, batch_sampler=batches, num_workers=args.workers, pin_memory=device.type == "cuda"
            )
            t_mark = time.perf_counter()
            for xb in loader:
                x = quantize(xb, bits).to(device, non_blocking=True)
                torch.manual_seed(_step_seed(args.seed, rank, step))
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    loss = net(x)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
                # Checked before the update, so a bad step never reaches the weights, the EMA or a checkpoint. One
                # host sync per step on two scalars: small next to a step; under DDP the flag is reduced so every
                # rank takes the same branch.
                bad = (~torch.isfinite(loss.detach()) | ~torch.isfinite(gnorm)).float().reshape(1)
                if world > 1:
                    dist.all_reduce(bad, op=dist.ReduceOp.MAX)
                if bad.item() > 0:
                    if not args.skip_nonfinite:
                        if bar is not None:
                            bar.close()
                        kept = last_ckpt or ckpt_path
                        raise NonFiniteLossError(
                            f"non-finite loss at step {step + 1}: loss={loss.item()}, grad_norm={float(gnorm)}; "
                            f"the update was not applied and no checkpoint of this state was written (last good "
                            f"checkpoint: {kept if kept else 'none yet'}). Lower --lr, or pass --skip-nonfinite."
                        )
                    opt.zero_grad(set_to_none=True)
                    skipped += 1
                    with warnings.catch_warnings():  # "lr_scheduler.step() before optimizer.step()": intended here
                        warnings.simplefilter("ignore", UserWarning)
                        sched.step()
                    log(f"step {step + 1}: non-finite loss {loss.item()}, update skipped ({skipped} so far)")
                else:
                    opt.step()
                    sched.step()  # the lr follows the step count (and so the data order), skipped or not
                    ema.update(model, step)
                    loss_sum += loss.detach().double()
                    n_since += 1
                step += 1
                imgs_since += args.batch_size
                now = time.perf_counter()
                train_time += now - t_mark  # includes fetching the batch; excludes evals and checkpoints
                t_step, t_mark = t_mark, now
                if step - step_start > 1:  # the first step carries compile/warm-up cost: not a speed sample
                    win_time += now - t_step
                    win_steps += 1
                time_up = False
                if args.time_budget and world == 1:
                    schedule.time_frac = train_time / args.time_budget  # used from the next sched.step()
                    time_up = train_time >= args.time_budget

                is_last = time_up or step >= total or (args.stop_at is not None and step >= args.stop_at)
                if step % args.log_every == 0 or is_last:
                    # Sync point: every rank learns of a signal on any rank, and adopts rank 0's clock.
                    flag = torch.tensor([float(sig.caught or 0)], device=device)
                    if world > 1:
                        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                    if flag.item() > 0:
                        stop_reason = int(flag.item())
                    if args.time_budget:
                        clock = torch.tensor([train_time], dtype=torch.float64)
                        if world > 1:
                            clock = clock.to(device)
                            dist.broadcast(clock, 0)
                            schedule.time_frac = clock.item() / args.time_budget
                            is_last = is_last or clock.item() >= args.time_budget
                        if is_last:
                            schedule.total = step  # what the budget allowed, recorded in the scheduler state
                        elif bar is not None and win_steps > 0:  # the bar's length: an estimate from recent speed
                            left = (args.time_budget - train_time) / (win_time / win_steps)
                            bar.total = min(args.steps, step + max(1, int(left)))
                        win_time, win_steps = 0.0, 0
                    now = time.perf_counter()
                    rec = {
                        "step": step,
                        "epoch": epoch,
                        "loss": loss_sum.item() / n_since if n_since else None,  # None: every step skipped
                        "lr": sched.get_last_lr()[0],
                        "grad_norm": float(gnorm),
                        "images_per_s": imgs_since / max(now - t_log, 1e-9),
                        "train_s": train_time,
                    }
                    if args.skip_nonfinite:
                        rec["skipped_steps"] = skipped
                    if rec["loss"] is None:
                        del rec["loss"]
                    emit(rec)
                    if bar is not None:
                        post = {"loss": f"{rec.get('loss', math.nan):.3f}", "img/s": f"{rec['images_per_s']:.1f}"}
                        if last_eval is not None:
                            post["eval_bpd"] = f"{last_eval['bpd']:.3f}"
                        bar.set_postfix(post, refresh=False)
                    loss_sum.zero_()
                    n_since, imgs_since, t_log = 0, 0, now
                if bar is not None:
                    bar.update(1)
                if stop_reason is not None or (args.stop_at is not None and step >= args.stop_at):
                    finished = True
                    break
                if args.eval_every > 0 and step % args.eval_every == 0 and step < total:
                    do_eval()
                if args.sample_every > 0 and step % args.sample_every == 0 and step < total:
                    do_samples()
                if args.checkpoint_every > 0 and step % args.checkpoint_every == 0 and step < total:
                    do_checkpoint()
                if is_last:
                    finished = True
                    break
                t_mark = time.perf_counter()

    if bar is not None:
        bar.close()
    interrupted = stop_reason is not None or (args.stop_at is not None and step < total)
    if stop_reason is not None:
        log(f"caught signal {stop_reason} at step {step}: saving a checkpoint")
    if not interrupted:
        do_eval()
        if args.sample_every >= 0:
            do_samples()
    do_checkpoint()
    if main and plot_loss_curve(records, curve_path) is None:
        log("loss curve skipped: matplotlib is not installed (pip install matplotlib, or spn[demo])")
    if world > 1:
        dist.barrier()
    return TrainResult(
        step=step,
        checkpoint=last_ckpt,
        metrics=metrics_path if main else None,
        loss_curve=curve_path if main and curve_path.is_file() else None,
        samples=samples_path,
        eval_bpd=last_eval["bpd"] if last_eval else None,
        eval_ci95=last_eval["ci95"] if last_eval else None,
        train_seconds=train_time,
        interrupted=stop_reason,
    )


__all__ = [
    "EMA",
    "NonFiniteLossError",
    "TrainArgs",
    "TrainResult",
    "WarmupCosine",
    "evaluate",
    "init_distributed",
    "train",
    "unwrap",
]
