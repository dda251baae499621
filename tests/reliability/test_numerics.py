"""Numerical guards: bf16 autocast runs the masked convolutions in bf16 but keeps the log-softmax and the
loss in float32, and gives the same loss as float32 to bf16 accuracy."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import spn


class _RecordLogSoftmax(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.dtypes: list[torch.dtype] = []
        self.conv_dtypes: list[torch.dtype] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name == "_log_softmax":
            self.dtypes.append(out.dtype)
        if name == "masked_conv2d":
            self.conv_dtypes.append(out.dtype)
        return out


def test_bf16_autocast_keeps_log_softmax_and_loss_in_fp32():
    torch.manual_seed(0)
    model = spn.SPN(spn.SPNConfig(image_size=8, channels=3, bits=8, subscale=2))
    x = torch.randint(0, 256, (4, 3, 8, 8))
    rec = _RecordLogSoftmax()
    with torch.autocast("cpu", dtype=torch.bfloat16), rec:
        loss = model.loss(x)
    assert loss.dtype == torch.float32
    assert rec.dtypes and all(d == torch.float32 for d in rec.dtypes), rec.dtypes
    assert rec.conv_dtypes and all(d == torch.bfloat16 for d in rec.conv_dtypes), rec.conv_dtypes
    loss.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    ref = model.loss(x)
    # 8 bits/dim of random weights; bf16 has 8 mantissa bits: agree to about 1%
    assert abs(loss.item() - ref.item()) < 0.01 * ref.item()
