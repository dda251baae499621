"""`spn train --compile` against eager: the trainer's own step (forward, backward, clipping, AdamW, EMA, the
non-finite check) of two Trainers with identical weights and data, one compiled (one whole graph), timed
interleaved in one process after warm-up.

    python -m benchmarks.train_compile                         # cpu_demo, batch 32, one slice per image (the demo's)
    python -m benchmarks.train_compile --slices-per-step 0     # every slice per step (spn train's default)
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time

import torch

from spn import configs
from spn.train import TrainArgs
from spn.trainer import Trainer


class _Images(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor):
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


def rows(
    preset: str = "cpu_demo",
    batch: int = 32,
    slices_per_step: int | None = 1,
    rounds: int = 15,
    inner: int = 3,
    warmup: int = 3,
) -> dict:
    torch.manual_seed(0)
    model = configs.build(preset)
    cfg = model.config
    data = torch.randint(0, 256, (batch, cfg.channels, cfg.image_size, cfg.image_size), dtype=torch.uint8)
    trainers = {}
    t_first = {}
    with tempfile.TemporaryDirectory() as out:
        for name, comp in (("eager", False), ("compile", True)):
            args = TrainArgs(
                out_dir=f"{out}/{name}",
                batch_size=batch,
                slices_per_step=slices_per_step,
                compile=comp,
                progress=False,
                device="cpu",
            )
            trainers[name] = Trainer(copy.deepcopy(model), _Images(data), None, args, log=lambda s: None)
        for name, t in trainers.items():  # the first step compiles
            t0 = time.perf_counter()
            t.step(data)
            t_first[name] = time.perf_counter() - t0
            for _ in range(warmup):
                t.step(data)
        ms = {name: [] for name in trainers}
        for _ in range(rounds):
            for name, t in trainers.items():
                t0 = time.perf_counter()
                for _ in range(inner):
                    t.step(data)
                ms[name].append((time.perf_counter() - t0) * 1e3 / inner)
    med = {name: statistics.median(v) for name, v in ms.items()}
    return {
        "preset": preset,
        "batch": batch,
        "slices_per_step": slices_per_step,
        "threads": torch.get_num_threads(),
        "first_step_s": t_first,
        "ms_per_step": med,
        "steps_per_s": {name: 1e3 / v for name, v in med.items()},
        "compile_over_eager": med["compile"] / med["eager"],
        "rounds": rounds,
        "inner": inner,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu_demo")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--slices-per-step", type=int, default=1, help="0: every slice")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--inner", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    r = rows(args.preset, args.batch, args.slices_per_step or None, args.rounds, args.inner)
    sps = r["slices_per_step"] or "all"
    print(
        f"{r['preset']} B={r['batch']} slices/step={sps} threads={r['threads']} "
        f"({r['rounds']}x{r['inner']} steps, median)"
    )
    for name in ("eager", "compile"):
        print(
            f"  {name:<8} {r['ms_per_step'][name]:8.1f} ms/step  {r['steps_per_s'][name]:6.2f} steps/s  "
            f"first step {r['first_step_s'][name]:.1f} s"
        )
    print(f"  compile / eager: {r['compile_over_eager']:.3f}")


if __name__ == "__main__":
    main()
