"""The pieces of the training loop: the Trainer (one rank's state and the actions train() takes on it), the
TimeBudget clock, the EMA and the warm-up + cosine schedule (resume, RNG state, signals and process groups are in
spn.runstate).

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
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .checkpoint import (
    CheckpointError,
    config_dict,
    config_diff,
    prune_checkpoints,
    save_checkpoint,
)
from .conditioning import check_labels
from .data import Resampled, quantize
from .evaluate import evaluate
from .labels import split_batch, stack_items
from .outputs import plot_loss_curve, write_sample_grid
from .runstate import (  # noqa: F401  (re-exported: spn.train and spn.cli take them from here)
    Resume,
    StopSignals,
    find_resume,
    init_distributed,
    resume_step,
    rng_state,
    set_rng_state,
    step_seed,
)

if TYPE_CHECKING:
    from .train import TrainArgs

# A training set smaller than one batch is resampled into epochs of this many batches (one DataLoader each).
RESAMPLED_BATCHES = 64


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


class LossModule(nn.Module):
    """forward(x[, labels]) = model.loss(x[, labels=labels]): DDP synchronises gradients only through a module's
    forward."""

    def __init__(self, model: nn.Module, slices_per_step: int | None):
        super().__init__()
        self.model = model
        self.slices_per_step = slices_per_step

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        kw = {} if labels is None else {"labels": labels}
        if self.slices_per_step is None:
            return self.model.loss(x, **kw)
        return self.model.loss(x, slices_per_step=self.slices_per_step, **kw)


# TrainArgs fields that belong to one invocation, not to the run: never reported as changed on --resume.
PER_CALL_OPTIONS = ("out_dir", "force", "resume", "stop_at", "progress", "device", "workers", "compile")


class TimeBudget:
    """The run's clock: seconds spent in training steps (batch fetch included; evals and checkpoints not), carried
    across resumes. With a budget, the cosine schedule runs on it (schedule.time_frac = spent / budget) and
    training ends once it is spent; under DDP every rank adopts rank 0's clock at each sync point, so all ranks
    stop on the same step."""

    def __init__(self, budget: float | None, spent: float, schedule: WarmupCosine, world: int):
        self.budget, self.spent, self.schedule, self.world = budget, spent, schedule, world
        self.window_s, self.window_steps = 0.0, 0  # recent steps: the speed behind steps_left()

    def add(self, seconds: float, speed_sample: bool = True) -> None:
        """One step's seconds; `speed_sample=False` keeps a step (the first: compile, warm-up) out of the speed."""
        self.spent += seconds
        if speed_sample:
            self.window_s += seconds
            self.window_steps += 1
        if self.budget and self.world == 1:
            self.schedule.time_frac = self.spent / self.budget  # used from the next sched.step()

    @property
    def spent_here(self) -> bool:
        """Whether the budget is spent, as a lone rank may decide without a sync point."""
        return bool(self.budget) and self.world == 1 and self.spent >= self.budget

    def sync(self, step: int, last: bool, device: torch.device) -> bool:
        """At a sync point: adopts rank 0's clock and returns whether `step` is the last; if so, the schedule's
        length becomes `step` (what the budget allowed, recorded in the scheduler state)."""
        clock = torch.tensor([self.spent], dtype=torch.float64)
        if self.world > 1:
            clock = clock.to(device)
            dist.broadcast(clock, 0)
            self.schedule.time_frac = clock.item() / self.budget
            last = last or clock.item() >= self.budget
        if last:
            self.schedule.total = step
        return last

    def steps_left(self) -> int | None:
        """Steps the rest of the budget allows at the speed since the last call (None without a speed sample)."""
        left = None
        if self.window_steps > 0:
            left = max(1, int((self.budget - self.spent) / (self.window_s / self.window_steps)))
        self.window_s, self.window_steps = 0.0, 0
        return left


def _read_metrics(path: Path, upto: int) -> list[dict[str, Any]]:
    """The records of metrics.jsonl up to step `upto`. A torn last line (a kill mid-write) is dropped with a
    warning; a damaged line elsewhere is an error naming the file and line."""
    if not path.is_file():
        return []
    lines = [(k, line) for k, line in enumerate(path.read_text(errors="replace").splitlines(), 1) if line.strip()]
    recs = []
    for j, (k, line) in enumerate(lines):
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            if j == len(lines) - 1:
                warnings.warn(f"{path}: dropping its torn last line {k} ({e})", stacklevel=3)
                break
            raise ValueError(f"{path} line {k} is not a metrics record ({e}): repair or move the file") from None
        recs.append(rec)
    return [r for r in recs if r.get("step", 0) <= upto]


def _json_safe(rec: dict[str, Any]) -> dict[str, Any]:
    """NaN/inf are not JSON: they are written as null."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in rec.items()}


class Trainer:
    """One rank's training state (model, EMA, optimiser, schedule, data order, clock, metrics) and the actions
    train() takes on it: step, log, maybe_eval / maybe_sample / maybe_save, evaluate, sample and save. Rank 0
    alone logs and writes files."""

    def __init__(
        self,
        model: nn.Module,
        train_set: Dataset,
        eval_set: Dataset | None,
        args: TrainArgs,
        *,
        log: Callable[[str], None] = print,
        resume: Resume | None = None,
    ):
        self.rank, self.world, local = init_distributed()
        self.main = self.rank == 0
        self.echo = log if self.main else (lambda s: None)
        self.model, self.train_set, self.eval_set, self.args = model, train_set, eval_set, args
        self.device = torch.device(args.device or (f"cuda:{local}" if torch.cuda.is_available() else "cpu"))
        self.amp = (self.device.type == "cuda") if args.amp is None else args.amp
        self.bits = model.config.bits
        if args.batch_size % self.world:
            raise ValueError(f"batch_size={args.batch_size} must be divisible by the world size {self.world}")
        self.local_bs = args.batch_size // self.world
        self.out = Path(args.out_dir)
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)

        torch.manual_seed(args.seed)
        model.to(self.device).train()
        self.ema = EMA(model, args.ema_decay)
        self.opt = torch.optim.AdamW(
            model.parameters(), lr=args.lr, betas=tuple(args.betas), weight_decay=args.weight_decay
        )
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, WarmupCosine(args.warmup, args.steps, args.min_lr_ratio)
        )
        self.iter_num = 0
        self.skipped = 0  # updates dropped for a non-finite loss (skip_nonfinite), across resumes
        spent = self._load(resume) if resume is not None else 0.0
        self.resumed_from = resume.path if resume is not None else None
        self.schedule: WarmupCosine = self.sched.lr_lambdas[0]
        self.total = self.schedule.total
        self.clock = TimeBudget(args.time_budget, spent, self.schedule, self.world)

        net: nn.Module = LossModule(model, args.slices_per_step)
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(net, device_ids=ids)
        # One whole graph (fullgraph): the model's value checks stay out of it (see step()). Under DDP the
        # compiler splits the graph at the gradient buckets itself, so fullgraph applies to one process only.
        self.net = torch.compile(net, fullgraph=self.world == 1) if args.compile else net
        self.class_names = getattr(train_set, "classes", None)  # a labelled set's; saved in the checkpoints
        if len(train_set) < args.batch_size:
            self.echo(
                f"the training set ({len(train_set)} images) is smaller than one batch ({args.batch_size}): batches "
                "are drawn from it with replacement (random crops make repeated draws differ)"
            )
            train_set = self.train_set = Resampled(train_set, args.batch_size * RESAMPLED_BATCHES, args.seed)
        self.sampler = DistributedSampler(
            train_set, num_replicas=self.world, rank=self.rank, shuffle=True, seed=args.seed, drop_last=True
        )
        self.steps_per_epoch = len(self.sampler) // self.local_bs

        self.metrics_path = self.out / "metrics.jsonl"
        self.curve_path = self.out / "loss_curve.png"
        self.records = _read_metrics(self.metrics_path, self.iter_num) if self.main else []
        if self.main:  # drop lines past the resumed step, atomically
            tmp = self.metrics_path.with_name(".metrics.jsonl.tmp")
            with open(tmp, "w") as f:
                f.writelines(json.dumps(_json_safe(r), allow_nan=False) + "\n" for r in self.records)
            os.replace(tmp, self.metrics_path)
        self.last_eval: dict[str, Any] | None = None
        self.last_ckpt: Path | None = None
        self.samples_path: Path | None = None
        self.stop_signal: int | None = None
        self.bar = None
        if self.main and args.progress:
            from tqdm.auto import tqdm

            bar_total = None if args.time_budget else self.total  # under a budget: estimated at each sync point
            self.bar = tqdm(total=bar_total, initial=self.iter_num, desc="train", unit="step", dynamic_ncols=True)
        self.loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        self.n_since, self.imgs_since, self.t_log = 0, 0, time.perf_counter()
        self.step_start, self.epoch, self.grad_norm = self.iter_num, 0, math.nan
        self.t_mark = time.perf_counter()

    def _load(self, resume: Resume) -> float:
        """Restores the run from `resume`; returns the seconds its clock had spent."""
        state = resume.state
        diff = config_diff(state["config"], config_dict(self.model))
        if diff:
            raise CheckpointError(
                f"--resume {resume.path}: the model config differs from the checkpoint's: " + "; ".join(diff)
            )
        self.model.load_state_dict(state["model"])
        if state.get("ema") is not None:
            self.ema.module.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.iter_num = int(state["step"])
        self.skipped = int(state.get("skipped_steps", 0))
        if self.main and state.get("rng") is not None:
            set_rng_state(state["rng"])
        spent = float(state.get("train_seconds", 0.0))
        self._apply_changes(resume, state.get("train_args") or {}, spent)
        self.echo(f"resumed from {resume.path} at step {self.iter_num}")
        return spent

    def _apply_changes(self, resume: Resume, old: dict[str, Any], spent: float) -> None:
        """Options that differ from the checkpoint's run take effect here (the schedule, the optimiser's
        hyperparameters; the rest are read from args as the loop goes) and are reported; a run that has nothing
        left to train is refused."""
        a, sched, schedule = self.args, self.sched, self.sched.lr_lambdas[0]
        new = dataclasses.asdict(a)
        changed = {
            k: (old[k], new[k])
            for k in new
            if k in old
            and k not in PER_CALL_OPTIONS
            and (list(new[k]) if isinstance(new[k], tuple) else new[k]) != old[k]
        }
        if "steps" in changed:
            schedule.total = a.steps
        if a.time_budget is None and self.iter_num >= schedule.total:
            raise CheckpointError(
                f"--resume {resume.path}: the run is complete at step {self.iter_num} (--steps {schedule.total}): "
                f"pass a larger --steps to train further"
            )
        if a.time_budget is not None and spent >= a.time_budget:
            raise CheckpointError(
                f"--resume {resume.path}: its --time-budget of {a.time_budget:g} s is spent ({spent:.1f} s "
                "trained): pass a larger --time-budget to train further"
            )
        if not changed:
            return
        lr_before = sched.get_last_lr()[0]
        schedule.warmup, schedule.min_ratio = a.warmup, a.min_lr_ratio
        sched.base_lrs = [a.lr for _ in sched.base_lrs]
        for g in self.opt.param_groups:
            g.update(initial_lr=a.lr, weight_decay=a.weight_decay, betas=tuple(a.betas))
            g["lr"] = a.lr * schedule(sched.last_epoch)
        what = ", ".join(f"--{k.replace('_', '-')} {o} -> {n}" for k, (o, n) in changed.items())
        lr_now = self.opt.param_groups[0]["lr"]
        self.echo(
            f"--resume with changed options: {what} (lr at step {self.iter_num}: {lr_before:.3g} -> {lr_now:.3g})"
        )

    # ------------------------------------------------------------------------------------------ the loop's steps
    def batches(self) -> Iterator[torch.Tensor]:
        """The uint8 batches of the remaining steps; the batch of step k depends only on (seed, k)."""
        while self.iter_num < self.total:
            self.epoch, offset = divmod(self.iter_num, self.steps_per_epoch)
            self.sampler.set_epoch(self.epoch)
            if hasattr(self.train_set, "set_epoch"):
                self.train_set.set_epoch(self.epoch)
            order = list(self.sampler)
            bs = self.local_bs
            batches = [order[i * bs : (i + 1) * bs] for i in range(offset, self.steps_per_epoch)]
            pin = self.device.type == "cuda"
            loader = DataLoader(self.train_set, batch_sampler=batches, num_workers=self.args.workers, pin_memory=pin)
            self.t_mark = time.perf_counter()
            for xb in loader:
                yield xb
                self.t_mark = time.perf_counter()  # the loop's evals and checkpoints are not training time

    def step(self, xb) -> None:
        """One optimiser step on the batch xb (images, or (images, labels) from a labelled set): forward, backward,
        clip, update, EMA (or a counted skip of a non-finite update, with skip_nonfinite)."""
        a = self.args
        xb, yb = split_batch(xb)
        x = quantize(xb, self.bits).to(self.device, non_blocking=True)
        y = None if yb is None else yb.to(self.device, non_blocking=True)
        if a.compile and self.iter_num == self.step_start:
            self.model.check_image(x)  # compiled, the model does not read the values: checked once, eagerly
            if y is not None:
                check_labels(y, self.model.config, y.shape[0], self.device)
        torch.manual_seed(step_seed(a.seed, self.rank, self.iter_num))
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            loss = self.net(x) if y is None else self.net(x, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), a.grad_clip)
        if self._nonfinite(loss, self.grad_norm):
            self._skip(loss)
        else:
            self.opt.step()
            self.sched.step()  # the lr follows the step count (and so the data order), skipped or not
            self.ema.update(self.model, self.iter_num)
            self.loss_sum += loss.detach().double()
            self.n_since += 1
        self.iter_num += 1
        self.imgs_since += a.batch_size
        self.clock.add(time.perf_counter() - self.t_mark, speed_sample=self.iter_num - self.step_start > 1)
        if self.bar is not None:
            self.bar.update(1)

    def _nonfinite(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> bool:
        # Checked before the update, so a bad step never reaches the weights, the EMA or a checkpoint. One host
        # sync per step on two scalars: small next to a step; under DDP the flag is reduced so every rank takes
        # the same branch.
        bad = (~torch.isfinite(loss.detach()) | ~torch.isfinite(grad_norm)).float().reshape(1)
        if self.world > 1:
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        return bad.item() > 0

    def _skip(self, loss: torch.Tensor) -> None:
        if not self.args.skip_nonfinite:
            self.close()
            kept = self.last_ckpt or self.resumed_from
            raise NonFiniteLossError(
                f"non-finite loss at step {self.iter_num + 1}: loss={loss.item()}, grad_norm={float(self.grad_norm)}; "
                f"the update was not applied and no checkpoint of this state was written (last good checkpoint: "
                f"{kept if kept else 'none yet'}). Lower --lr, or pass --skip-nonfinite."
            )
        self.opt.zero_grad(set_to_none=True)
        self.skipped += 1
        with warnings.catch_warnings():  # "lr_scheduler.step() before optimizer.step()": intended for a skip
            warnings.simplefilter("ignore", UserWarning)
            self.sched.step()
        self.echo(f"step {self.iter_num + 1}: non-finite loss {loss.item()}, update skipped ({self.skipped} so far)")

    def at_end(self) -> bool:
        """Whether the step just taken is the last: the schedule's end, --stop-at, or a lone rank's spent budget."""
        stop_at = self.args.stop_at
        return (
            self.clock.spent_here or self.iter_num >= self.total or (stop_at is not None and self.iter_num >= stop_at)
        )

    def sync(self, signals: StopSignals, last: bool) -> bool:
        """A sync point: every rank learns of a signal caught on any rank and adopts rank 0's clock. Returns
        whether the step just taken is the last."""
        flag = torch.tensor([float(signals.caught or 0)], device=self.device)
        if self.world > 1:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() > 0:
            self.stop_signal = int(flag.item())
        if self.args.time_budget:
            last = self.clock.sync(self.iter_num, last, self.device)
            left = self.clock.steps_left()
            if not last and self.bar is not None and left is not None:  # the bar's length: from recent speed
                self.bar.total = min(self.args.steps, self.iter_num + left)
        return last

    def log(self) -> None:
        """Appends a record to metrics.jsonl and the progress bar: the mean loss since the last record, lr, grad
        norm, images/s and the clock."""
        now = time.perf_counter()
        rec = {
            "step": self.iter_num,
            "epoch": self.epoch,
            "loss": self.loss_sum.item() / self.n_since if self.n_since else None,  # None: every step skipped
            "lr": self.sched.get_last_lr()[0],
            "grad_norm": float(self.grad_norm),
            "images_per_s": self.imgs_since / max(now - self.t_log, 1e-9),
            "train_s": self.clock.spent,
        }
        if self.args.skip_nonfinite:
            rec["skipped_steps"] = self.skipped
        if rec["loss"] is None:
            del rec["loss"]
        self._emit(rec)
        if self.bar is not None:
            post = {"loss": f"{rec.get('loss', math.nan):.3f}", "img/s": f"{rec['images_per_s']:.1f}"}
            if self.last_eval is not None:
                post["eval_bpd"] = f"{self.last_eval['bpd']:.3f}"
            self.bar.set_postfix(post, refresh=False)
        self.loss_sum.zero_()
        self.n_since, self.imgs_since, self.t_log = 0, 0, now

    def _emit(self, rec: dict[str, Any]) -> None:
        if self.main:
            self.records.append(rec)
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(_json_safe(rec), allow_nan=False) + "\n")

    def stopped(self) -> bool:
        """A signal was caught or --stop-at reached: stop now, without the final eval and samples."""
        stop_at = self.args.stop_at
        return self.stop_signal is not None or (stop_at is not None and self.iter_num >= stop_at)

    @property
    def interrupted(self) -> bool:
        """Training stopped before the schedule's end (a signal or --stop-at)."""
        stop_at = self.args.stop_at
        return self.stop_signal is not None or (stop_at is not None and self.iter_num < self.total)

    def _due(self, every: int) -> bool:
        return every > 0 and self.iter_num % every == 0 and self.iter_num < self.total

    def maybe_eval(self) -> None:
        if self._due(self.args.eval_every):
            self.evaluate(self.args.eval_every_max_images or self.args.eval_max_images)

    def maybe_sample(self) -> None:
        if self._due(self.args.sample_every):
            self.sample()

    def maybe_save(self) -> None:
        if self._due(self.args.checkpoint_every):
            self.save()

    # ------------------------------------------------------------------------------------------ the actions
    def evaluate(self, max_images: int | None = None) -> None:
        """Held-out bits/dim of the EMA weights (on every rank) on `max_images` evenly spaced held-out images
        (default: --eval-max-images), logged to metrics.jsonl and the loss curve."""
        if self.eval_set is None:
            return
        a = self.args
        r = evaluate(
            self.ema.module,
            self.eval_set,
            bits=self.bits,
            batch_size=a.eval_batch_size,
            device=self.device,
            max_images=max_images or a.eval_max_images,
            progress=a.progress,
        )
        self.last_eval = r
        self._emit({"step": self.iter_num, "eval_bpd": r["bpd"], "eval_ci95": r["ci95"], "eval_n": r["n"]})
        if self.main:
            plot_loss_curve(self.records, self.curve_path)

    def sample(self) -> None:
        """A grid of samples of the EMA weights (rank 0); an upscaling stage is conditioned on real images."""
        a = self.args
        if not (self.main and a.n_samples > 0):
            return
        cond = None
        if self.model.needs_conditioning():
            src = self.eval_set if self.eval_set is not None else self.train_set
            cond = stack_items([src[i % len(src)] for i in range(a.n_samples)])[0]
        path = self.out / f"samples_{self.iter_num:08d}.png"
        classes = getattr(self.model.config, "classes", 0)
        self.samples_path = write_sample_grid(
            self.ema.module, path, a.n_samples, a.seed, self.device, a.progress, cond, classes=classes
        )

    def save(self) -> None:
        """An atomic checkpoint of everything --resume needs (rank 0), keeping the newest `keep`."""
        if not self.main:
            return
        self.last_ckpt = save_checkpoint(
            self.out / f"ckpt_{self.iter_num:08d}.pt",
            self.model,
            ema=self.ema.module.state_dict(),
            optimizer=self.opt.state_dict(),
            scheduler=self.sched.state_dict(),
            step=self.iter_num,
            rng=rng_state(),
            world_size=self.world,
            train_seconds=self.clock.spent,
            skipped_steps=self.skipped,
            **({} if self.class_names is None else {"class_names": list(self.class_names)}),
            train_args={k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self.args).items()},
        )
        prune_checkpoints(self.out, self.args.keep)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
