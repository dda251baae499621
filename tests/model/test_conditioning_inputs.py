"""Bad labels and cond raise ValueError naming the argument and the shapes, before any work, in every entry point
(log_prob, bits_per_dim, loss, sample, Pipeline); configs and checkpoints with and without conditioning."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from spn import SPN, Pipeline, SPNConfig
from spn.checkpoint import build_spn

B = 2


@pytest.fixture(scope="module")
def model():
    return SPN(SPNConfig(image_size=4, channels=1, bits=2, subscale=2, classes=3, cond_channels=2))


@pytest.fixture(scope="module")
def plain():
    return SPN(SPNConfig(image_size=4, channels=1, bits=2, subscale=2))


GOOD = dict(labels=torch.tensor([0, 2]), cond=torch.zeros(B, 2))


def calls(m, kw):
    """Every entry point with the same labels/cond keywords, for a batch of B images."""
    x = torch.zeros(B, 1, 4, 4, dtype=torch.int64)
    return {
        "log_prob": lambda: m.log_prob(x, **kw),
        "bits_per_dim": lambda: m.bits_per_dim(x, **kw),
        "loss": lambda: m.loss(x, **kw),
        "loss-sliced": lambda: m.loss(x, slices_per_step=1, **kw),
        "sample": lambda: m.sample(B, **kw),
    }


BAD = [
    ("labels-missing", dict(cond=GOOD["cond"]), r"classes=3: pass labels"),
    ("labels-too-large", dict(labels=torch.tensor([0, 3]), cond=GOOD["cond"]), r"labels must be in \[0, 3\).*\[0, 3\]"),
    ("labels-negative", dict(labels=torch.tensor([-1, 0]), cond=GOOD["cond"]), r"labels must be in \[0, 3\)"),
    (
        "labels-length",
        dict(labels=torch.tensor([0, 1, 2]), cond=GOOD["cond"]),
        r"labels must have shape \(2,\).*\(3,\)",
    ),
    ("labels-2d", dict(labels=torch.zeros(B, 1, dtype=torch.int64), cond=GOOD["cond"]), r"shape \(2,\).*\(2, 1\)"),
    ("labels-float", dict(labels=torch.zeros(B), cond=GOOD["cond"]), "labels must be an integer tensor"),
    ("labels-bool", dict(labels=torch.zeros(B, dtype=torch.bool), cond=GOOD["cond"]), "labels must be an integer"),
    ("labels-list", dict(labels=[0, 1], cond=GOOD["cond"]), "labels must be a torch.Tensor"),
    ("cond-missing", dict(labels=GOOD["labels"]), r"cond_channels=2: pass cond"),
    ("cond-channels", dict(labels=GOOD["labels"], cond=torch.zeros(B, 3)), r"cond must have shape \[2, 2\] or"),
    ("cond-batch", dict(labels=GOOD["labels"], cond=torch.zeros(B + 1, 2)), r"got shape \(3, 2\)"),
    ("cond-map-size", dict(labels=GOOD["labels"], cond=torch.zeros(B, 2, 2, 2)), r"\[2, 2, 4, 4\], got shape"),
    ("cond-3d", dict(labels=GOOD["labels"], cond=torch.zeros(B, 2, 4)), r"cond must have shape"),
    ("cond-int", dict(labels=GOOD["labels"], cond=torch.zeros(B, 2, dtype=torch.int64)), "floating-point"),
    ("cond-device", dict(labels=GOOD["labels"], cond=torch.zeros(B, 2, device="meta")), "cond is on meta"),
    ("cond-nan", dict(labels=GOOD["labels"], cond=torch.tensor([[0.0, float("nan")], [0, 0]])), "NaN or infinite"),
    ("cond-inf", dict(labels=GOOD["labels"], cond=torch.full((B, 2, 4, 4), float("inf"))), "NaN or infinite"),
    ("cond-array", dict(labels=GOOD["labels"], cond=[[0.0, 0.0]] * B), "cond must be a torch.Tensor"),
]


@pytest.mark.parametrize("kw, match", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_labels_and_cond(model, kw, match):
    for call in calls(model, kw).values():
        with pytest.raises(ValueError, match=match):
            call()


def test_good_inputs_run(model):
    for call in calls(model, GOOD).values():
        call()
    calls(model, dict(labels=GOOD["labels"].int(), cond=torch.zeros(B, 2, 4, 4, dtype=torch.float64)))["sample"]()


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(labels=torch.tensor([0, 1])), "labels given, but this model has classes=0"),
        (dict(cond=torch.zeros(B, 2)), "cond given, but this model has cond_channels=0"),
    ],
    ids=["labels", "cond"],
)
def test_conditioning_given_to_an_unconditional_model(plain, kw, match):
    for call in calls(plain, kw).values():
        with pytest.raises(ValueError, match=match):
            call()


def test_checks_come_before_any_work(model):
    # A sampler with bad labels draws nothing from the generator and leaves the model's mode alone.
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    model.train()
    with pytest.raises(ValueError, match="labels"):
        model.sample(B, generator=g, labels=torch.tensor([5, 0]), cond=GOOD["cond"])
    assert torch.equal(g.get_state(), state) and model.training


def test_pipeline_checks():
    kw = dict(channels=1, classes=2, cond_channels=1)
    base = SPN(SPNConfig(image_size=2, bits=2, subscale=1, **kw))
    size = SPN(SPNConfig(image_size=4, bits=2, subscale=2, first_slice_given=True, **kw))
    pipe = Pipeline([base, size])
    x = torch.zeros(B, 1, 4, 4, dtype=torch.int64)
    labels = torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"cond must have shape \[2, 1\] or \[2, 1, 4, 4\]"):
        pipe.log_prob(x, labels, torch.zeros(B, 1, 2, 2))  # the final image's size, not a stage's
    with pytest.raises(ValueError, match="pass labels"):
        pipe.sample(B, cond=torch.zeros(B, 1))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
        pipe.stage_bits_per_dim(x, torch.tensor([0, 2]), torch.zeros(B, 1))
    plain = SPN(SPNConfig(image_size=4, channels=1, bits=2, subscale=2, first_slice_given=True))
    with pytest.raises(ValueError, match=r"stages\[1\] has classes=0, cond_channels=0 but stages\[0\] has classes=2"):
        Pipeline([base, plain])


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(classes=-1), "classes must be an int >= 0"),
        (dict(classes=True), "classes must be an int >= 0"),
        (dict(classes=2.0), "classes must be an int >= 0"),
        (dict(cond_channels=-2), "cond_channels must be an int >= 0"),
        (dict(cond_channels="3"), "cond_channels must be an int >= 0"),
    ],
    ids=["classes-negative", "classes-bool", "classes-float", "cond-negative", "cond-str"],
)
def test_invalid_configs(kw, match):
    with pytest.raises(ValueError, match=match):
        SPN(SPNConfig(image_size=4, **kw))


def test_config_round_trip_and_old_configs():
    cfg = SPNConfig(image_size=4, channels=1, bits=2, subscale=2, classes=5, cond_channels=3)
    model = SPN(cfg)
    again = build_spn(dataclasses.asdict(cfg))
    assert again.config == cfg
    again.load_state_dict(model.state_dict())  # same parameter shapes
    # A config saved before conditioning existed has neither field: it builds the unconditional model.
    old = {
        k: v for k, v in dataclasses.asdict(SPNConfig(image_size=4)).items() if k not in ("classes", "cond_channels")
    }
    m = build_spn(old)
    assert m.config.classes == 0 and m.config.cond_channels == 0 and m.label_embedding is None
    assert not any("label" in k for k in m.state_dict())


def test_unconditional_model_is_unchanged():
    """classes=0 and cond_channels=0 add nothing: the same parameters, drawn in the same order from the seed."""
    cfg = SPNConfig(image_size=4, channels=3, bits=3, subscale=2)
    torch.manual_seed(0)
    a = SPN(cfg)
    S2, C = cfg.num_slices, cfg.channels
    assert a.context.stem.in_channels == S2 * (C + 1) and a.cond_channels == cfg.context_channels
    # the conditional model with its label embedding and extra inputs is a superset of the same names
    b = SPN(dataclasses.replace(cfg, classes=2, cond_channels=1))
    assert set(b.state_dict()) - set(a.state_dict()) == {"label_embedding.weight"}
    assert b.context.stem.in_channels == S2 * (C + 1) + cfg.context_channels + 1
    assert b.cond_channels == 2 * cfg.context_channels + 1
