"""gated_step: the public function, its checks (once per sampling run), its fake kernel and its backend choice."""

from __future__ import annotations

import torch

from ..._backend import BACKENDS, HAS_TRITON
from .ref import gated_step_ref


def check(h_in, row_term, w_h, w_out, b_out, row, col) -> None:
    """Raises ValueError naming the argument and shapes unless the arguments fit gated_step's spec (ref.py). The
    sampler calls it once per sampling run on its caches; the per-position calls then skip it."""
    lists = dict(h_in=h_in, row_term=row_term, w_h=w_h, w_out=w_out, b_out=b_out)
    for name, v in lists.items():
        if not isinstance(v, (list, tuple)) or not all(isinstance(t, torch.Tensor) for t in v):
            raise ValueError(f"gated_step: {name} must be a list of tensors, got {type(v).__name__}")
    L = len(h_in)
    if L == 0 or any(len(v) != L for v in lists.values()):
        counts = {k: len(v) for k, v in lists.items()}
        raise ValueError(f"gated_step: every list must hold the same number >= 1 of blocks, got {counts}")
    ref = h_in[0]
    if ref.dim() != 4:
        raise ValueError(f"gated_step: h_in[0] must be 4-D [B, n+p, n+2p, c], got shape {tuple(ref.shape)}")
    B = ref.shape[0]
    if row_term[0].dim() != 3:
        raise ValueError(f"gated_step: row_term[0] must be 3-D [B, n, 2d], got shape {tuple(row_term[0].shape)}")
    n = row_term[0].shape[1]
    p = (ref.shape[2] - n) // 2
    if p < 0 or ref.shape[2] != n + 2 * p or ref.shape[1] != n + p:
        raise ValueError(f"gated_step: h_in[0] {tuple(ref.shape)} is not an n={n} map padded by p rows on top and "
                         "p columns each side")  # fmt: skip
    k = 2 * p + 1
    d = w_out[0].shape[-1]
    for i in range(L):
        c = h_in[i].shape[-1]
        want = {
            "h_in": (B, n + p, n + 2 * p, c),
            "row_term": (B, n, 2 * d),
            "w_h": ((p + 1) * k * c, 2 * d),
            "w_out": (d, d),
            "b_out": (d,),
        }
        for name, shape in want.items():
            t = lists[name][i]
            if tuple(t.shape) != shape:
                raise ValueError(f"gated_step: {name}[{i}] must have shape {shape}, got {tuple(t.shape)}")
            if t.dtype != ref.dtype or t.device != ref.device:
                raise ValueError(f"gated_step: {name}[{i}] is {t.dtype} on {t.device}, h_in[0] {ref.dtype} on "
                                 f"{ref.device}")  # fmt: skip
        if not h_in[i].is_contiguous():
            raise ValueError(f"gated_step: h_in[{i}] must be contiguous (the cache is written in place)")
    if not (0 <= row < n and 0 <= col < n):
        raise ValueError(f"gated_step: (row, col) = ({row}, {col}) is outside the {n} x {n} map")


# The fake kernel: shapes only, so the op traces under torch.compile and FakeTensor mode.
@torch.library.register_fake("spn::gated_step")
def fake(h_in, row_term, w_h, w_out, b_out, row, col):
    return h_in[0].new_empty(h_in[0].shape[0], w_out[-1].shape[-1])


def gated_step(
    h_in: list[torch.Tensor],
    row_term: list[torch.Tensor],
    w_h: list[torch.Tensor],
    w_out: list[torch.Tensor],
    b_out: list[torch.Tensor],
    row: int,
    col: int,
    *,
    backend: str | None = None,
    checked: bool = False,
) -> torch.Tensor:
    """Every gated block's horizontal step at (row, col) in one call; see ref.py for the shapes. checked=True
    skips the argument checks (for callers that ran check() once on the same tensors). backend: None (CPU: the C++
    kernel; CUDA: the Triton kernel, one launch per block, where Triton is installed, else the reference's ops;
    either is captured by a CUDA graph), "cpu", "triton" (float32/float64; on CPU tensors only under
    TRITON_INTERPRET=1), or "torch" (the reference)."""
    if not checked:
        check(h_in, row_term, w_h, w_out, b_out, row, col)
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be None or one of {BACKENDS}, got {backend!r}")
    on_cpu = h_in[0].device.type == "cpu"
    if backend == "cpu" and not on_cpu:
        raise ValueError(f"backend='cpu' needs CPU tensors, got a tensor on {h_in[0].device}")
    if backend == "cuda":
        raise ValueError("gated_step has no 'cuda' kernel; use backend=None, 'triton' or 'torch'")
    if backend == "triton" and not HAS_TRITON:
        raise ValueError("backend='triton' needs the triton package, which is not installed")
    if backend == "triton" or (backend is None and not on_cpu and HAS_TRITON):
        from .triton import gated_step as gated_step_triton

        return gated_step_triton(h_in, row_term, w_h, w_out, b_out, row, col)
    if on_cpu and backend != "torch":
        return torch.ops.spn.gated_step(h_in, row_term, w_h, w_out, b_out, row, col)
    return gated_step_ref(h_in, row_term, w_h, w_out, b_out, row, col)
