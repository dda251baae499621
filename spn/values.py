"""Integer image values: validation of user tensors and the [-1, 1] scaling every network input uses."""

from __future__ import annotations

import torch

_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def check_int_tensor(x: object, name: str, shape: tuple[int, ...], bits: int, what: str) -> torch.Tensor:
    """Validates an integer image-like tensor: exact shape (-1 = any), integer dtype, values in [0, 2^bits)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor {what}, got {type(x).__name__}")
    if x.dim() != len(shape):
        raise ValueError(f"{name} must be {len(shape)}-D {what}, got shape {tuple(x.shape)}")
    if any(w != -1 and w != g for w, g in zip(shape, x.shape)):
        want = "(" + ", ".join("*" if w == -1 else str(w) for w in shape) + ")"
        raise ValueError(f"{name} must have shape {want} {what}, got shape {tuple(x.shape)}")
    if x.dtype not in _INT_DTYPES:
        raise ValueError(f"{name} must be an integer tensor (uint8/int8/int16/int32/int64) {what}, got {x.dtype}")
    # The values are read on the host, so under torch.compile they are not checked: a graph cannot branch on
    # them, and torch._check would cost a device sync per call. Callers that compile check their data once
    # outside the compiled region (spn.trainer does, on its first batch), as the kernels do for t.
    if x.numel() and not torch.compiler.is_compiling():
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi >= 2**bits:
            raise ValueError(f"{name} values must be in [0, 2^{bits}) = [0, {2**bits - 1}], got values in [{lo}, {hi}]")
    return x.long()


def scale(v: torch.Tensor, bits: int, dtype: torch.dtype) -> torch.Tensor:
    """Integer values in [0, 2^bits) -> (2v + 1) / 2^bits - 1 in (-1, 1): slice_context's scaling."""
    return (2 * v.to(dtype) + 1) / float(2**bits) - 1
