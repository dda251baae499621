"""The model on the device: a training step (loss and every gradient) of the kernel-backed SPN against the same
weights with backend="torch", and the sampler (cached == naive, and on CUDA that its graphs are really used).
"""

from __future__ import annotations

import copy
import dataclasses

import torch

from spn import SPN, SPNConfig

from .harness import Case, CheckResult, compare


def check_config(tiny: bool) -> SPNConfig:
    """RGB with attention in both networks, so every op and layer kind of the model runs."""
    if tiny:
        return SPNConfig(
            image_size=8, channels=3, bits=4, subscale=2, context_channels=16, context_blocks=1,
            context_attention=1, decoder_channels=16, decoder_blocks=2, decoder_attention=1, heads=2,
            head_channels=16,
        )  # fmt: skip
    return SPNConfig(
        image_size=32, channels=3, bits=8, subscale=2, context_channels=64, context_blocks=2, context_attention=1,
        decoder_channels=64, decoder_blocks=4, decoder_attention=1, heads=4, head_channels=64,
    )  # fmt: skip


def sampler_config(tiny: bool) -> SPNConfig:
    """Small enough for the naive sampler (one full decoder pass per sub-pixel) to finish."""
    if tiny:
        return SPNConfig(
            image_size=4, channels=3, bits=3, subscale=2, context_channels=8, context_blocks=1,
            decoder_channels=8, decoder_blocks=2, head_channels=8,
        )  # fmt: skip
    return SPNConfig(
        image_size=16, channels=3, bits=8, subscale=2, context_channels=32, context_blocks=1, decoder_channels=32,
        decoder_blocks=3, decoder_attention=1, heads=2, head_channels=32,
    )  # fmt: skip


def _loss_and_grads(model: SPN, x: torch.Tensor, slices_per_step: int | None) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # the same slice draws for every model
    loss = model.loss(x, slices_per_step)
    loss.backward()
    return [loss.detach()] + [p.grad for p in model.parameters()]


def train_step_case(device, cfg: SPNConfig, be, batch: int, slices_per_step: int | None, cost_s: float) -> Case:
    """loss(x) and the gradient of every parameter: backend `be` in fp32 against backend="torch" in fp32 and
    in float64, with identical weights and data (one case: what one optimiser step would use)."""
    what = f"train step loss+grads {cfg.image_size}x{cfg.image_size} B={batch} slices/step={slices_per_step or 'all'}"

    def run():
        torch.manual_seed(0)
        fast = SPN(dataclasses.replace(cfg, backend=be)).to(device)
        ref = SPN(dataclasses.replace(cfg, backend="torch")).to(device)
        ref.load_state_dict(fast.state_dict())
        ref64 = copy.deepcopy(ref).double()
        x = torch.randint(0, 2**cfg.bits, (batch, cfg.channels, cfg.image_size, cfg.image_size), device=device)
        got = _loss_and_grads(fast, x, slices_per_step)
        pairs = zip(got, _loss_and_grads(ref, x, slices_per_step), _loss_and_grads(ref64, x, slices_per_step))
        return compare(what, be, torch.float32, "exact", pairs)

    return Case(f"{what} {be}", run, tier=1, cost_s=cost_s)


def sampler_case(device, cfg: SPNConfig, be, n: int, cost_s: float) -> Case:
    """sample(method="cached") == sample(method="naive") from one generator state: the same images exactly
    (err: the number of sub-pixels that differ)."""
    what = f"sample cached == naive {cfg.image_size}x{cfg.image_size} n={n}"

    def run():
        torch.manual_seed(0)
        model = SPN(dataclasses.replace(cfg, backend=be)).to(device).eval()
        got = {}
        for method in ("cached", "naive"):
            gen = torch.Generator(device=device).manual_seed(3)
            got[method] = model.sample(n, generator=gen, method=method)
        diff = float((got["cached"] != got["naive"]).sum().item())
        return CheckResult(what, str(be), "float32", "exact", diff, 0.0, diff == 0)

    return Case(f"{what} {be}", run, tier=1, cost_s=cost_s)


def graphs_case(device, cfg: SPNConfig, be, n: int) -> Case:
    """On CUDA the cached sampler captures one CUDA graph per slice position and replays them: after the first
    slice there must be n*n graphs, not the eager fallback (err: positions without a graph)."""
    what = f"sample CUDA graphs used {cfg.image_size}x{cfg.image_size} n={n}"

    def run():
        from spn.sampling import _cached_slice

        torch.manual_seed(0)
        model = SPN(dataclasses.replace(cfg, backend=be)).to(device).eval()
        N, ns, C = cfg.image_size, cfg.slice_size, cfg.channels
        low = torch.zeros(n, C, N, N, dtype=torch.int64, device=device)
        gen = torch.Generator(device=device).manual_seed(0)
        u = torch.rand(ns * ns * C, n, generator=gen, dtype=torch.float64, device=device)
        lp = torch.zeros(ns * ns * C, n, dtype=torch.float64, device=device)
        cache = model.allocate_inference_cache(n)
        with torch.no_grad():
            cond = model.condition(low, None, torch.zeros(n, dtype=torch.int64, device=device))
            _cached_slice(model, cache, cond, 1.0, u, lp)
        missing = float(ns * ns - (len(cache.graphs) if cache.graphs is not None else 0))
        return CheckResult(what, str(be), "float32", "exact", missing, 0.0, missing == 0)

    return Case(f"{what} {be}", run, tier=1, cost_s=10.0)


def cases(device: torch.device, tiny: bool) -> list[Case]:
    cuda = device.type == "cuda"
    cfg, scfg = check_config(tiny), sampler_config(tiny)
    # backend None is the model's own path; on CPU "triton" runs the interpreter: too slow for the samplers
    bes = [None, "triton"] + (["cuda"] if cuda and _has_cuda_cpp() else [])
    batch = 2 if tiny else 8
    out = []
    for be in bes:
        out.append(train_step_case(device, cfg, be, batch, None, 6.0 if tiny else 15.0))
        out.append(train_step_case(device, cfg, be, batch, 1, 4.0 if tiny else 8.0))
    for be in bes if cuda else [None]:
        out.append(sampler_case(device, scfg, be, 2, 4.0 if tiny else 25.0))
        if cuda:
            out.append(graphs_case(device, cfg, be, 4))
    return out


MODEL_OPS = {
    "subscale_split",
    "subscale_merge",
    "slice_context",
    "slice_scatter_",
    "masked_conv2d",
    "masked_conv2d_step",
}


def _has_cuda_cpp() -> bool:
    """Whether backend="cuda" can run the whole model: every op it uses has a CUDA C++ kernel."""
    from spn_kernels._backend import CUDA_CPP_OPS

    return MODEL_OPS <= set(CUDA_CPP_OPS)
