"""The benchmark harness: every section side by side in one process, markdown tables, JSON, plots.

    python -m benchmarks.run            # everything (about a minute on 2 quiet CPU cores)
    python -m benchmarks.run --quick    # one shape per kernel, small rounds (under 5 minutes)
    python -m benchmarks.run --only kernels,training

Sections: kernels (every op on every backend present: torch reference and C++ CPU; on a machine with a
GPU also Triton and CUDA C++ against the torch references, through benchmarks.gpu_check's timing cases),
training (kernel-backed SPN vs backend="torch"), sampling (cached vs naive), memory (subscale saving).
Results (JSON and plots) go to an untracked folder, bench-results/ (or --out-dir); only --record writes the
committed benchmarks/results.json and benchmarks/*.png. benchmarks/RESULTS.md records the tables with machine,
date and commit.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import subprocess
import time

import torch

SECTIONS = ("kernels", "training", "sampling", "memory")


def machine() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "?"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "date": datetime.date.today().isoformat(),
        "commit": commit,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def kernel_plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['op']}\n{r['shape']}" for r in rows]
    speedup = [r["ref_ms"] / r["cpp_ms"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.5))
    ax.barh(range(len(rows)), speedup, color=["tab:green" if s >= 1 else "tab:red" for s in speedup])
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(range(len(rows)), labels, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up of the C++ kernel over the PyTorch reference (x)")
    ax.set_title("spn C++ CPU kernels")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def memory_plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = sorted({int(r["shape"].split("x")[0]) for r in rows})
    s1 = {int(r["shape"].split("x")[0]): r["s1_saved_mib"] for r in rows}
    ax.plot(sizes, [s1[n] for n in sizes], "o-", label="s = 1 (full-image PixelCNN)")
    for s in sorted({r["s"] for r in rows}):
        pts = [(int(r["shape"].split("x")[0]), r["s_saved_mib"]) for r in rows if r["s"] == s]
        ax.plot(*zip(*pts), "o-", label=f"s = {s} (one slice per step)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("image size N (N x N x 3)")
    ax.set_ylabel("activations saved for backward (MiB)")
    ax.set_title("Training memory of one step, same network")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small shapes and few rounds (under 5 minutes)")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}")
    ap.add_argument("--out-dir", default="bench-results", help="folder for results.json and the plots (untracked)")
    ap.add_argument("--out", default=None, help="JSON output path (default: OUT_DIR/results.json)")
    ap.add_argument(
        "--record", action="store_true", help="write the committed benchmarks/results.json and benchmarks/*.png"
    )
    ap.add_argument("--no-plots", action="store_true", help="skip the PNG plots (no matplotlib needed)")
    args = ap.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    plots = not args.no_plots and not args.quick
    out_dir = "benchmarks" if args.record else args.out_dir
    os.makedirs(out_dir, exist_ok=True)
    json_path = args.out or os.path.join(out_dir, "results.json")
    info = machine()
    print(f"# spn benchmarks  {info}\n")
    results: dict = {"machine": info, "quick": args.quick}
    t0 = time.perf_counter()
    if "kernels" in only:
        from benchmarks import cpu_kernels

        rs = cpu_kernels.rows(quick=args.quick)
        results["kernels"] = rs
        print("## Kernels (C++ CPU vs PyTorch reference)\n\n" + cpu_kernels.format_table(rs) + "\n")
        if plots:
            kernel_plot(rs, os.path.join(out_dir, "kernel_speedup.png"))
        if torch.cuda.is_available():
            # the GPU backends (Triton, CUDA C++) against the torch references, in this same process
            from benchmarks import gpu_check

            dev = torch.device("cuda")
            cases = (gpu_check.time_conv, gpu_check.time_slices, gpu_check.time_step)
            gpu = [r for fn in cases for r in fn(dev, False)]
            results["gpu_kernels"] = [dataclasses.asdict(r) for r in gpu]
            print("## Kernels on the GPU (median us per call)\n")
            print("| case | providers | metric | value |\n|---|---|---|---:|")
            for r in gpu:
                prov = ", ".join(f"{k} {v:.1f}" for k, v in r.times_us.items())
                print(f"| {r.name} | {prov} | {r.metric} | {r.value:.2f} |")
            print()
    if "training" in only:
        from benchmarks import training

        rs = training.rows(rounds=3 if args.quick else 7)
        results["training"] = rs
        print("## Training step\n\n" + training.table(rs) + "\n")
    if "sampling" in only:
        from benchmarks import sampling

        if args.quick:
            rs = sampling.rows(sizes=(16,), batch=4)
        else:
            by_size = sampling.rows(sizes=(16, 32, 64), batch=4)
            rs = by_size + [r for b in (1, 16) for r in sampling.rows(sizes=(32,), batch=b)]
            if plots:
                sampling.plot(by_size, os.path.join(out_dir, "sampling_vs_size.png"))
        results["sampling"] = rs
        print("## Sampling (cached vs naive)\n\n" + sampling.table(rs) + "\n")
    if "memory" in only:
        from benchmarks import memory

        rs = memory.rows(quick=args.quick)
        results["memory"] = rs
        print("## Training memory (subscale saving)\n\n" + memory.table(rs) + "\n")
        if plots:
            memory_plot(rs, os.path.join(out_dir, "memory_vs_size.png"))
    results["seconds"] = time.perf_counter() - t0
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with open(json_path, "w") as f:
        json.dump(results, f, indent=1)
    print(f"wrote {json_path} ({results['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
