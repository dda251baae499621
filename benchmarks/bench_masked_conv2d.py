"""masked_conv2d on every backend (pytest-benchmark: [16, 128, 32, 32] float32, a 5 x 5 kernel, mask "B"), and,
run as a script, the C++ CPU kernel's forward+backward against F.conv2d side by side:

    OMP_NUM_THREADS=1 taskset -c 1 python -m benchmarks.bench_masked_conv2d [--quick] [--tune-malloc]

Rows:
- (1, k) centre rows, batch 16, 32 -> 32 channels, 28 x 28: against nn.Conv2d on the same (1, k) kernel
  (F.conv2d, padding (0, k // 2), unmasked: the cost a gated PixelCNN's horizontal stack pays today);
- every preset's masked-convolution shapes (spn/configs.py; the demo's is cpu_demo): against F.conv2d with the
  masked weight (w * mask, padding k // 2), the reference's own path.
Each row times the candidates interleaved (one call of each per round, many rounds) in one process and reports
medians, so a change of machine load hits every candidate alike. The ratio column is spn / F.conv2d.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

import spn_kernels as sk
from spn_kernels.ops.masked_conv2d.ref import square_weight


def test_masked_conv2d(bench, backend, device, gen):
    h = torch.randn(16, 128, 32, 32, device=device, generator=gen)
    w = torch.randn(128, 128, 5, 5, device=device, generator=gen) / 100
    bench("masked_conv2d", lambda: sk.masked_conv2d(h, w, None, "B", backend=backend))


# ------------------------------------------------------------------------------------------------ script
def _fwd_bwd(f, x, w, b, gy):
    """One forward + backward through autograd (grads for x, w and b, as in training)."""

    def run():
        for t in (x, w, b):
            t.grad = None
        f(x, w, b).backward(gy)

    return run


def _interleaved(fns: dict, rounds: int, inner: int) -> dict:
    """Median ms per call of each fn, timed round-robin."""
    for fn in fns.values():
        fn()
        fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            times[name].append((time.perf_counter() - t0) / inner * 1e3)
    return {name: statistics.median(v) for name, v in times.items()}


def _inputs(B, ci, co, n, kh, kw, gen):
    x = torch.randn(B, ci, n, n, generator=gen).requires_grad_()
    w = (torch.randn(co, ci, kh, kw, generator=gen) / (ci * kw) ** 0.5).requires_grad_()
    b = torch.randn(co, generator=gen).requires_grad_()
    gy = torch.randn(B, co, n, n, generator=gen)
    return x, w, b, gy


ROWS = [(f"(1,{k}) row", 16, 32, 32, 28, (1, k), mt) for k in (7, 3) for mt in ("A", "B")]
ROW_LABELS = {r[0] for r in ROWS}


def row_shapes() -> list[tuple]:
    """(label, B, C_in, C_out, n, (kh, kw), mask_type): the (1, k) rows of a gated PixelCNN."""
    return ROWS


def preset_shapes(quick: bool) -> list[tuple]:
    """(label, B, C_in, C_out, n, (kh, kw), mask_type) of every preset's masked convolutions (read off the
    models built on the meta device), deduplicated. Batch 32 for the CPU presets (the demo's), 4 for the
    paper-scale ones (one CPU core)."""
    from spn import configs
    from spn.model import SPN

    seen, out = set(), []
    for name, preset in configs.PRESETS.items():
        for cfg in preset.stages:
            with torch.device("meta"):
                model = SPN(cfg)
            n = cfg.image_size // cfg.subscale
            batch = 32 if name.startswith("cpu") else 4
            if quick and not name.startswith("cpu"):
                continue
            for m in model.modules():
                if isinstance(m, sk.MaskedConv2d):
                    key = (batch, m.in_channels, m.out_channels, n, tuple(m.kernel_size), m.mask_type)
                    if key not in seen:
                        seen.add(key)
                        out.append((name, *key))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="CPU presets only, fewer rounds")
    ap.add_argument("--tune-malloc", action="store_true", help="the allocator settings `spn train` uses")
    args = ap.parse_args()
    if args.tune_malloc:
        from spn.runtime import tune_malloc

        print(f"tune_malloc: {tune_malloc()}")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    gen = torch.Generator().manual_seed(0)
    rounds, budget_ms = (7, 20) if args.quick else (21, 60)
    print(f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f} at start")
    print("| shape | B | C_in -> C_out | n | kernel | mask | spn cpu ms | F.conv2d ms | spn / F.conv2d |")
    print("|---|---|---|---|---|---|---|---|---|")
    worst = 0.0
    for label, B, ci, co, n, (kh, kw), mt in row_shapes() + preset_shapes(args.quick):
        x, w, b, gy = _inputs(B, ci, co, n, kh, kw, gen)
        p = kw // 2
        if label in ROW_LABELS:

            def base(x, w, b):
                return F.conv2d(x, w, b, padding=(0, p))  # nn.Conv2d on the same (1, k) kernel
        else:
            mask = sk.conv_mask(co, ci, (kh, kw), mt)

            def base(x, w, b, mask=mask):
                return F.conv2d(x, square_weight(w * mask), b, padding=p)

        fns = {
            "spn": _fwd_bwd(lambda x, w, b: sk.masked_conv2d(x, w, b, mt, backend="cpu"), x, w, b, gy),
            "F.conv2d": _fwd_bwd(base, x, w, b, gy),
        }
        t0 = time.perf_counter()
        fns["F.conv2d"]()
        once_ms = (time.perf_counter() - t0) * 1e3
        inner = max(1, int(budget_ms / max(once_ms, 1e-3)))
        # the paper-scale rows take 0.1-1 s a call: fewer rounds keep the run to minutes
        t = _interleaved(fns, rounds if once_ms < 50 else 5, inner)
        ratio = t["spn"] / t["F.conv2d"]
        worst = max(worst, ratio)
        kern = f"({kh},{kw})"
        print(
            f"| {label} | {B} | {ci} -> {co} | {n} | {kern} | {mt} | {t['spn']:.3f} | {t['F.conv2d']:.3f} "
            f"| {ratio:.2f} |",
            flush=True,
        )
    print(f"worst ratio {worst:.2f}; load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
