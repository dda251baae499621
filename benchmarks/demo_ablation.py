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

LOGISTIC = (("output", "logistic_mixture"),)
AUG = dict(hflip=True, crop_scale=2.0)
RUNS: dict[str, Recipe] = {
    "categorical": Recipe(),
    "categorical-aug": Recipe(**AUG),
    "logistic": Recipe(config=LOGISTIC),
    "logistic-aug": Recipe(config=LOGISTIC, **AUG),
    "logistic-aug4": Recipe(config=LOGISTIC, hflip=True, crop_scale=4.0),
    "logistic-aug-s2": Recipe(config=LOGISTIC + (("subscale", 2),), **AUG),
    "logistic-aug-s1": Recipe(config=LOGISTIC + (("subscale", 1),), **AUG),
    "logistic-aug-drop": Recipe(config=LOGISTIC + (("dropout", 0.1),), **AUG),
    "logistic-aug-wide": Recipe(
        config=LOGISTIC + (("decoder_channels", 48), ("context_channels", 48), ("head_channels", 48)), **AUG
    ),
    "logistic-aug-deep": Recipe(config=LOGISTIC + (("decoder_blocks", 5),), **AUG),
    "logistic-aug-lr3e-3": Recipe(config=LOGISTIC, lr=3e-3, **AUG),
    "logistic-lr3e-3": Recipe(config=LOGISTIC, lr=3e-3),
    "logistic-aug-s2-lr3e-3": Recipe(config=LOGISTIC + (("subscale", 2),), lr=3e-3, **AUG),
    "logistic-aug-s1-lr3e-3": Recipe(config=LOGISTIC + (("subscale", 1),), lr=3e-3, **AUG),
    "logistic-aug-b64": Recipe(config=LOGISTIC, batch_size=64, **AUG),
    "logistic-aug-slices2": Recipe(config=LOGISTIC, slices_per_step=2, **AUG),
    "logistic-aug-warm300": Recipe(config=LOGISTIC, warmup=300, **AUG),
}


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
    ap.add_argument("--list", action="store_true", help="list the runs and exit")
    a = ap.parse_args()
    if a.list:
        for name, recipe in RUNS.items():
            print(f"{name}: {recipe}")
        return
    names = [n.strip() for n in a.runs.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        ap.error(f"unknown runs {unknown}; --list shows them")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"budget {a.budget:.0f} s per run, seed {a.seed}\n")
    print("| run | recipe (vs the demo's defaults) | held-out bits/dim | unseen photos: mean (worst crop) | steps | "
          "load before / after |\n|---|---|---|---|---|---|", flush=True)  # fmt: skip
    last = None
    for name in names:
        last = one_run(name, RUNS[name], a.budget, out, a.seed)
        print(row(name, RUNS[name], last), flush=True)
    if last is not None:
        b = last["bits_per_dim"]
        print(f"\ncodecs on the held-out crops: PNG {b['png']:.3f}, WebP lossless {b['webp_lossless']:.3f}")
        for k, v in last["unseen"].items():
            print(f"codecs on {k}: PNG {v['png']:.3f}, WebP lossless {v['webp_lossless']:.3f}")


if __name__ == "__main__":
    main()
