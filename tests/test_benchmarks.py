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
