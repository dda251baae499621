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


def test_subscale_quality_per_slice_bits_average_to_the_models_bits_per_dim():
    import torch

    from benchmarks.subscale_quality import default_subscales, neighbour_gaps, per_slice_bpd
    from spn import SPN, SPNConfig

    torch.manual_seed(0)
    model = SPN(SPNConfig(image_size=8, channels=3, bits=8, subscale=2)).eval()
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    per = per_slice_bpd(model, images, batch=2)
    with torch.no_grad():
        whole = model.bits_per_dim(images.long()).mean().item()
    assert len(per) == 4 and abs(sum(per) / 4 - whole) < 1e-4
    flat = torch.full((1, 1, 4, 4), 7, dtype=torch.uint8)
    assert neighbour_gaps(flat, (1, 2)) == {1: 0.0, 2: 0.0}
    assert default_subscales(32) == [1, 2] and default_subscales(128) == [1, 4, 8]
