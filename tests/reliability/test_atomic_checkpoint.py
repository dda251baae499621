"""Atomic checkpoint writes: a process SIGKILLed at any moment while it rewrites a checkpoint in a loop never
leaves a partial file at the path; the path always loads as the last complete checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from spn import checkpoint as ck

# Child: a ~8 MB checkpoint whose every weight equals the save's round number, rewritten to the same path as
# fast as it can; it prints "ready" once the first complete file is there.
CHILD = textwrap.dedent(
    """
    import dataclasses, sys
    import torch
    from spn import save_checkpoint

    @dataclasses.dataclass
    class Cfg:
        n: int = 2_000_000

    class Blob(torch.nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.config = cfg
            self.w = torch.nn.Parameter(torch.zeros(cfg.n))

    m = Blob(Cfg())
    path = sys.argv[1]
    for k in range(1, 100_000):
        with torch.no_grad():
            m.w.fill_(float(k))
        save_checkpoint(path, m, round=k)
        if k == 1:
            print("ready", flush=True)
    """
)


def _build(cfg):
    m = torch.nn.Module()
    m.w = torch.nn.Parameter(torch.zeros(cfg["n"]))
    return m


def _check_complete(path):
    obj = ck.read_checkpoint(path)
    k = obj["round"]
    w = ck.load_checkpoint(path, build=_build).w
    # A file mixing two saves, or cut short, could not hold one round number everywhere.
    assert w.numel() == 2_000_000 and torch.all(w == float(k)), f"weights do not all equal round {k}"
    return k


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_sigkill_during_save_leaves_last_complete_checkpoint(tmp_path):
    path = tmp_path / "ckpt.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rounds_seen = []
    # Kill moments spread over the write cycle; the sleeps only vary where the kill lands, nothing asserts on time.
    for delay in (0.05, 0.13, 0.27, 0.5):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        try:
            line = proc.stdout.readline()
            assert line.strip() == "ready", proc.communicate(timeout=60)
            time.sleep(delay)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == -signal.SIGKILL
        rounds_seen.append(_check_complete(path))
        # Only hidden temp files may be left behind by a kill, never anything under the checkpoint's own name.
        assert all(p == path or p.name.startswith(".ckpt.pt.") for p in tmp_path.iterdir())
        for p in tmp_path.glob(".ckpt.pt.*"):
            p.unlink()
    assert all(k >= 1 for k in rounds_seen)
