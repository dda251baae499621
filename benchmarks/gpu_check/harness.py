"""The harness: cases, the fp32 modes, error bounds, and a budgeted run in which every case is isolated and
streamed.

A Case is one check or one timing: a name, a function returning one result (or a list of rows), an importance
tier and an estimated cost. `run_cases` orders the cases by (tier, cost), runs each in its fp32 mode (checks:
exact) with its own seed, records an exception with its traceback and goes on, skips what no longer fits the budget, and
writes one JSON line per result (flushed) as it goes, then a markdown table.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import math
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, TextIO

import torch

# TF32 keeps 10 of fp32's 23 mantissa bits. Truncated or rounded, each input of a product is off by at most
# 2^-10 relative, so a product by at most 2^-9 (products of TF32 values are exact in the fp32 accumulator).
TF32_PRODUCT_ERR = 2.0**-9


@dataclass
class CheckResult:
    name: str
    backend: str
    dtype: str
    precision: str  # "exact" (TF32 off), "tf32" (TF32 on, TF32 bound), "-" (exact integer/copy ops)
    err: float  # |out - ref64| at the worst element (worst err/bound)
    bound: float  # what err may be there
    ok: bool


@dataclass
class TimingResult:
    name: str
    times_us: dict  # provider -> median microseconds
    metric: str = ""  # e.g. "triton / cudnn_ref" or "GB/s"
    value: float = float("nan")
    target: str = ""
    met: bool | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Case:
    name: str
    run: Callable[[], CheckResult | TimingResult | list]
    kind: str = "check"  # or "timing"
    tier: int = 0  # importance: lower runs first
    cost_s: float = 2.0  # estimated seconds on one H200 including first-call compiles (the budget's unit)
    fp32: str = "exact"  # the fp32 mode it starts in (fp32_mode); timings run as fp32 is used in practice: tf32


# ---------------------------------------------------------------- fp32 modes
@contextlib.contextmanager
def fp32_mode(mode: str):
    """ "exact": TF32 off for matmuls and cuDNN (the Triton kernels follow cudnn.allow_tf32, so they run
    exact fp32 too); "tf32": both on. The previous flags come back afterwards."""
    if mode not in ("exact", "tf32"):
        raise ValueError(f"mode must be 'exact' or 'tf32', got {mode!r}")
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    on = mode == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = on
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


# ---------------------------------------------------------------- bounds
def ref_bound(out: torch.Tensor, ref: torch.Tensor, ref64: torch.Tensor) -> tuple[float, float]:
    """(error, allowed error) by the rule of tests/helpers.assert_close_to_ref: at most 2x the error of the
    same-dtype reference against float64, plus 2 ulps at the output's scale."""
    err = (out.double() - ref64).abs().max().item() if out.numel() else 0.0
    err_ref = (ref.double() - ref64).abs().max().item() if out.numel() else 0.0
    eps = torch.finfo(out.dtype).eps * max(ref64.abs().max().item() if out.numel() else 0.0, 1.0)
    return err, 2 * err_ref + 2 * eps


def tf32_bound(out: torch.Tensor, ref: torch.Tensor, ref64: torch.Tensor, mag64: torch.Tensor):
    """(error, allowed error) at the worst element of a TF32 result: the exact-fp32 rule (ref: the exact fp32
    reference) plus TF32_PRODUCT_ERR times mag64, the same computation in float64 on the inputs' absolute
    values (sum |a_i b_i| for each output: what TF32 rounding of every product can add up to)."""
    if not out.numel():
        return 0.0, 0.0
    _, exact = ref_bound(out, ref, ref64)
    d = (out.double() - ref64).abs()
    allowed = TF32_PRODUCT_ERR * mag64.abs() + exact
    i = (d / allowed).flatten().argmax()
    return d.flatten()[i].item(), allowed.flatten()[i].item()


def compare(name: str, backend, dtype, precision: str, pairs) -> CheckResult:
    """One result from pairs (out, exact) [torch.equal], (out, ref, ref64) [ref_bound] or
    (out, ref, ref64, mag64) [tf32_bound]; the worst err/bound decides."""
    worst, ok = (0.0, 0.0), True
    for p in pairs:
        if len(p) == 2:
            same = p[0].shape == p[1].shape and torch.equal(p[0], p[1])
            e = (0.0, 0.0) if same else (math.inf, 0.0)
        else:
            e = ref_bound(*p) if len(p) == 3 else tf32_bound(*p)
            same = e[0] <= e[1]
        ok &= bool(same)
        if _ratio(e) > _ratio(worst):
            worst = e
    dt = str(dtype).replace("torch.", "")
    return CheckResult(name, str(backend), dt, precision, worst[0], worst[1], bool(ok))


def _ratio(e: tuple[float, float]) -> float:
    return e[0] / e[1] if e[1] > 0 else (math.inf if e[0] > 0 else 0.0)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- the run
def _status(res) -> str:
    if isinstance(res, CheckResult):
        return "ok" if res.ok else "FAIL"
    return {True: "met", False: "missed", None: "done"}[res.met]


def _context_lost(device: torch.device) -> bool:
    """After an exception on CUDA: whether the context still works (an illegal access is sticky)."""
    if device.type != "cuda":
        return False
    try:
        torch.ones(1, device=device).add_(1).item()
        return False
    except Exception:
        return True


class Stream:
    """The .jsonl file: one flushed line per record."""

    def __init__(self, path: Path):
        self.f = open(path, "w")

    def write(self, rec: dict) -> None:
        self.f.write(json.dumps(rec, default=str) + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def run_cases(
    cases: list[Case],
    out_dir: str | Path,
    device: torch.device,
    budget: float | None = None,
    machine: dict | None = None,
    log: TextIO = sys.stdout,
) -> list[dict]:
    """Runs `cases` cheapest and most important first; returns the records (also in out_dir/gpu_check.jsonl,
    and the table in out_dir/gpu_check.md). A case whose estimated cost (scaled by how the finished cases
    compared with their estimates) exceeds what is left of `budget` seconds is recorded as skipped."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stream = Stream(out / "gpu_check.jsonl")
    stream.write({"kind": "machine", **(machine or {}), "budget_s": budget, "cases": len(cases)})
    t0 = time.perf_counter()
    order = sorted(cases, key=lambda c: (c.tier, c.cost_s))
    records: list[dict] = []
    spent_est = spent_real = 0.0
    lost: str | None = None
    stop: str | None = None
    faulthandler.enable()  # a crash in a kernel still names the Python frame it came from (stderr)
    for i, case in enumerate(order):
        base = {"kind": case.kind, "name": case.name, "tier": case.tier, "est_s": case.cost_s}
        left = math.inf if budget is None else budget - (time.perf_counter() - t0)
        scale = min(max(spent_real / spent_est, 0.25), 4.0) if spent_est > 0 else 1.0
        reason = stop or (f"the CUDA context was lost in {lost}" if lost else None)
        if reason is None and case.cost_s * scale > left:
            reason = f"budget: needs ~{case.cost_s * scale:.0f} s, {max(left, 0):.0f} s left"
        if reason:
            rows = [{**base, "status": "skipped", "reason": reason}]
        else:
            print(f"[{i + 1}/{len(order)}] {case.name}", file=log, flush=True)
            rows, err = _run_one(case, device, base)
            spent_est += case.cost_s
            spent_real += rows[0]["seconds"]
            if err == "interrupted":
                stop = "interrupted"
            elif err and _context_lost(device):
                lost = case.name
        for r in rows:
            stream.write(r)
        records += rows
    summary = _summary(records, time.perf_counter() - t0)
    stream.write({"kind": "summary", **summary})
    stream.close()
    table = markdown(records, summary)
    (out / "gpu_check.md").write_text(table)
    print("\n" + table, file=log, flush=True)
    return records


def _run_one(case: Case, device: torch.device, base: dict) -> tuple[list[dict], str | None]:
    start = time.perf_counter()
    try:
        with fp32_mode(case.fp32):
            torch.manual_seed(0)
            res = case.run()
            sync(device)  # an asynchronous kernel fault belongs to this case
        res = res if isinstance(res, list) else [res]
        rows = [{**base, "status": _status(r), **asdict(r)} for r in res]
        err = None
    except KeyboardInterrupt:  # `timeout -s INT`: keep what was measured and write the table
        rows, err = [{**base, "status": "error", "error": "interrupted"}], "interrupted"
    except Exception as e:
        msg = f"{type(e).__name__}: {e}".strip()
        rows, err = [{**base, "status": "error", "error": msg[:2000], "traceback": traceback.format_exc()}], msg
    for r in rows:
        r["seconds"] = round(time.perf_counter() - start, 3)
    return rows, err


def _summary(records: list[dict], seconds: float) -> dict:
    count: dict[str, int] = {}
    for r in records:
        key = f"{r['kind']}s_{r['status']}"
        count[key] = count.get(key, 0) + 1
    return {"seconds": round(seconds, 1), **count}


def failed(records: list[dict]) -> list[dict]:
    """Checks that failed or raised, and timings that raised (a missed target is a finding, not a failure)."""
    return [r for r in records if r["status"] in ("FAIL", "error")]


def _fmt_us(v: float) -> str:
    return f"{v:.1f}" if v < 1000 else f"{v / 1000:.2f}ms"


def _num(v) -> str:
    return f"{v:.2e}" if isinstance(v, (int, float)) and math.isfinite(v) else str(v)


def markdown(records: list[dict], summary: dict) -> str:
    """The run as markdown: checks, timings, then errors (first line) and skipped cases."""
    checks = [r for r in records if r["kind"] == "check" and r["status"] in ("ok", "FAIL")]
    timings = [r for r in records if r["kind"] == "timing" and r["status"] in ("met", "missed", "done")]
    lines = ["| check | backend | dtype | fp32 | err | bound | status |", "|---|---|---|---|---:|---:|---|"]
    for r in checks:
        lines.append(
            f"| {r['name']} | {r['backend']} | {r['dtype']} | {r['precision']} | {_num(r['err'])} "
            f"| {_num(r['bound'])} | {r['status']} |"
        )
    if timings:
        lines += [
            "",
            "| timing (median us) | providers | value | metric | target | status |",
            "|---|---|---:|---|---|---|",
        ]
        for r in timings:
            prov = ", ".join(f"{k} {_fmt_us(v)}" for k, v in r["times_us"].items())
            val = f"{r['value']:.3g}" if math.isfinite(r["value"]) else "-"
            lines.append(f"| {r['name']} | {prov} | {val} | {r['metric']} | {r['target']} | {r['status']} |")
    errors = [r for r in records if r["status"] == "error"]
    if errors:
        lines += ["", "| error in | message |", "|---|---|"]
        lines += [f"| {r['name']} | {r['error'].splitlines()[0][:200]} |" for r in errors]
    skipped = [r for r in records if r["status"] == "skipped"]
    if skipped:
        lines += ["", f"skipped {len(skipped)}: " + "; ".join(f"{r['name']} ({r['reason']})" for r in skipped)]
    counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in summary.items() if k != "seconds")
    lines += ["", f"{counts}; {summary['seconds']} s"]
    return "\n".join(lines) + "\n"
