"""sk.incremental against the full model at every step of a raster walk, for each kind of node it steps, and its
errors: the first unsupported module or function named, training mode, writes out of order, bad shapes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import spn_kernels as sk


def assert_walk(model: nn.Module, shape, *args, channelwise: bool = True) -> None:
    """Every step of a raster walk (channel by channel) equals model(x written so far)[..., r, c]."""
    torch.manual_seed(1)
    model = model.double().eval()
    x = torch.rand(shape, dtype=torch.float64)
    inc = sk.incremental(model, torch.zeros_like(x), *args)
    seen = torch.zeros_like(x)
    B, C, H, W = shape
    with torch.no_grad():
        for r in range(H):
            for c in range(W):
                for ch in range(C if channelwise else 1):
                    want = model(seen, *args)[..., r, c]
                    torch.testing.assert_close(inc.step(r, c), want, rtol=1e-12, atol=1e-12)
                    if channelwise:
                        inc.write(x[:, ch, r, c], r, c, channel=ch)
                        seen[:, ch, r, c] = x[:, ch, r, c]
                    else:
                        inc.write(x[:, :, r, c], r, c)
                        seen[:, :, r, c] = x[:, :, r, c]


class Lambda(nn.Module):
    def __init__(self, build, fwd):
        super().__init__()
        build(self)
        self.fwd = fwd

    def forward(self, x):
        return self.fwd(self, x)


class LambdaY(Lambda):
    def forward(self, x, y):
        return self.fwd(self, x, y)


def _gated(s):
    s.v = sk.MaskedConv2d(3, 8, (2, 3), mask_type="V")
    s.down = sk.DownShift()
    s.h = sk.MaskedConv2d(3, 8, (1, 3), mask_type="A", color_groups=3, color_layout="interleaved")
    s.out = sk.MaskedConv2d(4, 6, 1, mask_type="B", color_groups=3, color_layout="interleaved")


def _stack(s):
    s.a = sk.MaskedConv2d(3, 6, 3, mask_type="A", color_groups=3)
    s.b = sk.MaskedConv2d(6, 6, 3, mask_type="B", color_groups=3)
    s.bn = nn.BatchNorm2d(6)
    s.drop = nn.Dropout(0.5)
    s.lrelu = nn.LeakyReLU(0.1, inplace=True)


def _half_row(s):  # a (1, k//2+1) kernel padded (0, k//2), cropped to the first W columns
    s.h = sk.MaskedConv2d(1, 4, (1, 3), padding=(0, 2), mask_type="A")
    s.v = sk.MaskedConv2d(1, 4, (3, 5), padding=(2, 2), mask_type="V")
    s.pad = nn.ZeroPad2d((0, 0, 1, 0))


MODELS = [
    ("gated-downshift-module-chunk-product", _gated, (2, 3, 4, 5),
     lambda s, x: s.out(torch.tanh(s.h(x) + s.down(s.v(x))).chunk(2, 1)[0] * torch.sigmoid(s.h(x)[:, 4:]))),
    ("stack-bn-dropout-inplace-residual", _stack, (2, 3, 4, 4),
     lambda s, x: s.b(s.drop(s.lrelu(s.bn(s.a(x))))) + 0.5 * s.a(x)),
    ("half-row-crop-zeropad-shift-cat", _half_row, (1, 1, 5, 4),
     lambda s, x: torch.cat([s.h(x)[:, :, :, : x.shape[-1]], s.pad(s.v(x)[:, :, : x.shape[-2]])[:, :, :-1]], 1)),
    ("dilated-glu-softmax-reshape", lambda s: setattr(s, "c", sk.MaskedConv2d(1, 8, 3, dilation=2, mask_type="A")),
     (2, 1, 5, 6), lambda s, x: F.softmax(F.glu(s.c(x), dim=1), dim=1).reshape(2, 2, 2, x.shape[2], x.shape[3])),
    ("uncropped-larger-output", lambda s: setattr(s, "v", sk.MaskedConv2d(1, 2, (2, 3), padding=(1, 1), mask_type="V")),
     (1, 1, 4, 3), lambda s, x: s.v(x)),
]  # fmt: skip


@pytest.mark.parametrize("build, shape, fwd", [m[1:] for m in MODELS], ids=[m[0] for m in MODELS])
def test_steps_equal_the_full_model(build, shape, fwd):
    model = Lambda(build, fwd)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
    assert_walk(model, shape)


def test_fixed_extra_argument_and_constants():
    """A class-conditional model: the embedding is computed once; a learned [C, H, W] bias is a constant."""

    def build(s):
        s.c = sk.MaskedConv2d(1, 4, 3, mask_type="A")
        s.emb = nn.Embedding(3, 4)
        s.pos = nn.Parameter(torch.randn(4, 4, 5))

    model = LambdaY(build, lambda s, x, y: F.elu(s.c(x) + s.emb(y)[:, :, None, None] + s.pos))
    assert_walk(model, (2, 1, 4, 5), torch.tensor([0, 2]), channelwise=False)


def test_reads_the_weights_as_they_are_and_resets():
    model = nn.Sequential(sk.MaskedConv2d(1, 3, 3, mask_type="A"), nn.ReLU(), nn.Conv2d(3, 2, 1)).double().eval()
    x = torch.rand(1, 1, 3, 3, dtype=torch.float64)
    inc = sk.incremental(model, x)
    inc.write(x[:, :, 0, 0], 0, 0)
    first = inc.step(0, 1)
    with torch.no_grad():
        model[2].weight.mul_(2)
        model[0].weight.add_(1)
    inc.reset()
    inc.write(x[:, :, 0, 0], 0, 0)
    x0 = torch.zeros_like(x)
    x0[:, :, 0, 0] = x[:, :, 0, 0]
    torch.testing.assert_close(inc.step(0, 1), model(x0)[..., 0, 1])
    assert not torch.allclose(first, inc.step(0, 1))


def test_batchnorm_folded_into_the_convolution_follows_its_changes():
    """A BatchNorm right after a convolution is computed by it (folded into its weight and bias): changes to the
    statistics, the BatchNorm's parameters and the convolution's bias are all seen at the next step."""
    model = nn.Sequential(sk.MaskedConv2d(1, 3, 3, mask_type="A"), nn.BatchNorm2d(3), nn.ReLU()).double().eval()
    x = torch.rand(2, 1, 3, 4, dtype=torch.float64)
    inc = sk.incremental(model, x)
    x0 = torch.zeros_like(x)
    x0[:, :, 0, 0] = x[:, :, 0, 0]
    changes = [
        lambda: None,
        lambda: model[1].running_mean.add_(0.5),
        lambda: model[1].running_var.mul_(3),
        lambda: model[1].weight.mul_(-2),
        lambda: model[1].bias.add_(1),
        lambda: model[0].bias.add_(-1),
    ]
    for change in changes:
        with torch.no_grad():
            change()
        inc.reset()
        inc.write(x[:, :, 0, 0], 0, 0)
        torch.testing.assert_close(inc.step(0, 1), model(x0)[..., 0, 1], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(inc.step(1, 2), model(x0)[..., 1, 2], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "model, match",
    [
        (nn.Sequential(sk.MaskedConv2d(1, 2, 3), nn.Conv2d(2, 2, 3, padding=1)), r"Conv2d '1'.*only 1x1 nn.Conv2d"),
        (nn.Sequential(nn.Sequential(sk.MaskedConv2d(1, 2, 3)), nn.AvgPool2d(3, 1, 1)), "AvgPool2d '1'"),
        (Lambda(lambda s: None, lambda s, x: x.mean(2, keepdim=True).expand_as(x)), "method mean"),
        (Lambda(lambda s: None, lambda s, x: torch.flip(x, (3,))), "function flip"),
        (Lambda(lambda s: None, lambda s, x: x.chunk(2, dim=3)[0]), "chunk/split along the channel dim"),
        (Lambda(lambda s: None, lambda s, x: x[:, :, ::2]), "step-1 slices"),
    ],
    ids=["conv3x3", "pool", "spatial-mean", "flip", "chunk-columns", "strided-slice"],
)
def test_unsupported_is_named(model, match):
    with pytest.raises(TypeError, match=match):
        sk.incremental(model.eval(), torch.zeros(1, 1, 4, 4))


def test_training_mode_is_refused():
    model = nn.Sequential(sk.MaskedConv2d(1, 2, 3), nn.BatchNorm2d(2))
    with pytest.raises(ValueError, match=r"BatchNorm2d '1' is in training mode"):
        sk.incremental(model, torch.zeros(1, 1, 4, 4))
    inc = sk.incremental(model.eval(), torch.zeros(1, 1, 4, 4))
    model.train()
    with pytest.raises(ValueError, match="training mode"):
        inc.step(0, 0)


def test_bad_writes_and_steps():
    inc = sk.incremental(nn.Sequential(sk.MaskedConv2d(3, 3, 3, color_groups=3)).eval(), torch.zeros(2, 3, 4, 4))
    inc.write(torch.zeros(2), 1, 1, channel=1)
    with pytest.raises(ValueError, match="raster order"):
        inc.write(torch.zeros(2), 1, 1, channel=0)
    with pytest.raises(ValueError, match="raster order"):
        inc.write(torch.zeros(2, 3), 0, 3)
    with pytest.raises(ValueError, match=r"values must have shape \[2, 3\]"):
        inc.write(torch.zeros(2, 2), 2, 2)
    with pytest.raises(ValueError, match="outside"):
        inc.write(torch.zeros(2, 3), 4, 0)
    with pytest.raises(ValueError, match="outside"):
        inc.step(0, 4)
    with pytest.raises(ValueError, match="4-D"):
        sk.incremental(nn.Identity(), torch.zeros(3, 4, 4))
