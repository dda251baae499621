"""Backend selection: ``backend=None | "torch" | "cpu" | "triton" | "cuda"``, decided in Python, per call.

- None: the tensor's device picks. CPU tensors run the C++ kernel (``torch.ops.spn.<op>``); CUDA tensors run
  the CUDA C++ kernel where spn_kernels was built with one for the op, else the Triton kernel
  (``torch.ops.spn_triton.<op>``). Nothing registers Triton launchers as ``spn::`` kernels: which kernel serves
  a CUDA tensor is this explicit choice, so the dispatch table holds only what the C++ extension built.
- "torch": the pure-PyTorch reference (the spec; autograd by PyTorch itself).
- "cpu": ``torch.ops.spn.<op>`` on CPU tensors (the C++ kernels).
- "cuda": ``torch.ops.spn.<op>`` on CUDA tensors, and only for ops with a CUDA C++ kernel.
- "triton": ``torch.ops.spn_triton.<op>``; on CPU tensors it needs TRITON_INTERPRET=1 set before import.
Unknown names raise ValueError. Nothing here knows the ops: each op (spn_kernels/ops/<op>/op.py) passes its
name to `choose`, then calls its reference, its dispatcher op or its own lazily imported Triton op.
"""

from __future__ import annotations

import importlib.util

import torch

from . import _C  # noqa: F401  (loads the op schemas and the C++ kernels, CPU and, where built, CUDA)

BACKENDS = ("torch", "cpu", "triton", "cuda")

# What `choose` returns: which implementation runs.
TORCH, CPP, TRITON = "torch", "cpp", "triton"

HAS_TRITON = importlib.util.find_spec("triton") is not None

# The ops built with a CUDA C++ kernel, read once from the dispatcher (csrc/cuda/binding.cpp registered them
# when _C loaded). A constant, so torch.compile traces `choose` without calling into the dispatcher.
CUDA_CPP_OPS = frozenset(
    name.split("::", 1)[1].split(".")[0]
    for name in torch._C._dispatch_get_registrations_for_dispatch_key("CUDA")
    if name.startswith("spn::")
)


def choose(backend: str | None, device: torch.device, op: str) -> str:
    """Which implementation of ``op`` runs for ``backend`` on tensors on ``device``: TORCH (the reference),
    CPP (``torch.ops.spn.<op>``, a C++ kernel) or TRITON (``torch.ops.spn_triton.<op>``)."""
    if backend is None:
        if device.type != "cuda" or op in CUDA_CPP_OPS:
            return CPP
        # a CUDA tensor and no CUDA C++ kernel for this op
        if not HAS_TRITON:
            raise ValueError(f"{op} on {device}: no CUDA C++ kernel was built and triton is not installed")
        return TRITON
    if backend not in BACKENDS:
        raise ValueError(f"backend must be None or one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return TORCH
    if backend == "cpu":
        if device.type != "cpu":
            raise ValueError(f"backend='cpu' needs CPU tensors, got a tensor on {device}")
        return CPP
    if backend == "cuda":
        if device.type != "cuda":
            raise ValueError(f"backend='cuda' needs CUDA tensors, got a tensor on {device}")
        if op not in CUDA_CPP_OPS:
            raise ValueError(
                f"backend='cuda': spn_kernels was built without a CUDA C++ kernel for {op}; "
                "use backend='triton' or None, or rebuild with a CUDA torch (see README)"
            )
        return CPP
    if not HAS_TRITON:
        raise ValueError("backend='triton' needs the triton package, which is not installed")
    return TRITON


def checks_t_values(impl: str, device: torch.device) -> bool:
    """Whether a public function checks the values of its slice index t itself (spn_kernels._checks.as_t):
    yes, unless the C++ CPU kernel runs (it reads t on the host and checks it), and never under torch.compile."""
    return not torch.compiler.is_compiling() and not (impl == CPP and device.type == "cpu")
