"""slice_context: the public function, its fake kernel and its backend choice (spn_kernels/_backend.py)."""

from __future__ import annotations

import torch

from ..._backend import CPP, TRITON, checks_t_values, choose
from ..._checks import as_t, check_bits, check_devices, check_int_image, check_subscale, check_t, require
from .ref import slice_context_ref


def check(x: torch.Tensor, s: int, t: torch.Tensor, bits: int) -> None:
    check_subscale(x, s)
    check_int_image(x)
    check_bits(bits)
    check_t(t, x)


# The fake kernel lets the op trace under torch.compile(fullgraph=True) and FakeTensor mode: shapes and dtypes
# only. triton.py registers it for torch.ops.spn_triton.slice_context too.
@torch.library.register_fake("spn::slice_context")
def fake(x, s, t, bits):
    check(x, s, t, bits)
    B, C, H, W = x.shape
    return x.new_empty(B, s * s * (C + 1), H // s, W // s, dtype=torch.float32)


def slice_context(
    x: torch.Tensor, s: int, t: int | torch.Tensor, bits: int = 8, *, backend: str | None = None
) -> torch.Tensor:
    """Context-network input: integer image [B, C, H, W], t int or [B] in [0, s*s] ->
    float32 [B, s*s*(C+1), H/s, W/s] (slices before t scaled to [-1, 1], plus a presence channel each)."""
    require(not isinstance(s, bool) and not isinstance(t, bool), lambda: f"s and t must be ints, got s={s!r}, t={t!r}")
    impl = choose(backend, x.device, "slice_context")
    t = as_t(t, x, s * s, checks_t_values(impl, x.device))
    if isinstance(x, torch.Tensor) and x.numel() and not x.is_floating_point() and not torch.compiler.is_compiling():
        # values past 2^bits would scale outside [-1, 1] silently; one min/max pass, skipped inside a graph
        lo, hi = int(x.min()), int(x.max())
        require(0 <= lo and hi < 2**bits, lambda: f"x must hold values in [0, 2^{bits}), got values in [{lo}, {hi}]")
    if impl == CPP:  # the C++ kernel checks the rest (csrc/checks.h)
        check_devices(x, "x", t=t)
        return torch.ops.spn.slice_context(x, s, t, bits)
    if impl == TRITON:  # so does the Triton op
        return _triton_op()(x, s, t, bits)
    check(x, s, t, bits)
    return slice_context_ref(x, s, t.to(torch.int64), bits)


def _triton_op():
    from . import triton  # noqa: F401  (registers torch.ops.spn_triton.slice_context on first use)

    return torch.ops.spn_triton.slice_context
