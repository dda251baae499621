"""categorical_draw: the public function, its fake kernel and its backend choice."""

from __future__ import annotations

import math

import torch

from ..._backend import BACKENDS
from .ref import categorical_draw_ref


def check(logits, u, temperature) -> None:
    """Raises ValueError naming the argument unless the arguments fit the spec (ref.py)."""
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or not logits.dtype.is_floating_point:
        raise ValueError(f"categorical_draw: logits must be a floating tensor [B, K], got {_describe(logits)}")
    if logits.shape[1] < 1:
        raise ValueError(f"categorical_draw: logits must have K >= 1 columns, got shape {tuple(logits.shape)}")
    if not isinstance(u, torch.Tensor) or u.dtype != torch.float64 or tuple(u.shape) != (logits.shape[0],):
        raise ValueError(f"categorical_draw: u must be float64 [{logits.shape[0]}], got {_describe(u)}")
    if u.device != logits.device:
        raise ValueError(f"categorical_draw: u is on {u.device} but logits on {logits.device}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < math.inf:
        raise ValueError(f"categorical_draw: temperature must be a finite number > 0, got {temperature!r}")


def _describe(x) -> str:
    return f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


# The fake kernel: shapes only, so the op traces under torch.compile and FakeTensor mode.
@torch.library.register_fake("spn::categorical_draw")
def fake(logits, u, temperature):
    B = logits.shape[0]
    return logits.new_empty(B, dtype=torch.int64), logits.new_empty(B, dtype=torch.float64)


def categorical_draw(
    logits: torch.Tensor,
    u: torch.Tensor,
    temperature: float = 1.0,
    *,
    backend: str | None = None,
    checked: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(int64 values [B], float64 log p [B]): one inverse-CDF draw per row of logits [B, K] with the uniforms u
    [B]; see ref.py. checked=True skips the checks (for a caller that validated its inputs once). backend: None
    (CPU: the C++ kernel; CUDA: the reference's ops), "cpu", or "torch" (the reference)."""
    if not checked:
        check(logits, u, temperature)
        if backend is not None and backend not in BACKENDS:
            raise ValueError(f"backend must be None or one of {BACKENDS}, got {backend!r}")
        if backend in ("triton", "cuda"):
            raise ValueError(f"categorical_draw has no {backend!r} kernel; use backend=None or 'torch'")
        if backend == "cpu" and logits.device.type != "cpu":
            raise ValueError(f"backend='cpu' needs CPU tensors, got a tensor on {logits.device}")
    if logits.device.type == "cpu" and backend != "torch":
        return torch.ops.spn.categorical_draw(logits, u, float(temperature))
    return categorical_draw_ref(logits, u, temperature)
