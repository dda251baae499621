"""What the C++ masked_conv2d kernel's finiteness checks cost: one sum of x (forward) and one of grad_out
(backward) decide whether the fast convolutions may run (a non-finite value takes the exact path,
csrc/masked_conv2d/cpu.cpp). Timed interleaved in one process against the whole forward + backward, on the
masked convolutions of the CPU presets:

    OMP_NUM_THREADS=1 taskset -c 1 python -m benchmarks.nonfinite_check

Columns: the op's forward + backward (checks included), the two sums alone, and their share. Also the same
check written as isfinite(x).all(), the obvious alternative.
"""

from __future__ import annotations

import os

import torch

import spn_kernels as sk

from .bench_masked_conv2d import _fwd_bwd, _inputs, _interleaved, preset_shapes


def _sums(x, gy):
    def run():
        torch.isfinite(x.sum(dtype=torch.float32)).item()
        torch.isfinite(gy.sum(dtype=torch.float32)).item()

    return run


def _alls(x, gy):
    def run():
        torch.isfinite(x).all().item()
        torch.isfinite(gy).all().item()

    return run


def main() -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    gen = torch.Generator().manual_seed(0)
    print(f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f} at start")
    print("| shape | B | C_in -> C_out | n | kernel | mask | fwd+bwd ms | 2 sums ms | share | 2 isfinite.all ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, B, ci, co, n, (kh, kw), mt in preset_shapes(quick=True):
        x, w, b, gy = _inputs(B, ci, co, n, kh, kw, gen)
        xd = x.detach()
        fns = {
            "op": _fwd_bwd(lambda x, w, b: sk.masked_conv2d(x, w, b, mt, backend="cpu"), x, w, b, gy),
            "sums": _sums(xd, gy),
            "alls": _alls(xd, gy),
        }
        t = _interleaved(fns, 21, 20)
        print(f"| {label} | {B} | {ci} -> {co} | {n} | ({kh},{kw}) | {mt} | {t['op']:.3f} | {t['sums']:.4f} "
              f"| {100 * t['sums'] / t['op']:.1f}% | {t['alls']:.4f} |")  # fmt: skip
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
