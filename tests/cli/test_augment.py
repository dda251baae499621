"""Training-time augmentation: deterministic in (seed, epoch, index), off for the held-out split, really flipping
and rescaling; and the folder evaluation over every native-resolution crop."""

import numpy as np
import pytest
import torch
from PIL import Image

from spn import data as D


def _image(h: int = 64, w: int = 80) -> np.ndarray:
    g = np.random.default_rng(0)
    return g.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_no_augment_keeps_the_crop_stream():
    im = _image()
    plain = D.RandomCrops([im], 16, 8, seed=3)
    same = D.RandomCrops([im], 16, 8, seed=3, augment=D.Augment())
    for i in range(8):
        assert torch.equal(plain[i], same[i])


def test_hflip_mirrors_about_half_the_crops_deterministically():
    im = _image()
    plain = D.RandomCrops([im], 16, 64, seed=1)
    flip = D.RandomCrops([im], 16, 64, seed=1, augment=D.Augment(hflip=True))
    mirrored = sum(not torch.equal(plain[i], flip[i]) for i in range(64))
    for i in range(64):  # a flipped crop is the same crop mirrored
        assert torch.equal(flip[i], plain[i]) or torch.equal(flip[i], plain[i].flip(-1))
        assert torch.equal(flip[i], flip[i])  # a pure function of the index
    assert 16 <= mirrored <= 48


def test_crop_scale_shows_several_content_scales():
    # a smooth ramp: a crop's value range grows with the side of the crop it was resized from
    ramp = np.repeat(np.linspace(0, 255, 200)[None, :, None], 200, 0).repeat(3, 2).astype(np.uint8)
    ds = D.RandomCrops([ramp], 16, 200, seed=0, augment=D.Augment(max_scale=4.0))
    ranges = [int(ds[i][0].max()) - int(ds[i][0].min()) for i in range(200)]
    assert all(x[0].shape == (16, 16) for x in (ds[i] for i in range(3)))
    assert min(ranges) < 25 and max(ranges) > 60  # native-size crops and 4x crops both occur
    ds.set_epoch(1)
    assert not all(torch.equal(ds[i], D.RandomCrops([ramp], 16, 200, seed=0, augment=ds.augment)[i]) for i in range(8))


def test_colour_augment_permutes_and_inverts_the_same_crop():
    im = _image()
    plain = D.RandomCrops([im], 16, 64, seed=2)
    perm = D.RandomCrops([im], 16, 64, seed=2, augment=D.Augment(channel_perm=True))
    inv = D.RandomCrops([im], 16, 64, seed=2, augment=D.Augment(invert=True))
    orders, inverted = set(), 0
    for i in range(64):
        p, x = plain[i], perm[i]
        order = [next(c for c in range(3) if torch.equal(x[k], p[c])) for k in range(3)]  # x[k] = p[order[k]]
        assert sorted(order) == [0, 1, 2]
        orders.add(tuple(order))
        assert torch.equal(inv[i], p) or torch.equal(inv[i], 255 - p)
        inverted += not torch.equal(inv[i], p)
        assert torch.equal(perm[i], perm[i]) and torch.equal(inv[i], inv[i])  # pure functions of the index
    assert len(orders) == 6 and 16 <= inverted <= 48


def test_color_jitter_is_a_per_channel_affine_map():
    ramp = np.repeat(np.linspace(0, 255, 64)[None, :, None], 64, 0).repeat(3, 2).astype(np.uint8)
    plain = D.RandomCrops([ramp], 16, 32, seed=4)
    jit = D.RandomCrops([ramp], 16, 32, seed=4, augment=D.Augment(color_jitter=0.5))
    saturated = 0
    for i in range(32):
        p, x = plain[i].double(), jit[i].double()
        for c in range(3):  # within the unclipped range, x_c = g_c p_c + b_c, with log g_c in [-0.5, 0.5]
            keep = (x[c] > 0) & (x[c] < 255)
            if keep.sum() > 8 and p[c][keep].std() > 4:
                g = np.polyfit(p[c][keep].numpy(), x[c][keep].numpy(), 1)[0]
                assert np.exp(-0.5) - 0.05 < g < np.exp(0.5) + 0.05
            saturated += int((x[c] == 0).any() or (x[c] == 255).any())
        assert not torch.equal(x[0] - p[0], x[1] - p[1]) or torch.equal(p[0], p[1])
    assert saturated > 0


def test_channel_perm_leaves_one_channel_alone():
    im = _image()[:, :, :1]
    assert torch.equal(D.RandomCrops([im], 8, 4, seed=0, augment=D.Augment(channel_perm=True))[3],
                       D.RandomCrops([im], 8, 4, seed=0)[3])  # fmt: skip


@pytest.mark.parametrize(
    "kw, match",
    [(dict(max_scale=0.5), "max_scale"), (dict(hflip=1), "hflip"), (dict(channel_perm="yes"), "channel_perm"),
     (dict(invert=None), "invert"), (dict(color_jitter=-0.1), "color_jitter"), (dict(color_jitter=2), "color_jitter")],
)  # fmt: skip
def test_bad_augment(kw, match):
    with pytest.raises(ValueError, match=match):
        D.Augment(**kw)


def test_augment_is_for_training_only(tmp_path):
    Image.fromarray(_image()).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match="train split only"):
        D.build_dataset(str(tmp_path), "test", 16, 3, held_out=False, augment=D.Augment(hflip=True))
    ds = D.build_dataset(str(tmp_path), "train", 16, 3, held_out=False, augment=D.Augment(max_scale=2.0))
    assert ds[0].shape == (3, 16, 16)


def test_folder_grid_crops_every_native_crop(tmp_path):
    Image.fromarray(_image(64, 80)).save(tmp_path / "a.png")
    Image.fromarray(_image(40, 40)).save(tmp_path / "b.png")
    ds = D.build_dataset(str(tmp_path), "test", 16, 3, held_out=False, crop="grid")
    assert len(ds) == 4 * 5 + 2 * 2
    assert torch.equal(ds[0], torch.from_numpy(_image(64, 80)[:16, :16].transpose(2, 0, 1).copy()))
    with pytest.raises(ValueError, match="grid"):
        D.build_dataset("photos", "test", 16, 3, crop="grid")


def test_spn_train_takes_every_augmentation_flag(tmp_path):
    from spn import checkpoint as ck
    from spn.cli import main

    data = tmp_path / "imgs"
    data.mkdir()
    for i in range(8):  # 5% of a folder is held out: 7 or more stay for training
        Image.fromarray(_image(24 + i, 30)).save(data / f"{i}.png")
    out = tmp_path / "run"
    rc = main(["train", "--out", str(out), "--data", str(data), "--preset", "cpu_tiny", "--image-size", "8",
               "--steps", "2", "--batch-size", "4", "--eval-every", "0", "--n-samples", "0", "--no-progress",
               "--hflip", "--crop-scale", "2", "--channel-perm", "--invert", "--color-jitter", "0.3"])  # fmt: skip
    assert rc == 0
    assert ck.read_checkpoint(out / "ckpt_00000002.pt")["step"] == 2
