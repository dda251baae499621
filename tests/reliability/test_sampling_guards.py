"""Sampling guards: a tiny temperature gives the argmax, non-finite logits are an error, any n is sampled in
bounded chunks, and `spn sample` checks its output paths before sampling."""

from __future__ import annotations

import math

import pytest
import torch

import spn
from spn import checkpoint as ck
from spn.cli import main
from spn.sampling import draw


def _tiny():
    torch.manual_seed(0)
    return spn.SPN(spn.SPNConfig(image_size=4, channels=1, bits=2, subscale=2, decoder_blocks=1, backend="torch"))


@pytest.mark.parametrize("temperature", [1e-300, 1e-12, 5e-324])
def test_tiny_temperature_is_the_argmax(temperature):
    logits = torch.tensor([[0.0, 5.0, 1.0], [-3.0, -4.0, -1.0]])
    assert draw(logits, temperature, torch.Generator().manual_seed(0)).tolist() == [1, 2]


def test_nonfinite_logits_are_an_error():
    m = _tiny()
    with torch.no_grad():
        next(m.parameters()).fill_(math.nan)
    with pytest.raises(FloatingPointError, match="non-finite logits"):
        m.sample(2)
    with pytest.raises(ValueError, match="temperature"):
        m.sample(2, temperature=math.inf)


def test_large_n_is_sampled_in_chunks():
    m = _tiny()
    big, lp = spn.sampling.sample(m, 5, generator=torch.Generator().manual_seed(1), return_log_prob=True,
                                  batch_size=2)  # fmt: skip
    small = m.sample(2, generator=torch.Generator().manual_seed(1))
    assert big.shape == (5, 1, 4, 4) and lp.shape == (5,) and torch.equal(big[:2], small)
    torch.testing.assert_close(lp, m.log_prob(big).double(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    "flags, match",
    [(["--out", "s.jpg"], "must end in .png"), (["--save-array", "x"], "must end in .npy"), (["--n", "0"], "--n"),
     (["--temperature", "nan"], "--temperature")],
)  # fmt: skip
def test_sample_paths_are_checked_before_sampling(tmp_path, capsys, monkeypatch, flags, match):
    p = ck.save_checkpoint(tmp_path / "m.pt", _tiny())
    monkeypatch.chdir(tmp_path)
    called = []
    monkeypatch.setattr(spn.SPN, "sample", lambda *a, **k: called.append(1))
    assert main(["sample", "--checkpoint", str(p), *flags]) == 2
    assert match in capsys.readouterr().err and not called
