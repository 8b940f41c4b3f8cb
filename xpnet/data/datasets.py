"""The datasets as host NumPy arrays: `load_dataset`, the book's `load_mnist`, and `Dataset`.

MNIST and Fashion-MNIST come from IDX files, CIFAR-10 from its binary archive (found, verified and
downloaded by `xpnet.data.files`), digits from scikit-learn. Images keep their channel axis
internally, (N, C, H, W) uint8 as stored; `load_dataset` returns them flattened to (N, C·H·W) rows
by default or as (N, C, H, W), and `Dataset.image_shape` says (C, H, W) either way, so flat rows
can be turned back into images for a CNN (`Dataset.as_images`).

Moving arrays to a device is the caller's job (`xpnet.training.placement.to_device`); everything here
is NumPy.
"""

from __future__ import annotations

import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..backend import namespace_of
from ..errors import DataError, choose
from .catalogue import DATASETS, DIGIT_NAMES
from .fetch import DataUnavailable
from .files import load_files, named

# The digits split: a fixed seed and test size, so every run and machine sees the same 300 tests.
DIGITS_SEED = 0
DIGITS_TEST_SIZE = 300


@dataclass
class Dataset:
    """A train/test split as host NumPy arrays, with where it came from.

    name: the dataset actually loaded ("digits" when "auto" fell back), e.g. for checkpoints.
    x: float32 in [0, 1] when normalized, else uint8; (N, C·H·W) when flattened, else (N, C, H, W).
    t: int64 class indices (N,), or float32 one-hot rows (N, classes).
    image_shape: (C, H, W) of one image, flattened or not: (1, 28, 28) for MNIST, (3, 32, 32) for
    CIFAR-10, (1, 8, 8) for digits; inferred from 3-D or 4-D x when not given, else None.
    class_names: one name per class, e.g. "airplane" for CIFAR-10's class 0.
    scale: when x is normalized image data, the divisor it was normalized by (x = uint8 code ·
    float32(1/scale)), from which the Trainer recovers the codes to gather a quarter of the bytes.
    """

    name: str
    x_train: np.ndarray = field(repr=False)
    t_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    t_test: np.ndarray = field(repr=False)
    num_classes: int
    source: str
    notice: str | None = None
    image_shape: tuple[int, int, int] | None = None
    class_names: tuple[str, ...] | None = None
    scale: int | None = None

    def __post_init__(self):
        if self.image_shape is None:
            shape = tuple(self.x_train.shape[1:])
            if len(shape) == 3:
                self.image_shape = shape
            elif len(shape) == 2:
                self.image_shape = (1, *shape)
        else:
            self.image_shape = tuple(int(n) for n in self.image_shape)
            per_sample = math.prod(self.x_train.shape[1:])
            if len(self.image_shape) != 3 or math.prod(self.image_shape) != per_sample:
                raise DataError(
                    f"{self.name}: image_shape {self.image_shape} does not fit samples of "
                    f"{per_sample} values; give (C, H, W) with C·H·W = {per_sample}"
                )

    def as_images(self, x):
        """`x` (rows of this dataset, flat or not, on any Array API backend) as (N, C, H, W)."""
        if self.image_shape is None:
            raise DataError(f"{self.name} has no image shape, so its rows cannot be made images")
        return namespace_of(x).reshape(x, (x.shape[0], *self.image_shape))


def _load_digits():
    """scikit-learn's bundled 8×8 digits (1797 samples, values 0..16), split by a fixed seed."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError(
            'the "digits" dataset comes with scikit-learn, which is not installed: '
            'pip install scikit-learn (or pip install "xpnet[datasets]")'
        ) from None
    bunch = load_digits()
    # The values are whole numbers 0..16 stored as float64; uint8 is exact and matches MNIST.
    x = bunch.data.astype(np.uint8).reshape(-1, 8, 8)
    t = bunch.target
    # RandomState's stream is frozen by NumPy's policy, so the split is the same in every version.
    order = np.random.RandomState(DIGITS_SEED).permutation(len(x))
    test, train = order[:DIGITS_TEST_SIZE], order[DIGITS_TEST_SIZE:]
    # No parentheses: the CLI prints "from <source> (N train / M test samples)".
    source = "scikit-learn's bundled 8x8 digits, offline"
    return (x[train], t[train], x[test], t[test], DIGIT_NAMES), 10, 16, source


def _features(x: np.ndarray, scale: int, normalize: bool, flatten: bool) -> np.ndarray:
    """(N, C·H·W) rows when `flatten`, else (N, C, H, W) images (grey ones get C = 1)."""
    x = x.reshape(len(x), -1) if flatten else x.reshape(len(x), *_image_shape(x))
    if not normalize:
        # A view of the file's bytes is read-only; callers may shuffle in place.
        return x if x.flags.writeable else x.copy()
    out = np.empty(x.shape, np.float32)
    factor = np.float32(1 / scale)
    # One multiply with the uint8 -> float32 cast inside it (no temporary); on MNIST most of its
    # time is the kernel handing out fresh pages, which threads on row blocks share out.
    blocks = min(os.cpu_count() or 1, 8, max(1, x.size >> 22))
    bounds = np.linspace(0, len(x), blocks + 1).astype(int)

    def part(i):
        np.multiply(x[bounds[i] : bounds[i + 1]], factor, out=out[bounds[i] : bounds[i + 1]])

    if blocks == 1:
        part(0)
    else:
        with ThreadPoolExecutor(max_workers=blocks) as pool:
            list(pool.map(part, range(blocks)))
    return out


def _image_shape(x: np.ndarray) -> tuple[int, int, int]:
    return tuple(x.shape[1:]) if x.ndim == 4 else (1, *x.shape[1:])


def _no_parens(text: str) -> str:
    """`text` fit to go inside parentheses: C source locations such as "(_ssl.c:1000)" dropped,
    other parentheses made brackets, so a message never shows "((" or "))"."""
    text = re.sub(r"\s*\([\w.]+\.c:\d+\)", "", text)
    return text.replace("(", "[").replace(")", "]")


def _labels(t: np.ndarray, n: int, num_classes: int, what: str, one_hot: bool) -> np.ndarray:
    if t.shape != (n,):
        raise DataError(
            f"{what}: {t.shape[0]} labels for {n} images; the files do not belong together"
        )
    if n and (t.min() < 0 or t.max() >= num_classes):
        bad = t[(t < 0) | (t >= num_classes)][0]
        raise DataError(f"{what}: label {bad} is outside 0..{num_classes - 1}; the file is corrupt")
    t = t.astype(np.int64)
    return np.eye(num_classes, dtype=np.float32)[t] if one_hot else t


def load_dataset(
    name: str = "auto",
    data_dir=None,
    *,
    normalize: bool = True,
    flatten: bool = True,
    one_hot_label: bool = False,
    download: bool = True,
    progress: bool | None = True,
) -> Dataset:
    """Load "mnist", "fashion-mnist", "cifar10" or "digits" as host arrays; "auto" is MNIST,
    else digits.

    The files are read from `data_dir`, else $XPNET_DATA_DIR, never written there; else from
    xpnet's cache, which missing files are downloaded into (`xpnet.data.files`). "auto" falls back
    to the offline digits (with `notice` set, and `name` "digits") only when no folder is named and
    MNIST's files are absent from the cache and cannot be had: no network, downloads off, or a
    cache that cannot be made or written. A bad file, or a named folder that does not exist or
    lacks the dataset, raises instead. Naming a dataset never falls back. `progress=False` hides
    the download bar, which is drawn only on a terminal anyway.
    """
    name = choose("dataset", name, (*DATASETS, "auto"))
    notice = None
    if name == "digits":
        parts = _load_digits()
    elif name == "auto":
        name = "mnist"
        try:
            parts = load_files(name, data_dir, download, progress)
        except DataUnavailable as exc:
            if named(data_dir):  # a folder the user named is never swapped for digits
                raise
            try:
                parts = _load_digits()
            except DataError as err:
                raise DataError(f"{exc}; the offline fallback failed too: {err}") from None
            name = "digits"
            notice = (
                f"MNIST is not in {exc.where} and could not be downloaded ({_no_parens(exc.why)}); "
                f"using scikit-learn's offline 8x8 digits instead. Pass --data-dir DIR naming a "
                f"folder that holds MNIST, or --dataset mnist to get an error instead of this "
                f"fallback"
            )
    else:
        parts = load_files(name, data_dir, download, progress)

    (x_train, t_train, x_test, t_test, class_names), num_classes, scale, source = parts
    if len(class_names) != num_classes:
        raise DataError(
            f"{name}: {len(class_names)} class names for {num_classes} classes; the files are corrupt"
        )
    return Dataset(
        name=name,
        x_train=_features(x_train, scale, normalize, flatten),
        t_train=_labels(t_train, len(x_train), num_classes, f"{name} training set", one_hot_label),
        x_test=_features(x_test, scale, normalize, flatten),
        t_test=_labels(t_test, len(x_test), num_classes, f"{name} test set", one_hot_label),
        num_classes=num_classes,
        source=source,
        notice=notice,
        image_shape=_image_shape(x_train),
        class_names=tuple(class_names),
        scale=scale if normalize and x_train.dtype == np.uint8 else None,
    )


def load_mnist(normalize=True, flatten=True, one_hot_label=False, data_dir=None):
    """The book's `load_mnist`: ((x_train, t_train), (x_test, t_test)) as NumPy arrays.

    Like the book's, it needs MNIST itself (found or downloaded) and never falls back to digits.
    """
    d = load_dataset(
        "mnist", data_dir, normalize=normalize, flatten=flatten, one_hot_label=one_hot_label
    )
    return (d.x_train, d.t_train), (d.x_test, d.t_test)
