"""A checkpoint that saves also loads (weights_only=True): unloadable values are refused at save time, naming the
entry; config values of the wrong type do not build a different model; a full disk and a damaged newest
checkpoint are clear errors; checkpoints get the user's usual file mode."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import spn
from spn import checkpoint as ck
from spn import trainer

from ..cli.standin import StandIn, StandInConfig, build


@pytest.mark.parametrize(
    "value, kind",
    [(np.float64(3.2), "numpy.float64"), (np.zeros(3), "numpy.ndarray"), (Path("x"), "PosixPath|WindowsPath"),
     (argparse.Namespace(a=1), "Namespace"), (StandInConfig(), "StandInConfig"), ({"ok": [1, np.int64(2)]}, "int64")],
    ids=["np-scalar", "ndarray", "path", "namespace", "dataclass", "nested"],
)  # fmt: skip
def test_unloadable_values_are_refused_at_save(tmp_path, value, kind):
    m = StandIn(StandInConfig())
    with pytest.raises(TypeError, match=rf"checkpoint\['extra'\].*({kind}).*weights_only"):
        ck.save_checkpoint(tmp_path / "m.pt", m, extra=value)
    assert not list(tmp_path.iterdir())  # nothing written


def test_plain_values_round_trip(tmp_path):
    m = StandIn(StandInConfig())
    extra = {"f": 3.2, "l": [1, (2, 3)], "s": {4}, "t": torch.ones(2), "d": torch.float16, "none": None, "b": b"x"}
    p = ck.save_checkpoint(tmp_path / "m.pt", m, extra=extra)
    assert ck.read_checkpoint(p)["extra"]["l"] == [1, (2, 3)]


def test_config_value_of_the_wrong_type_does_not_build(tmp_path):
    model = spn.SPN(spn.SPNConfig(image_size=4, channels=1, bits=2, subscale=2, decoder_blocks=1))
    p = ck.save_checkpoint(tmp_path / "m.pt", model)
    obj = ck.read_checkpoint(p)
    obj["config"]["first_slice_given"] = "False"  # truthy: would build a size-upscaling model
    torch.save(obj, tmp_path / "bad.pt")
    with pytest.raises(ck.CheckpointError, match="first_slice_given must be bool, got 'False'"):
        ck.load_checkpoint(tmp_path / "bad.pt")


def test_full_disk_is_a_clear_error_and_keeps_the_previous(tmp_path, monkeypatch):
    m = StandIn(StandInConfig())
    p = ck.save_checkpoint(tmp_path / "m.pt", m, step=1)

    def full(obj, f, *a, **k):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 123 vs 456")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(ck.CheckpointError, match=r"m.pt could not be written \(.* bytes free"):
        ck.save_checkpoint(p, m, step=2)
    monkeypatch.undo()
    assert ck.read_checkpoint(p)["step"] == 1 and not list(tmp_path.glob(".*tmp"))


def test_checkpoint_mode_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        p = ck.save_checkpoint(tmp_path / "m.pt", StandIn(StandInConfig()))
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o644


def test_damaged_newest_checkpoint_names_the_previous_one(tmp_path):
    m = StandIn(StandInConfig())
    for step in (4, 8):
        ck.save_checkpoint(tmp_path / f"ckpt_{step:08d}.pt", m, step=step)
    newest = tmp_path / "ckpt_00000008.pt"
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.raises(ck.CheckpointError, match="ckpt_00000008.pt.*previous checkpoint .*ckpt_00000004.pt reads"):
        trainer.find_resume("auto", tmp_path)
    assert ck.load_checkpoint(tmp_path / "ckpt_00000004.pt", build=build) is not None
