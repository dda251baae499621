"""Process settings for the CPU training loop: subnormal flushing (scoped) and the allocator's thresholds."""

from __future__ import annotations

import contextlib
import ctypes

import torch


def tune_malloc() -> bool:
    """Keeps freed memory in this process's heap rather than returning it to the OS (glibc only; elsewhere a
    no-op that returns False). Why: a training step frees and reallocates the same activation-sized buffers; with
    glibc's defaults, buffers above its mmap threshold, and heap tops above its trim threshold, go back to the
    OS and fault in again on the next step (160,000 page faults in 4 s of cpu_demo steps; half that with both
    thresholds raised, and the step a few percent faster and steadier: benchmarks/RESULTS.md). Process-wide and
    not undone: the `spn` command sets it for train and demo; the cost is that the heap stays at its peak size."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 1 << 30))


@contextlib.contextmanager
def flush_denormal(on: bool = True):
    """Flushes subnormal floats to zero on the CPU inside the block, then restores the caller's mode.

    Subnormals (weights, Adam moments, activations decaying towards zero) are slow on x86 CPUs: without flushing,
    a full-resolution (s=1) demo model's training steps slowed 2.2x within its first minute."""
    probe = torch.tensor([1e-310], dtype=torch.float64)
    was = bool((probe * 1.0).item() == 0.0)  # torch has no getter: a subnormal product reads 0 when flushing
    if on:
        torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if on:
            torch.set_flush_denormal(was)
