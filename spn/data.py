"""Image datasets for training and evaluation: uint8 end to end, no torchvision, no downloads.

Every dataset yields uint8 tensors [C, N, N] (C = channels, N = image_size); the training loop reduces them to the
model's bit depth. Sources:

- "photos": the natural photographs that scikit-image ships inside its wheel (read straight from the installed
  package directory with Pillow, so no pooch download and no network). Split by whole image:
  train = astronaut, hubble_deep_field, ihc, motorcycle_left, motorcycle_right, retina, rocket;
  test = chelsea, coffee. Training items are random N x N crops at native resolution (each image equally likely,
  positions uniform); the test set is the fixed grid of non-overlapping N x N crops of the test images.
- an image folder: PNG/JPEG/BMP/WebP files found recursively, square-cropped (centre or random) and resized to N;
  grayscale/RGBA converted to `channels`.
- numpy arrays: .npy/.npz of uint8 images [N, H, W, C], [N, C, H, W], [N, H, W] or flattened [N, C*H*W] (the layout
  of the downsampled ImageNet 32/64 .npz releases, key "data"); a file or a directory of such files.
- CIFAR-10 python batches: the directory `cifar-10-batches-py` (data_batch_1..5 = train, test_batch = test), or
  any directory with fmt="cifar10". They are pickles: read with an unpickler that rebuilds only numpy arrays and
  plain containers, never because some other folder holds a file named test_batch.

Auto-detection refuses to guess: a directory with both arrays and image files is an error naming both.

Randomness is a pure function of (seed, epoch, index) so a resumed run sees exactly the same crops.

Training data can be augmented (`Augment`; never the held-out split): horizontal flips; random-resized crops, a
square of random side between N and max_scale * N (log-uniform, clipped to the image) resized to N, so that one
photograph yields many content scales; and colour changes that keep a photograph's local structure but move it
elsewhere in colour space (channel orders, inversion), so that a few photographs cover colours they lack. The
augmentation draws come after the crop's own, from the same generator.
"""

from __future__ import annotations

import importlib.util
import pickle
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .imagefiles import (
    IMAGE_EXTENSIONS,
    MAX_IMAGE_PIXELS,
    BadImageError,
    CifarUnpickler,
    DecodeCache,
    check_image_header,
    list_images,
    load_image,
    to_channels,
)

PHOTO_FILES = {
    "astronaut": "astronaut.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "ihc": "ihc.png",
    "motorcycle_left": "motorcycle_left.png",
    "motorcycle_right": "motorcycle_right.png",
    "retina": "retina.jpg",
    "rocket": "rocket.jpg",
}
# Split by whole image so no test pixel is ever seen in training; the two motorcycle views (a stereo pair of the
# same scene) stay together on the train side.
PHOTO_SPLITS = {
    "train": ("astronaut", "hubble_deep_field", "ihc", "motorcycle_left", "motorcycle_right", "retina", "rocket"),
    "test": ("chelsea", "coffee"),
}
FORMATS = ("auto", "photos", "folder", "array", "cifar10")  # the values of --data-format
ARRAY_EXTENSIONS = (".npy", ".npz")
# Folder and array sources with no separate test set hold out this fraction (the last items in sorted order).
HELD_OUT_FRACTION = 0.05
CIFAR_DIR = "cifar-10-batches-py"


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) & 0xFFFFFFFF for k in key])


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation: `hflip` mirrors half the crops left-right; `max_scale` > 1 makes every crop a
    square of side log-uniform in [N, max_scale * N] (clipped to the image), resized to N; `channel_perm` puts the
    colour channels of each crop in a uniformly random order; `invert` maps half the crops to 2^8 - 1 - x;
    `color_jitter` = j > 0 changes each channel's contrast and brightness independently, x -> g (x - 128) + 128 + o
    with log g and o / 128 uniform in [-j, j], rounded and clipped to [0, 255] (white balance and exposure changes,
    which also decorrelate the channels and saturate some, as real photographs do)."""

    hflip: bool = False
    max_scale: float = 1.0
    channel_perm: bool = False
    invert: bool = False
    color_jitter: float = 0.0

    def __post_init__(self) -> None:
        for name in ("hflip", "channel_perm", "invert"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if not isinstance(self.color_jitter, (int, float)) or not 0.0 <= self.color_jitter <= 1.0:
            raise ValueError(f"color_jitter must be a number in [0, 1], got {self.color_jitter!r}")
        if not isinstance(self.max_scale, (int, float)) or not 1.0 <= self.max_scale < float("inf"):
            raise ValueError(f"max_scale must be a finite number >= 1, got {self.max_scale!r}")

    def side(self, rng: np.random.Generator, size: int, largest: int) -> int:
        """The crop side for an output of size x size from an image whose shorter side is `largest`."""
        lo, hi = min(size, largest), min(largest, self.max_scale * size)
        if self.max_scale <= 1.0 or hi <= lo:
            return lo
        return int(min(hi, max(lo, round(float(np.exp(rng.uniform(np.log(lo), np.log(hi))))))))

    def apply(self, rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
        """Flip and colour changes of one uint8 crop [N, N, C] (draws only for the enabled ones, in this order)."""
        if self.hflip and rng.random() < 0.5:
            img = img[:, ::-1]
        if self.channel_perm and img.shape[2] > 1:
            img = img[:, :, rng.permutation(img.shape[2])]
        if self.invert and rng.random() < 0.5:
            img = 255 - img
        if self.color_jitter > 0:
            j, c = self.color_jitter, img.shape[2]
            gain, offset = np.exp(rng.uniform(-j, j, c)), 128 * rng.uniform(-j, j, c)
            img = np.clip(np.rint(gain * (img.astype(np.float32) - 128) + 128 + offset), 0, 255).astype(np.uint8)
        return img


def _resize_square(img: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if img.shape[0] == size and img.shape[1] == size:
        return img
    mode = "L" if img.shape[2] == 1 else "RGB"
    im = Image.fromarray(img[:, :, 0] if mode == "L" else img, mode=mode)
    out = np.asarray(im.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0), dtype=np.uint8)
    return out.reshape(size, size, img.shape[2])


def _hwc_to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(img.transpose(2, 0, 1), order="C"))  # [C, H, W] uint8, a writable copy


def photos_dir() -> Path:
    """Where scikit-image's wheel keeps its sample images (found without importing skimage)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the embedded photos come from scikit-image, which is not installed: "
            'pip install "spn[demo]" (or scikit-image), or pass --data PATH'
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def load_photos(split: str, channels: int = 3) -> dict[str, np.ndarray]:
    """The embedded photos of one split as {name: uint8 [H, W, channels]}."""
    if split not in PHOTO_SPLITS:
        raise ValueError(f"split must be one of {sorted(PHOTO_SPLITS)}, got {split!r}")
    root = photos_dir()
    out = {}
    for name in PHOTO_SPLITS[split]:
        path = root / PHOTO_FILES[name]
        if not path.is_file():
            raise RuntimeError(f"{path} is missing: this scikit-image wheel does not ship {name!r}")
        out[name] = load_image(path, channels)
    return out


class RandomCrops(Dataset):
    """`length` random size x size crops per epoch from in-memory images, each image equally likely.

    Item i of epoch e is a pure function of (seed, e, i). `augment`: see Augment.
    """

    def __init__(
        self, images: Sequence[np.ndarray], size: int, length: int, seed: int = 0, augment: Augment | None = None
    ):
        self.augment = augment or Augment()
        if not images:
            raise ValueError("RandomCrops needs at least one image")
        for k, im in enumerate(images):
            if im.shape[0] < size or im.shape[1] < size:
                raise ValueError(f"image {k} of shape {tuple(im.shape)} is smaller than the crop size {size}")
        self.images, self.size, self.length, self.seed, self.epoch = list(images), size, length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> torch.Tensor:
        rng = _rng(self.seed, self.epoch, i)
        im = self.images[int(rng.integers(len(self.images)))]
        aug = self.augment
        side = aug.side(rng, self.size, min(im.shape[:2])) if aug.max_scale > 1 else self.size
        y = int(rng.integers(im.shape[0] - side + 1))
        x = int(rng.integers(im.shape[1] - side + 1))
        crop = _resize_square(im[y : y + side, x : x + side], self.size)
        return _hwc_to_tensor(aug.apply(rng, crop))


def grid_crops(images: Sequence[np.ndarray], size: int) -> torch.Tensor:
    """Every non-overlapping size x size crop on the grid anchored at the top-left corner: uint8 [M, C, N, N]."""
    out = []
    for im in images:
        for y in range(0, im.shape[0] - size + 1, size):
            for x in range(0, im.shape[1] - size + 1, size):
                out.append(_hwc_to_tensor(im[y : y + size, x : x + size]))
    if not out:
        raise ValueError(f"no {size}x{size} crop fits in the given images")
    return torch.stack(out)


class TensorImages(Dataset):
    """A fixed uint8 tensor of images [M, C, N, N]."""

    def __init__(self, images: torch.Tensor):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 [M, C, N, N], got {images.dtype} {tuple(images.shape)}")
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i % len(self)]  # indices past the end repeat (see Resampled)


class ImageFolder(Dataset):
    """Image files, decoded on access (large ones once, then kept: DecodeCache), square-cropped ("center" or
    "random") and resized to size x size.

    Every file's header is read up front (cheap: no pixel data): a file that is not an image, is larger than
    `max_pixels` (decompression bombs included) or has a pixel format spn cannot convert is refused before any
    work, naming it (on_bad_image="fail"), or left out with a warning ("skip"). Images smaller than size x size
    are upscaled, and a warning says how many. Pixel data that turns out to be damaged later (a truncated file)
    raises BadImageError naming it ("fail"), or is reported once with a running count and item i is served by
    the next readable file in order (i+1, i+2, ... wrapping), so the substitute, like everything else, is a pure
    function of the index. A full decode of every file up front would cost a pass over the whole dataset.

    Any index i >= 0 is valid: item i is file i % len, its random crop keyed by i itself (see Resampled).
    """

    def __init__(
        self,
        files: Sequence[Path],
        size: int,
        channels: int,
        crop: str = "center",
        seed: int = 0,
        on_bad_image: str = "skip",
        augment: Augment | None = None,
        max_pixels: int = MAX_IMAGE_PIXELS,
    ):
        self.augment = augment or Augment()
        if crop not in ("center", "random"):
            raise ValueError(f"crop must be 'center' or 'random' (or 'grid' through build_dataset), got {crop!r}")
        if on_bad_image not in ("skip", "fail"):
            raise ValueError(f"on_bad_image must be 'skip' or 'fail', got {on_bad_image!r}")
        self.on_bad_image = on_bad_image
        self.bad: dict[str, str] = {}  # path -> reason, for the files skipped so far (in this process)
        if not files:
            raise ValueError("ImageFolder got no image files")
        self.max_pixels = max_pixels
        self.decoded = DecodeCache()  # large images are decoded once, not on every access
        files, small = self._check_headers(files, size, on_bad_image, max_pixels)
        if small:
            warnings.warn(
                f"{small} of {len(files)} images are smaller than {size}x{size} and are upscaled to it", stacklevel=3
            )
        self.files, self.size, self.channels, self.crop, self.seed, self.epoch = (
            list(files),
            size,
            channels,
            crop,
            seed,
            0,
        )

    @staticmethod
    def _check_headers(files, size: int, on_bad_image: str, max_pixels: int) -> tuple[list[Path], int]:
        good, small = [], 0
        for path in files:
            try:
                w, h = check_image_header(path, max_pixels)
            except BadImageError as e:
                if on_bad_image == "fail":
                    raise
                warnings.warn(f"skipping {e}", stacklevel=4)
                continue
            good.append(path)
            small += min(w, h) < size
        if not good:
            raise BadImageError(f"none of the {len(files)} image files can be decoded (first: {files[0]})")
        return good, small

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, i: int) -> np.ndarray:
        n = len(self.files)
        for k in range(n):
            path = self.files[(i + k) % n]
            if str(path) in self.bad:
                continue
            try:
                return self.decoded.get(path, lambda: load_image(path, self.channels, self.max_pixels))
            except (OSError, SyntaxError, ValueError) as e:  # what PIL raises for unreadable/corrupt/truncated data
                reason = f"{type(e).__name__}: {e}"
                if self.on_bad_image == "fail":
                    if isinstance(e, BadImageError):
                        raise
                    raise BadImageError(f"cannot decode image file {path}: {reason}") from e
                self.bad[str(path)] = reason
                warnings.warn(
                    f"skipping unreadable image file {path} ({reason}); {len(self.bad)} of {n} files skipped so far",
                    stacklevel=3,
                )
        raise BadImageError(f"none of the {n} image files can be decoded (first: {self.files[0]})")

    def __getitem__(self, i: int) -> torch.Tensor:
        img = self._load(i)
        h, w = img.shape[:2]
        side = min(h, w)
        if self.crop == "center":
            y, x = (h - side) // 2, (w - side) // 2
            return _hwc_to_tensor(_resize_square(img[y : y + side, x : x + side], self.size))
        rng = _rng(self.seed, self.epoch, i)
        if self.augment.max_scale > 1:
            side = self.augment.side(rng, self.size, side)
        y, x = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
        crop = _resize_square(img[y : y + side, x : x + side], self.size)
        return _hwc_to_tensor(self.augment.apply(rng, crop))


class Subsampled(Dataset):
    """Images loaded at k times the size, then strided x[:, ::k, ::k]: the distribution of slice 0 of the larger
    images, which is what the first stage of a size-upscaling pipeline models."""

    def __init__(self, base: Dataset, k: int):
        self.base, self.k = base, k

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.base[i][:, :: self.k, :: self.k].contiguous()


class Resampled(Dataset):
    """`length` items per epoch drawn with replacement from `base`, for a training set smaller than one batch.
    Draw j of epoch e takes item k = rng(seed, e, j) of base, as base[k + len(base) * (j + 1)]: the same image,
    but with a random crop of its own (datasets key their crops by the index and repeat past their end), so two
    draws of one image differ wherever the crops are random."""

    def __init__(self, base: Dataset, length: int, seed: int = 0):
        if len(base) < 1:
            raise ValueError("Resampled needs a non-empty dataset")
        self.base, self.length, self.seed, self.epoch = base, length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, j: int) -> torch.Tensor:
        n = len(self.base)
        k = int(_rng(self.seed, self.epoch, j, 0x5A3D).integers(n))
        return self.base[k + n * (j + 1)]


def _array_to_nhwc(a: np.ndarray, channels: int, where: str) -> np.ndarray:
    """Any supported array layout -> uint8 [M, H, W, c]."""
    if a.dtype != np.uint8:
        raise ValueError(f"{where}: images must be uint8, got {a.dtype}")
    if a.ndim == 2:  # flattened [M, C*H*W] in C, H, W order (downsampled ImageNet, CIFAR)
        d = a.shape[1]
        side = int(round((d / channels) ** 0.5))
        if side * side * channels != d:
            raise ValueError(f"{where}: cannot unflatten rows of {d} values into {channels} x H x H images")
        return a.reshape(a.shape[0], channels, side, side).transpose(0, 2, 3, 1)
    if a.ndim == 3:  # [M, H, W] grayscale
        return a[:, :, :, None]
    if a.ndim == 4:
        if a.shape[3] in (1, 2, 3, 4):
            return a
        if a.shape[1] in (1, 2, 3, 4):
            return a.transpose(0, 2, 3, 1)
    raise ValueError(f"{where}: expected uint8 [M, H, W, C], [M, C, H, W], [M, H, W] or [M, D], got {a.shape}")


def _load_array_file(path: Path, channels: int) -> np.ndarray:
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            keys = [k for k in ("data", "x") if k in z.files] or (z.files if len(z.files) == 1 else [])
            if not keys:
                raise ValueError(
                    f"{path}: an .npz of images needs its array under the key 'data' or 'x' (or a single array); "
                    f"it holds {', '.join(map(repr, z.files)) or 'no arrays'}"
                )
            a = z[keys[0]]
    else:
        a = np.load(path, allow_pickle=False, mmap_mode="r")
    return _array_to_nhwc(np.asarray(a), channels, str(path))


class ArrayImages(Dataset):
    """uint8 images [M, H, W, c] held in memory, converted and resized (centre square) to [C, N, N] on access."""

    def __init__(self, arrays: np.ndarray, size: int, channels: int):
        self.arrays, self.size, self.channels = arrays, size, channels

    def __len__(self) -> int:
        return self.arrays.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        img = to_channels(np.asarray(self.arrays[i % len(self)]), self.channels)  # past the end: repeats
        h, w = img.shape[:2]
        side = min(h, w)
        y, x = (h - side) // 2, (w - side) // 2
        return _hwc_to_tensor(_resize_square(img[y : y + side, x : x + side], self.size))


def _load_cifar(root: Path, split: str, labels: bool = False):
    """The CIFAR-10 python batches of a split: uint8 images [N, 32, 32, 3], and with labels=True also their int64
    labels [N] (a batch without labels is then an error)."""
    names = [f"data_batch_{k}" for k in range(1, 6)] if split == "train" else ["test_batch"]
    warnings.warn(
        f"reading CIFAR-10 python batches from {root}: they are pickles, read with an unpickler that rebuilds only "
        "numpy arrays and plain containers",
        stacklevel=3,
    )
    parts, labs = [], []
    for n in names:
        p = root / n
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found (expected the CIFAR-10 python batches in {root})")
        try:
            with open(p, "rb") as f:
                d = CifarUnpickler(f, encoding="bytes").load()
            parts.append(np.asarray(d[b"data"], dtype=np.uint8))
            if labels:
                labs.append(np.asarray(d[b"labels"], dtype=np.int64))
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as e:
            what = "a labelled CIFAR-10 python batch" if labels else "a CIFAR-10 python batch"
            raise ValueError(f"{p} is not {what}: {type(e).__name__}: {e}") from e
    images = np.concatenate(parts).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return (images, np.concatenate(labs)) if labels else images


def detect_format(path: str) -> str:
    """'photos', 'cifar10', 'array' or 'folder' for a --data value."""
    if path == "photos":
        return "photos"
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"--data {path!r}: no such file or directory (use 'photos' for the embedded set)")
    if p.is_file():
        if p.suffix.lower() in ARRAY_EXTENSIONS:
            return "array"
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            return "folder"
        raise ValueError(f"--data {path!r}: unknown file type (expected .npy/.npz, an image, or a directory)")
    # CIFAR-10's python batches are pickles: they are read only from a folder with the release's own name (or
    # with --data-format cifar10), never because some folder holds a file called test_batch.
    if p.name == CIFAR_DIR:
        return "cifar10"
    arrays = [f.name for f in p.iterdir() if f.is_file() and f.suffix.lower() in ARRAY_EXTENSIONS]
    images = list_images(p)
    if arrays and images:
        raise ValueError(
            f"--data {path!r} holds both arrays ({', '.join(sorted(arrays)[:3])}) and image files "
            f"({images[0].name}, ...): pass --data-format folder or --data-format array"
        )
    if arrays:
        return "array"
    if not images and ((p / "data_batch_1").is_file() or (p / "test_batch").is_file()):
        raise ValueError(
            f"--data {path!r} looks like CIFAR-10 python batches, which are pickles: they are read only from a "
            f"folder named {CIFAR_DIR!r} or with --data-format cifar10"
        )
    return "folder"


def _decode_all(files: Sequence[Path], channels: int, on_bad_image: str, max_pixels: int) -> list[np.ndarray]:
    out = []
    for path in files:
        try:
            out.append(load_image(path, channels, max_pixels))
        except (OSError, SyntaxError, ValueError) as e:
            if on_bad_image == "fail":
                if isinstance(e, BadImageError):
                    raise
                raise BadImageError(f"cannot decode image file {path}: {type(e).__name__}: {e}") from e
            warnings.warn(f"skipping unreadable image file {path} ({type(e).__name__}: {e})", stacklevel=3)
    if not out:
        raise BadImageError(f"none of the {len(files)} image files can be decoded (first: {files[0]})")
    return out


def _split_tail(n: int, split: str) -> slice:
    n_test = max(1, int(round(n * HELD_OUT_FRACTION))) if n > 1 else 0
    return slice(0, n - n_test) if split == "train" else slice(n - n_test, n)


def build_dataset(
    path: str,
    split: str,
    image_size: int,
    channels: int,
    *,
    fmt: str = "auto",
    seed: int = 0,
    crop: str | None = None,
    photo_crops_per_epoch: int = 4096,
    held_out: bool = True,
    on_bad_image: str = "skip",
    subsample: int = 1,
    augment: Augment | None = None,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> Dataset:
    """One split ("train" or "test") of a data source; see the module docstring for the formats.

    For a folder or array source, `held_out=True` holds out the last HELD_OUT_FRACTION of the sorted items as
    "test" (and leaves them out of "train"); `held_out=False` uses the whole source for whichever split is asked
    (for a separate --eval-data path). Crops default to random for train and centre for test. `on_bad_image`
    ("skip" or "fail") says what an image folder does with a file it cannot decode (see ImageFolder).
    `subsample=k > 1` loads the images at k * image_size and keeps every k-th pixel (see Subsampled).
    `augment` applies to the random crops of the train split (photos, folders); the test split is never augmented.
    `max_pixels` caps an image file's decoded size (see ImageFolder).
    """
    if augment is not None and split != "train":
        raise ValueError(f"augment is for the train split only (evaluation data stays as it is), got split={split!r}")
    if subsample > 1:
        base = build_dataset(
            path,
            split,
            image_size * subsample,
            channels,
            fmt=fmt,
            seed=seed,
            crop=crop,
            photo_crops_per_epoch=photo_crops_per_epoch,
            held_out=held_out,
            on_bad_image=on_bad_image,
            augment=augment,
            max_pixels=max_pixels,
        )
        return Subsampled(base, subsample)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    fmt = detect_format(path) if fmt == "auto" else fmt
    crop = crop or ("random" if split == "train" else "center")
    if crop == "grid" and fmt != "folder":
        raise ValueError(f"crop='grid' is for image folders, got a {fmt!r} source")
    if fmt == "photos":
        images = list(load_photos(split, channels).values())
        if split == "train":
            return RandomCrops(images, image_size, photo_crops_per_epoch, seed, augment)
        return TensorImages(grid_crops(images, image_size))
    if fmt == "cifar10":
        return ArrayImages(_load_cifar(Path(path), split), image_size, channels)
    p = Path(path)
    if fmt == "array":
        files = [p] if p.is_file() else sorted(f for f in p.iterdir() if f.suffix.lower() in ARRAY_EXTENSIONS)
        if not files:
            raise ValueError(f"--data {path!r}: no .npy/.npz files")
        arr = np.concatenate([_load_array_file(f, channels) for f in files])
        if held_out:
            arr = arr[_split_tail(arr.shape[0], split)]
        return ArrayImages(arr, image_size, channels)
    if fmt == "folder":
        files = [p] if p.is_file() else list_images(p)
        if not files:
            raise ValueError(f"--data {path!r}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found")
        if held_out:
            files = files[_split_tail(len(files), split)]
        if crop == "grid":
            return TensorImages(grid_crops(_decode_all(files, channels, on_bad_image, max_pixels), image_size))
        return ImageFolder(
            files,
            image_size,
            channels,
            crop=crop,
            seed=seed,
            on_bad_image=on_bad_image,
            augment=augment,
            max_pixels=max_pixels,
        )
    raise ValueError(f"unknown data format {fmt!r}; expected auto, photos, folder, array or cifar10")


def quantize(x: torch.Tensor, bits: int) -> torch.Tensor:
    """uint8 images -> int64 values in [0, 2^bits): keeps the `bits` most significant bits."""
    return (x.to(torch.int64) >> (8 - bits)) if bits < 8 else x.to(torch.int64)
