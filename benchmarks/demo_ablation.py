"""Ablation of the `spn demo` recipe: each run is a whole demo (same budget, data and evaluation) with one recipe.

    python -m benchmarks.demo_ablation --list
    python -m benchmarks.demo_ablation --runs categorical,logistic,logistic-aug --budget 300

Runs one after another in this process (never two at once: they would share the cores) and prints a markdown
table: held-out bits/dim of the embedded set's test crops, the mean and worst crop of each unseen photograph (see
spn.demo.unseen_photos), steps trained, and the load average around each run. PNG and lossless WebP on the same
crops are printed once. Each run's results.json is kept under --out.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import time
from pathlib import Path

from spn.demo import Recipe, run_demo

# A run is named by "+"-joined tokens, each changing one thing from Recipe()'s field defaults (preset cpu_demo as it
# is: categorical head, s=4; lr 1e-2, batch 32, no augmentation):
#   categorical | logistic      output head              s1 s2 s4      subscale (slices of 32/s pixels)
#   lr3e-3                      learning rate            b16           batch size
#   warm300                     warm-up steps            slices2       slices per image per step
#   drop0.1                     dropout                  wd0.1         weight decay
#   wide48                      every width = 48         deep5         decoder blocks
#   ctx3                        context blocks           k5            masked-conv kernel size
#   mix5                        mixture components       ema0.999      EMA decay
#   hflip                       horizontal flips         crop2         random-resized crops up to 2x the size
#   perm                        random channel orders    inv           invert half the crops
#   jit0.5                      colour jitter 0.5
# e.g. "logistic+s2+lr3e-3+b16". A few named runs are kept for the recorded tables.
RUNS: dict[str, str] = {
    "categorical": "categorical",
    "categorical-aug": "categorical+hflip+crop2",
    "logistic": "logistic",
    "logistic-aug": "logistic+hflip+crop2",
    "logistic-lr3e-3": "logistic+lr3e-3",
    "logistic-aug-lr3e-3": "logistic+lr3e-3+hflip+crop2",
}
_CONFIG_TOKENS = {"s": "subscale", "deep": "decoder_blocks", "ctx": "context_blocks", "k": "kernel_size",
                  "mix": "mixtures", "drop": "dropout"}  # fmt: skip
_RECIPE_TOKENS = {"lr": ("lr", float), "b": ("batch_size", int), "warm": ("warmup", int),
                  "slices": ("slices_per_step", int), "wd": ("weight_decay", float), "ema": ("ema_decay", float),
                  "crop": ("crop_scale", float), "jit": ("color_jitter", float)}  # fmt: skip


def parse_run(name: str) -> Recipe:
    """The Recipe a run name describes (see the token table above); ValueError for an unknown token."""
    import re

    config: dict = {}
    fields: dict = {}
    for tok in RUNS.get(name, name).split("+"):
        m = re.fullmatch(r"([a-z]+)([0-9.e-]*)", tok)
        key, val = (m.group(1), m.group(2)) if m else (tok, "")
        if tok in ("categorical", "logistic"):
            config["output"] = "logistic_mixture" if tok == "logistic" else "categorical"
        elif tok in ("hflip", "perm", "inv"):
            fields[{"hflip": "hflip", "perm": "channel_perm", "inv": "invert"}[tok]] = True
        elif key == "wide" and val:
            config.update(decoder_channels=int(val), context_channels=int(val), head_channels=int(val))
        elif key in _CONFIG_TOKENS and val:
            config[_CONFIG_TOKENS[key]] = float(val) if key == "drop" else int(val)
        elif key in _RECIPE_TOKENS and val:
            field, cast = _RECIPE_TOKENS[key]
            fields[field] = cast(val)
        else:
            raise ValueError(f"run {name!r}: unknown token {tok!r} (see --list)")
    return Recipe(config=tuple(sorted(config.items())), **fields)


def one_run(name: str, recipe: Recipe, budget: float, out: Path, seed: int) -> dict:
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the demo's own report; its results.json is kept
        run_demo(out=str(out / name), time_budget=budget, seed=seed, recipe=recipe)
    r = json.loads((out / name / "results.json").read_text())
    r["load_before"], r["load_after"], r["wall"] = load0, os.getloadavg()[0], time.perf_counter() - t0
    return r


def row(name: str, recipe: Recipe, r: dict) -> str:
    unseen = "; ".join(f"{k.split(' ')[0]} {v['spn']:.2f} (max {v['spn_max']:.2f})" for k, v in r["unseen"].items())
    changes = {k: v for k, v in dataclasses.asdict(recipe).items() if v != getattr(Recipe(), k) and k != "config"}
    desc = ", ".join([f"{k}={v}" for k, v in recipe.config] + [f"{k}={v}" for k, v in changes.items()]) or "-"
    return (
        f"| {name} | {desc} | {r['bits_per_dim']['spn']:.3f} ± {r['ci95']['spn']:.3f} | {unseen} | {r['steps']} | "
        f"{r['load_before']:.1f} / {r['load_after']:.1f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="categorical,logistic,logistic-aug", help="comma-separated names (--list)")
    ap.add_argument("--budget", type=float, default=300.0, help="training seconds per run (the demo's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench-results/demo-ablation", help="folder for each run's outputs")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    ap.add_argument("--list", action="store_true", help="list the runs and exit")
    a = ap.parse_args()
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    if a.list:
        print(__doc__)
        for name, spec in RUNS.items():
            print(f"{name}: {spec} -> {parse_run(name)}")
        return
    names = [n.strip() for n in a.runs.split(",") if n.strip()]
    try:
        recipes = {n: parse_run(n) for n in names}
    except ValueError as e:
        ap.error(str(e))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_flush_denormal(True)  # as `spn demo` does (spn.cli.flush_denormal); this process ends after the runs
    print(f"budget {a.budget:.0f} s per run, seed {a.seed}, {torch.get_num_threads()} torch threads\n")
    print("| run | recipe (vs the demo's defaults) | held-out bits/dim | unseen photos: mean (worst crop) | steps | "
          "load before / after |\n|---|---|---|---|---|---|", flush=True)  # fmt: skip
    last = None
    for name in names:
        last = one_run(name, recipes[name], a.budget, out, a.seed)
        print(row(name, recipes[name], last), flush=True)
    if last is not None:
        b = last["bits_per_dim"]
        print(f"\ncodecs on the held-out crops: PNG {b['png']:.3f}, WebP lossless {b['webp_lossless']:.3f}")
        for k, v in last["unseen"].items():
            print(f"codecs on {k}: PNG {v['png']:.3f}, WebP lossless {v['webp_lossless']:.3f}")


if __name__ == "__main__":
    main()
