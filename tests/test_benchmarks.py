"""The benchmark harness runs (quick mode) so it cannot rot; its numbers are not checked here."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_harness_quick(tmp_path):
    out = tmp_path / "results.json"
    cmd = [sys.executable, "-m", "benchmarks.run", "--quick", "--only", "training,memory", "--out", str(out)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    data = json.loads(out.read_text())
    assert data["training"][0]["kernels_ms"] > 0 and data["memory"][0]["saved_ratio"] > 0
    assert "| model |" in res.stdout and "| image |" in res.stdout
