"""What every Triton launcher shares: the one place a kernel is launched, the device guard, and a recorder
that captures launches instead of running them (the compile check turns those into real GPU compiles).

Imported only by the Triton launchers (spn_kernels/*/triton*.py), so it may import triton.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import triton

_RECORDING: list[list[Launch]] = []


@dataclass
class Launch:
    """One kernel launch: kernel[grid](*args, **meta). meta holds the constexprs and num_warps/num_stages."""

    kernel: Any
    grid: tuple
    args: tuple
    meta: dict = field(default_factory=dict)


def interpreting() -> bool:
    """True when kernels run on CPU tensors through the Triton interpreter."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def launch(kernel, grid: tuple, *args, **meta) -> None:
    if _RECORDING:
        _RECORDING[-1].append(Launch(kernel, tuple(grid), args, meta))
        return
    if min(grid) == 0:
        return
    dev = next((a.device for a in args if isinstance(a, torch.Tensor)), None)
    guard = torch.cuda.device(dev) if dev is not None and dev.type == "cuda" else contextlib.nullcontext()
    with guard:
        kernel[grid](*args, **meta)


@contextlib.contextmanager
def recording():
    """Within this block launch() records instead of running; use with meta-device tensors."""
    calls: list[Launch] = []
    _RECORDING.append(calls)
    try:
        yield calls
    finally:
        _RECORDING.pop()


def pow2(n: int, lo: int = 1, hi: int | None = None) -> int:
    """next_power_of_2(n) clamped to [lo, hi]."""
    v = max(triton.next_power_of_2(max(int(n), 1)), lo)
    return v if hi is None else min(v, hi)


def dot_precision(dtype: torch.dtype, device: torch.device) -> str:
    """tl.dot input precision for fp32 tiles: the convention of the reference the op is compared with.

    On CUDA, F.conv2d (cuDNN) uses TF32 when torch.backends.cudnn.allow_tf32 (the default) is set, so the
    kernel does too; on CPU (the interpreter) the reference is full fp32, and so is the kernel. Meta tensors
    stand for CUDA ones: the compile check (tests/kernels/test_triton_compile.py) launches on them.
    """
    if dtype == torch.float32 and device.type in ("cuda", "meta") and torch.backends.cudnn.allow_tf32:
        return "tf32"
    return "ieee"
