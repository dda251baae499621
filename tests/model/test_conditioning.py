"""Conditional SPNs: exact normalisation for every label and every conditioning input, labels and cond that move
the distribution, the cached sampler against the naive one and against log_prob, and conditional pipelines."""

from __future__ import annotations

import pytest
import torch

from spn import SPN, Pipeline, SPNConfig
from spn.conditioning import cond_slice

from .utils import enumerate_images

ATTN = dict(context_attention=1, decoder_attention=1)
NARROW = dict(context_channels=8, decoder_channels=8, head_channels=8)
HEADS = [dict(output="categorical"), dict(output="logistic_mixture", mixtures=3)]
HEAD_IDS = ["categorical", "logistic"]


def random_cond(cfg: SPNConfig, form: str, n: int, seed: int, dtype=torch.float64) -> torch.Tensor | None:
    """A random cond for n images: [n, D] ("vector") or [n, D, N, N] ("map"); None when the model takes none."""
    if not cfg.cond_channels:
        return None
    g = torch.Generator().manual_seed(seed)
    N = cfg.image_size
    shape = (n, cfg.cond_channels) if form == "vector" else (n, cfg.cond_channels, N, N)
    return torch.randn(shape, generator=g, dtype=dtype)


# (id, config kwargs, cond form); every case enumerates at most 2^12 images per label/cond.
NORM_CASES = [
    ("2x2-c1-b2-s2-classes3", dict(image_size=2, channels=1, bits=2, subscale=2, classes=3), None),
    ("2x2-c1-b2-s2-cond-vector", dict(image_size=2, channels=1, bits=2, subscale=2, cond_channels=2), "vector"),
    ("2x2-c1-b2-s1-cond-map-attn", dict(image_size=2, channels=1, bits=2, subscale=1, cond_channels=3, **ATTN), "map"),
    (
        "4x4-c1-b1-s2-first-classes2-cond-map-attn",
        dict(image_size=4, channels=1, bits=1, subscale=2, first_slice_given=True, classes=2, cond_channels=1, **ATTN),
        "map",
    ),
    (
        "2x2-c3-b2-s2-depth-classes2-cond-vector",
        dict(image_size=2, channels=3, bits=2, subscale=2, cond_bits=1, classes=2, cond_channels=2),
        "vector",
    ),
]


@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
@pytest.mark.parametrize("kw, form", [c[1:] for c in NORM_CASES], ids=[c[0] for c in NORM_CASES])
def test_probabilities_sum_to_one_per_label_and_cond(kw, form, head):
    cfg = SPNConfig(**kw, **NARROW, **head)
    model = SPN(cfg).double().eval()
    C, N, s, mb = cfg.channels, cfg.image_size, cfg.subscale, cfg.model_bits
    free = torch.ones(C, N, N, dtype=torch.bool)
    if cfg.first_slice_given:
        free[:, ::s, ::s] = False
    given = torch.randint(0, 2**cfg.bits, (C, N, N), generator=torch.Generator().manual_seed(0))
    x = (given >> mb << mb) | enumerate_images(given & (2**mb - 1), free, 2**mb)
    B = x.shape[0]
    totals = []
    for label in range(max(cfg.classes, 1)):
        for seed in (1, 2) if cfg.cond_channels else (1,):
            labels = torch.full((B,), label) if cfg.classes else None
            cond = random_cond(cfg, form, 1, seed)
            cond = None if cond is None else cond.expand(B, *cond.shape[1:])
            with torch.no_grad():
                p = model.log_prob(x, labels=labels, cond=cond).exp()
            assert abs(p.sum().item() - 1) < 1e-6, (label, seed, p.sum().item())
            totals.append(p)
    # The labels and conditioning inputs move the distribution: each of them is a different one.
    for i in range(len(totals)):
        for j in range(i):
            assert (totals[i] - totals[j]).abs().max() > 1e-6


@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
def test_pipeline_probabilities_sum_to_one_per_label_and_cond_map(head):
    kw = dict(channels=1, classes=2, cond_channels=1, **NARROW, **head)
    base = SPN(SPNConfig(image_size=1, bits=1, subscale=1, **kw))
    size = SPN(SPNConfig(image_size=2, bits=1, subscale=2, first_slice_given=True, **ATTN, **kw))
    depth = SPN(SPNConfig(image_size=2, bits=2, subscale=2, cond_bits=1, **kw))
    pipe = Pipeline([base, size, depth]).double()
    x = enumerate_images(torch.zeros(1, 2, 2, dtype=torch.int64), torch.ones(1, 2, 2, dtype=torch.bool), 4)
    cond = random_cond(depth.config, "map", 1, 3).expand(x.shape[0], 1, 2, 2)
    ps = []
    for label in range(2):
        with torch.no_grad():
            p = pipe.log_prob(x, labels=torch.full((x.shape[0],), label), cond=cond).exp()
        assert abs(p.sum().item() - 1) < 1e-6
        ps.append(p)
    assert (ps[0] - ps[1]).abs().max() > 1e-6
    with torch.no_grad():
        other = pipe.log_prob(x, labels=torch.zeros(x.shape[0], dtype=torch.int64), cond=-cond).exp()
    assert abs(other.sum().item() - 1) < 1e-6 and (other - ps[0]).abs().max() > 1e-6


def test_cond_slice_is_the_image_slicing():
    s, N, B, D = 3, 6, 4, 2
    cond = torch.randn(B, D, N, N)
    t = torch.tensor([0, 4, 8, 5])
    got = cond_slice(cond, s, t)
    for b in range(B):
        i, j = divmod(int(t[b]), s)
        assert torch.equal(got[b], cond[b, :, i::s, j::s])
    assert cond_slice(cond[:, :, 0, 0], s, t).shape == (B, D, 1, 1)


def test_cond_vector_equals_a_constant_map():
    cfg = SPNConfig(image_size=4, channels=1, bits=2, subscale=2, cond_channels=2, classes=2)
    model = SPN(cfg).double().eval()
    x = torch.randint(0, 4, (3, 1, 4, 4))
    labels = torch.tensor([0, 1, 1])
    v = torch.randn(3, 2, dtype=torch.float64)
    with torch.no_grad():
        a = model.log_prob(x, labels, v)
        b = model.log_prob(x, labels, v[:, :, None, None].expand(3, 2, 4, 4).contiguous())
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
        # A map is read at each target slice's own positions: changing it at one position of the last slice
        # changes the likelihood.
        m = v[:, :, None, None].expand(3, 2, 4, 4).clone()
        m[:, :, 1, 1] += 1.0
        assert (model.log_prob(x, labels, m) - a).abs().min() > 1e-9


# (id, config kwargs, cond form)
SAMPLE_CASES = [
    ("4x4-c3-s2-classes3", dict(image_size=4, channels=3, bits=3, subscale=2, classes=3), None),
    (
        "4x4-c1-s2-cond-vector-attn",
        dict(image_size=4, channels=1, bits=3, subscale=2, cond_channels=2, **ATTN),
        "vector",
    ),
    ("6x6-c1-s3-cond-map", dict(image_size=6, channels=1, bits=2, subscale=3, cond_channels=3, classes=2), "map"),
    (
        "8x8-c1-s2-first-cond-map-attn",
        dict(image_size=8, channels=1, bits=2, subscale=2, first_slice_given=True, cond_channels=1, **ATTN),
        "map",
    ),
    (
        "4x4-c3-s2-depth-classes2",
        dict(image_size=4, channels=3, bits=4, subscale=2, cond_bits=2, classes=2, decoder_attention=1),
        None,
    ),
]


def sample_inputs(cfg: SPNConfig, form: str | None, n: int, dtype=torch.float64) -> dict:
    g = torch.Generator().manual_seed(11)
    kw = {}
    if cfg.classes:
        kw["labels"] = torch.arange(n) % cfg.classes
    if cfg.cond_channels:
        kw["cond"] = random_cond(cfg, form, n, 12, dtype)
    if cfg.first_slice_given:
        kw["first_slice"] = torch.randint(
            0, 2**cfg.bits, (n, cfg.channels, cfg.slice_size, cfg.slice_size), generator=g
        )
    if cfg.cond_bits:
        N = cfg.image_size
        kw["high_bits"] = torch.randint(0, 2**cfg.cond_bits, (n, cfg.channels, N, N), generator=g)
    return kw


def _log_prob(model, images, kw):
    return model.log_prob(images, labels=kw.get("labels"), cond=kw.get("cond"))


@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
@pytest.mark.parametrize("kw, form", [c[1:] for c in SAMPLE_CASES], ids=[c[0] for c in SAMPLE_CASES])
def test_cached_equals_naive_and_log_prob(kw, form, head):
    cfg = SPNConfig(**kw, **head)
    model = SPN(cfg).double().eval()  # float64: rounding cannot flip a draw between the two samplers
    inputs = sample_inputs(cfg, form, 3)
    out = {}
    for method in ("cached", "naive"):
        g = torch.Generator().manual_seed(7)
        out[method] = model.sample(3, temperature=0.9, generator=g, return_log_prob=True, method=method, **inputs)
    assert torch.equal(out["cached"][0], out["naive"][0])
    torch.testing.assert_close(out["cached"][1], out["naive"][1], rtol=1e-12, atol=0)
    # at temperature 1 the log-probability summed while sampling is log_prob's, also across batches of 2
    images, lp = model.sample(3, generator=torch.Generator().manual_seed(8), return_log_prob=True, batch_size=2,
                              **inputs)  # fmt: skip
    with torch.no_grad():
        torch.testing.assert_close(lp, _log_prob(model, images, inputs), rtol=1e-10, atol=0)


@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
def test_sampled_log_prob_equals_log_prob_in_float32(head):
    cfg = SPNConfig(image_size=4, channels=3, bits=3, subscale=2, classes=4, cond_channels=2, **ATTN, **head)
    model = SPN(cfg).eval()
    inputs = sample_inputs(cfg, "map", 4, torch.float32)
    images, lp = model.sample(4, temperature=1.5, generator=torch.Generator().manual_seed(3), return_log_prob=True,
                              **inputs)  # fmt: skip
    with torch.no_grad():
        torch.testing.assert_close(lp, _log_prob(model, images, inputs), rtol=1e-5, atol=0)


def test_labels_steer_the_samples():
    """A class-conditional model trained briefly on label-dependent images samples each class's images."""
    torch.manual_seed(0)
    cfg = SPNConfig(image_size=4, channels=1, bits=2, subscale=2, classes=2)
    model = SPN(cfg)
    x = torch.stack([torch.zeros(1, 4, 4, dtype=torch.int64), torch.full((1, 4, 4), 3)]).repeat(4, 1, 1, 1)
    labels = torch.tensor([0, 1]).repeat(4)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(60):
        opt.zero_grad()
        model.loss(x, labels=labels).backward()
        opt.step()
    images = model.eval().sample(4, labels=torch.tensor([0, 1, 0, 1]), generator=torch.Generator().manual_seed(0))
    assert (images[0::2] == 0).float().mean() > 0.9 and (images[1::2] == 3).float().mean() > 0.9


@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
def test_pipeline_cached_equals_naive_and_log_prob(head):
    kw = dict(channels=1, classes=3, cond_channels=2, **head)
    base = SPN(SPNConfig(image_size=4, bits=2, subscale=2, **ATTN, **kw))
    size = SPN(SPNConfig(image_size=8, bits=2, subscale=2, first_slice_given=True, **kw))
    depth = SPN(SPNConfig(image_size=8, bits=3, subscale=2, cond_bits=2, **kw))
    pipe = Pipeline([base, size, depth]).double().eval()
    for form in ("vector", "map"):
        inputs = dict(labels=torch.tensor([2, 0]), cond=random_cond(depth.config, form, 2, 4))
        a, lp_a = pipe.sample(2, generator=torch.Generator().manual_seed(5), return_log_prob=True, **inputs)
        b, lp_b = pipe.sample(2, generator=torch.Generator().manual_seed(5), return_log_prob=True, method="naive",
                              **inputs)  # fmt: skip
        assert torch.equal(a, b) and a.shape == (2, 1, 8, 8) and a.max() < 8
        torch.testing.assert_close(lp_a, lp_b, rtol=1e-12, atol=0)
        with torch.no_grad():
            torch.testing.assert_close(lp_a, pipe.log_prob(a, **inputs), rtol=1e-10, atol=0)
            bpd = pipe.stage_bits_per_dim(a, **inputs)
            torch.testing.assert_close(bpd[:, -1], pipe.bits_per_dim(a, **inputs), rtol=1e-12, atol=0)


def test_training_with_labels_and_cond_is_differentiable():
    cfg = SPNConfig(image_size=4, channels=1, bits=2, subscale=2, classes=3, cond_channels=2)
    model = SPN(cfg)
    x = torch.randint(0, 4, (3, 1, 4, 4))
    cond = torch.randn(3, 2, 4, 4, requires_grad=True)  # a feature map from an encoder upstream
    model.loss(x, slices_per_step=2, labels=torch.tensor([0, 1, 2]), cond=cond).backward()
    assert model.label_embedding.weight.grad.abs().sum() > 0 and cond.grad.abs().sum() > 0


def test_conditional_loss_traces_as_one_graph():
    """As tests/model/test_compile.py for the unconditional loss: labels and cond break no graph."""
    torch.manual_seed(0)
    model = SPN(SPNConfig(image_size=4, channels=1, bits=2, subscale=2, classes=3, cond_channels=2))
    x, labels, cond = torch.randint(0, 4, (3, 1, 4, 4)), torch.tensor([0, 1, 2]), torch.randn(3, 2, 4, 4)
    torch._dynamo.reset()
    compiled = torch.compile(model.loss, fullgraph=True, backend="aot_eager")
    losses = []
    for fn in (compiled, model.loss):
        torch.manual_seed(1)  # the same random slices
        losses.append(fn(x, 2, labels, cond))
    torch.testing.assert_close(losses[0], losses[1])
