"""benchmarks/gpu_check runs its checks on CPU under the Triton interpreter, so the script is known to work on a
machine without a GPU before it runs on one; its harness keeps going past a failing case, streams one line per
result, and keeps to its budget; benchmarks/gpu_bringup.sh parses and calls gpu_check with flags it has."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch

from benchmarks.gpu_check import cli
from benchmarks.gpu_check.harness import Case, CheckResult, compare, fp32_mode, run_cases, tf32_bound

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CPU = torch.device("cpu")


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_gpu_check_tiny_streams_one_line_per_check(tmp_path):
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--tiny", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    lines = _lines(tmp_path / "gpu_check.jsonl")
    assert lines[0]["kind"] == "machine" and lines[-1]["kind"] == "summary"
    checks = [r for r in lines if r["kind"] == "check"]
    assert len(checks) == lines[0]["cases"] and all(r["status"] == "ok" for r in checks)
    names = " ".join(r["name"] for r in checks)
    for family in ("slices", "conv fwd+bwd", "step", "x_new=None", "3->16", "8->16", "train step", "cached == naive"):
        assert family in names, family
    # the model's own path (None: the C++ CPU kernels here) and Triton through the interpreter
    assert {r["backend"] for r in checks} == {"None", "triton"}
    assert "| check |" in (tmp_path / "gpu_check.md").read_text()


def _ok(name):
    return lambda: CheckResult(name, "x", "float32", "exact", 0.0, 1.0, True)


def _raises():
    raise RuntimeError("kernel exploded")


def test_a_raising_check_is_recorded_and_the_rest_still_run(tmp_path):
    jsonl = tmp_path / "gpu_check.jsonl"

    def streamed():  # runs after the raising case: its line must already be on disk
        recs = _lines(jsonl)
        assert [r["name"] for r in recs[1:]] == ["first", "boom"]
        return CheckResult("streamed", "x", "float32", "exact", 0.0, 1.0, True)

    cases = [
        Case("first", _ok("first"), cost_s=1),
        Case("boom", _raises, cost_s=2),
        Case("streamed", streamed, cost_s=3),
        Case("wrong", lambda: CheckResult("wrong", "x", "float32", "exact", 2.0, 1.0, False), cost_s=4),
    ]
    records = run_cases(cases, tmp_path, CPU, log=open(os.devnull, "w"))
    by_name = {r["name"]: r for r in records}
    assert by_name["boom"]["status"] == "error" and "kernel exploded" in by_name["boom"]["error"]
    assert "in _raises" in by_name["boom"]["traceback"]
    assert by_name["streamed"]["status"] == "ok" and by_name["wrong"]["status"] == "FAIL"
    assert [r["kind"] for r in _lines(jsonl)] == ["machine", "check", "check", "check", "check", "summary"]
    md = (tmp_path / "gpu_check.md").read_text()
    assert "| boom | RuntimeError: kernel exploded |" in md and "| wrong |" in md
    # through the command line (a test may hand it its own cases): exit status 1, the table still written
    assert cli.main(["--out", str(tmp_path / "cli")], cases=cases[:2]) == 1
    assert cli.main(["--out", str(tmp_path / "cli"), "--only", "first"], cases=cases[:2]) == 0


def test_budget_skips_what_no_longer_fits_cheapest_and_most_important_first(tmp_path):
    ran = []

    def case(name, tier, cost):
        return Case(
            name, lambda: ran.append(name) or CheckResult(name, "x", "f", "-", 0.0, 0.0, True), "check", tier, cost
        )

    cases = [case("timing-big", 3, 500), case("check-slow", 0, 8), case("model", 1, 1), case("check-fast", 0, 1)]
    records = run_cases(cases, tmp_path, CPU, budget=20, log=open(os.devnull, "w"))
    assert ran == ["check-fast", "check-slow", "model"]
    skipped = [r for r in records if r["status"] == "skipped"]
    assert [r["name"] for r in skipped] == ["timing-big"] and skipped[0]["reason"].startswith("budget: needs ~")


def test_an_interrupt_keeps_what_was_measured_and_writes_the_table(tmp_path):
    def interrupted():  # what `timeout -s INT` does to a case that overruns
        raise KeyboardInterrupt

    cases = [
        Case("first", _ok("first"), cost_s=1),
        Case("hung", interrupted, cost_s=2),
        Case("later", _ok("later"), cost_s=3),
    ]
    records = run_cases(cases, tmp_path, CPU, log=open(os.devnull, "w"))
    assert [r["status"] for r in records] == ["ok", "error", "skipped"]
    assert records[1]["error"] == "interrupted" and records[2]["reason"] == "interrupted"
    assert "| hung | interrupted |" in (tmp_path / "gpu_check.md").read_text()


def test_fp32_mode_restores_the_flags_after_an_exception():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    with pytest.raises(ValueError):
        with fp32_mode("tf32"):
            assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
            raise ValueError
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
    with fp32_mode("exact"):
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32


def _tf32(t: torch.Tensor) -> torch.Tensor:
    """fp32 -> TF32 by truncation (the 13 low mantissa bits cleared): the worst case of the conversion."""
    return (t.view(torch.int32) & ~0x1FFF).view(torch.float32)


def test_tf32_bound_admits_tf32_rounding_and_catches_a_missing_term():
    torch.manual_seed(0)
    a, b = torch.randn(64, 300), torch.randn(300, 48)
    ref64 = a.double() @ b.double()
    ref = a @ b  # exact fp32
    mag64 = a.double().abs() @ b.double().abs()
    tf32 = (_tf32(a).double() @ _tf32(b).double()).float()  # what a TF32 matmul computes, at worst
    assert compare("mm", "x", torch.float32, "tf32", [(tf32, ref, ref64, mag64)]).ok
    # the exact bound is too tight for TF32 (why the TF32 checks have their own), ...
    assert not compare("mm", "x", torch.float32, "exact", [(tf32, ref, ref64)]).ok
    # ... but not loose: an error of 1% of an output's sum |a_i b_i| is more than TF32 rounding explains
    wrong = tf32.clone()
    wrong[3, 5] += 0.01 * mag64[3, 5].item()
    err, bound = tf32_bound(wrong, ref, ref64, mag64)
    assert err > bound


# ---------------------------------------------------------------- the bring-up script
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_bringup.sh")


def test_bringup_script_parses():
    subprocess.run(["bash", "-n", SCRIPT], check=True)


def test_bringup_script_uses_real_gpu_check_flags():
    text = open(SCRIPT).read()
    assert "python -m benchmarks.gpu_check" in text or "-m benchmarks.gpu_check" in text
    flags = {a for act in cli.parser()._actions for a in act.option_strings}
    used = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", text.split("benchmarks.gpu_check", 1)[1].split("\n")[0]))
    assert used and used <= flags, used - flags
    assert "--budget" in used and "--out" in used
    for must in ("build_ext --inplace", "TORCH_CUDA_ARCH_LIST", "MAX_JOBS"):
        assert must in text, must


def test_the_gpu_case_lists_build_here_with_unique_names():
    # built, not run: the closures need no GPU until called
    for device, tiny in ((torch.device("cuda"), False), (CPU, True)):
        names = [c.name for c in cli.default_cases(device, tiny, with_timings=True)]
        assert len(names) == len(set(names)), [n for n in names if names.count(n) > 1]
    gpu = cli.default_cases(torch.device("cuda"), False, with_timings=True)
    assert {c.kind for c in gpu} == {"check", "timing"} and any("tf32" in c.name for c in gpu)


def test_sampling_timing_runs_on_cpu():
    # the one GPU timing that needs no CUDA event: run at a tiny size so its code is known to work
    from benchmarks.gpu_check.timings import sampling_timing

    r = sampling_timing(CPU, 8, 2).run()
    assert (
        r.value > 0 and r.times_us["cached"] > 0 and r.times_us["naive(est.)"] > 0 and r.extra["graphs"] == 0
    )  # no CUDA graphs on CPU
