"""Bad data: undecodable image files are skipped (named, counted, replaced by the next file) or fail the run naming
the file; empty folders, wrong array shapes and too-small photos are ValueErrors naming path and shapes."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from spn import data
from spn.cli import build_parser, main

from ..cli.test_cli import TINY


def _folder(tmp_path, n_good=4):
    """n_good 4x4 PNGs (b0..), plus a garbage .png and a truncated .png that sort first."""
    rng = np.random.default_rng(0)
    for k in range(n_good):
        Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(tmp_path / f"b{k}.png")
    (tmp_path / "a0_garbage.png").write_bytes(b"this is not a png at all")
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format="PNG")
    (tmp_path / "a1_truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return tmp_path


def test_bad_files_are_skipped_named_and_counted(tmp_path):
    root = _folder(tmp_path)
    with pytest.warns(UserWarning, match="a0_garbage.png") as rec:  # not an image: found from its header, up front
        ds = data.build_dataset(str(root), "train", 4, 3, held_out=False, crop="center")
    assert len(rec) == 1 and len(ds) == 5
    with pytest.warns(UserWarning) as rec:  # truncated pixel data: found when decoded
        items = [ds[i] for i in range(len(ds))]
    msgs = [str(w.message) for w in rec]
    assert len(msgs) == 1  # each bad file reported once
    assert "a1_truncated.png" in msgs[0] and "1 of 5 files skipped" in msgs[0]
    # item 0 is served by the next readable file (b0), deterministically
    assert torch.equal(items[0], items[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # already known bad: no second report, same substitute
        assert torch.equal(ds[0], items[1])


def test_bad_file_fails_when_asked(tmp_path):
    root = _folder(tmp_path)
    with pytest.raises(data.BadImageError, match="a0_garbage.png"):  # before any work
        data.build_dataset(str(root), "train", 4, 3, held_out=False, on_bad_image="fail")
    (root / "a0_garbage.png").unlink()
    ds = data.build_dataset(str(root), "train", 4, 3, held_out=False, on_bad_image="fail")
    with pytest.raises(data.BadImageError, match="a1_truncated.png"):
        ds[0]
    with pytest.raises(ValueError, match="on_bad_image"):
        data.build_dataset(str(root), "train", 4, 3, on_bad_image="ignore")


def test_all_files_bad(tmp_path):
    (tmp_path / "x.png").write_bytes(b"junk")
    with pytest.warns(UserWarning), pytest.raises(data.BadImageError, match="none of the 1 image files"):
        data.build_dataset(str(tmp_path), "train", 4, 3, held_out=False)


def test_cli_on_bad_image(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    root = _folder(tmp_path / "imgs", n_good=3)  # 5 files: the last is held out, the 4 others fill one batch
    assert build_parser().parse_args(["eval", "--checkpoint", "c.pt", "--on-bad-image", "fail"]).on_bad_image == "fail"
    flags = ["--data", str(root), *TINY, "--steps", "1", "--batch-size", "4", "--eval-every", "0",
             "--sample-every", "-1", "--no-progress"]  # fmt: skip
    rc = main(["train", "--out", str(tmp_path / "fail"), *flags, "--on-bad-image", "fail"])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot decode image file" in err and "Traceback" not in err
    with pytest.warns(UserWarning, match="skipping"):  # 3 good files of 4 remain: drawn with replacement
        assert main(["train", "--out", str(tmp_path / "skip"), *flags]) == 0
    assert "drawn from it with replacement" in capsys.readouterr().out


def test_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match=f"{tmp_path}.*no image files"):
        data.build_dataset(str(tmp_path), "train", 8, 3)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8, 1), (2, 8, 8, 7)])
def test_array_wrong_shape(tmp_path, shape):
    path = tmp_path / "a.npy"
    np.save(path, np.zeros(shape, np.uint8))
    with pytest.raises(ValueError, match=rf"{path}.*got \({shape[0]}, "):
        data.build_dataset(str(path), "train", 8, 3)


def test_array_wrong_dtype_names_path(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, data=np.zeros((2, 8, 8, 3), np.int16))
    with pytest.raises(ValueError, match=f"{path}.*uint8.*int16"):
        data.build_dataset(str(path), "train", 8, 3)


def test_image_smaller_than_crop():
    with pytest.raises(ValueError, match=r"shape \(4, 6, 3\) is smaller than the crop size 8"):
        data.RandomCrops([np.zeros((4, 6, 3), np.uint8)], 8, 10)
