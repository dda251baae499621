"""subscale_split: the public function, its fake kernel and its backend choice (spn_kernels/_backend.py)."""

from __future__ import annotations

import torch

from ..._backend import CPP, TRITON, choose
from ..._checks import check_subscale
from .ref import subscale_split_ref


def check(x: torch.Tensor, s: int) -> None:
    check_subscale(x, s)


# The fake kernel lets the op trace under torch.compile(fullgraph=True) and FakeTensor mode: shapes and dtypes
# only. triton.py registers it for torch.ops.spn_triton.subscale_split too.
@torch.library.register_fake("spn::subscale_split")
def fake(x, s):
    check(x, s)
    B, C, H, W = x.shape
    return x.new_empty(B, s * s, C, H // s, W // s)


def subscale_split(x: torch.Tensor, s: int, *, backend: str | None = None) -> torch.Tensor:
    """[B, C, H, W] (any dtype) -> [B, s*s, C, H/s, W/s] with out[:, i*s + j] = x[:, :, i::s, j::s]."""
    if isinstance(s, bool):
        raise ValueError(f"s must be an int, got s={s!r}")
    impl = choose(backend, x.device, "subscale_split")
    if impl == CPP:  # the C++ kernel checks its inputs (csrc/checks.h)
        return torch.ops.spn.subscale_split(x, s)
    if impl == TRITON:  # so does the Triton op
        return _triton_op()(x, s)
    check(x, s)
    return subscale_split_ref(x, s)


def _triton_op():
    from . import triton  # noqa: F401  (registers torch.ops.spn_triton.subscale_split on first use)

    return torch.ops.spn_triton.subscale_split
