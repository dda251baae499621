"""No run is silently lost or mixed: one trainer per --out, a used --out needs --resume or --force, the final
checkpoint comes before the final eval, --resume extends --steps or refuses, every flag is checked up front."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch

from spn import checkpoint as ck
from spn import rundir
from spn import train as tr
from spn.cli import main
from spn.data import TensorImages

from ..cli.standin import StandIn, StandInConfig
from ..cli.test_cli import TINY, npz  # noqa: F401  (npz: the tiny data fixture)


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorImages(torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g))


def _args(out, **kw):
    base = dict(out_dir=str(out), steps=8, batch_size=8, lr=0.05, warmup=2, eval_every=0, eval_batch_size=8,
                sample_every=-1, checkpoint_every=4, keep=1, log_every=1, progress=False)  # fmt: skip
    return tr.TrainArgs(**{**base, **kw})


def _run(out, data=None, log=None, **kw):
    torch.manual_seed(0)
    return tr.train(StandIn(StandInConfig()), data or _data(), None, _args(out, **kw), log=log or (lambda s: None))


def _strict_records(path):
    def no_nan(c):
        raise ValueError(f"not JSON: {c}")

    return [json.loads(line, parse_constant=no_nan) for line in open(path)]


def test_used_out_is_refused_without_resume_or_force(tmp_path):
    _run(tmp_path, steps=12)
    before = (tmp_path / "metrics.jsonl").read_bytes()
    with pytest.raises(rundir.RunDirError, match="already holds a run.*--resume.*--force"):
        _run(tmp_path, steps=4)
    assert (tmp_path / "metrics.jsonl").read_bytes() == before  # untouched
    res = _run(tmp_path, steps=4, force=True)
    assert res.checkpoint.is_file()  # not pruned by --keep in favour of the old run's later step numbers
    (old,) = tmp_path.glob("replaced-*")
    assert (old / "metrics.jsonl").read_bytes() == before and (old / "ckpt_00000012.pt").is_file()
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["ckpt_00000004.pt"]
    assert tr.find_resume("auto", tmp_path).state["step"] == 4  # --resume continues the new run


def test_final_checkpoint_comes_before_the_final_eval(tmp_path):
    class Broken(TensorImages):
        def __getitem__(self, i):
            raise RuntimeError("held-out data went away")

    with pytest.raises(RuntimeError, match="went away"):
        tr.train(StandIn(StandInConfig()), _data(), Broken(_data(8).images), _args(tmp_path), log=lambda s: None)
    assert ck.read_checkpoint(tmp_path / "ckpt_00000008.pt")["step"] == 8


def test_one_trainer_per_out(tmp_path):
    held = rundir.claim(tmp_path, resume_step=None, force=False)
    try:
        with pytest.raises(rundir.RunDirError, match="in use by another trainer"):
            _run(tmp_path)
        assert not list(tmp_path.glob("ckpt_*"))
    finally:
        held.release()
    assert _run(tmp_path).step == 8  # released: free again
    _run(tmp_path, resume="auto", steps=9)  # and the trainer released it too


def test_out_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(rundir.RunDirError, match="is a file"):
        _run(tmp_path / "f")


@pytest.mark.parametrize(
    "flag, value",
    [("--batch-size", "-4"), ("--batch-size", "0"), ("--steps", "-1"), ("--time-budget", "0"), ("--grad-clip", "0"),
     ("--min-lr-ratio", "-3"), ("--ema-decay", "nan"), ("--log-every", "0"), ("--eval-batch-size", "0"),
     ("--lr", "inf"), ("--subsample", "0")],
)  # fmt: skip
def test_cli_flags_are_checked_before_any_work(tmp_path, npz, capsys, flag, value):  # noqa: F811
    out = tmp_path / "out"
    t0 = time.monotonic()
    rc = main(["train", "--out", str(out), "--data", npz, *TINY, "--no-progress", flag, value])
    err = capsys.readouterr().err
    assert rc == 2 and flag in err and "Traceback" not in err
    assert time.monotonic() - t0 < 30 and not out.exists()


def test_resume_extends_steps_and_applies_a_new_lr(tmp_path):
    _run(tmp_path)
    with pytest.raises(ck.CheckpointError, match="complete at step 8.*larger --steps"):
        _run(tmp_path, resume="auto")
    lines = []
    res = _run(tmp_path, resume="auto", steps=12, lr=0.01, log=lines.append)
    assert res.step == 12
    said = "\n".join(lines)
    assert "--steps 8 -> 12" in said and "--lr 0.05 -> 0.01" in said
    state = ck.read_checkpoint(res.checkpoint)
    assert state["optimizer"]["param_groups"][0]["initial_lr"] == 0.01
    assert state["scheduler"]["lr_lambdas"][0]["total"] == 12
    steps = [r["step"] for r in _strict_records(tmp_path / "metrics.jsonl") if "loss" in r]
    assert steps == list(range(1, 13))


def test_cli_resume_keeps_the_runs_options_unless_given(tmp_path, npz, capsys):  # noqa: F811
    flags = ["--data", npz, *TINY, "--batch-size", "4", "--lr", "3e-3", "--warmup", "1", "--eval-every", "0",
             "--sample-every", "-1", "--no-progress"]  # fmt: skip
    assert main(["train", "--out", str(tmp_path), *flags, "--steps", "2"]) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(tmp_path), "--resume", "--steps", "3", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "--steps 2 -> 3" in out and "--lr" not in out  # the run's lr, batch and data order carry over
    state = ck.read_checkpoint(tmp_path / "ckpt_00000003.pt")
    assert state["train_args"]["lr"] == 3e-3 and state["train_args"]["batch_size"] == 4
    assert main(["train", "--out", str(tmp_path), "--resume", "--steps", "3", "--no-progress"]) == 2
    assert "complete at step 3" in capsys.readouterr().err


def test_training_set_smaller_than_a_batch_trains(tmp_path):
    lines = []
    res = _run(tmp_path, data=_data(5), log=lines.append)
    assert res.step == 8 and any("drawn from it with replacement" in s for s in lines)


def test_metrics_torn_last_line_and_nan(tmp_path):
    _run(tmp_path, stop_at=4)
    path = tmp_path / "metrics.jsonl"
    path.write_text(path.read_text() + '{"step": 5, "lo')  # what a kill mid-write leaves
    with pytest.warns(UserWarning, match="metrics.jsonl: dropping its torn last line"):
        _run(tmp_path, resume="auto")
    assert len(_strict_records(path)) == 8
    path.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match="metrics.jsonl line 2"):
        _run(tmp_path, resume="auto", steps=9)


def test_metrics_never_hold_nan(tmp_path):
    class NaNLoss(StandIn):
        def loss(self, x, slices_per_step=None):
            return super().loss(x) * math.nan

    torch.manual_seed(0)
    args = _args(tmp_path, skip_nonfinite=True, steps=2)
    tr.train(NaNLoss(StandInConfig()), _data(), None, args, log=lambda s: None)
    recs = _strict_records(tmp_path / "metrics.jsonl")
    assert [r["grad_norm"] for r in recs] == [None, None] and recs[-1]["skipped_steps"] == 2


def test_stale_temp_files_are_cleaned_and_branches_kept(tmp_path):
    _run(tmp_path, keep=0)  # ckpt 4 and 8
    stale = tmp_path / ".ckpt_00000009.pt.x1y2.tmp"
    stale.write_bytes(b"half a checkpoint")
    r = _run(tmp_path, resume=str(tmp_path / "ckpt_00000004.pt"), steps=8, keep=1)  # a branch off step 4
    assert not stale.exists() and r.step == 8
    (old,) = tmp_path.glob("replaced-*")
    assert (old / "ckpt_00000008.pt").is_file() and (old / "metrics.jsonl").is_file()


def _read_only(monkeypatch, root):
    """Makes every write under `root` fail as a read-only folder does for a user without rights there: creating
    it or anything in it, or opening a file in it for writing, raises PermissionError. (chmod cannot do this when
    the tests run as root, who may write anywhere; this runs everywhere.)"""
    import builtins
    import os
    from pathlib import Path

    root = os.path.abspath(root)

    def inside(p) -> bool:
        p = os.path.abspath(os.fspath(p))
        return p == root or p.startswith(root + os.sep)

    def denied(p):
        return PermissionError(13, "Permission denied", os.fspath(p))

    real_open, real_os_open, real_mkdir, real_access = builtins.open, os.open, Path.mkdir, os.access

    def fake_open(file, mode="r", *a, **k):
        if isinstance(file, (str, os.PathLike)) and inside(file) and any(c in mode for c in "wax+"):
            raise denied(file)
        return real_open(file, mode, *a, **k)

    def fake_os_open(path, flags, *a, **k):
        if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise denied(path)
        return real_os_open(path, flags, *a, **k)

    def fake_mkdir(self, *a, **k):
        if inside(self) and not self.is_dir():
            raise denied(self)
        return real_mkdir(self, *a, **k)

    def fake_access(path, mode, *a, **k):
        if inside(path) and mode & os.W_OK:
            return False
        return real_access(path, mode, *a, **k)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    monkeypatch.setattr(Path, "mkdir", fake_mkdir)
    monkeypatch.setattr(os, "access", fake_access)


@pytest.mark.parametrize("where", ["existing", "new-in-read-only-parent"])
def test_cli_read_only_out_is_a_clean_error(tmp_path, npz, capsys, monkeypatch, where):  # noqa: F811
    parent = tmp_path / "ro"
    parent.mkdir()
    out = parent if where == "existing" else parent / "run"
    _read_only(monkeypatch, parent)
    rc = main(["train", "--out", str(out), "--data", npz, *TINY, "--no-progress", "--steps", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and f"--out {out}" in err and "Permission denied" in err and "Traceback" not in err, err
    assert list(parent.iterdir()) == []
