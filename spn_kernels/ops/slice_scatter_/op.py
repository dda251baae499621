"""slice_scatter_: the public function, its fake kernel and its backend choice (spn_kernels/_backend.py)."""

from __future__ import annotations

import torch

from ..._backend import CPP, TRITON, checks_t_values, choose
from ..._checks import as_t, check_devices, check_same, check_subscale, check_t, require
from .ref import slice_scatter_ref_


def check(x: torch.Tensor, values: torch.Tensor, s: int, t: torch.Tensor) -> None:
    check_subscale(x, s)
    B, C, H, W = x.shape
    want = (B, C, H // s, W // s)
    require(
        tuple(values.shape) == want,
        lambda: f"values must have shape {want} for x {tuple(x.shape)} and s={s}, got {tuple(values.shape)}",
    )
    check_same(values, x, "values", "x")
    check_t(t, x)


# The fake kernel lets the op trace under torch.compile(fullgraph=True) and FakeTensor mode: it writes x in
# place and returns nothing. triton.py registers it for torch.ops.spn_triton.slice_scatter_ too.
@torch.library.register_fake("spn::slice_scatter_")
def fake(x, values, s, t):
    check(x, values, s, t)


def slice_scatter_(
    x: torch.Tensor, values: torch.Tensor, s: int, t: int | torch.Tensor, *, backend: str | None = None
) -> torch.Tensor:
    """Writes values [B, C, H/s, W/s] as slice t (int or [B] in [0, s*s)) of x [B, C, H, W], in place.
    Returns x."""
    require(not isinstance(s, bool) and not isinstance(t, bool), lambda: f"s and t must be ints, got s={s!r}, t={t!r}")
    if isinstance(x, torch.Tensor):
        expanded = [d for d in range(x.dim()) if x.stride(d) == 0 and x.shape[d] > 1]
        require(
            not expanded,
            lambda: (
                f"x is expanded (stride 0 in dims {expanded}, shape {tuple(x.shape)}): one element is several "
                "pixels, so the write cannot be in place; pass x.contiguous()"
            ),
        )
        if x.requires_grad and x.is_leaf and torch.is_grad_enabled():
            raise RuntimeError("x is a leaf tensor that requires grad: it cannot be written in place")
    impl = choose(backend, x.device, "slice_scatter_")
    t = as_t(t, x, s * s - 1, checks_t_values(impl, x.device))
    if impl == CPP:  # the C++ kernel checks the rest (csrc/checks.h)
        check_devices(x, "x", values=values, t=t)
        torch.ops.spn.slice_scatter_(x, values, s, t)
    elif impl == TRITON:  # so does the Triton op
        _triton_op()(x, values, s, t)
    else:
        check(x, values, s, t)
        slice_scatter_ref_(x, values, s, t.to(torch.int64))
    return x


def _triton_op():
    from . import triton  # noqa: F401  (registers torch.ops.spn_triton.slice_scatter_ on first use)

    return torch.ops.spn_triton.slice_scatter_
