"""The cached sampler against the naive one (its oracle), the log-probability accumulated while sampling,
the decoder's step() against its forward(), reproducibility and bad input."""

from __future__ import annotations

import pytest
import torch

from spn import SPN, Pipeline, SPNConfig

ATTN = dict(context_attention=1, decoder_attention=1)
CASES = [
    ("4x4-c1-s1", dict(image_size=4, channels=1, bits=2, subscale=1)),
    ("4x4-c3-s2", dict(image_size=4, channels=3, bits=3, subscale=2)),
    ("4x4-c3-s2-attn", dict(image_size=4, channels=3, bits=3, subscale=2, **ATTN)),
    ("8x8-c1-s4-attn", dict(image_size=8, channels=1, bits=4, subscale=4, **ATTN)),
    ("6x6-c1-s1-attn", dict(image_size=6, channels=1, bits=2, subscale=1, decoder_attention=2)),
    ("8x8-c3-s2-first", dict(image_size=8, channels=3, bits=2, subscale=2, first_slice_given=True)),
    ("4x4-c3-s2-cond", dict(image_size=4, channels=3, bits=4, subscale=2, cond_bits=2, **ATTN)),
    ("8x8-c1-s4-first-cond", dict(image_size=8, channels=1, bits=3, subscale=4, first_slice_given=True, cond_bits=1)),
]


def conditioning(cfg: SPNConfig, n: int, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    kw = {}
    if cfg.first_slice_given:
        kw["first_slice"] = torch.randint(
            0, 2**cfg.bits, (n, cfg.channels, cfg.slice_size, cfg.slice_size), generator=g
        )
    if cfg.cond_bits:
        kw["high_bits"] = torch.randint(
            0, 2**cfg.cond_bits, (n, cfg.channels, cfg.image_size, cfg.image_size), generator=g
        )
    return kw


HEADS = [dict(output="categorical"), dict(output="logistic_mixture", mixtures=3)]
HEAD_IDS = ["categorical", "logistic"]


@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
@pytest.mark.parametrize("kw", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_cached_equals_naive(kw, head):
    cfg = SPNConfig(**kw, **head)
    model = SPN(cfg).double().eval()  # float64 logits: rounding differences cannot flip a draw
    cond = conditioning(cfg, 3)
    out = {}
    for method in ("cached", "naive"):
        g = torch.Generator().manual_seed(7)
        out[method] = model.sample(3, temperature=0.9, generator=g, return_log_prob=True, method=method, **cond)
    assert torch.equal(out["cached"][0], out["naive"][0])
    torch.testing.assert_close(out["cached"][1], out["naive"][1], rtol=1e-12, atol=0)
    images = out["cached"][0]
    assert images.dtype == torch.int64 and images.shape == (3, cfg.channels, cfg.image_size, cfg.image_size)
    assert images.min() >= 0 and images.max() < 2**cfg.bits
    if cfg.first_slice_given:
        fs = cond["first_slice"]
        if cfg.cond_bits:  # slice 0's low bits come from first_slice, its high bits from high_bits
            fs = fs & (2**cfg.model_bits - 1) | (
                cond["high_bits"][:, :, :: cfg.subscale, :: cfg.subscale] << cfg.model_bits
            )
        assert torch.equal(images[:, :, :: cfg.subscale, :: cfg.subscale], fs)
    if cfg.cond_bits:
        assert torch.equal(images >> cfg.model_bits, cond["high_bits"])


@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
@pytest.mark.parametrize("kw", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_sampled_log_prob_equals_log_prob(kw, head):
    cfg = SPNConfig(**kw, **head)
    model = SPN(cfg).eval()  # float32, random weights
    images, lp = model.sample(
        4, temperature=1.5, generator=torch.Generator().manual_seed(3), return_log_prob=True, **conditioning(cfg, 4)
    )
    with torch.no_grad():
        torch.testing.assert_close(lp, model.log_prob(images), rtol=1e-5, atol=0)


@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
def test_pipeline_cached_equals_naive_and_log_prob(head):
    base = SPN(SPNConfig(image_size=4, channels=3, bits=2, subscale=2, **ATTN, **head))
    size = SPN(SPNConfig(image_size=8, channels=3, bits=2, subscale=2, first_slice_given=True, **head))
    depth = SPN(SPNConfig(image_size=8, channels=3, bits=4, subscale=2, cond_bits=2, decoder_attention=1, **head))
    pipe = Pipeline([base, size, depth]).double().eval()
    a, lp_a = pipe.sample(2, generator=torch.Generator().manual_seed(5), return_log_prob=True)
    b, lp_b = pipe.sample(2, generator=torch.Generator().manual_seed(5), return_log_prob=True, method="naive")
    assert torch.equal(a, b) and a.shape == (2, 3, 8, 8) and a.max() < 16
    torch.testing.assert_close(lp_a, lp_b, rtol=1e-12, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(lp_a, pipe.log_prob(a), rtol=1e-10, atol=0)


@pytest.mark.parametrize("attention", [0, 2], ids=["conv", "attn"])
def test_decoder_step_equals_forward(attention):
    cfg = SPNConfig(image_size=5, channels=3, bits=2, subscale=1, decoder_blocks=3, decoder_attention=attention)
    model = SPN(cfg).double()
    n, B = 5, 2
    x = torch.randn(B, 3, n, n, dtype=torch.float64)
    cond = torch.randn(B, model.cond_channels, n, n, dtype=torch.float64)
    with torch.no_grad():
        full = model.decoder(x, cond)  # [B, D, n, n]
        cache = model.decoder.allocate_inference_cache(B, torch.float64, torch.device("cpu"))
        model.decoder.start_slice(cache, cond)
        for r in range(n):
            if r:
                model.decoder.step_row(cache, r - 1)
            for c in range(n):
                torch.testing.assert_close(model.decoder.step(cache, r, c), full[:, :, r, c], rtol=1e-10, atol=1e-12)
                model.decoder.write(cache, x[:, :, r, c], r, c)
        # start_slice empties the cache in place and the same buffers serve a second slice
        model.decoder.start_slice(cache, cond)
        torch.testing.assert_close(model.decoder.step(cache, 0, 0), full[:, :, 0, 0], rtol=1e-10, atol=1e-12)
        with pytest.raises(ValueError, match="rows"):
            model.decoder.step(cache, 1, 0)


def test_generator_reproducibility_and_temperature():
    model = SPN(SPNConfig(image_size=4, channels=3, bits=4, subscale=2)).eval()
    a = model.sample(3, generator=torch.Generator().manual_seed(1))
    b = model.sample(3, generator=torch.Generator().manual_seed(1))
    c = model.sample(3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # A tiny temperature samples the mode of each conditional: every image is the same greedy decode.
    cold = model.sample(3, temperature=1e-6, generator=torch.Generator().manual_seed(1))
    assert torch.equal(cold[0], cold[1]) and torch.equal(cold[0], cold[2])


def test_sampling_is_deterministic_with_dropout_and_keeps_the_mode():
    model = SPN(SPNConfig(image_size=4, channels=3, bits=3, subscale=2, dropout=0.5)).train()
    a = model.sample(2, generator=torch.Generator().manual_seed(4))
    b = model.sample(2, generator=torch.Generator().manual_seed(4), method="naive")
    assert torch.equal(a, b) and model.training  # dropout off while sampling, training mode restored
    x = torch.randint(0, 8, (2, 3, 4, 4))
    with torch.no_grad():
        assert not torch.equal(model.log_prob(x), model.log_prob(x))  # training mode: dropout acts
        model.eval()
        assert torch.equal(model.log_prob(x), model.log_prob(x))


def test_progress_bar(capsys):
    model = SPN(SPNConfig(image_size=2, channels=1, bits=1, subscale=2))
    model.sample(3, progress=True, batch_size=2)
    err = capsys.readouterr().err
    assert "image/s" in err and "3.0/3" in err and "slice 4/4" in err


def test_progress_bar_of_a_pipeline_names_stage_and_slice(capsys):
    cfgs = [SPNConfig(image_size=2, channels=1, bits=1, subscale=1),
            SPNConfig(image_size=4, channels=1, bits=1, subscale=2, first_slice_given=True)]  # fmt: skip
    Pipeline([SPN(c) for c in cfgs]).sample(2, progress=True)
    err = capsys.readouterr().err
    assert "stage 1/2: sample cached" in err and "stage 2/2: sample cached" in err and "slice 4/4" in err


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n=0), "n must be"),
        (dict(n=1.5), "n must be"),
        (dict(n=1, temperature=0), "temperature"),
        (dict(n=1, temperature=-1.0), "temperature"),
        (dict(n=1, method="fast"), "method"),
        (dict(n=1, first_slice=torch.zeros(1, 1, 2, 2, dtype=torch.int64)), "first_slice is only"),
        (dict(n=1, high_bits=torch.zeros(1, 1, 4, 4, dtype=torch.int64)), "high_bits is only"),
    ],
    ids=["n0", "n-float", "temp0", "temp-neg", "method", "first-slice-unexpected", "high-bits-unexpected"],
)
def test_bad_sample_arguments(kwargs, match):
    model = SPN(SPNConfig(image_size=4, channels=1, bits=2, subscale=2))
    with pytest.raises(ValueError, match=match):
        model.sample(**kwargs)


def test_bad_conditioning():
    size = SPN(SPNConfig(image_size=4, channels=1, bits=2, subscale=2, first_slice_given=True))
    with pytest.raises(ValueError, match="pass first_slice"):
        size.sample(1)
    with pytest.raises(ValueError, match=r"first_slice must have shape \(1, 1, 2, 2\)"):
        size.sample(1, first_slice=torch.zeros(1, 1, 4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"first_slice values must be in \[0, 2\^2\)"):
        size.sample(1, first_slice=torch.full((1, 1, 2, 2), 4))
    with pytest.raises(ValueError, match="integer"):
        size.sample(1, first_slice=torch.zeros(1, 1, 2, 2))
    depth = SPN(SPNConfig(image_size=4, channels=1, bits=3, subscale=2, cond_bits=1))
    with pytest.raises(ValueError, match="pass high_bits"):
        depth.sample(1)
    with pytest.raises(ValueError, match=r"high_bits values must be in \[0, 2\^1\)"):
        depth.sample(1, high_bits=torch.full((1, 1, 4, 4), 2))
    with pytest.raises(ValueError, match="high_bits must have shape"):
        depth.sample(2, high_bits=torch.zeros(1, 1, 4, 4, dtype=torch.int64))


def test_inference_cache_is_not_kept_on_cpu():
    model = SPN(SPNConfig(image_size=4, channels=1, bits=2, subscale=2)).eval()
    assert model.kept_inference_cache(2) is not model.kept_inference_cache(2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("head", ["categorical", "logistic_mixture"])
def test_cuda_graphs_are_kept_between_calls_while_the_weights_stay(head):
    torch.manual_seed(0)
    cfg = SPNConfig(image_size=8, channels=3, bits=3, subscale=2, output=head)
    model = SPN(cfg).cuda().eval()

    def run(**kw):
        return model.sample(2, generator=torch.Generator(device="cuda").manual_seed(0), **kw)

    first = run()
    cache = model.kept_inference_cache(2)
    assert cache.graphs is not None and len(cache.graphs) == cfg.slice_size**2  # every pixel captured
    assert torch.equal(run(), first) and model.kept_inference_cache(2) is cache  # replayed, not recaptured
    assert torch.equal(run(cuda_graphs=False), first)  # the same images as eager
    assert not torch.equal(run(temperature=0.5), first) and cache.graph_temperature == 0.5
    with torch.no_grad():
        model.head.out_b.add_(1.0)  # an in-place update: new weights, new cache
    assert model.kept_inference_cache(2) is not cache
