"""Labelled image datasets, for class-conditional models: items are (uint8 image [C, N, N], int label).

Sources (the same formats as spn.data, each with its labels):

- an image folder with one subfolder per class (the ImageFolder convention): the classes are the sorted names of
  the subfolders that hold images, label k is the k-th name; image files directly in the root are an error. The
  held-out split is the last HELD_OUT_FRACTION of each class's sorted files, so every class is scored.
- CIFAR-10 python batches: their `labels` lists, with the ten CIFAR-10 class names.
- .npz arrays with a `labels` array beside `data` (the downsampled ImageNet 32/64 releases): labels as stored,
  classes = largest label + 1; those releases number their classes from 1, so when no file holds a 0 every label
  is lowered by 1 (say so in the class names: class k is named after the stored value k + 1).

A model saves its class names in its checkpoints; data labelled for it is mapped to its classes by name
(`classes=`), so a held-out folder that lacks some classes, or lists them in another order, still fits.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from . import data as D
from .imagefiles import list_images

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class Labelled(Dataset):
    """An image dataset with a label per item: item i is (base[i], label of the source item that served it).

    `label_of(i)` gives the label of item i (for an ImageFolder that skips unreadable files, the label of the file
    that stood in, read after the item is loaded); `classes` are the class names, label k is classes[k]."""

    def __init__(self, base: Dataset, labels: np.ndarray, classes: Sequence[str]):
        self.base, self.labels, self.classes = base, np.asarray(labels, dtype=np.int64), list(classes)
        if len(self.labels) != len(_innermost(base)):
            raise ValueError(f"{len(self.labels)} labels for {len(_innermost(base))} images")

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.base[i]
        inner = _innermost(self.base)
        n = len(self.labels)
        k = i % n
        if isinstance(inner, D.ImageFolder) and inner.bad:  # the readable file that stood in for a skipped one
            k = next((i + j) % n for j in range(n) if str(inner.files[(i + j) % n]) not in inner.bad)
        return x, int(self.labels[k])


def _innermost(ds: Dataset) -> Dataset:
    while isinstance(ds, D.Subsampled):
        ds = ds.base
    return ds


def _class_map(found: Sequence[str], classes: Sequence[str] | None, where: str) -> tuple[list[str], dict[str, int]]:
    """The class list (the given one, else the found names) and name -> label; ValueError for unknown names."""
    classes = list(found) if classes is None else list(classes)
    index = {c: k for k, c in enumerate(classes)}
    unknown = [c for c in found if c not in index]
    if unknown:
        raise ValueError(
            f"{where} holds classes the model does not know: {', '.join(unknown[:5])} (the model's "
            f"{len(classes)} classes: {', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''})"
        )
    return classes, index


def _folder(path: Path, split: str, size: int, channels: int, classes, held_out: bool, kw: dict) -> Labelled:
    files = list_images(path)
    if not files:
        raise ValueError(f"--data {str(path)!r}: no image files ({', '.join(D.IMAGE_EXTENSIONS)}) found")
    loose = [f for f in files if f.parent == path]
    if loose:
        raise ValueError(
            f"--data {str(path)!r} with labels needs one subfolder per class (the ImageFolder convention), but "
            f"{len(loose)} image files lie directly in it (first: {loose[0].name})"
        )
    by_class: dict[str, list[Path]] = {}
    for f in files:
        by_class.setdefault(f.relative_to(path).parts[0], []).append(f)
    names, index = _class_map(sorted(by_class), classes, f"--data {str(path)!r}")
    picked, labels = [], []
    for name in sorted(by_class):
        group = by_class[name]
        group = group[D._split_tail(len(group), split)] if held_out else group
        picked += group
        labels += [index[name]] * len(group)
    if not picked:
        raise ValueError(f"--data {str(path)!r}: no {split} images (each class has too few files to hold one out)")
    crop = kw.pop("crop") or ("random" if split == "train" else "center")
    if crop == "grid":
        raise ValueError("--crop grid does not keep one label per image: use --crop center with labels")
    if len(set(labels)) < len(by_class):
        warnings.warn(f"the {split} split of {path} lacks some classes (too few files to hold one out)", stacklevel=3)
    ds = D.ImageFolder(picked, size, channels, crop=crop, **kw)
    if len(ds.files) != len(picked):  # files refused at their header: their labels go with them
        kept = {str(f) for f in ds.files}
        labels = [lab for f, lab in zip(picked, labels) if str(f) in kept]
    return Labelled(ds, np.array(labels), names)


def _cifar(root: Path, split: str, size: int, channels: int, classes) -> Labelled:
    arr, lab = D._load_cifar(root, split, labels=True)
    if lab.size and (lab.min() < 0 or lab.max() >= len(CIFAR10_CLASSES)):
        raise ValueError(f"{root}: CIFAR-10 labels must be in 0..9, got {lab.min()}..{lab.max()}")
    names_, index = _class_map(CIFAR10_CLASSES, classes, str(root))
    return Labelled(D.ArrayImages(arr, size, channels), np.array([index[CIFAR10_CLASSES[k]] for k in lab]), names_)


def _arrays(path: Path, split: str, size: int, channels: int, classes, held_out: bool) -> Labelled:
    files = [path] if path.is_file() else sorted(f for f in path.iterdir() if f.suffix.lower() in D.ARRAY_EXTENSIONS)
    if not files:
        raise ValueError(f"--data {str(path)!r}: no .npy/.npz files")
    images, labels = [], []
    for f in files:
        if f.suffix != ".npz":
            raise ValueError(f"{f}: labels come from the 'labels' array of an .npz file; a .npy holds images only")
        with np.load(f, allow_pickle=False) as z:
            if "labels" not in z.files:
                raise ValueError(f"{f}: no 'labels' array (it holds {', '.join(map(repr, z.files))})")
            lab = np.asarray(z["labels"]).reshape(-1)
        img = D._load_array_file(f, channels)
        if lab.shape[0] != img.shape[0] or not np.issubdtype(lab.dtype, np.integer) and not _whole(lab):
            raise ValueError(f"{f}: 'labels' must hold one integer per image, got {lab.dtype} {lab.shape} for "
                             f"{img.shape[0]} images")  # fmt: skip
        images.append(img)
        labels.append(lab.astype(np.int64))
    lab = np.concatenate(labels)
    if lab.size and lab.min() < 0:
        raise ValueError(f"--data {str(path)!r}: labels must be >= 0, got {lab.min()}")
    shift = int(lab.size > 0 and lab.min() >= 1)  # classes numbered from 1 (the downsampled ImageNet releases)
    lab = lab - shift
    found = [str(k + shift) for k in range(int(lab.max()) + 1 if lab.size else 0)]
    names, index = _class_map(found, classes, f"--data {str(path)!r}")
    arr = np.concatenate(images)
    lab = np.array([index[found[k]] for k in lab], dtype=np.int64)
    if held_out:
        part = D._split_tail(arr.shape[0], split)
        arr, lab = arr[part], lab[part]
    return Labelled(D.ArrayImages(arr, size, channels), lab, names)


def _whole(a: np.ndarray) -> bool:
    return np.issubdtype(a.dtype, np.floating) and bool(np.all(np.isfinite(a) & (a == np.round(a))))


def build_labelled_dataset(
    path: str,
    split: str,
    image_size: int,
    channels: int,
    *,
    classes: Sequence[str] | None = None,
    fmt: str = "auto",
    seed: int = 0,
    crop: str | None = None,
    held_out: bool = True,
    on_bad_image: str = "skip",
    subsample: int = 1,
    augment: D.Augment | None = None,
    max_pixels: int = D.MAX_IMAGE_PIXELS,
) -> Labelled:
    """One split of a labelled source (see the module docstring); the other arguments as in spn.data.build_dataset.
    `classes`: the model's class names; the data's labels are mapped to them by name (default: the data's own)."""
    if augment is not None and split != "train":
        raise ValueError(f"augment is for the train split only (evaluation data stays as it is), got split={split!r}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    fmt = D.detect_format(path) if fmt == "auto" else fmt
    size = image_size * subsample
    if fmt == "photos":
        raise ValueError("the embedded photos have no labels (spn demo --labels labels them by photograph)")
    if fmt == "folder":
        kw = dict(crop=crop, seed=seed, on_bad_image=on_bad_image, augment=augment, max_pixels=max_pixels)
        ds = _folder(Path(path), split, size, channels, classes, held_out, kw)
    elif fmt == "cifar10":
        ds = _cifar(Path(path), split, size, channels, classes)
    elif fmt == "array":
        ds = _arrays(Path(path), split, size, channels, classes, held_out)
    else:
        raise ValueError(f"unknown data format {fmt!r}; expected auto, folder, array or cifar10")
    if subsample > 1:
        ds.base = D.Subsampled(ds.base, subsample)
    return ds


def split_batch(batch) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A DataLoader batch -> (uint8 images, int64 labels or None): labelled datasets yield (images, labels)."""
    if isinstance(batch, (list, tuple)):
        return batch[0], torch.as_tensor(batch[1], dtype=torch.int64)
    return batch, None


def stack_items(items: Sequence) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Dataset items -> (uint8 images [B, C, N, N], int64 labels [B] or None)."""
    if items and isinstance(items[0], tuple):
        return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items], dtype=torch.int64)
    return torch.stack(list(items)), None


def sample_labels(
    label: str | None, labels: str | None, n: int, classes: int, names: Sequence[str] | None
) -> tuple[torch.Tensor | None, int | None]:
    """`spn sample`'s labels: --label K (n images of class K), --labels K1,K2,... (a row of n images per class),
    classes as numbers or names; neither: a grid of about n images, one row per class (see label_grid). Returns
    (int64 labels, grid columns), or (None, None) for a model without classes."""
    from .outputs import label_grid

    if label is not None and labels is not None:
        raise ValueError("pass --label K or --labels K1,K2,... , not both")
    text = label if label is not None else labels
    if not classes:
        if text is not None:
            raise ValueError(f"--label/--labels {text!r}: this model is not class-conditional (classes=0)")
        return None, None
    if text is None:
        return label_grid(classes, n)
    out = []
    for tok in [text.strip()] if label is not None else [t.strip() for t in text.split(",")]:
        if tok.lstrip("-").isdigit():
            k = int(tok)
        elif names and tok in names:
            k = list(names).index(tok)
        else:
            known = f" or one of {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}" if names else ""
            raise ValueError(f"--label/--labels: {tok!r} is not a class number{known}")
        if not 0 <= k < classes:
            raise ValueError(f"--label/--labels: class {k} is out of range: the model has classes={classes}")
        out.append(k)
    return torch.tensor(out, dtype=torch.int64).repeat_interleave(n), (n if label is None else None)


class LabelledCrops(D.RandomCrops):
    """RandomCrops of named images, labelled by the image each crop comes from: item i is (crop, k), with the
    k-th name of `images` ({name: uint8 [H, W, C]}) in `classes`."""

    def __init__(self, images: dict[str, np.ndarray], size: int, length: int, seed: int = 0, augment=None):
        super().__init__(list(images.values()), size, length, seed, augment)
        self.classes = list(images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        k = int(D._rng(self.seed, self.epoch, i).integers(len(self.images)))  # RandomCrops' first draw: the image
        return super().__getitem__(i), k
