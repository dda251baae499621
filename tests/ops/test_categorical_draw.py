"""categorical_draw: the C++ kernel draws what the reference draws (values equal, log-probabilities close) for
every dtype and temperature, rows with no distribution give NaN, the input checks, and the registration."""

from __future__ import annotations

import math

import pytest
import torch

import spn_kernels as sk

# b64-k256 and b1000-k3 take the kernel's vectorised path (B * K >= 2048), the others its scalar loop
CASES = {
    "b1-k2": (1, 2),
    "b5-k3": (5, 3),
    "b7-k16": (7, 16),
    "b3-k1": (3, 1),
    "b64-k256": (64, 256),
    "b1000-k3": (1000, 3),
}


@pytest.mark.parametrize("temperature", [1.0, 0.7, 2.5, 1e-300], ids=["t1", "t0.7", "t2.5", "t-tiny"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_kernel_matches_reference(case, dtype, temperature):
    B, K = case
    g = torch.Generator().manual_seed(B * K)
    logits = (torch.randn(B, K, generator=g, dtype=torch.float64) * 3).to(dtype)
    u = torch.rand(B, generator=g, dtype=torch.float64)
    v_ref, lp_ref = sk.categorical_draw_ref(logits, u, temperature)
    v, lp = sk.categorical_draw(logits, u, temperature, backend="cpu")
    assert v.dtype == torch.int64 and lp.dtype == torch.float64
    assert torch.equal(v, v_ref)
    torch.testing.assert_close(lp, lp_ref, rtol=1e-13, atol=1e-13)


def test_noncontiguous_logits():
    logits = torch.randn(16, 5, dtype=torch.float64)[::2].t().contiguous().t()  # [8, 5], column-major
    u = torch.rand(8, dtype=torch.float64)
    assert torch.equal(sk.categorical_draw(logits, u)[0], sk.categorical_draw_ref(logits, u, 1.0)[0])


@pytest.mark.parametrize("rows", [4, 1024], ids=["few-rows", "many-rows"])  # the kernel's two paths
def test_rows_without_a_distribution_give_nan(rows):
    nan, inf = math.nan, math.inf
    logits = torch.tensor([[0.0, nan, 1.0], [0.0, inf, 1.0], [-inf, -inf, -inf], [0.0, -inf, 9.0]]).repeat(rows // 4, 1)
    u = torch.full((rows,), 0.5, dtype=torch.float64)
    for backend in ("cpu", "torch"):
        v, lp = sk.categorical_draw(logits, u, backend=backend)
        bad = torch.tensor([True, True, True, False]).repeat(rows // 4)
        assert torch.equal(lp.isnan(), bad) and (v[~bad] == 2).all(), backend
        assert ((v >= 0) & (v < 3)).all()


def test_tiny_temperature_is_the_argmax():
    logits = torch.tensor([[0.0, 5.0, 1.0], [-3.0, -4.0, -1.0]])
    for t in (1e-300, 5e-324):
        assert sk.categorical_draw(logits, torch.tensor([0.3, 0.9], dtype=torch.float64), t)[0].tolist() == [1, 2]


U2 = torch.zeros(2, dtype=torch.float64)


@pytest.mark.parametrize(
    "args, match",
    [
        ((torch.zeros(2, 3, 1), U2, 1.0), r"logits must be a floating tensor \[B, K\]"),
        ((torch.zeros(2, 3), torch.zeros(2), 1.0), r"u must be float64 \[2\]"),
        ((torch.zeros(2, 3), torch.zeros(3, dtype=torch.float64), 1.0), r"u must be float64 \[2\]"),
        ((torch.zeros(2, 3), U2, 0.0), "temperature"),
        ((torch.zeros(2, 0), U2, 1.0), "K >= 1"),
    ],
    ids=["logits-3d", "u-dtype", "u-shape", "temperature", "k0"],
)  # fmt: skip
def test_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        sk.categorical_draw(*args)


def test_opcheck():
    logits = torch.randn(4, 6)
    torch.library.opcheck(torch.ops.spn.categorical_draw, (logits, torch.rand(4, dtype=torch.float64), 0.8))


@pytest.mark.parametrize("backend", ["cpu", "torch"])
@pytest.mark.parametrize("case", [(5, 3), (64, 256)], ids=["b5-k3", "b64-k256"])
def test_in_place_variant_writes_what_the_function_returns(case, backend):
    B, K = case
    logits, u = torch.randn(B, K), torch.rand(B, dtype=torch.float64)
    values, log_p = torch.full((2, B), -1, dtype=torch.int64), torch.zeros(2, B, dtype=torch.float64)
    sk.categorical_draw_(logits, u, 0.8, values[1], log_p[1], backend=backend)
    v, lp = sk.categorical_draw(logits, u, 0.8, backend=backend)
    assert torch.equal(values[1], v) and torch.equal(log_p[1], lp) and (values[0] == -1).all()
    with pytest.raises(ValueError, match=r"values must be a contiguous torch.int64"):
        sk.categorical_draw_(logits, u, 0.8, values[:, 0], log_p[1], backend=backend)
    torch.library.opcheck(torch.ops.spn.categorical_draw_, (logits, u, 0.8, values[1].clone(), log_p[1].clone()))


TRITON_CASES = {k: v for k, v in CASES.items() if k != "b1000-k3"}  # the interpreter runs programs one by one


@pytest.mark.parametrize("temperature", [1.0, 0.7, 1e-300], ids=["t1", "t0.7", "t-tiny"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", TRITON_CASES.values(), ids=TRITON_CASES.keys())
def test_triton_matches_reference(case, dtype, temperature):
    """The Triton kernel (the interpreter here; a GPU in gpu_check): the same values, log p to rounding, in place."""
    B, K = case
    g = torch.Generator().manual_seed(B * K)
    logits = (torch.randn(B, K, generator=g, dtype=torch.float64) * 3).to(dtype)
    u = torch.rand(B, generator=g, dtype=torch.float64)
    v_ref, lp_ref = sk.categorical_draw_ref(logits, u, temperature)
    v, lp = sk.categorical_draw(logits, u, temperature, backend="triton")
    assert torch.equal(v, v_ref)
    torch.testing.assert_close(lp, lp_ref, rtol=1e-13, atol=1e-13)
    vs, lps = torch.zeros(B, dtype=torch.int64), torch.zeros(B, dtype=torch.float64)
    sk.categorical_draw_(logits.t().contiguous().t(), u, temperature, vs, lps, backend="triton")  # column-major
    assert torch.equal(vs, v_ref)


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # the interpreter's numpy on -inf - -inf
def test_triton_rows_with_no_distribution():
    logits = torch.tensor([[0.0, float("nan"), 1.0], [float("inf"), 0.0, 0.0], [float("-inf")] * 3, [0.0, 1.0, 2.0]])
    v, lp = sk.categorical_draw(logits, torch.full((4,), 0.5, dtype=torch.float64), 1.0, backend="triton")
    assert (
        lp[:3].isnan().all()
        and lp[3].isfinite()
        and v[3] == sk.categorical_draw_ref(logits[3:], torch.full((1,), 0.5, dtype=torch.float64), 1.0)[0][0]
    )


def test_triton_refuses_rows_wider_than_its_block():
    with pytest.raises(ValueError, match="at most 4096 values, got K = 8192"):
        sk.categorical_draw(torch.zeros(1, 8192), torch.zeros(1, dtype=torch.float64), 1.0, backend="triton")
