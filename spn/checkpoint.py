"""Checkpoint files: one torch.save'd dict of plain data and tensors, written atomically, read with
torch.load(weights_only=True) (so loading never runs pickled code).

Layout: {"format": "spn-checkpoint", "version": 1, "config": asdict(model.config), "model": state_dict,
"ema": state_dict or None, ...} plus whatever the trainer adds (optimizer, scheduler, step, rng, args, ...).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import typing
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMAT = "spn-checkpoint"
VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read or does not fit; the message names the file."""


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under torch.compile (its `_orig_mod`) and DistributedDataParallel (its `module`)."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def config_dict(model: nn.Module) -> dict[str, Any]:
    cfg = getattr(unwrap(model), "config", None)
    if cfg is None:
        raise ValueError(f"{type(model).__name__} has no .config; save_checkpoint needs it to rebuild the model")
    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)


# What torch.load(weights_only=True) rebuilds; anything else would save but never load.
_PLAIN = (str, bytes, int, float, complex, bool, type(None), torch.dtype, torch.device, torch.Size)


def check_loadable(obj: Any, where: str = "checkpoint") -> None:
    """TypeError naming the entry (e.g. checkpoint['extra']['x']) of the first value that torch.load with
    weights_only=True cannot rebuild: numpy scalars and arrays, Paths, Namespaces, dataclasses, other objects."""
    if isinstance(obj, torch.Tensor) or type(obj) in _PLAIN:
        return
    if isinstance(obj, dict) and type(obj) in (dict, OrderedDict):
        for k, v in obj.items():
            check_loadable(k, f"{where} key {k!r}")
            check_loadable(v, f"{where}[{k!r}]")
        return
    if type(obj) in (list, tuple, set, frozenset):
        for i, v in enumerate(obj):
            check_loadable(v, f"{where}[{i}]")
        return
    hint = "float(x) / x.item()" if type(obj).__module__ == "numpy" and not hasattr(obj, "shape") else None
    hint = hint or ("torch.from_numpy(x) or x.tolist()" if type(obj).__module__ == "numpy" else None)
    hint = hint or ("dataclasses.asdict(x)" if dataclasses.is_dataclass(obj) else None)
    hint = hint or ("vars(x)" if hasattr(obj, "__dict__") and not callable(obj) else "str(x)")
    raise TypeError(
        f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}, which a checkpoint cannot hold (it is "
        f"loaded with weights_only=True, which rebuilds only tensors and plain Python data): convert it, e.g. {hint}"
    )


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # mkstemp's 0600 would hide a checkpoint from the user's group
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, (OSError, RuntimeError)):  # a full disk shows up as "unexpected pos" from the zip writer
            free = shutil.disk_usage(path.parent).free
            raise CheckpointError(
                f"checkpoint {path} could not be written ({free:,} bytes free on its disk; the previous checkpoint "
                f"is untouched): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            ) from e
        raise
    # The rename itself is durable only once the directory entry is on disk.
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(path: str | os.PathLike, model: nn.Module, **state: Any) -> Path:
    """Writes model (its config and weights) plus `state` atomically: a temp file in the same directory, fsync,
    os.replace. `state` may hold tensors, state_dicts and plain Python data (TypeError, before anything is
    written, for anything load_checkpoint could not read back); pass `ema=<state_dict>` to make load_checkpoint
    return the EMA weights. Returns the path."""
    path = Path(path)
    m = unwrap(model)
    obj = {"format": FORMAT, "version": VERSION, "config": config_dict(m), "model": m.state_dict(), "ema": None}
    obj.update(state)
    check_loadable(obj)
    _atomic_save(obj, path)
    return path


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict; CheckpointError naming the file if it is missing, truncated, corrupt or foreign."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError/UnpicklingError/EOFError/... for damaged files
        raise CheckpointError(
            f"checkpoint {path} could not be read (truncated or corrupt? size {path.stat().st_size} bytes): "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from e
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not an spn checkpoint (no format={FORMAT!r} entry)")
    if obj.get("version", 0) > VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {obj['version']}; this spn reads <= {VERSION}")
    return obj


def check_config_types(cls: type, config: dict[str, Any]) -> None:
    """TypeError for a config value of the wrong plain type (the string 'False' for a bool field would otherwise
    count as true): bool fields take bools, int fields ints (not bools), float fields numbers."""
    hints = typing.get_type_hints(cls)
    for k, v in config.items():
        hint = hints.get(k)
        args = typing.get_args(hint)
        if v is None and type(None) in args:
            continue
        kinds = tuple(t for t in (args or (hint,)) if t in (bool, int, float, str))
        if not kinds or any(isinstance(v, t) and not (t is int and isinstance(v, bool)) for t in kinds):
            continue
        if float in kinds and isinstance(v, int) and not isinstance(v, bool):
            continue
        names = " or ".join(t.__name__ for t in kinds)
        raise TypeError(f"config field {k} must be {names}, got {v!r} ({type(v).__name__})")


def build_spn(config: dict[str, Any]) -> nn.Module:
    from .config import SPNConfig
    from .model import SPN

    check_config_types(SPNConfig, config)
    return SPN(SPNConfig(**config))


def load_checkpoint(
    path: str | os.PathLike,
    *,
    ema: bool = True,
    map_location: str | torch.device = "cpu",
    build: Callable[[dict[str, Any]], nn.Module] | None = None,
    **config_overrides: Any,
) -> nn.Module:
    """Rebuilds the model saved at `path` (EMA weights when present and `ema`), in eval mode.

    `build(config_dict) -> module` defaults to spn.SPN(SPNConfig(**config)); `config_overrides` replace config
    fields that do not change the weights' shapes (e.g. backend="cpu").
    """
    obj = read_checkpoint(path, map_location)
    cfg = {**obj["config"], **config_overrides}
    try:
        model = (build or build_spn)(cfg)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path}: its config does not build a model: {e}") from e
    weights = obj["ema"] if (ema and obj.get("ema") is not None) else obj["model"]
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {path}: weights do not fit the model: {e}") from e
    return model.to(map_location).eval()


def config_diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """'field: a_value != b_value' for every field that differs (missing fields count as None)."""
    return [f"{k}: {a.get(k)!r} != {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """The trainer's step checkpoints in `directory`, oldest first."""
    d = Path(directory)
    return sorted(d.glob("ckpt_*.pt")) if d.is_dir() else []


def prune_checkpoints(directory: str | os.PathLike, keep: int) -> None:
    """Deletes all but the `keep` newest step checkpoints (keep <= 0 keeps all)."""
    if keep <= 0:
        return
    for p in list_checkpoints(directory)[:-keep]:
        p.unlink(missing_ok=True)
