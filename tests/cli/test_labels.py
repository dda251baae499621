"""Labelled data (class-per-subfolder folders, CIFAR-10 batches, .npz labels) and the class-conditional commands:
spn train --labels, spn eval per class, spn sample --label/--labels, spn demo --labels."""

from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from spn import checkpoint as ck
from spn import labels as L
from spn.cli import main

TINY = ["--preset", "cpu_tiny", "--image-size", "4", "--channels", "3", "--bits", "4", "--subscale", "2",
        "--set", "decoder_blocks=1"]  # fmt: skip
COLOURS = {"blue": (0, 0, 255), "green": (0, 255, 0), "red": (255, 0, 0)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three classes of 8x8 images, each a noisy copy of its class colour; folder names sorted != creation order."""
    root = tmp_path_factory.mktemp("pets")
    rng = np.random.default_rng(0)
    for name in ("red", "blue", "green"):
        (root / name).mkdir()
        for i in range(20):
            img = np.clip(np.array(COLOURS[name]) + rng.integers(-10, 11, (8, 8, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{i:02d}.png")
    return root


def test_folder_labels(folder):
    train = L.build_labelled_dataset(str(folder), "train", 4, 3)
    test = L.build_labelled_dataset(str(folder), "test", 4, 3)
    assert train.classes == test.classes == ["blue", "green", "red"]  # sorted subfolder names
    assert len(train) == 57 and len(test) == 3  # the last file of every class is held out
    for ds in (train, test):
        for i in range(len(ds)):
            x, y = ds[i]
            assert x.shape == (3, 4, 4) and x.dtype == torch.uint8
            assert int(x.float().mean((1, 2)).argmax()) == int(np.argmax(COLOURS[ds.classes[y]]))
    assert sorted(test[i][1] for i in range(3)) == [0, 1, 2]
    # mapped by name to a model's classes, in its order; a class it does not know is an error
    other = L.build_labelled_dataset(str(folder), "test", 4, 3, classes=["red", "green", "blue", "cat"])
    assert other.classes[other[0][1]] == test.classes[test[0][1]]
    with pytest.raises(ValueError, match="classes the model does not know: red"):
        L.build_labelled_dataset(str(folder), "test", 4, 3, classes=["blue", "green"])


def test_folder_labels_follow_a_skipped_file(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.fromarray(np.full((4, 4, 3), 200 if name == "b" else 10, np.uint8)).save(tmp_path / name / f"{i}.png")
    (tmp_path / "a" / "0_garbage.png").write_bytes(b"not a png")  # refused at its header, with its label
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format="PNG")
    (tmp_path / "a" / "1.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # truncated pixel data
    with pytest.warns(UserWarning, match="0_garbage.png"):
        ds = L.build_labelled_dataset(str(tmp_path), "train", 4, 3, held_out=False, crop="center")
    assert len(ds) == 4
    with pytest.warns(UserWarning, match="skipping unreadable"):
        x, y = ds[1]  # a/1.png is unreadable: b/0.png stands in, with its label
    assert y == 1 and int(x.float().mean()) == 200
    assert ds[0][1] == 0 and ds[3][1] == 1


def test_folder_without_subfolders_is_an_error(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "x.png")
    with pytest.raises(ValueError, match="one subfolder per class"):
        L.build_labelled_dataset(str(tmp_path), "train", 4, 3)


def test_cifar_labels(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        with open(root / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [1, 9, 0, 3]}, f)
    with pytest.warns(UserWarning, match="pickles"):
        ds = L.build_labelled_dataset(str(root), "test", 32, 3)
        train = L.build_labelled_dataset(str(root), "train", 32, 3)
    assert ds.classes[0] == "airplane" and len(ds.classes) == 10
    assert [ds[i][1] for i in range(4)] == [1, 9, 0, 3] and ds[0][0].shape == (3, 32, 32)
    assert len(train) == 20


def test_npz_labels(tmp_path):
    # the downsampled ImageNet layout: flattened rows under "data", classes numbered from 1 under "labels"
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "train_1.npz", data=rng.integers(0, 256, (40, 48), dtype=np.uint8), labels=np.arange(40) % 5 + 1
    )
    ds = L.build_labelled_dataset(str(tmp_path / "train_1.npz"), "train", 4, 3, held_out=False)
    assert ds.classes == ["1", "2", "3", "4", "5"] and [ds[i][1] for i in range(6)] == [0, 1, 2, 3, 4, 0]
    np.savez(tmp_path / "none.npz", data=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="no 'labels' array"):
        L.build_labelled_dataset(str(tmp_path / "none.npz"), "train", 4, 3)
    np.savez(tmp_path / "short.npz", data=np.zeros((2, 4, 4, 3), np.uint8), labels=np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="one integer per image"):
        L.build_labelled_dataset(str(tmp_path / "short.npz"), "train", 4, 3)


def test_photo_crops_are_labelled_by_their_photograph():
    photos = {f"p{k}": np.full((12, 12, 3), 40 * k, np.uint8) for k in range(4)}
    ds = L.LabelledCrops(photos, 4, 32, seed=3)
    for i in range(32):
        x, y = ds[i]
        assert int(x[0, 0, 0]) == 40 * y


def test_sample_labels():
    assert L.sample_labels(None, None, 4, 0, None) == (None, None)
    labels, cols = L.sample_labels(None, "2,cat", 3, 4, ["a", "b", "c", "cat"])
    assert labels.tolist() == [2, 2, 2, 3, 3, 3] and cols == 3
    labels, cols = L.sample_labels("1", None, 2, 4, None)
    assert labels.tolist() == [1, 1] and cols is None
    assert L.sample_labels(None, None, 6, 3, None)[0].tolist() == [0, 0, 1, 1, 2, 2]  # every class, a row each
    for args, match in [(("1", "2"), "not both"), (("4", None), "out of range"), ((None, "0,x"), "'x' is not")]:
        with pytest.raises(ValueError, match=match):
            L.sample_labels(*args, 2, 4, ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="not class-conditional"):
        L.sample_labels("1", None, 2, 0, None)


def test_train_eval_sample_a_labelled_folder(tmp_path, folder, capsys):
    out = tmp_path / "run"
    assert main(["train", "--labels", "--out", str(out), "--data", str(folder), *TINY, "--steps", "20",
                 "--batch-size", "8", "--lr", "1e-2", "--warmup", "2", "--eval-every", "0", "--n-samples", "6",
                 "--log-every", "5", "--no-progress"]) == 0  # fmt: skip
    assert "3 classes (blue, green, red)" in capsys.readouterr().out
    ckpt = out / "ckpt_00000020.pt"
    state = ck.read_checkpoint(ckpt)
    assert state["config"]["classes"] == 3 and state["class_names"] == ["blue", "green", "red"]

    js = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(ckpt), "--data", str(folder), "--json", str(js)]) == 0
    printed = capsys.readouterr().out
    res = json.loads(js.read_text())
    assert [c["name"] for c in res["classes"]] == ["blue", "green", "red"] and all(c["n"] == 1 for c in res["classes"])
    overall = res["results"][0]["bpd"]
    assert overall == pytest.approx(np.mean([c["bpd"] for c in res["classes"]]), rel=1e-9)
    assert "per class:" in printed and "green" in printed

    grid, arr = tmp_path / "g.png", tmp_path / "s.npy"
    assert main(["sample", "--checkpoint", str(ckpt), "--labels", "red,0", "--n", "3", "--out", str(grid),
                 "--save-array", str(arr), "--scale", "1"]) == 0  # fmt: skip
    x = np.load(arr)
    assert x.shape == (6, 3, 4, 4)
    assert Image.open(grid).size == (3 * 6 + 2, 2 * 6 + 2)  # one row of --n images per class: 3 wide, 2 high
    assert main(["sample", "--checkpoint", str(ckpt), "--label", "green", "--n", "2", "--out", str(grid)]) == 0
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(ckpt), "--label", "7", "--out", str(grid)]) == 2
    assert "out of range" in capsys.readouterr().err


def test_train_labels_on_unlabelled_data_is_an_error(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", data=np.zeros((8, 4, 4, 3), np.uint8))
    assert main(["train", "--labels", "--out", str(tmp_path / "r"), "--data", str(tmp_path / "d.npz"), *TINY,
                 "--steps", "1", "--no-progress"]) == 2  # fmt: skip
    assert "no 'labels' array" in capsys.readouterr().err


def test_demo_labels_quick(tmp_path, capsys):
    assert main(["demo", "--labels", "--quick", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert len(res["classes"]) == 7 and len(res["per_class"]) == 7 and res["config"]["classes"] == 7
    assert Image.open(res["paths"]["samples"]).size[1] == 7 * (2 * 4 + 2) + 2  # a row per photograph (scale 2)
    assert "astronaut" in capsys.readouterr().out


def test_train_labels_with_a_contradicting_class_count(tmp_path, folder):
    with pytest.raises(SystemExit, match="classes=2 but the data has 3 classes"):
        main(["train", "--labels", "--out", str(tmp_path / "r"), "--data", str(folder), *TINY, "--set", "classes=2",
              "--steps", "1", "--no-progress"])  # fmt: skip
