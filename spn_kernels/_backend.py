"""Backend selection: ``backend=None | "torch" | "cpu" | "triton" | "cuda"``.

- None: the dispatcher op ``torch.ops.spn.<op>``; the tensor's device picks the kernel (C++ on CPU; on
  CUDA the CUDA C++ kernel where one is built, else the Triton kernel).
- "torch": the pure-PyTorch reference (the spec; autograd by PyTorch itself).
- "cpu": ``torch.ops.spn.<op>`` on CPU tensors (the C++ kernels).
- "cuda": ``torch.ops.spn.<op>`` on CUDA tensors, and only for ops with a CUDA C++ kernel.
- "triton": ``torch.ops.spn_triton.<op>``; on CPU tensors it needs TRITON_INTERPRET=1 set before import.
Imports of optional backends are lazy; unknown names raise ValueError.
"""

from __future__ import annotations

import importlib.util
from typing import Callable

import torch

BACKENDS = ("torch", "cpu", "triton", "cuda")


def _refs() -> dict[str, Callable]:
    from .masked_conv.ref import masked_conv2d_ref, masked_conv2d_step_ref
    from .subscale.ref import slice_context_ref, slice_scatter_ref_, subscale_merge_ref, subscale_split_ref

    return {
        "subscale_split": subscale_split_ref,
        "subscale_merge": subscale_merge_ref,
        "slice_context": slice_context_ref,
        "slice_scatter_": slice_scatter_ref_,
        "masked_conv2d": masked_conv2d_ref,
        "masked_conv2d_step": masked_conv2d_step_ref,
    }


def has_triton() -> bool:
    return importlib.util.find_spec("triton") is not None


def resolve(op: str, backend: str | None, x: torch.Tensor) -> Callable:
    """Returns the callable that runs ``op`` with ``backend`` on tensors like ``x``."""
    if backend is None:
        return getattr(torch.ops.spn, op)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be None or one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return _refs()[op]
    if backend == "cpu":
        if x.device.type != "cpu":
            raise ValueError(f"backend='cpu' needs CPU tensors, got a tensor on {x.device}")
        return getattr(torch.ops.spn, op)
    if backend == "cuda":
        if x.device.type != "cuda":
            raise ValueError(f"backend='cuda' needs CUDA tensors, got a tensor on {x.device}")
        from ._library import TRITON_CUDA_OPS

        if op in TRITON_CUDA_OPS or not torch._C._dispatch_has_kernel_for_dispatch_key(f"spn::{op}", "CUDA"):
            raise ValueError(
                f"backend='cuda': spn_kernels was built without a CUDA C++ kernel for {op}; "
                "use backend='triton' or None, or rebuild with a CUDA torch (see README)"
            )
        return getattr(torch.ops.spn, op)
    # triton
    if not has_triton():
        raise ValueError("backend='triton' needs the triton package, which is not installed")
    from . import _triton_ops  # noqa: F401  (registers torch.ops.spn_triton.*)

    return getattr(torch.ops.spn_triton, op)
