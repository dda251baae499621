"""The training loss compiles as one graph: torch.compile(model.loss, fullgraph=True) raises on any graph break.

The compile backend is aot_eager: it traces the same whole graph as inductor (dynamo) and the backward
(AOTAutograd), but runs it eagerly, so the test takes seconds on CPU where inductor's C++ codegen takes minutes.
Random slice draws (slices_per_step) use the global generator in both, so one seed gives the same slices.
"""

from __future__ import annotations

import pytest
import torch

from spn import configs


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return configs.build("cpu_tiny")


def _loss_and_grads(model, fn, x, sps):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    loss = fn(x, sps)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("sps", [None, 2], ids=["all-slices", "slices_per_step=2"])
def test_loss_traces_as_one_graph(model, sps):
    cfg = model.config
    x = torch.randint(0, 2**cfg.bits, (3, cfg.channels, cfg.image_size, cfg.image_size))
    torch._dynamo.reset()
    compiled = torch.compile(model.loss, fullgraph=True, backend="aot_eager")
    loss_c, grads_c = _loss_and_grads(model, compiled, x, sps)
    loss_e, grads_e = _loss_and_grads(model, model.loss, x, sps)
    torch.testing.assert_close(loss_c, loss_e)
    for gc, ge in zip(grads_c, grads_e):
        torch.testing.assert_close(gc, ge)
