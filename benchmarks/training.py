"""Training throughput: one optimizer step (forward + backward + AdamW) of the kernel-backed SPN against the
same model with backend="torch" (pure-PyTorch references), timed side by side in one run.

    python -m benchmarks.training            # the CPU preset `cpu_demo`, batch 16
    python -m benchmarks.training --quick    # fewer rounds
    python -m benchmarks.training --preset cpu_demo,cpu_tiny,demo-recipe --batch 32   # one row per model
    python -m benchmarks.training --preset cpu_pipeline --batch 32   # one row per stage of a pipeline

"demo-recipe" is the model `spn demo` trains (spn.demo.RECIPE: cpu_demo with its overrides).

On a GPU, `benchmarks.gpu_check` calls `rows(device="cuda", ...)` with ImageNet-32/64-like presets in bf16.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses

import torch

from benchmarks.cpu_kernels import time_side_by_side
from spn import SPN, configs


def _stepper(model: SPN, x: torch.Tensor, slices_per_step: int | None, autocast: torch.dtype | None):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    dev = x.device.type

    def step():
        with torch.autocast(dev, dtype=autocast, enabled=autocast is not None):
            loss = model.loss(x, slices_per_step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev == "cuda":
            torch.cuda.synchronize()
        return loss

    return step


def rows(
    preset: str = "cpu_demo",
    batch: int = 16,
    slices_per_step: int | None = 1,
    device: str = "cpu",
    autocast: torch.dtype | None = None,
    rounds: int = 7,
    **overrides,
) -> list[dict]:
    """ms/step and images/s of backend=None (the kernels) and backend="torch", with identical weights/data: one
    row, or one per stage of a pipeline preset (labelled preset[stage])."""
    if preset == "demo-recipe":
        from spn.demo import RECIPE

        cfg = dataclasses.replace(RECIPE.model_config(), **overrides)
    else:
        cfg = configs.get(preset, **overrides)
    if isinstance(cfg, list):
        return [
            r
            for i, stage in enumerate(cfg)
            for r in _rows(f"{preset}[{i}]", stage, batch, slices_per_step, device, autocast, rounds)
        ]
    return _rows(preset, cfg, batch, slices_per_step, device, autocast, rounds)


def _rows(preset, cfg, batch, slices_per_step, device, autocast, rounds) -> list[dict]:
    torch.manual_seed(0)
    fast = SPN(dataclasses.replace(cfg, backend=None)).to(device)
    ref = SPN(dataclasses.replace(cfg, backend="torch")).to(device)
    ref.load_state_dict(copy.deepcopy(fast.state_dict()))
    x = torch.randint(0, 2**cfg.bits, (batch, cfg.channels, cfg.image_size, cfg.image_size), device=device)
    t = time_side_by_side(
        {"ref": _stepper(ref, x, slices_per_step, autocast), "kernels": _stepper(fast, x, slices_per_step, autocast)},
        rounds,
    )
    shape = f"{preset} B={batch} slices/step={slices_per_step or 'all'} {device}" + (
        f" autocast={str(autocast).replace('torch.', '')}" if autocast else ""
    )
    return [
        {
            "what": "training step",
            "shape": shape,
            "ref_ms": t["ref"],
            "kernels_ms": t["kernels"],
            "ratio": t["kernels"] / t["ref"],
            "ref_img_s": batch / t["ref"] * 1e3,
            "kernels_img_s": batch / t["kernels"] * 1e3,
        }
    ]


def table(rs: list[dict]) -> str:
    lines = [
        "| model | backend=torch ms/step | kernels ms/step | ratio | torch img/s | kernels img/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rs:
        lines.append(
            f"| {r['shape']} | {r['ref_ms']:.1f} | {r['kernels_ms']:.1f} | {r['ratio']:.2f} | "
            f"{r['ref_img_s']:.1f} | {r['kernels_img_s']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer timing rounds")
    ap.add_argument("--preset", default="cpu_demo", help="comma-separated preset names (spn.configs) or demo-recipe")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tune-malloc", action="store_true", help="the allocator settings `spn train` uses")
    args = ap.parse_args()
    import os

    if args.tune_malloc:
        from spn.runtime import tune_malloc

        print(f"tune_malloc: {tune_malloc()}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), load {os.getloadavg()[0]:.2f}")
    rs = [r for p in args.preset.split(",") for r in rows(p.strip(), args.batch, rounds=3 if args.quick else 7)]
    print(table(rs))
    print(f"load at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
