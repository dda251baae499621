"""The models here are tiny: one thread avoids OpenMP spin-waits that slow tiny ops down many times over when the
cores are shared (CI runners, parallel test runs)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
