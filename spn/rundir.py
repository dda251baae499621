"""The output directory of a training run: one trainer at a time (an exclusive lock), and never two runs' files
mixed. A directory that holds a run is continued (--resume) or, with --force, its files are first moved into a
`replaced-<time>` subfolder; nothing in it is overwritten or deleted, except the temp files of an interrupted
save (only the lock holder can have been writing them).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

RUN_FILES = ("ckpt_*.pt", "metrics.jsonl", "loss_curve.png", "samples_*.png")
LOCK_NAME = ".spn-train.lock"
TEMP_FILES = (".ckpt_*.tmp", ".loss_curve.png.tmp.png")


class RunDirError(ValueError):
    """An --out that cannot be used for this run; the message says why and what to do."""


def _lock(f) -> bool:
    """Takes an exclusive lock on the open file f without waiting; False when another process holds it."""
    try:
        import fcntl

        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True


class RunDir:
    """Holds the lock of one --out for the life of a run (released by release(), or when the process dies)."""

    def __init__(self, out: Path, lock_file):
        self.out, self._f = out, lock_file

    def release(self) -> None:
        if self._f is not None:
            self._f.close()  # closing the file drops the lock
            self._f = None


def _used(out: Path) -> list[Path]:
    return sorted(p for pattern in RUN_FILES for p in out.glob(pattern))


def _step(p: Path) -> int:
    try:
        return int(p.stem.split("_")[1])
    except (IndexError, ValueError):
        return -1


def _move_aside(out: Path, files: list[Path], copies: list[Path] = ()) -> Path:
    dest = out / time.strftime("replaced-%Y%m%d-%H%M%S")
    k = 1
    while dest.exists():
        k += 1
        dest = out / time.strftime(f"replaced-%Y%m%d-%H%M%S-{k}")
    dest.mkdir()
    for p in files:
        os.replace(p, dest / p.name)
    for p in copies:
        shutil.copy2(p, dest / p.name)
    return dest


def claim(
    out: str | os.PathLike,
    *,
    resume_step: int | None,
    force: bool,
    log: Callable[[str], None] = print,
) -> RunDir:
    """Creates and locks `out` for a run, before any work. `resume_step`: the step of the checkpoint the run
    continues from (None for a new run). Raises RunDirError when `out` is a file, is not writable, is locked by
    another trainer, or (new run without `force`) already holds a run."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out} is a file, not a directory: choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        f = open(out / LOCK_NAME, "a+")  # noqa: SIM115 (held open: the lock lives as long as the file)
    except OSError as e:
        raise RunDirError(f"--out {out} cannot be used: {type(e).__name__}: {e.strerror or e}") from None
    if not _lock(f):
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise RunDirError(
            f"--out {out} is in use by another trainer (pid {holder}): wait for it to finish, or choose another --out"
        )
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    run = RunDir(out, f)
    try:
        if not os.access(out, os.W_OK):
            raise RunDirError(f"--out {out} is not writable")
        for pattern in TEMP_FILES:  # what a killed save left; nobody else writes here while we hold the lock
            for p in out.glob(pattern):
                p.unlink(missing_ok=True)
        used = _used(out)
        if resume_step is None and used:
            if not force:
                names = ", ".join(p.name for p in used[:3]) + (", ..." if len(used) > 3 else "")
                raise RunDirError(
                    f"--out {out} already holds a run ({names}): pass --resume to continue it, --force to start a "
                    f"new run there (its files are moved into {out}/replaced-<time>/ first), or choose another --out"
                )
            log(f"--force: moved the previous run's {len(used)} files to {_move_aside(out, used)}")
        elif resume_step is not None:
            later = [p for p in out.glob("ckpt_*.pt") if _step(p) > resume_step]
            if later:  # a branch off an older checkpoint: keep the newer ones out of --keep and --resume's way
                metrics = [p for p in (out / "metrics.jsonl",) if p.is_file()]
                dest = _move_aside(out, sorted(later), metrics)
                log(f"resuming from step {resume_step}: moved the {len(later)} later checkpoints to {dest}")
    except BaseException:
        run.release()
        raise
    return run
