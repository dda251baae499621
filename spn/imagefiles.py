"""Reading image files and CIFAR-10 batches without surprises: headers checked before any pixel is decoded
(size, pixel mode, decompression bombs), 16-bit and float images converted or refused, EXIF orientation applied,
and pickles rebuilt only as numpy arrays and plain containers.
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")


class BadImageError(ValueError):
    """An image file that cannot be decoded; the message names the file."""


def to_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """[H, W, c] or [H, W] uint8 -> [H, W, channels] uint8 (RGB->gray by ITU-R 601 luma, gray->RGB by copy,
    alpha dropped)."""
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3:
        raise ValueError(f"image must be [H, W] or [H, W, C], got shape {tuple(img.shape)}")
    c = img.shape[2]
    if c in (2, 4):  # gray+alpha / RGBA: drop alpha
        img, c = img[:, :, : c - 1], c - 1
    if c == channels:
        return np.ascontiguousarray(img)
    if channels == 1 and c == 3:
        luma = img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[:, :, None]
    if c == 1 and channels == 3:
        return np.ascontiguousarray(np.repeat(img, 3, axis=2))
    raise ValueError(f"cannot convert an image with {c} channels to {channels} channels")


# Decoded images above this many pixels are refused (a 8192 x 8192 RGB image is 200 MB decoded); Pillow's own
# bomb check fires only past 89M pixels (a warning) and 179M (an error).
MAX_IMAGE_PIXELS = 2**26
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _image_error(path, e: BaseException) -> BadImageError:
    return BadImageError(f"cannot decode image file {path}: {type(e).__name__}: {e}")


def check_image_header(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """Reads only the header of an image file; (width, height), or BadImageError naming the file when it is not
    an image, is empty, holds more than `max_pixels` pixels (a decompression bomb or just too large) or has a mode
    spn cannot convert."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h, mode = im.width, im.height, im.mode
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _image_error(path, e) from e
    if w < 1 or h < 1:
        raise BadImageError(f"cannot decode image file {path}: it is {w}x{h} pixels")
    if w * h > max_pixels:
        raise BadImageError(
            f"image file {path} is {w}x{h} ({w * h:,} pixels), above the limit of {max_pixels:,} decoded pixels: "
            "downscale it first"
        )
    if mode in ("CMYK", "YCbCr", "LAB", "HSV", "P", "PA", "1", "L", "LA", "La", "RGB", "RGBA", "RGBa", "RGBX"):
        return w, h
    if mode in _WIDE_MODES:
        return w, h
    raise BadImageError(f"image file {path} has the pixel mode {mode!r}, which spn does not convert")


def _wide_to_uint8(im, path) -> np.ndarray:
    """16-bit and 32-bit integer images keep their 8 most significant bits (of 16); float images must lie in
    [0, 1] and are rounded to 0..255."""
    a = np.asarray(im)
    if im.mode == "F":
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
            raise BadImageError(
                f"image file {path} is a float image with values in [{lo:g}, {hi:g}] (or NaN/inf): spn reads float "
                "images only with values in [0, 1]; convert it to 8 or 16 bits"
            )
        return np.rint(a * 255.0).astype(np.uint8)
    a = a.astype(np.int64)
    if a.min() < 0 or a.max() > 65535:
        raise BadImageError(
            f"image file {path} is a 32-bit integer image with values in [{a.min()}, {a.max()}]: spn reads integer "
            "images of up to 16 bits"
        )
    return (a >> 8).astype(np.uint8)


def load_image(path: str | os.PathLike, channels: int, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """An image file as uint8 [H, W, channels], turned upright by its EXIF orientation. 16-bit images keep their
    high byte, float images in [0, 1] are scaled to 0..255; anything else that does not fit 8 bits, and images
    above `max_pixels`, raise BadImageError naming the file."""
    from PIL import Image, ImageOps

    check_image_header(path, max_pixels)
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in _WIDE_MODES:
                return to_channels(_wide_to_uint8(im, path), channels)
            im = im.convert("RGB" if channels == 3 else "L")
            return to_channels(np.asarray(im, dtype=np.uint8), channels)
    except Image.DecompressionBombError as e:
        raise _image_error(path, e) from e


class CifarUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: any other global a pickle names (how a pickle runs code)
    is refused, so a crafted batch file fails to load instead of executing."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refers to {module}.{name}, which a CIFAR-10 batch never does")
        if name == "_reconstruct":
            return np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's own reconstructor, without a deprecated import
        return getattr(np, name)


def list_images(root: Path) -> list[Path]:
    """The image files under `root`, recursively, sorted; symlinked folders are followed (each real folder once),
    and only regular files count (a folder named x.png is not an image)."""
    out, seen = [], set()
    for d, dirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(d)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        out += [Path(d) / n for n in names if n.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(Path(d) / n)]
    return sorted(out)


class DecodeCache:
    """Decoded large images, kept for the next access: an image folder is read many times (every epoch, every
    random crop), and decoding an 8192 x 8192 PNG again for each access costs seconds. Images of at least
    `min_pixels` pixels are kept, `max_bytes` in all, the least recently used dropped first (a warning says so
    once: past that the folder's large images are decoded again when they come back). Smaller images are cheap to
    decode and are not kept. The kept arrays are read-only. One cache per process (DataLoader workers have their
    own)."""

    def __init__(self, min_pixels: int = 2**22, max_bytes: int = 2**30):
        from collections import OrderedDict

        self.min_pixels, self.max_bytes = min_pixels, max_bytes
        self._kept: OrderedDict[str, np.ndarray] = OrderedDict()
        self.bytes = 0
        self.decodes = 0  # how many times the loader ran (for tests and reports)
        self._warned = False

    def get(self, path: str | os.PathLike, load) -> np.ndarray:
        """The image at `path`: kept, or `load()` (then kept if large)."""
        key = str(path)
        if key in self._kept:
            self._kept.move_to_end(key)
            return self._kept[key]
        img = load()
        self.decodes += 1
        if img.shape[0] * img.shape[1] < self.min_pixels or img.nbytes > self.max_bytes:
            return img
        img.flags.writeable = False
        self._kept[key] = img
        self.bytes += img.nbytes
        while self.bytes > self.max_bytes:
            _, old = self._kept.popitem(last=False)
            self.bytes -= old.nbytes
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"the decoded large images exceed {self.max_bytes / 2**30:.1f} GiB: they are decoded again when "
                    "they come back, which is slow; downscale them first",
                    stacklevel=3,
                )
        return img
