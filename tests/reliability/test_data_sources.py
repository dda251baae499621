"""Data sources that must not run code, be mistaken for another format, or lose pixel values: CIFAR pickles only
where asked for, unambiguous auto-detection, 16-bit and float images, decompression bombs, odd folder entries."""

from __future__ import annotations

import os
import pickle
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from spn import data


def _png(path, width, height, depth=8, color=2, rows=None):
    """A PNG written chunk by chunk, so that its header may claim any size (rows=None: a tiny, bogus IDAT)."""

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    idat = zlib.compress(rows if rows is not None else b"\0" * 64)
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def _pngs(root, n=3, size=8, width=None):
    root.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(n):
        img = rng.integers(0, 256, (size, width or size, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / f"img{k}.png")
    return root


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_file_names_in_a_folder_never_unpickle(tmp_path):
    root = _pngs(tmp_path / "photos")
    marker = tmp_path / "ran"
    for name in ("test_batch", "data_batch_1"):
        (root / name).write_bytes(pickle.dumps({b"data": _RunsCode(marker)}))
    assert data.detect_format(str(root)) == "folder"
    for split in ("train", "test"):
        ds = data.build_dataset(str(root), split, 8, 3)
        [ds[i] for i in range(len(ds))]
    assert not marker.exists()
    # a folder of nothing but such files is not guessed to be CIFAR either
    for f in root.glob("*.png"):
        f.unlink()
    with pytest.raises(ValueError, match="pickles.*cifar-10-batches-py.*--data-format cifar10"):
        data.detect_format(str(root))
    assert not marker.exists()


def test_cifar_batches_cannot_run_code_even_where_asked_for(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    marker = tmp_path / "ran"
    (root / "test_batch").write_bytes(pickle.dumps({b"data": _RunsCode(marker)}))
    with pytest.warns(UserWarning, match="pickle"), pytest.raises(ValueError, match="test_batch.*posix.system"):
        data.build_dataset(str(root), "test", 8, 3)
    with pytest.warns(UserWarning, match="pickle"), pytest.raises(ValueError, match="not a CIFAR-10"):
        data.build_dataset(str(tmp_path / "cifar-10-batches-py"), "test", 8, 3, fmt="cifar10")
    assert not marker.exists()


def test_stray_array_in_an_image_folder_is_ambiguous(tmp_path):
    root = _pngs(tmp_path / "imgs")
    np.save(root / "palette.npy", np.zeros((16, 3), np.uint8))
    with pytest.raises(ValueError, match="both arrays.*palette.npy.*--data-format folder"):
        data.build_dataset(str(root), "train", 8, 3)
    ds = data.build_dataset(str(root), "train", 8, 3, fmt="folder", held_out=False)
    assert len(ds) == 3


def test_npz_without_a_data_key_is_refused(tmp_path):
    path = tmp_path / "two.npz"
    np.savez(path, labels=np.zeros((4,), np.uint8), images=np.zeros((4, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="'data' or 'x'.*'labels', 'images'"):
        data.build_dataset(str(path), "train", 8, 3)
    np.savez(path, images=np.zeros((4, 8, 8, 3), np.uint8))  # one array: nothing to confuse it with
    assert len(data.build_dataset(str(path), "train", 8, 3, held_out=False)) == 4


def test_16_bit_png_keeps_its_high_byte(tmp_path):
    v = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1031).astype(np.uint16)  # 0 .. 64953
    Image.fromarray(v).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    got = data.load_image(tmp_path / "g16.png", 1)[:, :, 0]
    np.testing.assert_array_equal(got, (v >> 8).astype(np.uint8))
    rgb = data.load_image(tmp_path / "g16.png", 3)
    assert rgb.shape == (8, 8, 3) and np.array_equal(rgb[:, :, 2], got)


def test_float_tiff_in_unit_range_is_scaled_and_others_refused(tmp_path):
    v = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    Image.fromarray(v).save(tmp_path / "f.tif")
    got = data.load_image(tmp_path / "f.tif", 1)[:, :, 0]
    np.testing.assert_array_equal(got, np.rint(v * 255).astype(np.uint8))
    Image.fromarray(v * 1000).save(tmp_path / "big.tif")
    with pytest.raises(data.BadImageError, match=r"big.tif.*float image with values in \[0, 1000\]"):
        data.load_image(tmp_path / "big.tif", 1)


@pytest.mark.parametrize("side", [20000, 9000], ids=["pillow-bomb-error", "above-spn-cap"])
def test_decompression_bomb_is_skipped_up_front_or_fails(tmp_path, side):
    root = _pngs(tmp_path / "imgs")
    _png(root / "bomb.png", side, side)
    with pytest.warns(UserWarning, match=f"bomb.png.*{side}x{side}|bomb.png.*DecompressionBomb"):
        ds = data.build_dataset(str(root), "train", 8, 3, held_out=False)
    assert len(ds) == 3  # left out before the first step, not met at a random one
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        [ds[i] for i in range(3)]
    with pytest.raises(data.BadImageError, match="bomb.png"):
        data.build_dataset(str(root), "train", 8, 3, held_out=False, on_bad_image="fail")
    with pytest.raises(data.BadImageError, match="bomb.png"):
        data.load_image(root / "bomb.png", 3)


def test_folder_listing_follows_symlinks_and_skips_directories(tmp_path):
    root = _pngs(tmp_path / "imgs", n=2)
    other = _pngs(tmp_path / "elsewhere", n=1)
    (root / "linked").symlink_to(other, target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)  # a cycle is walked once
    (root / "dir.png").mkdir()
    names = sorted(p.name for p in data.list_images(root))
    assert names == ["img0.png", "img0.png", "img1.png"]


def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((4, 8, 3), np.uint8)
    a[0, 0] = 255  # top-left marker of a landscape image
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "r.jpg", exif=exif, quality=100)
    got = data.load_image(tmp_path / "r.jpg", 3)
    assert got.shape == (8, 4, 3)  # shown upright: portrait
    assert got[0, -1].mean() > 128 and got[0, 0].mean() < 128


def test_tiny_images_are_upscaled_with_a_warning(tmp_path):
    root = _pngs(tmp_path / "imgs", n=2, size=4)
    with pytest.warns(UserWarning, match="2 of 2 images are smaller than 8x8 and are upscaled"):
        ds = data.build_dataset(str(root), "train", 8, 3, held_out=False)
    assert ds[0].shape == (3, 8, 8)


def test_resampled_draws_differ_and_repeat_per_seed(tmp_path):
    root = _pngs(tmp_path / "imgs", n=2, size=8, width=64)
    base = data.build_dataset(str(root), "train", 8, 3, held_out=False)  # random 8x8 crops: 57 places per image
    ds = data.Resampled(base, 16, seed=1)
    items = [ds[j] for j in range(16)]
    assert len({bytes(x.numpy()) for x in items}) > 8  # two images, many different crops
    again = data.Resampled(data.build_dataset(str(root), "train", 8, 3, held_out=False), 16, seed=1)
    assert all(torch.equal(a, again[j]) for j, a in enumerate(items))
