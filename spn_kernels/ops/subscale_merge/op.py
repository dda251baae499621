"""subscale_merge: the public function, its fake kernel and its backend choice (spn_kernels/_backend.py)."""

from __future__ import annotations

import torch

from ..._backend import CPP, TRITON, choose
from ..._checks import check_slices
from .ref import subscale_merge_ref


def check(slices: torch.Tensor) -> int:
    """Returns s."""
    return check_slices(slices)


# The fake kernel lets the op trace under torch.compile(fullgraph=True) and FakeTensor mode: shapes and dtypes
# only. triton.py registers it for torch.ops.spn_triton.subscale_merge too.
@torch.library.register_fake("spn::subscale_merge")
def fake(slices):
    s = check(slices)
    B, _, C, h, w = slices.shape
    return slices.new_empty(B, C, h * s, w * s)


def subscale_merge(slices: torch.Tensor, *, backend: str | None = None) -> torch.Tensor:
    """[B, s*s, C, h, w] -> [B, C, h*s, w*s]: the exact inverse of subscale_split."""
    impl = choose(backend, slices.device, "subscale_merge")
    if impl == CPP:  # the C++ kernel checks its inputs (csrc/checks.h)
        return torch.ops.spn.subscale_merge(slices)
    if impl == TRITON:  # so does the Triton op
        return _triton_op()(slices)
    check(slices)
    return subscale_merge_ref(slices)


def _triton_op():
    from . import triton  # noqa: F401  (registers torch.ops.spn_triton.subscale_merge on first use)

    return torch.ops.spn_triton.subscale_merge
