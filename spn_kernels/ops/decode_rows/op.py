"""decode_rows: the public function, its checks (once per sampling run), its fake kernel and its backend choice."""

from __future__ import annotations

import math

import torch

from ..._backend import BACKENDS
from ..gated_step.op import check as check_gated_step
from .ref import decode_rows_ref


def check(pixels, v_in, h_in, row_term, cond_v, cond_h, w_v, w_h, w_vh, w_out, b_out, head_inp, head_bias, head_prev,
          head_out_w, head_out_b, mixtures, log_scale_min, levels, u, temperature, values, log_p, row_start,
          row_end) -> None:  # fmt: skip
    """Raises ValueError naming the argument and shapes unless the arguments fit decode_rows' spec (ref.py). The
    sampler calls it once per sampling run on its caches; the per-slice calls then skip it."""
    if not isinstance(pixels, torch.Tensor) or pixels.dim() != 4:
        raise ValueError(f"decode_rows: pixels must be a 4-D tensor [B, n+p, n+2p, C], got {_describe(pixels)}")
    for name, lst in dict(v_in=v_in, h_in=h_in, cond_v=cond_v, cond_h=cond_h, w_v=w_v, w_vh=w_vh,
                          head_prev=head_prev, head_out_w=head_out_w, head_out_b=head_out_b).items():  # fmt: skip
        if not isinstance(lst, (list, tuple)) or not all(isinstance(t, torch.Tensor) for t in lst):
            raise ValueError(f"decode_rows: {name} must be a list of tensors, got {type(lst).__name__}")
    if not isinstance(w_h, (list, tuple)) or len(v_in) != len(w_h) - 1 or len(h_in) != len(w_h) - 1:
        raise ValueError(f"decode_rows: v_in and h_in hold the maps of blocks 1..L-1: {len(w_h) - 1} each for "
                         f"L = {len(w_h)} blocks, got {len(v_in)} and {len(h_in)}")  # fmt: skip
    check_gated_step([pixels, *h_in], row_term, w_h, w_out, b_out, 0, 0)
    B, _, _, C = pixels.shape
    n = row_term[0].shape[1]
    d = w_out[0].shape[-1]
    dt, dev = pixels.dtype, pixels.device
    want: dict[str, tuple[torch.Tensor, tuple]] = {}
    for i in range(len(w_h)):
        if i:
            want[f"v_in[{i - 1}]"] = (v_in[i - 1], tuple(h_in[i - 1].shape))
        want[f"cond_v[{i}]"] = (cond_v[i], (n, B, n, 2 * d))
        want[f"cond_h[{i}]"] = (cond_h[i], (n, B, n, 2 * d))
        want[f"w_v[{i}]"] = (w_v[i], tuple(w_h[i].shape))
        want[f"w_vh[{i}]"] = (w_vh[i], (2 * d, 2 * d))
    if len(head_prev) != C or len(head_out_w) != C or len(head_out_b) != C:
        raise ValueError(f"decode_rows: head_prev, head_out_w and head_out_b must hold C = {C} tensors, got "
                         f"{len(head_prev)}, {len(head_out_w)} and {len(head_out_b)}")  # fmt: skip
    if not isinstance(head_out_w[0], torch.Tensor) or head_out_w[0].dim() != 2:
        raise ValueError(f"decode_rows: head_out_w[0] must be [Dh, K], got {_describe(head_out_w[0])}")
    if isinstance(mixtures, bool) or not isinstance(mixtures, int) or mixtures < 0:
        raise ValueError(f"decode_rows: mixtures must be an int >= 0 (0: a categorical head), got {mixtures!r}")
    finite = isinstance(log_scale_min, (int, float)) and not isinstance(log_scale_min, bool)
    if not finite or not math.isfinite(log_scale_min):
        raise ValueError(f"decode_rows: log_scale_min must be a finite number, got {log_scale_min!r}")
    if not isinstance(levels, torch.Tensor) or levels.dim() != 1:
        raise ValueError(f"decode_rows: levels must be a 1-D tensor [K], got {_describe(levels)}")
    Dh, K = head_out_w[0].shape[0], levels.shape[0]
    outs = mixtures * (3 + C) if mixtures else K
    want["head_inp"] = (head_inp, (d, C * Dh))
    want["head_bias"] = (head_bias, (C * Dh,))
    for ch in range(C):
        want[f"head_prev[{ch}]"] = (head_prev[ch], (ch, Dh))
        want[f"head_out_w[{ch}]"] = (head_out_w[ch], (Dh, outs))
        want[f"head_out_b[{ch}]"] = (head_out_b[ch], (outs,))
    want["levels"] = (levels, (K,))
    for name, (t, shape) in want.items():
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape:
            raise ValueError(f"decode_rows: {name} must have shape {shape}, got {_describe(t)}")
        if t.dtype != dt or t.device != dev:
            raise ValueError(f"decode_rows: {name} is {t.dtype} on {t.device}, pixels {dt} on {dev}")
        if not t.is_contiguous():
            raise ValueError(f"decode_rows: {name} must be contiguous")
    for name, t in (("pixels", pixels), *((f"row_term[{i}]", t) for i, t in enumerate(row_term))):
        if not t.is_contiguous():
            raise ValueError(f"decode_rows: {name} must be contiguous (the cache is written in place)")
    for name, t, dtype in (("u", u, torch.float64), ("values", values, torch.int64), ("log_p", log_p, torch.float64)):
        if not isinstance(t, torch.Tensor) or t.dtype != dtype or tuple(t.shape) != (n * n * C, B):
            raise ValueError(f"decode_rows: {name} must be {dtype} [n*n*C, B] = [{n * n * C}, {B}], got {_describe(t)}")
        if t.device != dev or not t.is_contiguous():
            raise ValueError(f"decode_rows: {name} must be contiguous on {dev}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < math.inf:
        raise ValueError(f"decode_rows: temperature must be a finite number > 0, got {temperature!r}")
    for name, r in (("row_start", row_start), ("row_end", row_end)):
        if isinstance(r, bool) or not isinstance(r, int):
            raise ValueError(f"decode_rows: {name} must be an int, got {r!r}")
    if not 0 <= row_start < row_end <= n:
        raise ValueError(f"decode_rows: rows [{row_start}, {row_end}) must satisfy 0 <= row_start < row_end <= n = {n}")


def _describe(x) -> str:
    return f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


@torch.library.register_fake("spn::decode_rows")
def fake(*args):
    return None


def decode_rows(*args, backend: str | None = None, checked: bool = False) -> None:
    """Samples rows row_start .. row_end - 1 of a slice in place; the arguments and their shapes are those of
    decode_rows_ref (ref.py). checked=True skips the argument checks (for callers that ran check() once on the same
    tensors). backend: None (CPU: the C++ kernel; elsewhere the reference), "cpu", or "torch" (the reference)."""
    if not checked:
        check(*args)
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be None or one of {BACKENDS}, got {backend!r}")
    on_cpu = args[0].device.type == "cpu"
    if backend == "cpu" and not on_cpu:
        raise ValueError(f"backend='cpu' needs CPU tensors, got a tensor on {args[0].device}")
    if backend in ("triton", "cuda"):
        raise ValueError(f"decode_rows has no {backend!r} kernel; use backend=None or 'torch'")
    if on_cpu and backend != "torch":
        *rest, mixtures, log_scale_min, levels, u, temperature, values, log_p, r0, r1 = args
        torch.ops.spn.decode_rows(*rest, mixtures, float(log_scale_min), levels, u, float(temperature), values,
                                  log_p, r0, r1)  # fmt: skip
    else:
        decode_rows_ref(*args)
