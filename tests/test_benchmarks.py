"""The benchmark harness runs (quick mode) so it cannot rot; its numbers are not checked here."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _status() -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def test_harness_quick_leaves_the_tree_clean():
    # Default output: an untracked folder. Only --record may touch the committed results.
    before = _status()
    out_dir = ROOT / "bench-results"
    cmd = [sys.executable, "-m", "benchmarks.run", "--quick", "--only", "training,memory"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    assert _status() == before
    data = json.loads((out_dir / "results.json").read_text())
    assert data["training"][0]["kernels_ms"] > 0 and data["memory"][0]["saved_ratio"] > 0
    assert "| model |" in res.stdout and "| image |" in res.stdout


def test_scaling_quick_runs_and_leaves_the_tree_clean(tmp_path):
    before = _status()
    out = tmp_path / "scaling.json"
    cmd = [sys.executable, "-m", "benchmarks.scaling", "--quick", "--sizes", "32", "--full-sample-max", "0",
           "--sample-slices", "2", "--out", str(out)]  # fmt: skip
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert _status() == before
    rs = json.loads(out.read_text())["rows"]
    assert [(r["image_size"], r["subscale"]) for r in rs] == [(32, 1), (32, 2)]
    assert all(r["train_s"] > 0 and r["sample_s"] > 0 and r["train_peak_mib"] > 0 for r in rs)
    assert "| 32x32 | 2 | 16x16 |" in res.stdout
