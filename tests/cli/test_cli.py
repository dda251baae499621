"""The spn command end to end on tiny settings with the real SPN: train, resume, eval, sample, demo."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import spn
from spn import checkpoint as ck
from spn.cli import build_parser, main

TINY = ["--preset", "cpu_tiny", "--image-size", "4", "--channels", "3", "--bits", "4", "--subscale", "2",
        "--set", "decoder_blocks=1"]  # fmt: skip


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (1, 4, 4, 3))
    imgs = np.clip(base + rng.integers(-20, 21, (40, 4, 4, 3)), 0, 255).astype(np.uint8)  # learnable: near a mean
    np.savez(path, data=imgs)
    return str(path)


def _train(out, npz, *extra):
    return main(
        ["train", "--out", str(out), "--data", npz, *TINY, "--steps", "6", "--batch-size", "4", "--lr", "3e-3",
         "--warmup", "2", "--eval-every", "3", "--checkpoint-every", "3", "--n-samples", "2", "--log-every", "1",
         "--slices-per-step", "2", "--no-progress", *extra]
    )  # fmt: skip


def _losses(out):
    return [r["loss"] for r in map(json.loads, open(out / "metrics.jsonl")) if "loss" in r]


def test_every_flag_has_help():
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(subs) == {"demo", "train", "eval", "sample"}
    for name, sp in subs.items():
        for act in sp._actions:
            assert act.help, f"spn {name} {act.option_strings} has no help"


def test_python_m_spn_help():
    r = subprocess.run([sys.executable, "-m", "spn", "train", "--help"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "--time-budget" in r.stdout and "--resume" in r.stdout


def test_train_resume_eval_sample(tmp_path, npz, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _train(a, npz) == 0
    files = {p.name for p in a.iterdir()}
    assert {"metrics.jsonl", "loss_curve.png", "samples_00000006.png", "ckpt_00000006.pt"} <= files
    # interrupted at step 2 + --resume = the uninterrupted run, loss for loss (random slices included)
    assert _train(b, npz, "--stop-at", "2") == 0
    assert [p.name for p in ck.list_checkpoints(b)] == ["ckpt_00000002.pt"]
    assert _train(b, npz, "--resume") == 0
    assert _losses(b) == _losses(a)
    sa = ck.read_checkpoint(a / "ckpt_00000006.pt")
    sb = ck.read_checkpoint(b / "ckpt_00000006.pt")
    for k in sa["model"]:
        assert torch.equal(sa["model"][k], sb["model"][k]), k

    # a model flag that contradicts the checkpoint names the field
    capsys.readouterr()
    assert _train(b, npz, "--resume", "--set", "decoder_channels=8") == 2
    assert "decoder_channels: 16 != 8" in capsys.readouterr().err

    capsys.readouterr()
    out_json = tmp_path / "eval.json"
    ckpt = str(a / "ckpt_00000006.pt")
    assert main(["eval", "--checkpoint", ckpt, "--data", npz, "--json", str(out_json)]) == 0
    res = json.loads(out_json.read_text())
    logged = [r for r in map(json.loads, open(a / "metrics.jsonl")) if "eval_bpd" in r][-1]
    # same EMA weights, rebuilt from the file: equal up to float32 rounding of the summed log-probabilities
    assert res["n"] == 2 and res["results"][0]["bpd"] == pytest.approx(logged["eval_bpd"], rel=1e-6)

    grid, arr = tmp_path / "g.png", tmp_path / "s.npy"
    assert main(["sample", "--checkpoint", ckpt, "--n", "3", "--out", str(grid), "--save-array", str(arr)]) == 0
    x = np.load(arr)
    assert grid.is_file() and x.shape == (3, 3, 4, 4) and x.dtype == np.uint8 and x.max() < 16


def test_pipeline_eval_and_sample(tmp_path, npz, capsys):
    torch.manual_seed(0)
    kw = dict(channels=3, subscale=2, decoder_blocks=1)
    base = spn.SPN(spn.SPNConfig(image_size=4, bits=3, **kw))
    size = spn.SPN(spn.SPNConfig(image_size=8, bits=3, first_slice_given=True, **kw))
    depth = spn.SPN(spn.SPNConfig(image_size=8, bits=8, cond_bits=3, **kw))
    paths = [str(ck.save_checkpoint(tmp_path / f"{i}.pt", m)) for i, m in enumerate((base, size, depth))]
    flags = [f for p in paths for f in ("--checkpoint", p)]
    out_json = tmp_path / "eval.json"
    assert main(["eval", *flags, "--data", npz, "--json", str(out_json), "--max-images", "2"]) == 0
    rows = json.loads(out_json.read_text())["results"]
    assert [r["name"].split(" (")[0] for r in rows] == ["stage 0", "stage 1", "stage 2", "pipeline"]
    pipe = spn.Pipeline([base, size, depth])
    ds = spn.data.build_dataset(npz, "test", 8, 3)
    x = torch.stack([ds[i] for i in range(len(ds))]).long()
    assert rows[-1]["bpd"] == pytest.approx(pipe.bits_per_dim(x).mean().item(), rel=1e-9)

    grid = tmp_path / "p.png"
    assert main(["sample", *flags, "--n", "2", "--out", str(grid)]) == 0 and grid.is_file()
    # a lone conditional stage needs real images to condition on
    capsys.readouterr()
    assert main(["sample", "--checkpoint", paths[1], "--out", str(grid)]) == 2
    assert "--cond-data" in capsys.readouterr().err
    assert main(["sample", "--checkpoint", paths[2], "--n", "2", "--out", str(grid), "--cond-data", npz]) == 0


def test_checkpoint_round_trip_log_prob(tmp_path):
    torch.manual_seed(0)
    model = spn.SPN(spn.SPNConfig(image_size=4, channels=3, bits=4, subscale=2, decoder_blocks=1))
    ema = {k: v + 0.01 for k, v in model.state_dict().items()}
    path = spn.save_checkpoint(tmp_path / "m.pt", model, ema=ema, step=3)
    x = torch.randint(0, 16, (3, 3, 4, 4))
    raw = ck.load_checkpoint(path, ema=False)
    assert torch.equal(raw.log_prob(x), model.eval().log_prob(x))
    model.load_state_dict(ema)
    assert torch.equal(spn.load_checkpoint(path).log_prob(x), model.log_prob(x))  # EMA weights by default


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(tmp_path / "none.pt"), "--data", "photos"]) == 2
    assert "none.pt" in capsys.readouterr().err


def test_demo_quick(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    res = json.loads((tmp_path / "results.json").read_text())
    bpd = res["bits_per_dim"]
    assert set(bpd) == {"spn", "png", "webp_lossless"} and all(0 < v < 40 for v in bpd.values())
    for p in res["paths"].values():
        assert (tmp_path / p.split("/")[-1]).is_file()
    assert f"{bpd['png']:6.3f}" in out and f"{bpd['webp_lossless']:6.3f}" in out
    # a second demo into the same folder keeps the first one's files: refused, or moved aside with --force
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["demo", "--quick", "--out", str(tmp_path), "--force"]) == 0
    (old,) = tmp_path.glob("replaced-*")
    assert (old / "metrics.jsonl").is_file()


def test_sigint_saves_and_exits_cleanly(tmp_path, npz):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "spn", "train", "--out", str(out), "--data", npz, *TINY, "--steps", "100000",
           "--batch-size", "4", "--log-every", "1", "--eval-every", "0", "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        metrics = out / "metrics.jsonl"
        deadline = time.monotonic() + 300  # a liveness guard, not a timing assertion
        while not (metrics.is_file() and metrics.read_text().strip()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "training never logged a step"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert "Traceback" not in stderr and "--resume" in stdout
    (ckpt,) = ck.list_checkpoints(out)
    assert ck.read_checkpoint(ckpt)["step"] >= 1


@pytest.mark.parametrize("flags", [["--first-slice-given"], ["--cond-bits", "2"]], ids=["size", "depth"])
def test_train_upscaling_stage(tmp_path, npz, flags):
    # samples of an upscaling stage are conditioned on held-out images' slice 0 / high bits
    rc = main(["train", "--out", str(tmp_path), "--data", npz, *TINY, *flags, "--steps", "2", "--batch-size", "4",
               "--eval-every", "0", "--n-samples", "2", "--no-progress"])  # fmt: skip
    assert rc == 0 and (tmp_path / "samples_00000002.png").is_file()
    cfg = ck.read_checkpoint(tmp_path / "ckpt_00000002.pt")["config"]
    assert cfg["first_slice_given"] == (flags[0] == "--first-slice-given") and cfg["cond_bits"] in (0, 2)


def test_demo_recipe_as_a_train_command():
    import shlex

    from spn.demo import RECIPE, train_command

    cmd = train_command(RECIPE, 300)
    a = build_parser().parse_args(shlex.split(cmd)[1:])
    assert a.command == "train" and a.data == "photos" and a.time_budget == 300 and a.lr == RECIPE.lr
    assert a.batch_size == RECIPE.batch_size and a.color_jitter == RECIPE.color_jitter
    assert a.hflip == RECIPE.hflip and a.channel_perm == RECIPE.channel_perm and a.invert == RECIPE.invert
    assert sorted(a.set or []) == sorted(f"{k}={v}" for k, v in RECIPE.config)


def test_tune_malloc_takes_on_glibc():
    import platform

    from spn.runtime import tune_malloc

    # glibc accepts both thresholds (mallopt returns 1); elsewhere nothing is changed and it says so
    assert tune_malloc() is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")


def test_flush_denormal_is_scoped():
    from spn.runtime import flush_denormal

    sub = torch.tensor([1e-310], dtype=torch.float64)
    assert (sub * 1.0).item() != 0.0  # torch's default: subnormals kept
    with flush_denormal():
        assert (sub * 1.0).item() == 0.0
        with flush_denormal(False):
            assert (sub * 1.0).item() == 0.0  # off: leaves the mode alone
    assert (sub * 1.0).item() != 0.0
