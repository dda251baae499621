"""A non-finite loss: training stops with the step and value and keeps the last good checkpoint (CLI exit 3), or,
with skip_nonfinite / --skip-nonfinite, drops that update and counts it in metrics.jsonl."""

from __future__ import annotations

import json
import math

import torch

import spn.model
from spn import checkpoint as ck
from spn import train as tr
from spn.cli import main
from spn.data import TensorImages

from ..cli.standin import StandIn, StandInConfig
from ..cli.test_cli import TINY, npz  # noqa: F401  (npz: the tiny data fixture)


class NaNAt(StandIn):
    """The stand-in whose loss is NaN on chosen training steps (1-based calls of loss()), deterministically."""

    def __init__(self, bad_steps):
        super().__init__(StandInConfig())
        self.bad_steps, self.calls = set(bad_steps), 0

    def loss(self, x, slices_per_step=None):
        self.calls += 1
        out = super().loss(x, slices_per_step)
        return out * math.nan if self.calls in self.bad_steps else out


def _data(n=64):
    g = torch.Generator().manual_seed(0)
    return TensorImages(torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g))


def _args(tmp_path, **kw):
    base = dict(out_dir=str(tmp_path), steps=8, batch_size=8, lr=0.05, warmup=2, eval_every=0, eval_batch_size=8,
                sample_every=-1, checkpoint_every=4, keep=0, log_every=1, progress=False)  # fmt: skip
    return tr.TrainArgs(**{**base, **kw})


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = NaNAt({6})
    try:
        tr.train(model, _data(), None, _args(tmp_path), log=lambda s: None)
    except tr.NonFiniteLossError as e:
        msg = str(e)
    else:
        raise AssertionError("training went on past a NaN loss")
    assert "step 6" in msg and "loss=nan" in msg and "ckpt_00000004.pt" in msg
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["ckpt_00000004.pt"]  # nothing of the bad state
    state = ck.read_checkpoint(tmp_path / "ckpt_00000004.pt")
    assert state["step"] == 4 and all(torch.isfinite(v).all() for v in state["model"].values())
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the bad update was never applied


def test_skip_nonfinite_drops_the_update_and_counts_it(tmp_path):
    torch.manual_seed(0)
    model = NaNAt({3, 6})
    res = tr.train(model, _data(), None, _args(tmp_path, skip_nonfinite=True), log=lambda s: None)
    assert res.step == 8
    recs = [json.loads(line) for line in open(res.metrics)]
    train_recs = [r for r in recs if "skipped_steps" in r]
    assert [r["skipped_steps"] for r in train_recs] == [0, 0, 1, 1, 1, 2, 2, 2]
    assert [r["step"] for r in train_recs if "loss" not in r] == [3, 6]  # no loss to average on a skipped step
    assert all(math.isfinite(r["loss"]) for r in train_recs if "loss" in r)
    state = ck.read_checkpoint(res.checkpoint)
    assert state["skipped_steps"] == 2
    assert all(torch.isfinite(v).all() for v in list(state["model"].values()) + list(state["ema"].values()))
    # AdamW took 6 updates for 8 steps
    assert {int(s["step"]) for s in state["optimizer"]["state"].values()} == {6}


def _nan_loss(monkeypatch):
    orig = spn.model.SPN.loss
    monkeypatch.setattr(spn.model.SPN, "loss", lambda self, x, **kw: orig(self, x, **kw) * math.nan)


def _cli_train(out, data, *extra):
    return main(["train", "--out", str(out), "--data", data, *TINY, "--steps", "3", "--batch-size", "4",
                 "--eval-every", "0", "--checkpoint-every", "1", "--sample-every", "-1", "--log-every", "1",
                 "--no-progress", *extra])  # fmt: skip


def test_cli_nonfinite_exits_3_without_checkpoint(tmp_path, npz, monkeypatch, capsys):  # noqa: F811
    _nan_loss(monkeypatch)
    assert _cli_train(tmp_path, npz) == 3
    err = capsys.readouterr().err
    assert "non-finite loss at step 1" in err and "loss=nan" in err and "Traceback" not in err
    assert ck.list_checkpoints(tmp_path) == []


def test_cli_skip_nonfinite_counts(tmp_path, npz, monkeypatch):  # noqa: F811
    _nan_loss(monkeypatch)
    assert _cli_train(tmp_path, npz, "--skip-nonfinite") == 0
    recs = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["skipped_steps"] for r in recs if "skipped_steps" in r] == [1, 2, 3]
    assert ck.read_checkpoint(ck.list_checkpoints(tmp_path)[-1])["skipped_steps"] == 3
