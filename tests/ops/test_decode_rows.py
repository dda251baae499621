"""decode_rows: the C++ kernel against the reference (float64 and float32: the same values, log-probabilities
within the 2x-reference rule), the caches it leaves, rows in parts, the input checks, the registration (opcheck),
and the model's fused slice against its step-by-step decoding."""

from __future__ import annotations

import pytest
import torch

import spn_kernels as sk
from spn import SPN, SPNConfig

# (batch, channels, width d, blocks, kernel size, n, bits). b9/b16: BLAS products (>= 8 rows) and the batched draw
CASES = {
    "b1-c3-d8-L1-k3-n5-bits2": (1, 3, 8, 1, 3, 5, 2),
    "b2-c1-d5-L3-k3-n7-bits4": (2, 1, 5, 3, 3, 7, 4),
    "b3-c3-d16-L2-k5-n6-bits3": (3, 3, 16, 2, 5, 6, 3),
    "b2-c2-d4-L2-k1-n3-bits2": (2, 2, 4, 2, 1, 3, 2),
    "b9-c3-d8-L2-k3-n4-bits8": (9, 3, 8, 2, 3, 4, 8),
    "b16-c3-d32-L3-k3-n8-bits8": (16, 3, 32, 3, 3, 8, 8),
}


HEADS = {"categorical": {}, "mixture-m3": dict(output="logistic_mixture", mixtures=3)}


def make_args(case, dtype, temperature=1.0, seed=0, head="categorical"):
    """decode_rows' arguments from a real model's cache in a fresh slice, with random conditioning."""
    B, C, d, L, k, n, bits = case
    torch.manual_seed(seed)
    cfg = SPNConfig(image_size=n, channels=C, bits=bits, subscale=1, decoder_channels=d, decoder_blocks=L,
                    kernel_size=k, head_channels=d, context_channels=4, context_blocks=1, **HEADS[head])  # fmt: skip
    model = SPN(cfg).to(dtype).eval()
    with torch.no_grad():
        for prm in model.parameters():  # larger than the init, so the drawn values depend on every input
            prm.add_(torch.randn_like(prm) * 0.3)
        cache = model.allocate_inference_cache(B)
        model.start_slice(cache, torch.randn(B, model.cond_channels, n, n, dtype=dtype))
    g = torch.Generator().manual_seed(seed + 1)
    u = torch.rand(n * n * C, B, generator=g, dtype=torch.float64)
    values = torch.zeros(n * n * C, B, dtype=torch.int64)
    log_p = torch.zeros(n * n * C, B, dtype=torch.float64)
    return [*cache.rows, u, temperature, values, log_p, 0, n]


def clone(args):
    return [[t.clone() for t in a] if isinstance(a, list) else a.clone() if isinstance(a, torch.Tensor) else a
            for a in args]  # fmt: skip


def tensors(args):
    for a in args:
        yield from (a if isinstance(a, list) else [a] if isinstance(a, torch.Tensor) else [])


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("temperature", [1.0, 0.6], ids=["t1", "t0.6"])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_kernel_matches_reference(case, temperature, head):
    a64 = make_args(case, torch.float64, temperature, head=head)
    ref, got = clone(a64), clone(a64)
    sk.decode_rows_ref(*ref)
    sk.decode_rows(*got, backend="cpu")
    assert torch.equal(got[-4], ref[-4]), "values"
    torch.testing.assert_close(got[-3], ref[-3], rtol=1e-10, atol=1e-10)
    for x, y in zip(tensors(got[:4]), tensors(ref[:4])):  # the caches: pixels, maps, row terms
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
    # float32: the same draws as the float32 reference, and log p within 2x of its error against float64 (the
    # same weights and uniforms in float64, which draw the same values here)
    a32 = make_args(case, torch.float32, temperature, head=head)
    ref32, got32, up64 = clone(a32), clone(a32), upcast(a32)
    sk.decode_rows_ref(*ref32)
    sk.decode_rows(*got32, backend="cpu")
    sk.decode_rows_ref(*up64)
    assert torch.equal(got32[-4], ref32[-4]), "values (float32)"
    assert torch.equal(up64[-4], ref32[-4]), "the float64 run drew other values: pick another seed"
    # log p is float64 computed from float32 logits, and each sub-pixel's is one sample of a rounding error that the
    # mixture amplifies by up to 1/scale (exp(7)): the 2x rule on the mean error over the slice's sub-pixels (the
    # largest single error is 0.5-3.7x the reference's on these cases), plus two float32 ulps at its scale
    err, err_ref = ((t - up64[-3]).abs().mean().item() for t in (got32[-3], ref32[-3]))
    assert err <= 2 * err_ref + 2 * torch.finfo(torch.float32).eps * up64[-3].abs().max().item()


def upcast(args):
    """The float arguments in float64 (u, values and log_p keep their dtypes), cloned."""

    def up(t):
        return t.double() if t.dtype == torch.float32 else t.clone()

    return [[up(t) for t in a] if isinstance(a, list) else up(a) if isinstance(a, torch.Tensor) else a for a in args]


def test_rows_in_parts_equal_whole():
    case = CASES["b3-c3-d16-L2-k5-n6-bits3"]
    whole, parts = make_args(case, torch.float64), make_args(case, torch.float64)
    sk.decode_rows(*whole, backend="cpu")
    for r0, r1 in ((0, 1), (1, 4), (4, 6)):
        sk.decode_rows(*parts[:-2], r0, r1, backend="cpu")
    assert torch.equal(parts[-4], whole[-4])
    torch.testing.assert_close(parts[-3], whole[-3], rtol=0, atol=0)


@pytest.mark.parametrize(
    "index, bad, match",
    [
        (1, lambda a: a[:-1], "v_in and h_in hold the maps"),
        (6, lambda a: [a[0][:-1]] + a[1:], r"w_v\[0\] must have shape"),
        (11, lambda a: a.double(), "head_inp is torch.float64"),
        (18, lambda a: a[:-1], "head_out_w\\[0\\] must have shape"),
        (19, lambda a: a.float(), "u must be torch.float64"),
        (21, lambda a: a[:, :-1], "values must be torch.int64"),
        (20, lambda a: 0.0, "temperature must be a finite number"),
        (24, lambda a: 9, r"rows \[0, 9\)"),
        (4, lambda a: [t.transpose(1, 2).contiguous().transpose(1, 2) for t in a], r"cond_v\[0\] must be contiguous"),
        (16, lambda a: -1, "mixtures must be an int >= 0"),
        (17, lambda a: float("nan"), "log_scale_min must be a finite number"),
    ],
    ids=["lengths", "w_v-shape", "dtype", "levels", "u-dtype", "values-shape", "temperature", "rows", "noncontiguous",
         "mixtures", "log-scale-min"],
)  # fmt: skip
def test_bad_input(index, bad, match):
    a = make_args(CASES["b2-c1-d5-L3-k3-n7-bits4"], torch.float32)
    a[index] = bad(a[index])
    with pytest.raises(ValueError, match=match):
        sk.decode_rows(*a)


@pytest.mark.parametrize("head", HEADS)
def test_opcheck(head):
    a = make_args(CASES["b2-c2-d4-L2-k1-n3-bits2"], torch.float32, head=head)
    a[20] = float(a[20])
    torch.library.opcheck(torch.ops.spn.decode_rows, tuple(a))


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("backend", ["torch", None], ids=["reference", "cpu-kernel"])
def test_model_fused_slice_equals_steps(backend, head):
    """SPN.decode_slice: the fused call draws what step() + write() draw, sub-pixel by sub-pixel."""
    torch.manual_seed(0)
    cfg = SPNConfig(image_size=8, channels=3, bits=3, subscale=2, decoder_blocks=2, decoder_channels=8,
                    backend=backend, **HEADS[head])  # fmt: skip
    model = SPN(cfg).eval()
    gen = [torch.Generator().manual_seed(3) for _ in range(2)]
    fused, lp_fused = model.sample(3, generator=gen[0], return_log_prob=True)
    stepped, lp_stepped = _sample_stepwise(model, gen[1])
    assert torch.equal(fused, stepped)
    torch.testing.assert_close(lp_fused, lp_stepped, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(lp_fused, model.log_prob(fused), rtol=1e-5, atol=1e-4)


def _sample_stepwise(model, generator):
    allocate = model.allocate_inference_cache

    def no_rows(*args, **kw):
        cache = allocate(*args, **kw)
        cache.rows = None  # the step-by-step path
        return cache

    model.allocate_inference_cache = no_rows
    try:
        return model.sample(3, generator=generator, return_log_prob=True)
    finally:
        del model.allocate_inference_cache
