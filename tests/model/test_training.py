"""Training smoke test, the loss estimator, backends giving the same numbers, and state round trips."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from spn import SPN, SPNConfig


def test_loss_falls_on_a_fixed_batch():
    cfg = SPNConfig(image_size=4, channels=1, bits=2, subscale=2, context_channels=16, decoder_channels=16)
    model = SPN(cfg)
    x = torch.randint(0, 4, (4, 1, 4, 4))
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    start = model.loss(x).item()
    for _ in range(40):
        opt.zero_grad()
        model.loss(x).backward()
        opt.step()
    end = model.loss(x).item()
    assert end < 0.3 * start, (start, end)


def test_loss_is_bits_per_dim_and_its_subset_estimate_is_unbiased():
    cfg = SPNConfig(image_size=4, channels=1, bits=2, subscale=2, context_channels=8, decoder_channels=8)
    model = SPN(cfg).double()
    x = torch.randint(0, 4, (3, 1, 4, 4))
    with torch.no_grad():
        full = model.loss(x).item()
        torch.testing.assert_close(full, model.bits_per_dim(x).mean().item(), rtol=1e-12, atol=0)
        # One slice per image: the mean over every choice of slices equals the full loss; sampled here.
        est = torch.tensor([model.loss(x, slices_per_step=1).item() for _ in range(100)])
    assert abs(est.mean().item() - full) < 4 * est.std().item() / 10 + 1e-12


def test_loss_gradients_reach_every_parameter():
    cfg = SPNConfig(image_size=4, channels=3, bits=3, subscale=2, cond_bits=1, context_attention=1, decoder_attention=1)
    model = SPN(cfg)
    model.loss(torch.randint(0, 8, (2, 3, 4, 4)), slices_per_step=2).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


def test_backends_give_the_same_log_prob(backend):
    kw = dict(image_size=8, channels=3, bits=3, subscale=2, decoder_attention=1, cond_bits=1)
    ref = SPN(SPNConfig(**kw, backend="torch")).double()
    x = torch.randint(0, 8, (2, 3, 8, 8))
    for be in (None, backend):
        other = SPN(SPNConfig(**kw, backend=be)).double()
        other.load_state_dict(ref.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(other.log_prob(x), ref.log_prob(x), rtol=1e-10, atol=0)


def test_config_and_state_dict_round_trip():
    cfg = SPNConfig(image_size=4, channels=3, bits=4, subscale=2, first_slice_given=True, decoder_attention=1)
    model = SPN(cfg)
    cfg2 = SPNConfig(**dataclasses.asdict(cfg))
    assert cfg2 == cfg
    clone = SPN(cfg2)
    clone.load_state_dict(model.state_dict())
    x = torch.randint(0, 16, (2, 3, 4, 4))
    with torch.no_grad():
        assert torch.equal(clone.log_prob(x), model.log_prob(x))


@pytest.mark.parametrize("name", ["cpu_tiny", "cpu_demo", "cpu_pipeline"])
def test_cpu_presets_build_and_score(name):
    from spn import configs

    model = configs.build(name)
    cfg = model.config
    x = torch.randint(0, 2**cfg.bits, (1, cfg.channels, cfg.image_size, cfg.image_size))
    with torch.no_grad():
        assert torch.isfinite(model.log_prob(x)).all()


def test_preset_table_lists_parameters_and_provenance():
    from spn import configs

    table = configs.table()
    for name in configs.PRESETS:
        assert name in table
    # each paper-scale preset cites the paper, says how firm its figure is, and that the widths are ours
    assert "3.52" in table and "Menick & Kalchbrenner 2019" in table and "unverified" in table
    assert table.count("widths: our choice") == 4
