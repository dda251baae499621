"""Two CPU processes under DistributedDataParallel (gloo) end with the parameters of one process trained on the
same global batches."""

from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp

import spn
from spn import train as tr
from spn.data import TensorImages

STEPS, GLOBAL_BATCH = 6, 8


def _data():
    g = torch.Generator().manual_seed(0)
    return TensorImages(torch.randint(0, 256, (64, 3, 4, 4), dtype=torch.uint8, generator=g))


def _args(out):
    # slices_per_step=None: every slice of every image, so the loss has no randomness to differ between ranks.
    return tr.TrainArgs(
        out_dir=str(out), steps=STEPS, batch_size=GLOBAL_BATCH, lr=0.01, warmup=2, eval_every=0, sample_every=-1,
        checkpoint_every=0, log_every=2, progress=False, slices_per_step=None, device="cpu",
    )  # fmt: skip


def _model():
    torch.manual_seed(123)
    return spn.SPN(spn.SPNConfig(image_size=4, channels=3, bits=4, subscale=2, decoder_blocks=1, backend="cpu"))


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    os.environ["LOCAL_RANK"] = str(rank)
    torch.set_num_threads(1)
    model = _model()
    try:
        res = tr.train(model, _data(), _data(), _args(out), log=lambda s: None)
        torch.save({"params": model.state_dict(), "eval": res.eval_bpd}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_match_one_process(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)

    single = _model()
    res = tr.train(single, _data(), _data(), _args(tmp_path / "single"), log=lambda s: None)
    ref = single.state_dict()
    for k, v in ref.items():
        assert torch.equal(r0["params"][k], r1["params"][k]), k  # DDP keeps the replicas identical
        # all-reduce sums the two half-batch gradients in another order than one full batch: float32 rounding
        torch.testing.assert_close(r0["params"][k], v, rtol=1e-5, atol=1e-6)
    assert r0["eval"] == r1["eval"]  # distributed evaluation gathers every image on every rank
    assert abs(r0["eval"] - res.eval_bpd) < 1e-5
    # rank 0 alone writes files
    assert (tmp_path / "metrics.jsonl").is_file() and (tmp_path / "ckpt_00000006.pt").is_file()
