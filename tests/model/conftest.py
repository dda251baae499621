"""Model tests run tiny tensors, where intra-op threads only add synchronisation (and, on a shared machine,
wait for busy cores): one thread per test, restored afterwards."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
