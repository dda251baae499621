"""spn_kernels: the op library under spn (torch.ops.spn.*), with pure-PyTorch references beside it.

Every op lives in its own folder, spn_kernels/ops/<op>/ (reference, public function, Triton kernel), and
its C++ kernels in csrc/<op>/.
"""

from ._backend import BACKENDS
from .incremental import Incremental, incremental
from .modules import DownShift, MaskedConv2d, down_shift
from .ops.categorical_draw.op import categorical_draw, categorical_draw_
from .ops.categorical_draw.ref import categorical_draw_ref, categorical_draw_ref_
from .ops.decode_rows.op import check as decode_rows_check
from .ops.decode_rows.op import decode_rows
from .ops.decode_rows.ref import decode_rows_ref
from .ops.gated_step.op import check as gated_step_check
from .ops.gated_step.op import gated_step
from .ops.gated_step.ref import gated_step_ref
from .ops.masked_conv2d.op import masked_conv2d
from .ops.masked_conv2d.ref import conv_mask, masked_conv2d_backward_ref, masked_conv2d_ref
from .ops.masked_conv2d_step.op import masked_conv2d_step
from .ops.masked_conv2d_step.ref import masked_conv2d_step_ref
from .ops.slice_context.op import slice_context
from .ops.slice_context.ref import slice_context_ref
from .ops.slice_scatter_.op import slice_scatter_
from .ops.slice_scatter_.ref import slice_scatter_ref_
from .ops.subscale_merge.op import subscale_merge
from .ops.subscale_merge.ref import subscale_merge_ref
from .ops.subscale_split.op import subscale_split
from .ops.subscale_split.ref import subscale_split_ref

__all__ = [
    "categorical_draw",
    "categorical_draw_",
    "categorical_draw_ref",
    "categorical_draw_ref_",
    "decode_rows",
    "decode_rows_check",
    "decode_rows_ref",
    "gated_step",
    "gated_step_check",
    "gated_step_ref",
    "BACKENDS",
    "DownShift",
    "Incremental",
    "MaskedConv2d",
    "conv_mask",
    "down_shift",
    "incremental",
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
