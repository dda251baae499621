"""Training memory: peak activation memory of one training step of an SPN against the same network with
s = 1 (one slice: a plain full-image PixelCNN of the same depth and width) — the subscale saving.

Two measurements per configuration, each in a fresh subprocess so allocations cannot leak between them:
- saved activations: the bytes autograd keeps for the backward pass (every distinct storage seen by a
  saved-tensor hook during the forward), exact and device independent;
- peak RSS growth on CPU (VmHWM after the step minus VmRSS before it), or torch.cuda.max_memory_allocated
  minus the memory allocated before the step on a GPU.
One slice per image per step (slices_per_step=1), as SPN trains.

    python -m benchmarks.memory [--quick] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch

# (image_size, subscale) pairs, each compared with subscale = 1 at the same image size
CASES = [(64, 4), (64, 8), (128, 4), (128, 8)]
NET = dict(channels=3, bits=8, context_channels=32, context_blocks=2, decoder_channels=32, decoder_blocks=4)


def _kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(image_size: int, subscale: int, batch: int, device: str) -> dict:
    """Runs in the child process: one training step, returns its memory figures in MiB."""
    from spn import SPN, SPNConfig

    torch.manual_seed(0)
    model = SPN(SPNConfig(image_size=image_size, subscale=subscale, **NET)).to(device)
    x = torch.randint(0, 256, (batch, 3, image_size, image_size), device=device)
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _kib("VmRSS") * 1024
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model.loss(x, slices_per_step=1)
    loss.backward()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = _kib("VmHWM") * 1024 - before
    return {"saved_mib": sum(saved.values()) / 2**20, "peak_mib": max(peak, 0) / 2**20}


def rows(quick: bool = False, device: str = "cpu", batch: int = 8) -> list[dict]:
    out = []
    for image_size, s in CASES[:1] if quick else CASES:
        res = {}
        for sub in (1, s):
            cmd = [sys.executable, "-m", "benchmarks.memory", "--child", f"{image_size},{sub},{batch},{device}"]
            res[sub] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        out.append(
            {
                "what": "training memory",
                "shape": f"{image_size}x{image_size} B={batch} {device}",
                "s": s,
                "s1_saved_mib": res[1]["saved_mib"],
                "s_saved_mib": res[s]["saved_mib"],
                "saved_ratio": res[s]["saved_mib"] / res[1]["saved_mib"],
                "s1_peak_mib": res[1]["peak_mib"],
                "s_peak_mib": res[s]["peak_mib"],
                "peak_ratio": res[s]["peak_mib"] / max(res[1]["peak_mib"], 1e-9),
            }
        )
    return out


def table(rs: list[dict]) -> str:
    lines = [
        "| image | s | saved act. s=1 MiB | saved act. s MiB | ratio | peak s=1 MiB | peak s MiB | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rs:
        lines.append(
            f"| {r['shape']} | {r['s']} | {r['s1_saved_mib']:.1f} | {r['s_saved_mib']:.1f} | {r['saved_ratio']:.3f} | "
            f"{r['s1_peak_mib']:.1f} | {r['s_peak_mib']:.1f} | {r['peak_ratio']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="only 64x64, s=4")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        n, s, b, dev = args.child.split(",")
        print(json.dumps(measure(int(n), int(s), int(b), dev)))
        return
    print(table(rows(args.quick, args.device, args.batch)))


if __name__ == "__main__":
    main()
