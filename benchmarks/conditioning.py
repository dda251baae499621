"""What conditioning costs: a class-conditional model with a conditioning map against the same model without, for
cached sampling and for a training step (CPU).

    python -m benchmarks.conditioning                 # cpu_demo's networks, labels (10 classes) + a 4-channel map
    python -m benchmarks.conditioning --repeats 3     # fewer alternating repeats

The two models differ only in SPNConfig(classes=10, cond_channels=4): the label embedding and the map are extra
channels of the context network's input and of the decoder's conditioning map, projected once per slice, so the
per-sub-pixel step is the same size. Both are timed alternately in one process, median of the repeats; the ratio
is conditional / unconditional. Subnormal floats are flushed, as the ``spn`` command does.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from spn import SPN
from spn.configs import PRESETS


def models() -> tuple[SPN, SPN]:
    cfg = PRESETS["cpu_demo"].stages[0]
    torch.manual_seed(0)
    plain = SPN(cfg)
    torch.manual_seed(0)
    cond = SPN(dataclasses.replace(cfg, classes=10, cond_channels=4))
    return plain, cond


def inputs(model: SPN, batch: int) -> dict:
    cfg = model.config
    if not cfg.classes:
        return {}
    g = torch.Generator().manual_seed(0)
    N = cfg.image_size
    cond = torch.randn(batch, cfg.cond_channels, N, N, generator=g)
    return {"labels": torch.arange(batch) % cfg.classes, "cond": cond}


def time_sample(model: SPN, batch: int) -> float:
    kw = inputs(model, batch)
    t0 = time.perf_counter()
    model.sample(batch, generator=torch.Generator().manual_seed(0), **kw)
    return time.perf_counter() - t0


def time_step(model: SPN, batch: int) -> float:
    cfg = model.config
    x = torch.randint(0, 2**cfg.bits, (batch, cfg.channels, cfg.image_size, cfg.image_size))
    kw = inputs(model, batch)
    t0 = time.perf_counter()
    model.loss(x, slices_per_step=1, **kw).backward()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--sample-batch", type=int, default=4)
    p.add_argument("--train-batch", type=int, default=16)
    a = p.parse_args()
    torch.set_flush_denormal(True)
    plain, cond = models()
    print(f"parameters: unconditional {sum(q.numel() for q in plain.parameters()):,}, "
          f"conditional {sum(q.numel() for q in cond.parameters()):,}")  # fmt: skip
    rows = (("cached sample", time_sample, a.sample_batch), ("training step", time_step, a.train_batch))
    for name, fn, batch in rows:
        for m in (plain, cond):  # warm-up
            m.train(fn is time_step)
            fn(m, batch)
        ts: dict[str, list[float]] = {"unconditional": [], "conditional": []}
        for _ in range(a.repeats):
            for key, m in (("unconditional", plain), ("conditional", cond)):
                m.train(fn is time_step)
                ts[key].append(fn(m, batch))
        med = {k: statistics.median(v) for k, v in ts.items()}
        print(f"{name} (batch {batch}): unconditional {med['unconditional'] * 1e3:.1f} ms, conditional "
              f"{med['conditional'] * 1e3:.1f} ms, ratio {med['conditional'] / med['unconditional']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
