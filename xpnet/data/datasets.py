"""Datasets as host NumPy arrays: MNIST and Fashion-MNIST from IDX files, CIFAR-10 from its binary
archive, and scikit-learn's digits.

Files are looked up in a folder the user names (`data_dir`, else $XPNET_DATA_DIR) or in the managed
cache ($XDG_CACHE_HOME/xpnet, else ~/.cache/xpnet), directly in it or in `<dir>/<name>/`; missing
ones are downloaded into `<dir>/<name>/`. Every file is checked against its published MD5 before
use, so a truncated, corrupt or foreign file is never trained on. xpnet repairs only its own cache
(a bad file there is announced, deleted and fetched again once); in a folder the user named it never
deletes or rewrites anything and says which file is bad instead.

A folder named with `data_dir` (the CLI's --data-dir) must exist and hold a dataset (the one asked
for, or another one xpnet knows, which then receives the missing files): a typo or an empty folder
is an error, never a created folder and never a silent fallback. $XPNET_DATA_DIR is a standing
setting of where datasets live: it must exist, and files missing there are downloaded into it.

Images keep their channel axis internally, (N, C, H, W) uint8 as stored; `load_dataset` returns them
flattened to (N, C·H·W) rows by default or as (N, C, H, W), and `Dataset.image_shape` says (C, H, W)
either way, so flat rows can be turned back into images for a CNN (`Dataset.as_images`).

Moving arrays to a device is the caller's job (`xpnet.train.to_device`); everything here is NumPy.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import math
import os
import re
import sys
import tarfile
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..backend import namespace_of
from ..errors import DataError, choose
from ..fileio import fsync_dir
from ..progress import Progress

DATASETS = ("mnist", "fashion-mnist", "cifar10", "digits")

# Seconds a mirror may stay silent (connecting or between chunks) before the next one is tried.
TIMEOUT = 30.0
_CHUNK = 1 << 16


@dataclass(frozen=True)
class IdxFile:
    """One IDX file of a dataset: its name without ".gz", its exact shape, and its MD5s.

    A copy is genuine if its gzip bytes match `md5_gz` (the file as the mirrors serve it) or its
    uncompressed bytes match `md5_raw`: a re-compressed copy has other gzip bytes but the same data.
    """

    name: str
    shape: tuple[int, ...]
    md5_gz: str | None
    md5_raw: str | None

    @property
    def remote(self) -> str:
        """The name the mirrors serve it under."""
        return self.name + ".gz"

    @property
    def candidates(self) -> tuple[str, ...]:
        # Uncompressed first: reading it is faster than inflating the .gz.
        return (self.name, self.name + ".gz")

    def local_name(self, blob: bytes) -> str:
        # Named for what arrived, should a mirror ever serve the file uncompressed.
        return self.name + (".gz" if blob.startswith(_GZIP_MAGIC) else "")

    def decode(self, blob: bytes, where: str) -> np.ndarray:
        return _decode(blob, self, where)


DIGIT_NAMES = tuple("0123456789")


@dataclass(frozen=True)
class IdxDataset:
    """The four IDX files of an MNIST-like dataset, in the order train images, train labels,
    test images, test labels."""

    title: str
    files: tuple[IdxFile, IdxFile, IdxFile, IdxFile]
    num_classes: int
    class_names: tuple[str, ...] = DIGIT_NAMES
    scale: int = 255  # the largest pixel value

    def assemble(self, decoded: list) -> tuple:
        """(x_train, t_train, x_test, t_test, class_names) from the decoded files."""
        x_train, t_train, x_test, t_test = decoded
        return x_train, t_train, x_test, t_test, self.class_names


@dataclass(frozen=True)
class BinaryBatches:
    """A tar.gz of batch files of fixed-size records: `label_bytes` label bytes (the last one is
    the class), then the C·H·W image bytes in C order (CIFAR's binary version).

    The archive is verified as a whole against `md5` (the only checksum CIFAR publishes) and kept
    as downloaded; the batches are read from its decompressed bytes in place, nothing is extracted.
    """

    name: str
    md5: str
    folder: str  # the folder inside the archive
    train: tuple[str, ...]
    test: tuple[str, ...]
    records: int  # per batch file
    image_shape: tuple[int, int, int]
    meta: str  # the class names, one a line
    label_bytes: int = 1

    @property
    def remote(self) -> str:
        return self.name

    @property
    def candidates(self) -> tuple[str, ...]:
        return (self.name,)

    def local_name(self, blob: bytes) -> str:
        return self.name

    def decode(self, blob: bytes, where: str) -> tuple:
        return _decode_batches(blob, self, where)


@dataclass(frozen=True)
class BatchesDataset:
    """A dataset shipped as one `BinaryBatches` archive (CIFAR-10)."""

    title: str
    files: tuple[BinaryBatches]
    num_classes: int
    scale: int = 255

    def assemble(self, decoded: list) -> tuple:
        return decoded[0]


# The .gz MD5s are the ones torchvision lists (torchvision/datasets/mnist.py). The raw MD5s were
# computed here from the uncompressed bytes of a known-good copy and agree with the ones published
# in several public projects that check the uncompressed files (e.g. scripts verifying
# "train-images-idx3-ubyte" = 6bbc9ace...); mirrors that re-compress the files change only the gz MD5.
_MNIST = IdxDataset(
    "MNIST",
    (
        IdxFile(
            "train-images-idx3-ubyte",
            (60000, 28, 28),
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "6bbc9ace898e44ae57da46a324031adb",
        ),
        IdxFile(
            "train-labels-idx1-ubyte",
            (60000,),
            "d53e105ee54ea40749a09fcbcd1e9432",
            "a25bea736e30d166cdddb491f175f624",
        ),
        IdxFile(
            "t10k-images-idx3-ubyte",
            (10000, 28, 28),
            "9fb629c4189551a2d022fa330f9573f3",
            "2646ac647ad5339dbf082846283269ea",
        ),
        IdxFile(
            "t10k-labels-idx1-ubyte",
            (10000,),
            "ec29112dd5afa0611ce80d1b7f02629c",
            "27ae3e4e09519cfbb04c329615203637",
        ),
    ),
    10,
)

# The .gz MD5s are Fashion-MNIST's official ones (its README; torchvision lists the same). The raw
# MD5s are those several public projects and tutorials list for the uncompressed files; no copy was
# at hand here to recompute them.
_FASHION_MNIST = IdxDataset(
    "Fashion-MNIST",
    (
        IdxFile(
            "train-images-idx3-ubyte",
            (60000, 28, 28),
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        ),
        IdxFile(
            "train-labels-idx1-ubyte",
            (60000,),
            "25c81989df183df01b3e8a0aad5dffbe",
            "9018921c3c673c538a1fc5bad174d6f9",
        ),
        IdxFile(
            "t10k-images-idx3-ubyte",
            (10000, 28, 28),
            "bef4ecab320f06d8554ea6380940ec79",
            "8181f5470baa50b63fa0f6fddb340f0a",
        ),
        IdxFile(
            "t10k-labels-idx1-ubyte",
            (10000,),
            "bb300cfdad3c16e7a12a480ee83cd310",
            "15d484375f8d13e6eb1aabb0c3f46965",
        ),
    ),
    10,
    (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
)

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

# The MD5 is the one https://www.cs.toronto.edu/~kriz/cifar.html publishes for "CIFAR-10 binary
# version (suitable for C programs)", 162 MB. The layout (10,000 records of 1 + 3072 bytes per batch,
# five training batches and a test batch in cifar-10-batches-bin/) is the one that page describes.
_CIFAR10 = BatchesDataset(
    "CIFAR-10",
    (
        BinaryBatches(
            "cifar-10-binary.tar.gz",
            "c32a1d4ab5d03f1284b67883e8d87530",
            "cifar-10-batches-bin",
            tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
            ("test_batch.bin",),
            10000,
            (3, 32, 32),
            "batches.meta.txt",
        ),
    ),
    10,
)

# Module-level so tests (and users behind a local mirror) can replace them.
RESOURCES: dict[str, IdxDataset | BatchesDataset] = {
    "mnist": _MNIST,
    "fashion-mnist": _FASHION_MNIST,
    "cifar10": _CIFAR10,
}
MIRRORS: dict[str, tuple[str, ...]] = {
    # yann.lecun.com no longer serves the files to scripts; these two are the maintained copies.
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    # The official bucket (the one torchvision uses), then the copy in the project's own repository.
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    # The author's page, the only official source (torchvision and Keras download from it too).
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",),
}

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


class _BadFile(DataError):
    """A file that is not the IDX file it should be; `reason` is the message without the name."""

    def __init__(self, name: str, reason: str, other: str | None = None):
        super().__init__(f"{name} {reason}")
        self.reason = reason
        self.other = other  # the dataset the file genuinely belongs to, if another one


class DataUnavailable(DataError):
    """A dataset's files are missing and cannot be had: no network, downloading is off, or the
    folder they would be downloaded into cannot be written. Nothing the user named is wrong, so
    callers may fall back (as "auto" does to digits); a bad file, or a --data-dir that does not
    exist or holds no dataset, is a plain DataError instead. `why` says which, `where` the folder.
    """

    def __init__(self, message: str, why: str, where: Path):
        super().__init__(message)
        self.why = why
        self.where = where


class _MirrorFailed(Exception):
    """One mirror could not deliver a file; `network` is False when it delivered a bad one."""

    def __init__(self, url: str, brief: str, network: bool):
        # "URL: HTTP 404 Not Found" for transfer problems, "URL is truncated: ..." for bad files.
        super().__init__(f"{url}: {brief}" if network else f"{url} {brief}")
        self.brief = brief
        self.network = network


# ---------------------------------------------------------------------------------------------
# IDX parsing


# The IDX format: two zero bytes, a type code, the number of dimensions, then each dimension as a
# big-endian uint32, then the data, big-endian, in C order.
_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(source) -> np.ndarray:
    """Read an IDX file (gzip-compressed or not) from a path or from its bytes.

    The header is checked against the data: a wrong magic, an unknown type code, or a data length
    other than the product of the dimensions raises DataError naming the file. uint8 data comes back
    as a read-only view of the bytes (no copy); other types are converted to native byte order.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _parse_idx(_gunzip(bytes(source), "<bytes>"), "<bytes>")
    path = Path(source)
    data = _read(path)
    return _parse_idx(_gunzip(data, str(path)), str(path))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {_strerror(exc)}") from None


def _gunzip(data: bytes, name: str) -> bytes:
    """The decompressed bytes if `data` starts with the gzip magic, else `data` itself."""
    if not data.startswith(_GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise _BadFile(name, f"is a truncated or corrupt gzip file ({exc})") from None


def _parse_idx(data: bytes, name: str) -> np.ndarray:
    if len(data) < 4:
        raise _BadFile(name, f"is truncated: {len(data)} bytes, shorter than an IDX header")
    if data[0] or data[1]:
        raise _BadFile(name, f"is not an IDX file: it starts with {data[:4].hex(' ')}, not 00 00")
    dtype = _IDX_TYPES.get(data[2])
    if dtype is None:
        raise _BadFile(name, f"is corrupt: unknown IDX data type code 0x{data[2]:02x}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0:
        raise _BadFile(name, "is corrupt: its IDX header declares 0 dimensions")
    if len(data) < header:
        raise _BadFile(
            name, f"is truncated: {len(data)} bytes, shorter than its {header}-byte header"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    count = math.prod(shape)
    expected, got = count * dtype.itemsize, len(data) - header
    if got < expected:
        raise _BadFile(
            name, f"is truncated: {got} bytes of data where its header promises {expected} {shape}"
        )
    if got > expected:
        raise _BadFile(
            name,
            f"is corrupt: {got - expected} extra bytes after the {expected} its header promises",
        )
    array = np.frombuffer(data, dtype, count, header).reshape(shape)
    return array if dtype.byteorder in "=|" else array.astype(dtype.newbyteorder("="))


def _decode(blob: bytes, spec: IdxFile, name: str) -> np.ndarray:
    """Parse one file of a dataset and prove it genuine: exact shape, then gz or raw MD5.

    Each file is decompressed once and those bytes are both hashed and parsed; the shape is checked
    before the checksum because "images of shape (100, 8, 8)" says more than a checksum mismatch.
    """
    gz = blob.startswith(_GZIP_MAGIC)
    gz_ok = gz and spec.md5_gz is not None and hashlib.md5(blob).hexdigest() == spec.md5_gz
    raw = _gunzip(blob, name)
    array = _parse_idx(raw, name)
    if array.shape != spec.shape or array.dtype != np.uint8:
        raise _BadFile(
            name,
            f"holds {array.dtype} data of shape {array.shape}, not the uint8 {spec.shape} of "
            f"{spec.name}",
        )
    if not gz_ok:
        md5 = hashlib.md5(raw).hexdigest()
        if md5 != spec.md5_raw:
            other = _whose(md5)
            hint = f": it is {RESOURCES[other].title}'s file (--dataset {other})" if other else ""
            raise _BadFile(name, f"has the wrong checksum (md5 of its data {md5}){hint}", other)
    return array


def _whose(md5: str) -> str | None:
    """The dataset whose file has this raw MD5 (Fashion-MNIST reuses MNIST's file names)."""
    for key, spec in RESOURCES.items():
        if any(md5 == getattr(f, "md5_raw", None) for f in spec.files):
            return key
    return None


# ---------------------------------------------------------------------------------------------
# CIFAR's binary batches


def _decode_batches(blob: bytes, spec: BinaryBatches, name: str) -> tuple:
    """Parse a batches archive and prove it genuine: its layout first, then its MD5.

    Returns (x_train, t_train, x_test, t_test, class_names) with images (N, C, H, W) uint8. The
    layout is checked before the checksum because "data_batch_3.bin is missing" says more than a
    checksum mismatch. Members are read at their offsets in the decompressed bytes: nothing is
    extracted, so names inside the archive never reach the filesystem.
    """
    if not blob.startswith(_GZIP_MAGIC):
        raise _BadFile(name, f"is not a gzip file: it starts with {blob[:4].hex(' ')}, not 1f 8b")
    # Hashing and inflating both release the GIL: side by side they take the time of one.
    with ThreadPoolExecutor(max_workers=2) as pool:
        md5_job = pool.submit(lambda: hashlib.md5(blob).hexdigest())
        raw = _gunzip(blob, name)
        md5 = md5_job.result()
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            members = {m.name: m for m in tar.getmembers()}
    except tarfile.TarError as exc:
        raise _BadFile(name, f"is corrupt: not a tar archive inside the gzip ({exc})") from None

    def member(filename: str) -> memoryview:
        path = f"{spec.folder}/{filename}"
        m = members.get(path)
        if m is None or not m.isfile():
            raise _BadFile(name, f"is not {spec.name} as published: it lacks {path}")
        if m.offset_data + m.size > len(raw):
            raise _BadFile(name, f"is truncated: {path} ends past the end of the archive")
        return memoryview(raw)[m.offset_data : m.offset_data + m.size]

    record = spec.label_bytes + math.prod(spec.image_shape)

    def batches(filenames: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        rows = []
        for filename in filenames:
            data = member(filename)
            if len(data) != spec.records * record:
                raise _BadFile(
                    name,
                    f"is not {spec.name} as published: {spec.folder}/{filename} holds "
                    f"{len(data)} bytes, not {spec.records} records of {record}",
                )
            rows.append(np.frombuffer(data, np.uint8).reshape(spec.records, record))
        # One copy each into contiguous arrays; the label is the last label byte (CIFAR-100's
        # records start with the coarse label, then the fine one).
        labels = np.concatenate([r[:, spec.label_bytes - 1] for r in rows])
        images = np.concatenate([r[:, spec.label_bytes :] for r in rows])
        return images.reshape(len(images), *spec.image_shape), labels

    x_train, t_train = batches(spec.train)
    x_test, t_test = batches(spec.test)
    names = tuple(
        line.strip()
        for line in bytes(member(spec.meta)).decode("utf-8", "replace").splitlines()
        if line.strip()
    )
    if md5 != spec.md5:
        raise _BadFile(
            name, f"has the wrong checksum (md5 {md5}, not the published {spec.md5} of {spec.name})"
        )
    return x_train, t_train, x_test, t_test, names


# ---------------------------------------------------------------------------------------------
# Where the files live


def _named(data_dir) -> bool:
    return data_dir is not None and str(data_dir) != ""


def _cache_root() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "xpnet"


def _data_root(data_dir) -> tuple[Path, str | None]:
    """The data folder and, when the user named it, how (for messages); None for the managed cache."""
    if _named(data_dir):
        return Path(data_dir).expanduser(), "--data-dir"
    env = os.environ.get("XPNET_DATA_DIR")
    if env:
        return Path(env).expanduser(), "XPNET_DATA_DIR"
    return _cache_root(), None


def _find(root: Path, key: str, spec) -> Path | None:
    # The dataset's own subfolder first: MNIST and Fashion-MNIST share file names, so a flat
    # folder is only a fallback. (Path.is_file is False, not an error, under a regular file.)
    for folder in (root / key, root):
        for filename in spec.candidates:
            path = folder / filename
            if path.is_file():
                return path
    return None


def _holds_a_dataset(root: Path) -> bool:
    """Whether `root` holds a file of any dataset xpnet knows, directly or in its subfolder."""
    return any(_find(root, key, f) for key, spec in RESOURCES.items() for f in spec.files)


def _should_hold(key: str, root: Path) -> str:
    """What a data folder should hold for dataset `key`, for messages."""
    spec = RESOURCES[key]
    names = [f.name for f in spec.files]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    how = (
        " (each may end in .gz)"
        if isinstance(spec, IdxDataset)
        else " (the archive as downloaded, not extracted: its published MD5 is what verifies it)"
    )
    return f"{spec.title}'s {listed}{how}, directly or in {root / key}"


def _check_named_root(root: Path, named_by: str | None, key: str) -> None:
    """A folder the user named must exist: a typo is an error, never a folder created for it."""
    if named_by is None or root.is_dir():
        return
    what = "is not a folder" if root.exists() else "does not exist"
    undo = (
        f"check the path, or leave --data-dir out to use the cache {_cache_root()}"
        if named_by == "--data-dir"
        else f"create it, or unset XPNET_DATA_DIR to use the cache {_cache_root()}"
    )
    raise DataError(
        f"{named_by} {root} {what}; it should be a folder holding {_should_hold(key, root)}; {undo}"
    )


def _strerror(exc: OSError) -> str:
    return (os.strerror(exc.errno) if exc.errno else str(exc)).lower()


def _unwritable(directory: Path, exc: OSError) -> DataUnavailable:
    """A folder that cannot be written to: like no network, the dataset cannot be had, so "auto"
    falls back to digits over it (unless the user named the folder)."""
    why = f"cannot write to {directory}: {_strerror(exc)}"
    return DataUnavailable(
        f"{why}; set XDG_CACHE_HOME or XPNET_DATA_DIR to a writable folder, or pass --data-dir "
        f"DIR naming a folder that holds the dataset",
        why,
        directory,
    )


def _holds(root: Path) -> str:
    """A short description of what a folder holds, for "wrong files" messages."""
    try:
        names = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    except OSError:
        return f"{root} does not exist or cannot be listed"
    if not names:
        return f"{root} is empty"
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return f"{root} holds {', '.join(names[:3])}{more}"


# ---------------------------------------------------------------------------------------------
# Downloading


def _brief(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


_NETWORK_ERRORS = (OSError, http.client.HTTPException, ValueError)


def _receive(url: str, out, directory: Path, progress: bool | None) -> bytes:
    """Stream `url` into the open file `out` and return the bytes; a transfer problem is _MirrorFailed."""
    try:
        response = urllib.request.urlopen(url, timeout=TIMEOUT)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise _MirrorFailed(url, _brief(exc), network=True) from None
    except _NETWORK_ERRORS as exc:
        raise _MirrorFailed(url, _brief(exc), network=True) from None
    chunks: list[bytes] = []
    received = 0
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        enabled = False if progress is False else None
        with Progress(total, desc=url.rsplit("/", 1)[-1], unit="B", enabled=enabled) as bar:
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except _NETWORK_ERRORS as exc:
                    raise _MirrorFailed(url, _brief(exc), network=True) from None
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise _unwritable(directory, exc) from None
                chunks.append(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    # http.client returns a short body without complaint when the server hangs up early.
    if total is not None and received != total:
        raise _MirrorFailed(url, f"connection closed after {received} of {total} bytes", True)
    return b"".join(chunks)


def _download(url: str, directory: Path, spec, progress):
    """Download `url` into `directory` atomically and return it parsed and verified.

    The bytes go to a hidden temporary file there, are verified, fsynced and only then renamed to
    their name: that name is either absent or complete and genuine, even after Ctrl-C or a crash,
    and the temporary file is removed on every failure.
    """
    tmp = directory / f".{spec.name}.part-{os.getpid()}"
    renamed = False
    try:
        try:
            out = open(tmp, "wb")  # closed by the with below
        except OSError as exc:
            raise _unwritable(directory, exc) from None
        with out:
            blob = _receive(url, out, directory, progress)
            try:
                array = spec.decode(blob, url)
            except _BadFile as exc:
                raise _MirrorFailed(url, exc.reason, network=False) from None
            try:
                out.flush()
                os.fsync(out.fileno())
            except OSError as exc:
                raise _unwritable(directory, exc) from None
        final = directory / spec.local_name(blob)
        try:
            os.replace(tmp, final)
        except OSError as exc:
            raise _unwritable(directory, exc) from None
        renamed = True
        fsync_dir(directory)
        return array
    finally:
        if not renamed:
            try:
                tmp.unlink()
            except OSError:
                pass


def _fetch(key: str, spec, dest: Path, progress, note: str = "") -> tuple:
    """Download one file into `dest`, trying each mirror once in order; returns (decoded, mirror)."""
    created = not dest.exists()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(dest, exc) from None
    mirrors = MIRRORS.get(key, ())
    failures: list[_MirrorFailed] = []
    done = False
    try:
        for mirror in mirrors:
            try:
                decoded = _download(mirror + spec.remote, dest, spec, progress), mirror
                done = True
                return decoded
            except _MirrorFailed as exc:
                failures.append(exc)
    finally:
        if created and not done:
            # Our own empty folder only (rmdir refuses a non-empty one): a failure leaves no trace.
            try:
                dest.rmdir()
            except OSError:
                pass
    title = RESOURCES[key].title
    tried = "; ".join(str(f) for f in failures) if failures else "no mirrors are configured"
    message = f"could not download {title}'s {spec.remote} into {dest}{note}: {tried}"
    if all(f.network for f in failures):
        why = f"no network: {failures[0].brief}" if failures else "no mirrors are configured"
        raise DataUnavailable(
            f"{message}; check the network or proxy, pass --data-dir to a folder holding the "
            f"{title} files, or use --dataset digits, which works offline",
            why,
            dest,
        )
    raise DataError(f"{message}; try again later, or pass --data-dir to a folder holding the files")


# ---------------------------------------------------------------------------------------------
# Loading


def _try_decode(path: Path, spec):
    try:
        return spec.decode(_read(path), str(path))
    except _BadFile as exc:
        return exc


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _load_files(key: str, data_dir, download: bool, progress):
    """A downloadable dataset's (x_train, t_train, x_test, t_test, class_names) with images
    (N, [C,] H, W) uint8, its number of classes, largest pixel value, and where it came from."""
    spec = RESOURCES[key]
    root, named_by = _data_root(data_dir)
    _check_named_root(root, named_by, key)
    decoded: list = [None] * len(spec.files)
    found: list[Path] = []
    missing: list[tuple[int, str]] = []  # (index, why it is missing, for messages)
    paths = [_find(root, key, f) for f in spec.files]
    # Inflating and hashing release the GIL, so the files load side by side.
    with ThreadPoolExecutor(max_workers=len(spec.files)) as pool:
        jobs = [
            None if path is None else pool.submit(_try_decode, path, f)
            for path, f in zip(paths, spec.files, strict=True)
        ]
        results = [None if job is None else job.result() for job in jobs]
    for i, (path, result) in enumerate(zip(paths, results, strict=True)):
        if path is None:
            missing.append((i, ""))
        elif not isinstance(result, _BadFile):
            decoded[i] = result
            found.append(path)
        elif result.other is not None and path.parent == root:
            # another dataset's genuine file in a flat folder (MNIST's, when Fashion-MNIST is
            # asked for): not this dataset's, and not to be touched; this one goes to root/key
            missing.append((i, f" ({path} is {RESOURCES[result.other].title}'s)"))
        elif named_by is not None:
            # Not ours to touch: the user may have put it there on purpose.
            raise DataError(
                f"{result}; delete it to re-download it, or point {named_by} at another folder"
            )
        else:
            # Our own cache: repaired, and said so before the (possibly long) download starts.
            action = "deleting it and downloading it again" if download else "deleting it"
            print(f"notice: the cached {result}; {action}", file=sys.stderr, flush=True)
            try:
                path.unlink()
            except OSError as err:
                raise _unwritable(path.parent, err) from None
            missing.append((i, f" (the cached copy {result.reason}, so it was deleted)"))

    dest = root / key
    if missing and not download:
        names = ", ".join(
            spec.files[i].name + ("[.gz]" if isinstance(spec.files[i], IdxFile) else "")
            for i, _ in missing
        )
        where = f"{root / key} or {root}"
        hint = f" ({_holds(root)})" if not found else ""
        raise DataUnavailable(
            f"{spec.title}'s {names} not found in {where}{hint} and downloading is off; "
            f"turn downloads on, pass --data-dir to a folder holding them, or use --dataset digits",
            "downloading is off",
            root,
        )
    if missing and not found and named_by == "--data-dir" and not _holds_a_dataset(root):
        # An empty or unrelated folder is a mistake (a wrong path), not a place to download to.
        holds = _holds(root)
        if not holds.endswith(" is empty"):
            holds += f" but none of the {spec.title} files"
        raise DataError(
            f"--data-dir {root} holds no dataset: {holds}; it should hold "
            f"{_should_hold(key, root)}; check the path, or leave --data-dir out to download "
            f"{spec.title} into the cache {_cache_root()}"
        )
    used: list[str] = []
    for i, why in missing:
        if not why and not found and named_by is not None and root.exists():
            why = f" ({_holds(root)} but none of the {spec.title} files)"
        decoded[i], mirror = _fetch(key, spec.files[i], dest, progress, why)
        if mirror not in used:
            used.append(mirror)

    folders = sorted({str(p.parent) for p in found})
    parts = [f"{' and '.join(folders)} ({_plural(len(found), 'file')})"] if found else []
    if used:
        parts.append(
            f"downloaded from {', '.join(used)} into {dest} ({_plural(len(missing), 'file')})"
        )
    source = " + ".join(parts) + ", checksums verified"
    return spec.assemble(decoded), spec.num_classes, spec.scale, source


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

    "auto" falls back to the offline digits (with `notice` set, and `name` "digits") only when no
    `data_dir` is named and MNIST's files are absent and cannot be had: no network, downloads off,
    or a cache folder that cannot be written. A bad file, or a `data_dir` that does not exist or
    holds no dataset, raises instead. Naming a dataset never falls back. `progress=False` hides the
    download bar, which is drawn only on a terminal anyway.
    """
    name = choose("dataset", name, (*DATASETS, "auto"))
    notice = None
    if name == "digits":
        parts = _load_digits()
    elif name == "auto":
        name = "mnist"
        try:
            parts = _load_files(name, data_dir, download, progress)
        except DataUnavailable as exc:
            if _named(data_dir):  # a folder the user named is never swapped for digits
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
        parts = _load_files(name, data_dir, download, progress)

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
