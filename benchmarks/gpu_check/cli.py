"""The command line of gpu_check: which cases, where the results go, the budget."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys

import torch

from . import model_checks, ops, timings
from .harness import Case, failed, run_cases


def default_cases(device: torch.device, tiny: bool, with_timings: bool) -> list[Case]:
    cases = ops.cases(device, tiny) + model_checks.cases(device, tiny)
    if with_timings and device.type == "cuda" and not tiny:
        cases += timings.cases(device)
    return cases


def machine(device: torch.device) -> dict:
    info = {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform()}
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        pass
    info["device"] = str(device)
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cuda_cpp_ops"] = sorted(ops.cuda_cpp_ops())
    try:
        git = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        info["commit"] = git.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_check", description="spn kernels and model on the GPU against the references"
    )
    ap.add_argument("--tiny", action="store_true", help="checks only, tiny sizes (CPU: the Triton interpreter)")
    ap.add_argument("--out", default=os.path.join("bench-results", "gpu_check"), help="folder for the results")
    ap.add_argument("--budget", type=float, default=None, help="seconds: skip the cases that no longer fit")
    ap.add_argument("--kind", choices=("check", "timing"), help="run only the checks or only the timings")
    ap.add_argument("--only", action="append", default=[], help="run only cases whose name contains this (repeatable)")
    ap.add_argument("--list", action="store_true", help="print the cases in run order with their estimates and exit")
    return ap


def main(argv=None, cases: list[Case] | None = None) -> int:
    """Runs the default cases (or `cases`); exit status 1 if a check failed or any case raised."""
    args = parser().parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        print("no GPU: run with --tiny and TRITON_INTERPRET=1 (the Triton interpreter on CPU)", file=sys.stderr)
        return 2
    if cases is None:
        cases = default_cases(device, args.tiny, args.kind != "check")
    if args.kind:
        cases = [c for c in cases if c.kind == args.kind]
    if args.only:
        cases = [c for c in cases if any(s in c.name for s in args.only)]
    if args.list:
        for c in sorted(cases, key=lambda c: (c.tier, c.cost_s)):
            print(f"tier {c.tier}  ~{c.cost_s:5.1f} s  {c.kind:<6}  {c.name}")
        print(f"{len(cases)} cases, ~{sum(c.cost_s for c in cases):.0f} s estimated")
        return 0
    records = run_cases(cases, args.out, device, args.budget, machine(device))
    print(f"results: {os.path.join(args.out, 'gpu_check.jsonl')}, {os.path.join(args.out, 'gpu_check.md')}")
    return 1 if failed(records) else 0
