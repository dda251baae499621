"""The output heads on their own: normalisation for every bit depth, the three evaluation paths agree, channel c
reads only channels < c, and the logistic bins are stable far in the tails."""

import math

import pytest
import torch

from spn.heads import CategoricalHead, LogisticMixtureHead, build_head, logistic_bin_log_prob

BITS = [1, 2, 3, 5, 8]


def _head(kind: str, bits: int, channels: int = 3) -> torch.nn.Module:
    head = build_head(kind, 5, channels, 7, 2**bits, 4).double()
    with torch.no_grad():  # sharper than at init, so that the tails matter
        head.out_w.mul_(3)
        head.out_b.normal_()
    return head


def _inputs(bits: int, channels: int = 3, b: int = 6):
    target = torch.randint(0, 2**bits, (b, channels))
    return torch.randn(b, 5, dtype=torch.float64), (2 * target.double() + 1) / 2**bits - 1, target


@pytest.mark.parametrize("bits", BITS, ids=[f"bits{b}" for b in BITS])
def test_logistic_mixture_rows_are_normalised(bits):
    hidden, values, _ = _inputs(bits)
    rows = _head("logistic_mixture", bits)(hidden, values)  # [B, C, K]
    assert rows.shape == (6, 3, 2**bits)
    torch.testing.assert_close(rows.exp().sum(-1), torch.ones(6, 3, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["categorical", "logistic_mixture"])
@pytest.mark.parametrize("bits", [1, 3, 8], ids=["bits1", "bits3", "bits8"])
def test_forward_log_prob_and_channel_agree(kind, bits):
    head = _head(kind, bits)
    hidden, values, target = _inputs(bits)
    rows = torch.log_softmax(head(hidden, values), -1)
    torch.testing.assert_close(head.log_prob(hidden, values, target), rows.gather(-1, target[..., None])[..., 0])
    base = head.inp(hidden)
    for c in range(3):
        torch.testing.assert_close(torch.log_softmax(head.channel(base, values, c), -1), rows[:, c])


@pytest.mark.parametrize("kind", ["categorical", "logistic_mixture"])
def test_channel_reads_only_earlier_channels(kind):
    head = _head(kind, 3)
    hidden, values, _ = _inputs(3)
    rows = head(hidden, values)
    for c in range(3):
        changed = values.clone()
        changed[:, c:] = torch.rand_like(changed[:, c:]) * 2 - 1
        torch.testing.assert_close(head(hidden, changed)[:, : c + 1], rows[:, : c + 1], rtol=0, atol=0)


def test_logistic_bins_in_the_tails():
    # a narrow logistic far from most bins: every bin's log-probability finite, the sum still 1
    K = 256
    k = torch.arange(K)
    for mean in (-3.0, -1.0, 0.0, 0.999, 5.0):
        lp = logistic_bin_log_prob(
            torch.tensor(mean, dtype=torch.float64), torch.tensor(-7.0, dtype=torch.float64), k, K
        )
        assert torch.isfinite(lp).all()
        assert math.isclose(lp.exp().sum().item(), 1.0, abs_tol=1e-12)
    # float32 stays normalised to float32 precision
    lp32 = logistic_bin_log_prob(torch.tensor(0.1), torch.tensor(-3.0), k, K)
    assert abs(lp32.exp().sum().item() - 1) < 1e-5


def test_logistic_mixture_gradients_finite_at_the_edges():
    head = _head("logistic_mixture", 8).float()
    hidden, values, _ = _inputs(8)
    target = torch.tensor([0, 255, 128]).repeat(6, 1)
    head.log_prob(hidden.float(), values.float(), target).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters())


def test_unknown_output_is_an_error():
    with pytest.raises(ValueError, match="output must be one of"):
        build_head("gaussian", 5, 3, 7, 256, 4)


def test_categorical_keeps_the_parameter_names_of_checkpoints():
    names = {n for n, _ in CategoricalHead(5, 3, 7, 16).named_parameters()}
    assert names == {"inp.weight", "prev", "bias", "out_w", "out_b"}
    assert isinstance(build_head("logistic_mixture", 5, 3, 7, 16, 2), LogisticMixtureHead)
