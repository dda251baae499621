"""Run-level state around the Trainer: the checkpoint a run resumes from, the global RNG state and its per-step
seeds, the SIGINT/SIGTERM flag the loop polls, and the process group torchrun describes."""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .checkpoint import CheckpointError, list_checkpoints, read_checkpoint


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


def step_seed(seed: int, rank: int, step: int) -> int:
    """The global RNG's seed for one step of one rank."""
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


class StopSignals:
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


@dataclasses.dataclass
class Resume:
    """The checkpoint a run continues from, read once (on the CPU)."""

    path: Path
    state: dict[str, Any]


def find_resume(resume: str | None, out_dir: str | os.PathLike) -> Resume | None:
    """What --resume names: None (no --resume, or "auto" with no checkpoint in out_dir yet), the latest
    checkpoint in out_dir ("auto"), or the given path; the checkpoint is read here and nowhere else."""
    if not resume:
        return None
    if resume == "auto":
        found = list_checkpoints(out_dir)
        if not found:
            return None
        path = found[-1]
    else:
        path = Path(resume)
        found = list_checkpoints(path.parent)
    try:
        return Resume(path, read_checkpoint(path))
    except CheckpointError as e:  # name the newest older checkpoint that reads, but never switch to it unasked
        for older in reversed([p for p in found if p.name < path.name]):
            try:
                read_checkpoint(older)
            except CheckpointError:
                continue
            raise CheckpointError(f"{e}. The previous checkpoint {older} reads: pass --resume {older}") from e
        raise


def resume_step(resume: Resume | None) -> int | None:
    """The step a resumed run continues from (None: a new run)."""
    return None if resume is None else int(resume.state.get("step", 0))
