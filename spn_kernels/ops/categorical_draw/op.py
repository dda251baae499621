"""categorical_draw: the public function, its fake kernel and its backend choice."""

from __future__ import annotations

import math

import torch

from ..._backend import BACKENDS, HAS_TRITON
from .ref import categorical_draw_ref, categorical_draw_ref_


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


@torch.library.register_fake("spn::categorical_draw_")
def fake_(logits, u, temperature, values, log_p):
    return None


def _check_out(logits, values, log_p) -> None:
    B = logits.shape[0]
    for name, t, dtype in (("values", values, torch.int64), ("log_p", log_p, torch.float64)):
        if not isinstance(t, torch.Tensor) or t.dtype != dtype or tuple(t.shape) != (B,) or not t.is_contiguous():
            raise ValueError(f"categorical_draw_: {name} must be a contiguous {dtype} [{B}], got {_describe(t)}")
        if t.device != logits.device:
            raise ValueError(f"categorical_draw_: {name} is on {t.device} but logits on {logits.device}")


def _check_backend(backend, device) -> None:
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be None or one of {BACKENDS}, got {backend!r}")
    if backend == "cuda":
        raise ValueError("categorical_draw has no 'cuda' kernel; use backend=None, 'triton' or 'torch'")
    if backend == "triton" and not HAS_TRITON:
        raise ValueError("backend='triton' needs the triton package, which is not installed")
    if backend == "cpu" and device.type != "cpu":
        raise ValueError(f"backend='cpu' needs CPU tensors, got a tensor on {device}")


def _impl(backend, device, K: int) -> str:
    """ "cpu" (the C++ kernel), "triton" or "torch" (the reference); backend already checked. Triton takes rows of
    up to 4096 values (12 bits; one block of registers per row): wider ones run the reference (backend=None)."""
    if backend == "triton" and K > 4096:
        raise ValueError(f"categorical_draw's Triton kernel takes rows of at most 4096 values, got K = {K}")
    if K <= 4096 and (backend == "triton" or (backend is None and device.type != "cpu" and HAS_TRITON)):
        return "triton"
    if device.type == "cpu" and backend != "torch":
        return "cpu"
    return "torch"


def categorical_draw_(
    logits: torch.Tensor,
    u: torch.Tensor,
    temperature: float,
    values: torch.Tensor,
    log_p: torch.Tensor,
    *,
    backend: str | None = None,
    checked: bool = False,
) -> None:
    """categorical_draw written in place into values (contiguous int64 [B]) and log_p (contiguous float64 [B]):
    the sampler's per-sub-pixel call, with no allocation and no copy."""
    if not checked:
        check(logits, u, temperature)
        _check_out(logits, values, log_p)
        _check_backend(backend, logits.device)
    impl = _impl(backend, logits.device, logits.shape[-1])
    if impl == "triton":
        from .triton import categorical_draw_ as draw_triton_

        draw_triton_(logits, u, temperature, values, log_p)
    elif impl == "cpu":
        torch.ops.spn.categorical_draw_(logits, u, float(temperature), values, log_p)
    else:
        categorical_draw_ref_(logits, u, temperature, values, log_p)


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
    (CPU: the C++ kernel; CUDA: the Triton kernel where Triton is installed, else the reference's ops), "cpu",
    "triton" (on CPU tensors only under TRITON_INTERPRET=1), or "torch" (the reference)."""
    if not checked:
        check(logits, u, temperature)
        _check_backend(backend, logits.device)
    impl = _impl(backend, logits.device, logits.shape[-1])
    if impl == "triton":
        from .triton import categorical_draw as draw_triton

        return draw_triton(logits, u, temperature)
    if impl == "cpu":
        return torch.ops.spn.categorical_draw(logits, u, float(temperature))
    return categorical_draw_ref(logits, u, temperature)
