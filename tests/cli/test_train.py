"""The training loop on a tiny stand-in model: files, exact resume, config mismatch, --keep, signals."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from spn import checkpoint as ck
from spn import train as tr
from spn.data import TensorImages
from spn.evaluate import evaluate

from .standin import StandIn, StandInConfig, build


def _data(n=64, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorImages(torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g))


def _args(tmp_path, **kw):
    base = dict(
        out_dir=str(tmp_path),
        steps=8,
        batch_size=8,
        lr=0.05,
        warmup=2,
        eval_every=4,
        eval_batch_size=8,
        sample_every=0,
        n_samples=4,
        checkpoint_every=4,
        log_every=1,
        progress=False,
        slices_per_step=1,  # the stand-in then draws from the global RNG, like the real model's slice choice
    )
    base.update(kw)
    return tr.TrainArgs(**base)


def _losses(path):
    return [r["loss"] for r in map(json.loads, open(path)) if "loss" in r]


def test_train_writes_everything(tmp_path):
    torch.manual_seed(0)
    model = StandIn(StandInConfig())
    res = tr.train(model, _data(), _data(16, seed=1), _args(tmp_path), log=lambda s: None)
    assert res.step == 8 and res.interrupted is None
    assert res.checkpoint == tmp_path / "ckpt_00000008.pt" and res.checkpoint.is_file()
    assert res.loss_curve.is_file() and res.samples.is_file() and res.metrics.is_file()
    recs = [json.loads(line) for line in open(res.metrics)]
    assert [r["step"] for r in recs if "loss" in r] == list(range(1, 9))
    assert [r["step"] for r in recs if "eval_bpd" in r] == [4, 8]
    losses = _losses(res.metrics)
    assert losses[-1] < losses[0]
    assert res.eval_bpd == pytest.approx(recs[-1]["eval_bpd"]) and res.eval_ci95 > 0
    state = ck.read_checkpoint(res.checkpoint)
    assert state["step"] == 8 and set(state) >= {"optimizer", "scheduler", "rng", "ema", "config", "train_args"}
    # load_checkpoint returns the EMA weights, which evaluate to the logged held-out bits/dim
    ema_model = ck.load_checkpoint(res.checkpoint, build=build)
    ev = evaluate(ema_model, _data(16, seed=1), bits=8)
    assert ev["bpd"] == pytest.approx(res.eval_bpd, rel=1e-12)


def test_resume_reproduces_uninterrupted_run(tmp_path):
    torch.manual_seed(0)
    full = StandIn(StandInConfig())
    init = {k: v.clone() for k, v in full.state_dict().items()}
    tr.train(full, _data(), None, _args(tmp_path / "a", checkpoint_every=0), log=lambda s: None)

    part = StandIn(StandInConfig())
    part.load_state_dict(init)
    r1 = tr.train(part, _data(), None, _args(tmp_path / "b", stop_at=3), log=lambda s: None)
    assert r1.step == 3 and r1.checkpoint.name == "ckpt_00000003.pt"
    again = StandIn(StandInConfig())  # fresh weights: everything must come from the checkpoint
    r2 = tr.train(again, _data(), None, _args(tmp_path / "b", resume="auto"), log=lambda s: None)
    assert r2.step == 8
    assert _losses(tmp_path / "b" / "metrics.jsonl") == _losses(tmp_path / "a" / "metrics.jsonl")
    for k, v in full.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


def test_resume_config_mismatch_names_fields(tmp_path):
    tr.train(StandIn(StandInConfig()), _data(), None, _args(tmp_path, stop_at=2), log=lambda s: None)
    other = StandIn(StandInConfig(hidden=5))
    with pytest.raises(ck.CheckpointError, match=r"hidden: 4 != 5"):
        tr.train(other, _data(), None, _args(tmp_path, resume="auto"), log=lambda s: None)


def test_keep_last_k(tmp_path):
    tr.train(StandIn(StandInConfig()), _data(), None, _args(tmp_path, checkpoint_every=1, keep=2), log=lambda s: None)
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["ckpt_00000007.pt", "ckpt_00000008.pt"]


class _SignalAt(TensorImages):
    """Sends SIGTERM to this process when item `at` is first fetched (a stand-in for a scheduler's preemption)."""

    def __init__(self, base, at):
        super().__init__(base.images)
        self.at, self.sent = at, False

    def __getitem__(self, i):
        if not self.sent and i == self.at:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)
        return super().__getitem__(i)


def test_sigterm_saves_checkpoint_and_stops(tmp_path):
    ds = _SignalAt(_data(), at=0)  # item 0 comes up somewhere in the first epoch (8 steps)
    old = signal.getsignal(signal.SIGTERM)
    res = tr.train(StandIn(StandInConfig()), ds, None, _args(tmp_path, steps=100), log=lambda s: None)
    assert signal.getsignal(signal.SIGTERM) is old  # handler restored
    assert res.interrupted == signal.SIGTERM and 1 <= res.step <= 9
    assert res.checkpoint.is_file() and ck.read_checkpoint(res.checkpoint)["step"] == res.step


def test_checkpoint_errors_name_the_file(tmp_path):
    m = StandIn(StandInConfig())
    p = ck.save_checkpoint(tmp_path / "m.pt", m, ema=None, step=0)
    loaded = ck.load_checkpoint(p, build=build)
    x = torch.randint(0, 256, (2, 3, 8, 8))
    assert torch.equal(loaded.log_prob(x), m.log_prob(x))
    raw = p.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ck.CheckpointError, match="truncated.pt"):
        ck.load_checkpoint(bad, build=build)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(ck.CheckpointError, match="junk.pt"):
        ck.load_checkpoint(junk, build=build)
    with pytest.raises(ck.CheckpointError, match="missing.pt"):
        ck.load_checkpoint(tmp_path / "missing.pt", build=build)
    torch.save({"a": 1}, tmp_path / "foreign.pt")
    with pytest.raises(ck.CheckpointError, match="not an spn checkpoint"):
        ck.read_checkpoint(tmp_path / "foreign.pt")
    assert not list(tmp_path.glob(".*tmp"))  # no temp files left behind


def test_time_budget_sizes_schedule(tmp_path):
    res = tr.train(
        StandIn(StandInConfig()), _data(), None, _args(tmp_path, steps=10**6, time_budget=0.5), log=lambda s: None
    )
    assert 1 <= res.step < 10**6
    state = ck.read_checkpoint(res.checkpoint)
    # the schedule ends where the budget did, and the spent time travels with the checkpoint
    assert state["scheduler"]["lr_lambdas"][0]["total"] == res.step
    assert state["train_seconds"] == res.train_seconds
    # after warm-up the cosine runs on the clock: the lr never goes back up
    lrs = [r["lr"] for r in map(json.loads, open(res.metrics)) if "lr" in r][2:]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
