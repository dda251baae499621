"""Every data source on small generated files, plus the embedded photos."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from spn import data, outputs


def _rand_images(n, h, w, c, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


@pytest.mark.parametrize("layout", ["nhwc", "nchw", "flat", "gray"])
def test_array_layouts(tmp_path, layout):
    imgs = _rand_images(20, 8, 8, 3)
    arr = {
        "nhwc": imgs,
        "nchw": imgs.transpose(0, 3, 1, 2),
        "flat": imgs.transpose(0, 3, 1, 2).reshape(20, -1),  # downsampled-ImageNet .npz layout
        "gray": imgs[..., 0],
    }[layout]
    path = tmp_path / "x.npz"
    np.savez(path, data=arr, labels=np.zeros(20))
    channels = 1 if layout == "gray" else 3
    train = data.build_dataset(str(path), "train", 8, channels)
    test = data.build_dataset(str(path), "test", 8, channels)
    assert len(train) == 19 and len(test) == 1  # HELD_OUT_FRACTION of 20, at least one
    x = train[3]
    assert x.dtype == torch.uint8 and x.shape == (channels, 8, 8)
    ref = imgs[3] if layout != "gray" else imgs[3, :, :, :1]
    assert torch.equal(x, torch.from_numpy(ref.transpose(2, 0, 1).copy()))


def test_array_resize_and_gray_conversion(tmp_path):
    np.save(tmp_path / "a.npy", _rand_images(4, 16, 12, 3))
    ds = data.build_dataset(str(tmp_path), "train", 8, 1, held_out=False)
    assert len(ds) == 4 and ds[0].shape == (1, 8, 8) and ds[0].dtype == torch.uint8


def test_array_rejects_float(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        data.build_dataset(str(tmp_path / "a.npy"), "train", 8, 3)


def test_cifar_batches(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    imgs = _rand_images(6, 32, 32, 3)
    flat = imgs.transpose(0, 3, 1, 2).reshape(6, -1)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        with open(root / name, "wb") as f:
            pickle.dump({b"data": flat, b"labels": [0] * 6}, f)
    assert data.detect_format(str(root)) == "cifar10"
    train = data.build_dataset(str(root), "train", 32, 3)
    test = data.build_dataset(str(root), "test", 16, 3)
    assert len(train) == 30 and len(test) == 6
    assert torch.equal(train[1], torch.from_numpy(imgs[1].transpose(2, 0, 1).copy()))
    assert test[0].shape == (3, 16, 16)


def test_image_folder(tmp_path):
    imgs = _rand_images(5, 20, 30, 3)
    (tmp_path / "sub").mkdir()
    Image.fromarray(imgs[0]).save(tmp_path / "a.png")
    Image.fromarray(imgs[1]).save(tmp_path / "sub" / "b.jpg")
    Image.fromarray(imgs[2][:, :, 0]).save(tmp_path / "sub" / "c.png")  # grayscale
    Image.fromarray(np.concatenate([imgs[3], imgs[4][:, :, :1]], 2)).save(tmp_path / "d.png")  # RGBA
    (tmp_path / "notes.txt").write_text("not an image")
    train = data.build_dataset(str(tmp_path), "train", 16, 3)
    test = data.build_dataset(str(tmp_path), "test", 16, 3)
    assert len(train) == 3 and len(test) == 1
    for ds in (train, test):
        for i in range(len(ds)):
            assert ds[i].shape == (3, 16, 16) and ds[i].dtype == torch.uint8
    # centre crop of a 20x30 image at its own size is the middle 20x20 square, unchanged
    whole = data.build_dataset(str(tmp_path / "a.png"), "test", 20, 3, held_out=False)
    assert torch.equal(whole[0], torch.from_numpy(imgs[0][:, 5:25].transpose(2, 0, 1).copy()))
    gray = data.build_dataset(str(tmp_path), "test", 16, 1, held_out=False)
    assert gray[0].shape == (1, 16, 16)


def test_random_folder_crops_are_a_function_of_seed_epoch_index(tmp_path):
    Image.fromarray(_rand_images(1, 20, 60, 3)[0]).save(tmp_path / "a.png")
    a = data.build_dataset(str(tmp_path), "train", 20, 3, held_out=False, seed=1)
    b = data.build_dataset(str(tmp_path), "train", 20, 3, held_out=False, seed=1)
    assert torch.equal(a[0], b[0])
    seen = set()
    for e in range(6):
        a.set_epoch(e)
        seen.add(a[0].sum().item())
    assert len(seen) > 1


def test_photos_load_offline_and_split():
    train = data.build_dataset("photos", "train", 32, 3, photo_crops_per_epoch=64)
    test = data.build_dataset("photos", "test", 32, 3)
    assert len(train) == 64
    x = train[5]
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8
    assert torch.equal(x, train[5])  # deterministic per (seed, epoch, index)
    # the fixed test grid: chelsea 300x451 -> 9x14 crops, coffee 400x600 -> 12x18 crops
    assert len(test) == 9 * 14 + 12 * 18
    assert set(data.PHOTO_SPLITS["train"]).isdisjoint(data.PHOTO_SPLITS["test"])
    gray = data.build_dataset("photos", "test", 16, 1)
    assert gray[0].shape == (1, 16, 16)


def test_quantize_and_view():
    x = torch.tensor([0, 31, 32, 255], dtype=torch.uint8).reshape(1, 1, 2, 2)
    q = data.quantize(x, 3)
    assert q.tolist() == [[[[0, 0], [1, 7]]]]
    assert outputs.to_uint8(q, 3).reshape(-1).tolist() == [0, 0, 36, 255]
    grid = outputs.image_grid(np.zeros((5, 4, 4, 3), np.uint8))
    assert grid.shape == (2 * 6 + 2, 3 * 6 + 2, 3)  # 5 images: 2 rows of 3


def test_unknown_path():
    with pytest.raises(FileNotFoundError, match="nope"):
        data.build_dataset("/nope/x", "train", 8, 3)
