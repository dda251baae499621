"""Large images are decoded once, not on every access, in bounded memory (spn.imagefiles.DecodeCache)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from spn import data
from spn.imagefiles import DecodeCache


def _folder(root, sides):
    root.mkdir(exist_ok=True)
    files = []
    for k, side in enumerate(sides):
        img = np.full((side, side, 3), 40 * k, dtype=np.uint8)  # flat: quick to write and to decode
        img[: side // 2] = 200
        files.append(root / f"img{k}.png")
        Image.fromarray(img).save(files[-1])
    return files


def _count_decodes(monkeypatch):
    calls = []
    real = data.load_image

    def counted(path, *a, **k):
        calls.append(path)
        return real(path, *a, **k)

    monkeypatch.setattr(data, "load_image", counted)
    return calls


def test_a_large_image_is_decoded_once(tmp_path, monkeypatch):
    """At the default threshold (2^22 pixels): a 2048 x 2048 image is decoded on first access only, whatever the
    crop; small images are decoded each time and not kept."""
    files = _folder(tmp_path / "f", [2048, 16])
    calls = _count_decodes(monkeypatch)
    ds = data.ImageFolder(files, 8, 3, crop="random")
    first = [ds[i] for i in range(6)]  # items 0, 2, 4: the large file; 1, 3, 5: the small one
    again = [ds[i] for i in range(6)]
    assert [str(p) for p in calls].count(str(files[0])) == 1
    assert [str(p) for p in calls].count(str(files[1])) == 6
    assert all(torch.equal(a, b) for a, b in zip(first, again))  # the same pixels, from the kept copy
    assert ds.decoded.bytes == 2048 * 2048 * 3


def test_kept_images_are_bounded_and_eviction_is_reported(tmp_path, monkeypatch):
    files = _folder(tmp_path / "f", [32, 32, 32])
    calls = _count_decodes(monkeypatch)
    ds = data.ImageFolder(files, 8, 3)
    ds.decoded = DecodeCache(min_pixels=32 * 32, max_bytes=3 * 32 * 32 * 3)  # room for all three
    for _ in range(4):
        [ds[i] for i in range(3)]
    assert len(calls) == 3
    calls.clear()
    ds.decoded = DecodeCache(min_pixels=32 * 32, max_bytes=2 * 32 * 32 * 3)  # room for two
    with pytest.warns(UserWarning, match="decoded again when they come back") as rec:
        for _ in range(3):
            [ds[i] for i in range(3)]
    assert len(rec) == 1 and ds.decoded.bytes <= 2 * 32 * 32 * 3
    assert len(calls) == 9  # round robin over three in room for two: every access decodes, memory stays bounded


def test_kept_arrays_are_read_only(tmp_path):
    files = _folder(tmp_path / "f", [32])
    cache = DecodeCache(min_pixels=1)
    img = cache.get(files[0], lambda: np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="read-only"):
        img[0, 0, 0] = 1
