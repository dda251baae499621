"""nn.Module wrappers of the ops."""

from __future__ import annotations

import math

import torch
from torch import nn

from .ops.masked_conv2d.op import masked_conv2d
from .ops.masked_conv2d.ref import conv_mask
from .ops.masked_conv2d_step.op import masked_conv2d_step


class MaskedConv2d(nn.Module):
    """A PixelCNN masked convolution that drops into code written for nn.Conv2d.

    Parameters and state_dict layout are those of nn.Conv2d (``weight`` [C_out, C_in, k, k], ``bias``
    [C_out]), initialised the same way. A state_dict from PixelCNN code that also stores a ``mask`` buffer
    loads too: the mask is checked against this module's own and a mismatch raises.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        mask_type: str = "B",
        color_groups: int = 1,
        bias: bool = True,
        *,
        backend: str | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if mask_type not in ("A", "B", "V"):
            raise ValueError(f"mask_type must be one of 'A', 'B', 'V', got {mask_type!r}")
        if color_groups < 1 or in_channels % color_groups or out_channels % color_groups:
            raise ValueError(
                f"in_channels={in_channels} and out_channels={out_channels} must be divisible by "
                f"color_groups={color_groups}"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = (kernel_size, kernel_size)
        self.padding = (kernel_size // 2, kernel_size // 2)
        self.mask_type, self.color_groups, self.backend = mask_type, color_groups, backend
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Conv2d's initialisation, so swapping modules does not change training dynamics.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_channels * self.kernel_size[0] ** 2)
            nn.init.uniform_(self.bias, -bound, bound)

    def mask(self) -> torch.Tensor:
        k = self.kernel_size[0]
        w = self.weight
        return conv_mask(self.out_channels, self.in_channels, k, self.mask_type, self.color_groups, w.dtype, w.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C_in, H, W] -> [B, C_out, H, W]."""
        return masked_conv2d(x, self.weight, self.bias, self.mask_type, self.color_groups, backend=self.backend)

    def step(self, cache: torch.Tensor, x_new: torch.Tensor | None, row: int, col: int) -> torch.Tensor:
        """Cached output at (row, col) (a whole row for mask "V"); see spn_kernels.masked_conv2d_step."""
        return masked_conv2d_step(
            cache, x_new, self.weight, self.bias, row, col, self.mask_type, self.color_groups, backend=self.backend
        )

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected, errors):
        key = prefix + "mask"
        if key in state_dict:
            theirs = state_dict.pop(key)
            ours = self.mask().to(theirs.device)
            if theirs.shape != ours.shape or not torch.equal(theirs.to(ours.dtype) != 0, ours != 0):
                raise ValueError(
                    f"{key}: the stored mask {tuple(theirs.shape)} differs from this module's mask "
                    f"(mask_type={self.mask_type!r}, color_groups={self.color_groups}, kernel_size={self.kernel_size})"
                )
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected, errors)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, mask_type={self.mask_type!r}, "
            f"color_groups={self.color_groups}, bias={self.bias is not None}"
        )
