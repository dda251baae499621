"""benchmarks/gpu_check.py runs its correctness part on CPU under the Triton interpreter, so the script is known
to work on a machine without a GPU before it runs on one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_gpu_check_tiny(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--tiny", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads(out.read_text())
    checks = report["checks"]
    assert checks and all(c["ok"] for c in checks)
    # every op family is verified, on the Triton backend
    names = " ".join(c["name"] for c in checks)
    assert "slices" in names and "conv fwd+bwd" in names and "step" in names
    assert {c["backend"] for c in checks} == {"triton"}
    assert "checks ok" in proc.stdout.splitlines()[-2]
