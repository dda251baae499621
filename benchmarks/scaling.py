"""Scaling with image size: the SPN (slices of 16x16 and 32x32) against s = 1 (one slice: a full-resolution
decoder of the same width and depth), per image size, side by side in one run.

    python -m benchmarks.scaling                       # sizes 32 ... 1024, table + plot + JSON
    python -m benchmarks.scaling --quick               # sizes 32 and 64, fewer repeats, no plot
    python -m benchmarks.scaling --sizes 64,256 --out bench-results/scaling.json

Network: preset cpu_demo's widths and depths (context 2 x 32, decoder 3 x 32, head 32, categorical 8-bit RGB);
only image_size and subscale change. For each image size N the SPN settings are s = N/16 and s = N/32 (where
s >= 1; s = N/32 = 1 at N = 32 is the s = 1 row itself). Every measurement runs in a fresh subprocess, so
allocations cannot leak between settings. Per setting:

- training step: one AdamW step on a random batch (--batch, default 2), one slice per image (slices_per_step=1, as
  SPN trains; s = 1 trains its one slice, the whole image). Time: median of --repeats steps after a first one.
  Peak memory: growth of the process's peak RSS (VmHWM, reset through /proc/self/clear_refs) over its RSS before
  the first step, which includes the gradients and AdamW's state it allocates (torch's CPU allocations are not
  seen by tracemalloc; RSS sees them all).
- sampling: the cached sampler at batch 1, timed over a prefix and extrapolated, as the full image is minutes at
  large sizes. Where a slice is at most 32x32: the first --sample-slices whole slices (the first one, which also
  pays one-off warm-up costs, is left out of the mean where more were run). Larger slices: the context network
  and the first --sample-rows rows of slice 0; rows after the first cost their mean. Every slice costs the same
  (its context network + n rows of n pixels of C channels, each sub-pixel one decoder step), so seconds/image =
  modelled slices x seconds per slice. Where the image is at most --full-sample-max pixels on a side, a full
  sample() is timed too, as a check of the extrapolation. Peak memory: RSS growth over the prefix (the sampler's
  buffers are allocated once per image or slice and reused, so the first slices reach the whole sample's peak).
- parameters.

Other jobs on the machine slow a measurement down, never up: --rounds R runs the whole sweep R times and keeps each
setting's fastest round.

s = 1 is measured up to --s1-max (default 256): above it, its training step (time and memory) and its sampling
time are extrapolated from the largest measured s = 1 size as proportional to the pixel count N^2 (a
convolutional network of fixed width and depth over the whole image: every layer's work and activations grow
with N^2). Extrapolated cells are marked "~".
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from .memory import _kib  # a field of /proc/self/status, in KiB

SIZES = (32, 64, 128, 256, 512, 1024)
SLICE_SIZES = (16, 32)
PRESET = "cpu_demo"


def config(image_size: int, subscale: int):
    from spn import configs

    return dataclasses.replace(configs.get(PRESET), image_size=image_size, subscale=subscale)


def settings(image_size: int) -> list[int]:
    """The subscale factors compared at one image size: 1, then N/32 and N/16 (ascending, distinct, >= 1)."""
    return sorted({1} | {image_size // n for n in SLICE_SIZES if image_size // n >= 1 and image_size % n == 0})


# ------------------------------------------------------------------------------------------ memory (child side)
def _reset_peak() -> None:
    """Resets VmHWM to the current RSS (Linux: writing 5 to clear_refs)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


class PeakRSS:
    """Peak RSS growth in MiB over the block: VmHWM at exit minus VmRSS at entry."""

    def __enter__(self):
        _reset_peak()
        self.before = _kib("VmRSS")
        return self

    def __exit__(self, *exc):
        self.mib = max(_kib("VmHWM") - self.before, 0) / 1024


# ------------------------------------------------------------------------------------------ measurements (child)
def measure_train(image_size: int, subscale: int, batch: int, repeats: int) -> dict:
    from spn import SPN

    torch.manual_seed(0)
    model = SPN(config(image_size, subscale))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, 256, (batch, 3, image_size, image_size))

    def step():
        loss = model.loss(x, slices_per_step=1)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    with PeakRSS() as mem:
        t0 = time.perf_counter()
        step()
        first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {
        "train_s": statistics.median(times) if times else first,
        "train_first_s": first,
        "train_peak_mib": mem.mib,
        "params": sum(p.numel() for p in model.parameters()),
    }


def _slice_prefix(model, cache, low, k: int, rows: int, gen) -> list[float]:
    """The cached sampler's work for the first `rows` rows of slice k, batch 1: seconds of its context network,
    then of each row."""
    from spn.sampling import draw

    cfg = model.config
    ns, C = cfg.slice_size, cfg.channels
    t0 = time.perf_counter()
    cond = model.condition(low, None, torch.full((low.shape[0],), k, dtype=torch.int64))
    model.start_slice(cache, cond)
    times = [time.perf_counter() - t0]
    for r in range(rows):
        t0 = time.perf_counter()
        for c in range(ns):
            for ch in range(C):
                model.write(cache, draw(model.step(cache, r, c, ch), 1.0, gen), r, c, ch)
        times.append(time.perf_counter() - t0)
    return times


def measure_sample(image_size: int, subscale: int, sample_slices: int, sample_rows: int, full_max: int) -> dict:
    import spn_kernels as sk
    from spn import SPN

    torch.manual_seed(0)
    model = SPN(config(image_size, subscale)).eval()
    cfg = model.config
    ns, S2 = cfg.slice_size, cfg.num_slices - cfg.first_slice
    gen = torch.Generator().manual_seed(0)
    whole = ns <= 32  # whole slices are short enough to run
    with torch.no_grad(), PeakRSS() as mem:
        # as the sampler holds them: the image, and one slice of uniforms, log-probs and values (generation order)
        low = torch.zeros(1, cfg.channels, image_size, image_size, dtype=torch.int64)
        aux = [torch.zeros(ns * ns * cfg.channels, 1, dtype=dt) for dt in (torch.float64, torch.float64, torch.int64)]
        cache = model.allocate_inference_cache(1)
        if whole:
            per = []
            for k in range(max(1, min(sample_slices, S2))):
                per.append(sum(_slice_prefix(model, cache, low, k, ns, gen)))
                sk.slice_scatter_(low, torch.randint(0, 256, (1, cfg.channels, ns, ns)), cfg.subscale, k)
            # the first slice also pays one-off warm-up costs: leave it out where more were run
            per_slice = statistics.mean(per[1:] or per)
            measured = f"{len(per)} of {S2} slices"
        else:
            rows = max(2, min(sample_rows, ns))
            t = _slice_prefix(model, cache, low, 0, rows, gen)
            # context + row 0 as measured; rows 1.. (the decoder's row step runs before each) at their mean
            per_slice = t[0] + t[1] + (ns - 1) * statistics.mean(t[2:])
            measured = f"{rows} of {ns} rows of slice 0"
    del aux
    out = {"sample_s": per_slice * S2, "sample_measured": measured, "sample_peak_mib": mem.mib}
    if image_size <= full_max:
        t0 = time.perf_counter()
        model.sample(1, generator=torch.Generator().manual_seed(0))
        out["sample_full_s"] = time.perf_counter() - t0
    return out


# ------------------------------------------------------------------------------------------ driver (parent)
def _child(kind: str, *args) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.scaling", "--child", ",".join([kind, *map(str, args)])]
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _best(old: dict | None, new: dict, key: str) -> dict:
    """The measurement with the smaller `key` (time): other jobs on the machine only ever slow a run down."""
    return new if old is None or new[key] < old[key] else old


def rows(
    sizes=SIZES,
    batch: int = 2,
    repeats: int = 3,
    s1_max: int = 256,
    sample_slices: int = 4,
    sample_rows: int = 4,
    full_max: int = 32,
    rounds: int = 1,
    log=print,
) -> list[dict]:
    """One row per (size, s). With rounds > 1 the whole sweep runs that many times, one round after another, and
    each setting keeps its fastest round's training and sampling figures (each with its own memory figures)."""
    todo = [(N, s) for N in sizes for s in settings(N) if not (s == 1 and N > s1_max)]
    train: dict = {}
    sample: dict = {}
    for i in range(rounds):
        for N, s in todo:
            train[N, s] = _best(train.get((N, s)), _child("train", N, s, batch, repeats), "train_s")
            sample[N, s] = _best(sample.get((N, s)), _child("sample", N, s, sample_slices, sample_rows, full_max),
                                 "sample_s")  # fmt: skip
            log(f"round {i + 1}/{rounds}: {N}x{N} s={s} train {train[N, s]['train_s']:.3g} s, "
                f"sample {sample[N, s]['sample_s']:.3g} s, load {os.getloadavg()[0]:.2f}")  # fmt: skip
    out = []
    s1_ref = None  # the largest measured s = 1 row, for the extrapolation
    for N in sizes:
        for s in settings(N):
            r = {"image_size": N, "subscale": s, "slice_size": N // s, "batch": batch, "extrapolated": False}
            if (N, s) in train:
                r.update(train[N, s], **sample[N, s])
                if s == 1:
                    s1_ref = r
            else:
                if s1_ref is None:
                    raise ValueError(f"s = 1 at {N}x{N} needs a measured s = 1 row first (--s1-max {s1_max})")
                f = (N / s1_ref["image_size"]) ** 2
                r.update(
                    extrapolated=True,
                    train_s=s1_ref["train_s"] * f,
                    train_peak_mib=s1_ref["train_peak_mib"] * f,
                    sample_s=s1_ref["sample_s"] * f,
                    sample_measured=f"x{f:g} of {s1_ref['image_size']}x{s1_ref['image_size']}",
                    sample_peak_mib=s1_ref["sample_peak_mib"] * f,
                    params=_child("params", N, s)["params"],
                )
            out.append(r)
    return out


def _fmt_s(v: float) -> str:
    return f"{v:.3g}" if v < 100 else f"{v:,.0f}"


def table(rs: list[dict]) -> str:
    lines = [
        "| image | s | slice | parameters | train step s (B=2) | train peak MiB | sample s/image (batch 1) "
        "| sampling: measured | sample peak MiB | full sample s (check) |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rs:
        m = "~" if r["extrapolated"] else ""
        full = f"{r['sample_full_s']:.2f}" if "sample_full_s" in r else "-"
        lines.append(
            f"| {r['image_size']}x{r['image_size']} | {r['subscale']} | {r['slice_size']}x{r['slice_size']} "
            f"| {r['params']:,} | {m}{_fmt_s(r['train_s'])} | {m}{r['train_peak_mib']:,.0f} "
            f"| {m}{_fmt_s(r['sample_s'])} | {r['sample_measured']} | {m}{r['sample_peak_mib']:,.0f} | {full} |"
        )
    return "\n".join(lines)


def plot(rs: list[dict], path: str = "benchmarks/scaling.png") -> Path | None:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    keys = [("train_s", "training step, s (batch 2)"), ("train_peak_mib", "training peak RSS growth, MiB"),
            ("sample_s", "sampling, s per image (batch 1)")]  # fmt: skip
    series = {"s = 1 (full resolution)": lambda r: r["subscale"] == 1}
    for n in SLICE_SIZES:
        series[f"SPN, {n}x{n} slices"] = lambda r, n=n: r["subscale"] > 1 and r["slice_size"] == n
    for ax, (key, label) in zip(axes, keys):
        for name, pick in series.items():
            pts = [r for r in rs if pick(r)]
            if not pts:
                continue
            line = ax.plot([r["image_size"] for r in pts], [r[key] for r in pts], "o-", label=name)[0]
            ext = [r for r in pts if r["extrapolated"]]
            if ext:
                ax.plot([r["image_size"] for r in ext], [r[key] for r in ext], "o", mfc="white", color=line.get_color())
        sizes = sorted({r["image_size"] for r in rs})
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_xlabel("image size N (N x N x 3, 8 bits)")
        ax.set_title(label, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{PRESET} widths on CPU, {torch.get_num_threads()} thread(s); open markers: s = 1 extrapolated "
                 "(~N^2)", fontsize=10)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=None, help=f"comma-separated image sizes (default {','.join(map(str, SIZES))})")
    ap.add_argument("--quick", action="store_true", help="sizes 32 and 64 (unless --sizes), one timed step, no plot")
    ap.add_argument("--batch", type=int, default=2, help="training batch")
    ap.add_argument("--repeats", type=int, default=3, help="timed training steps after the first")
    ap.add_argument("--s1-max", type=int, default=256, help="largest size at which s = 1 is measured")
    ap.add_argument("--sample-slices", type=int, default=4, help="whole slices sampled where slices are <= 32x32")
    ap.add_argument("--sample-rows", type=int, default=4, help="rows of slice 0 sampled where slices are larger")
    ap.add_argument("--full-sample-max", type=int, default=32, help="also time a full sample up to this size")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (every child too)")
    ap.add_argument("--rounds", type=int, default=1, help="run the sweep this many times, keep each setting's fastest")
    ap.add_argument("--out", default=None, metavar="JSON", help="write the rows here")
    ap.add_argument("--plot", default="benchmarks/scaling.png", help="PNG path ('' for none)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.child:
        kind, *v = a.child.split(",")
        v = [int(x) for x in v]
        if kind == "train":
            res = measure_train(*v)
        elif kind == "sample":
            res = measure_sample(*v)
        else:
            from spn import SPN

            with torch.device("meta"):
                res = {"params": sum(p.numel() for p in SPN(config(*v)).parameters())}
        print(json.dumps(res))
        return
    sizes = tuple(int(x) for x in a.sizes.split(",")) if a.sizes else ((32, 64) if a.quick else SIZES)
    repeats = 1 if a.quick else a.repeats
    load0 = os.getloadavg()
    rs = rows(
        sizes,
        a.batch,
        repeats,
        a.s1_max,
        a.sample_slices,
        a.sample_rows,
        a.full_sample_max,
        a.rounds,
        log=functools.partial(print, flush=True),
    )
    print(f"\nload average before: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; after: {os.getloadavg()[0]:.2f}; "
          f"{a.threads} thread(s)\n")  # fmt: skip
    print(table(rs))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps({"rows": rs, "load_before": load0, "threads": a.threads}, indent=1) + "\n")
    if a.plot and not a.quick:
        p = plot(rs, a.plot)
        print(f"\nplot: {p}" if p else "\nplot skipped: matplotlib is not installed")


if __name__ == "__main__":
    main()
