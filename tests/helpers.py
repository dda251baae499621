"""Test helpers: tolerances with a reason, and layouts that kernels often get wrong."""

from __future__ import annotations

import torch


def assert_close_to_ref(out: torch.Tensor, ref: torch.Tensor, ref64: torch.Tensor, factor: float = 2.0) -> None:
    """A kernel's error against the float64 reference may be at most ``factor`` times the error of the
    same-dtype PyTorch reference, plus two ulps at the output's scale (float64 inputs have no more precise
    reference, so the reference's own error is 0 there)."""
    assert out.shape == ref64.shape and out.dtype == ref.dtype, (out.shape, out.dtype, ref64.shape, ref.dtype)
    if out.numel() == 0:
        return
    err_ref = (ref.double() - ref64).abs().max().item()
    err = (out.double() - ref64).abs().max().item()
    eps = torch.finfo(out.dtype).eps * max(ref64.abs().max().item(), 1.0)
    assert err <= factor * err_ref + 2 * eps, f"error {err:.3e} vs reference's {err_ref:.3e} (eps {eps:.1e})"


def layout(x: torch.Tensor, kind: str) -> torch.Tensor:
    """The same values as x in another memory layout: contiguous, channels_last, or a strided view."""
    if kind == "contiguous":
        return x.contiguous()
    if kind == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if kind == "noncontiguous":
        # every other element of a wider tensor along W
        wide = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype)
        wide[..., ::2] = x
        view = wide[..., ::2]
        assert not view.is_contiguous()
        return view
    raise ValueError(kind)


LAYOUTS = ["contiguous", "channels_last", "noncontiguous"]
