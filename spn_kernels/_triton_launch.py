"""What every Triton launcher shares: the plan of one launch, the one place a plan is launched (with the device
guard), and small sizing helpers.

Each launcher is split in two: a pure ``plan_*`` function that allocates the outputs and returns the `Launch`
(kernel, grid, arguments, constexprs) for a given configuration, and the launcher that picks the
configuration, calls the plan and runs it. The compile check (tests/ops/test_triton_compile.py) calls the
same plan functions on meta tensors for every configuration and compiles what they return.

Imported only by the Triton modules (spn_kernels/_triton_slices.py, spn_kernels/ops/*/triton.py), so it may
import triton.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import triton


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


def launch(plan: Launch) -> None:
    if min(plan.grid) == 0:
        return
    dev = next((a.device for a in plan.args if isinstance(a, torch.Tensor)), None)
    guard = torch.cuda.device(dev) if dev is not None and dev.type == "cuda" else contextlib.nullcontext()
    with guard:
        plan.kernel[plan.grid](*plan.args, **plan.meta)


def pow2(n: int, lo: int = 1, hi: int | None = None) -> int:
    """next_power_of_2(n) clamped to [lo, hi]."""
    v = max(triton.next_power_of_2(max(int(n), 1)), lo)
    return v if hi is None else min(v, hi)


def dot_precision(dtype: torch.dtype, device: torch.device, tf32: bool) -> str:
    """tl.dot input precision for tiles of ``dtype`` on ``device``: "tf32" only for fp32 tiles on CUDA when the
    op allows it (``tf32``), else "ieee" (exact fp32; fp16/bf16/fp64 tiles ignore it). This is the one place a
    Triton kernel's precision is decided; each op says why it passes its ``tf32``:
    - masked_conv2d (forward and backward): torch.backends.cudnn.allow_tf32, what F.conv2d (cuDNN, the
      reference on CUDA) uses, so the kernel is compared against the reference's own precision;
    - masked_conv2d_step: False, always exact, like the CUDA C++ step kernel: a step is latency-bound (TF32
      would save nothing), and the two step backends then agree to fp32 rounding.
    Under the interpreter (CPU tensors) every reference is full fp32, and so is every kernel."""
    if dtype == torch.float32 and device.type == "cuda" and tf32:
        return "tf32"
    return "ieee"
