"""spn in existing PixelCNN code: the swap-in training step against the code's own masked convolution, and
sk.incremental sampling against re-running the model per pixel.

    python -m benchmarks.dropin            # the reference settings
    python -m benchmarks.dropin --quick    # fewer repeats

The models are the two client styles of tests/dropin/clients.py: a 7x7 A/B stack with BatchNorm + ReLU
(an nn.Conv2d subclass with a `mask` buffer) and a gated PixelCNN with (k//2+1, k) / (1, k) kernels and
interleaved RGB colour groups. Every pair is timed interleaved in one process (alternating repeats, median),
so the ratios hold under a shared machine's load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

import spn_kernels as sk
from tests.dropin.clients import (
    GatedMaskedConv2d,
    GatedNet,
    StackMaskedConv2d,
    StackNet,
    gated_spn_conv,
    stack_spn_conv,
)


def _train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, target: torch.Tensor) -> None:
    logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits, target)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _interleaved(fns: dict, repeats: int) -> dict:
    """Median seconds of each callable, timed in alternation (one warm-up call each first)."""
    for f in fns.values():
        f()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def training_rows(repeats: int) -> list[dict]:
    torch.manual_seed(0)
    rows = []
    cases = [
        ("7x7 A/B stack, 5 x 32 ch, BN+ReLU, [16, 1, 28, 28]", StackNet, StackMaskedConv2d, stack_spn_conv,
         dict(channels=32, layers=5), (16, 1, 28, 28), 256),
        ("gated, 3 blocks x 30 ch, k=5, RGB interleaved, [16, 3, 16, 16]", GatedNet, GatedMaskedConv2d,
         gated_spn_conv, dict(dim=30, blocks=3, k=5, levels=16), (16, 3, 16, 16), 16),
    ]  # fmt: skip
    for name, Net, theirs, ours, kw, shape, levels in cases:
        orig, swapped = Net(theirs, **kw), Net(ours, **kw)
        swapped.load_state_dict(orig.state_dict())
        x = torch.rand(shape)
        B, C, H, W = shape
        target = torch.randint(0, levels, (B, H, W) if C == 1 else (B, C, H, W))
        opts = {k: torch.optim.SGD(m.parameters(), lr=1e-3) for k, m in (("orig", orig), ("spn", swapped))}
        t = _interleaved(
            {
                "orig": lambda: _train_step(orig, opts["orig"], x, target),
                "spn": lambda: _train_step(swapped, opts["spn"], x, target),
            },
            repeats,
        )
        rows.append(dict(model=name, orig_ms=t["orig"] * 1e3, spn_ms=t["spn"] * 1e3, ratio=t["spn"] / t["orig"]))
    return rows


def _walk(inc: sk.Incremental, x: torch.Tensor) -> None:
    """One whole incremental pass: step and write every pixel (channel by channel for C > 1)."""
    inc.reset()
    _, C, H, W = x.shape
    for r in range(H):
        for c in range(W):
            if C == 1:
                inc.step(r, c)
                inc.write(x[:, :, r, c], r, c)
            else:
                for ch in range(C):
                    inc.step(r, c)
                    inc.write(x[:, ch, r, c], r, c, channel=ch)


@torch.no_grad()
def sampling_rows(repeats: int) -> list[dict]:
    torch.manual_seed(0)
    rows = []
    cases = [
        ("7x7 A/B stack, 5 x 32 ch, BN+ReLU, [16, 1, 28, 28]", StackNet(stack_spn_conv, channels=32, layers=5),
         (16, 1, 28, 28)),
        ("gated, 3 blocks x 30 ch, k=5, RGB interleaved, [16, 3, 16, 16]",
         GatedNet(gated_spn_conv, dim=30, blocks=3, k=5, levels=16), (16, 3, 16, 16)),
    ]  # fmt: skip
    for name, model, shape in cases:
        model.eval()
        x = torch.rand(shape)
        inc = sk.incremental(model, torch.zeros(shape))
        B, C, H, W = shape
        t = _interleaved({"naive": lambda: model(x), "walk": lambda: _walk(inc, x)}, repeats)
        per_step = t["walk"] / (H * W * C)  # naive: one full forward per sub-pixel
        rows.append(
            dict(model=name, forward_ms=t["naive"] * 1e3, step_ms=per_step * 1e3, speedup=t["naive"] / per_step)
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    args = ap.parse_args()
    repeats = 3 if args.quick else 11
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), load {os.getloadavg()[0]:.2f}")
    print("\n| training step | original ms | spn ms | spn / original |\n|---|---|---|---|")
    for r in training_rows(repeats):
        print(f"| {r['model']} | {r['orig_ms']:.1f} | {r['spn_ms']:.1f} | {r['ratio']:.2f}x |")
    print("\n| sampling | full forward ms (naive, per sub-pixel) | sk.incremental ms per sub-pixel | speed-up |")
    print("|---|---|---|---|")
    for r in sampling_rows(max(repeats // 2, 2)):
        print(f"| {r['model']} | {r['forward_ms']:.2f} | {r['step_ms']:.3f} | {r['speedup']:.0f}x |")
    print(f"load at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
