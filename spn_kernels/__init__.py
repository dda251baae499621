"""spn_kernels: the op library under spn (torch.ops.spn.*), with pure-PyTorch references beside it."""

from ._backend import BACKENDS
from .masked_conv.ref import (
    conv_mask,
    masked_conv2d_backward_ref,
    masked_conv2d_ref,
    masked_conv2d_step_ref,
)
from .modules import MaskedConv2d
from .ops import masked_conv2d, masked_conv2d_step, slice_context, slice_scatter_, subscale_merge, subscale_split
from .subscale.ref import slice_context_ref, slice_scatter_ref_, subscale_merge_ref, subscale_split_ref

__all__ = [
    "BACKENDS",
    "MaskedConv2d",
    "conv_mask",
    "masked_conv2d",
    "masked_conv2d_backward_ref",
    "masked_conv2d_ref",
    "masked_conv2d_step",
    "masked_conv2d_step_ref",
    "slice_context",
    "slice_context_ref",
    "slice_scatter_",
    "slice_scatter_ref_",
    "subscale_merge",
    "subscale_merge_ref",
    "subscale_split",
    "subscale_split_ref",
]
__version__ = "0.1.0"
