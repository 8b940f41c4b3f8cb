"""Datasets as host NumPy arrays: MNIST and Fashion-MNIST from IDX files, and scikit-learn's digits.

IDX files are looked up in a folder the user names (`data_dir`, else $XPNET_DATA_DIR) or in the
managed cache ($XDG_CACHE_HOME/xpnet, else ~/.cache/xpnet), directly in it or in `<dir>/<name>/`;
missing ones are downloaded into `<dir>/<name>/`. Every file is checked against its published MD5
before use, so a truncated, corrupt or foreign file is never trained on. xpnet repairs only its own
cache (a bad file there is deleted and fetched again once); in a folder the user named it never
deletes or rewrites anything and says which file is bad instead.

Moving arrays to a device is the caller's job (`xpnet.train.to_device`); everything here is NumPy.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DataError, choose
from .fileio import fsync_dir
from .progress import Progress

DATASETS = ("mnist", "fashion-mnist", "digits")

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


@dataclass(frozen=True)
class IdxDataset:
    """The four IDX files of an MNIST-like dataset, in the order train images, train labels,
    test images, test labels."""

    title: str
    files: tuple[IdxFile, IdxFile, IdxFile, IdxFile]
    num_classes: int


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
)

# Module-level so tests (and users behind a local mirror) can replace them.
RESOURCES: dict[str, IdxDataset] = {"mnist": _MNIST, "fashion-mnist": _FASHION_MNIST}
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
}

# The digits split: a fixed seed and test size, so every run and machine sees the same 300 tests.
DIGITS_SEED = 0
DIGITS_TEST_SIZE = 300


@dataclass
class Dataset:
    """A train/test split as host NumPy arrays, with where it came from.

    x: float32 in [0, 1] when normalized, else uint8; (N, D) when flattened, else (N, 1, H, W).
    t: int64 class indices (N,), or float32 one-hot rows (N, C).
    """

    name: str
    x_train: np.ndarray = field(repr=False)
    t_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    t_test: np.ndarray = field(repr=False)
    num_classes: int
    source: str
    notice: str | None = None


class _BadFile(DataError):
    """A file that is not the IDX file it should be; `reason` is the message without the name."""

    def __init__(self, name: str, reason: str, other: str | None = None):
        super().__init__(f"{name} {reason}")
        self.reason = reason
        self.other = other  # the dataset the file genuinely belongs to, if another one


class _Unavailable(DataError):
    """Files are missing and could not be downloaded for want of a network (or with downloads off)."""

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
        if any(md5 == f.md5_raw for f in spec.files):
            return key
    return None


# ---------------------------------------------------------------------------------------------
# Where the files live


def _data_root(data_dir) -> tuple[Path, str | None]:
    """The data folder and, when the user named it, how (for messages); None for the managed cache."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser(), "--data-dir"
    env = os.environ.get("XPNET_DATA_DIR")
    if env:
        return Path(env).expanduser(), "XPNET_DATA_DIR"
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "xpnet", None


def _find(root: Path, name: str, spec: IdxFile) -> Path | None:
    # The dataset's own subfolder first: MNIST and Fashion-MNIST share file names, so a flat
    # folder is only a fallback. Uncompressed first: reading it is faster than inflating the .gz.
    for folder in (root / name, root):
        for filename in (spec.name, spec.name + ".gz"):
            path = folder / filename
            if path.is_file():
                return path
    return None


def _strerror(exc: OSError) -> str:
    return (os.strerror(exc.errno) if exc.errno else str(exc)).lower()


def _unwritable(directory: Path, exc: OSError) -> DataError:
    return DataError(
        f"cannot write to {directory}: {_strerror(exc)}; pass --data-dir DIR or set "
        f"XPNET_DATA_DIR to a writable folder"
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


def _download(url: str, directory: Path, spec: IdxFile, progress) -> np.ndarray:
    """Download `url` into `directory` atomically and return its parsed, verified array.

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
                array = _decode(blob, spec, url)
            except _BadFile as exc:
                raise _MirrorFailed(url, exc.reason, network=False) from None
            try:
                out.flush()
                os.fsync(out.fileno())
            except OSError as exc:
                raise _unwritable(directory, exc) from None
        # Named for what arrived, should a mirror ever serve the file uncompressed.
        final = directory / (spec.name + (".gz" if blob.startswith(_GZIP_MAGIC) else ""))
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


def _fetch(key: str, spec: IdxFile, dest: Path, progress, note: str = "") -> tuple[np.ndarray, str]:
    """Download one file into `dest`, trying each mirror once in order; returns (array, mirror)."""
    created = not dest.exists()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(dest, exc) from None
    mirrors = MIRRORS.get(key, ())
    failures: list[_MirrorFailed] = []
    for mirror in mirrors:
        try:
            return _download(mirror + spec.name + ".gz", dest, spec, progress), mirror
        except _MirrorFailed as exc:
            failures.append(exc)
    if created:
        # Our own empty folder only (rmdir refuses a non-empty one): a failed run leaves no trace.
        try:
            dest.rmdir()
        except OSError:
            pass
    title = RESOURCES[key].title
    tried = "; ".join(str(f) for f in failures) if failures else "no mirrors are configured"
    message = f"could not download {title}'s {spec.name}.gz into {dest}{note}: {tried}"
    if all(f.network for f in failures):
        why = f"no network: {failures[0].brief}" if failures else "no mirrors are configured"
        raise _Unavailable(
            f"{message}; check the network or proxy, pass --data-dir to a folder holding the "
            f"{title} files, or use --dataset digits, which works offline",
            why,
            dest,
        )
    raise DataError(f"{message}; try again later, or pass --data-dir to a folder holding the files")


# ---------------------------------------------------------------------------------------------
# Loading


def _try_decode(path: Path, spec: IdxFile) -> np.ndarray | _BadFile:
    try:
        return _decode(_read(path), spec, str(path))
    except _BadFile as exc:
        return exc


def _load_idx(key: str, data_dir, download: bool, progress):
    """The four arrays of an IDX dataset and a description of where they came from."""
    spec = RESOURCES[key]
    root, named_by = _data_root(data_dir)
    arrays: list[np.ndarray | None] = [None] * 4
    found: list[Path] = []
    missing: list[tuple[int, str]] = []  # (index, why it is missing, for messages)
    paths = [_find(root, key, f) for f in spec.files]
    # Inflating and hashing release the GIL, so the four files load side by side.
    with ThreadPoolExecutor(max_workers=4) as pool:
        jobs = [
            None if path is None else pool.submit(_try_decode, path, f)
            for path, f in zip(paths, spec.files, strict=True)
        ]
        results = [None if job is None else job.result() for job in jobs]
    for i, (path, result) in enumerate(zip(paths, results, strict=True)):
        if path is None:
            missing.append((i, ""))
        elif isinstance(result, np.ndarray):
            arrays[i] = result
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
            try:
                path.unlink()
            except OSError as err:
                raise _unwritable(path.parent, err) from None
            missing.append((i, f" (the cached copy {result.reason}, so it was deleted)"))

    dest = root / key
    if missing and not download:
        names = ", ".join(spec.files[i].name + "[.gz]" for i, _ in missing)
        where = f"{root / key} or {root}"
        hint = f" ({_holds(root)})" if not found else ""
        raise _Unavailable(
            f"{spec.title}'s {names} not found in {where}{hint} and downloading is off; "
            f"turn downloads on, pass --data-dir to a folder holding them, or use --dataset digits",
            "downloading is off",
            root,
        )
    used: list[str] = []
    for i, why in missing:
        if not why and not found and named_by is not None and root.exists():
            why = f" ({_holds(root)} but none of the {spec.title} files)"
        arrays[i], mirror = _fetch(key, spec.files[i], dest, progress, why)
        if mirror not in used:
            used.append(mirror)

    folders = sorted({str(p.parent) for p in found})
    parts = [f"{' and '.join(folders)} ({len(found)} files)"] if found else []
    if used:
        parts.append(f"downloaded from {', '.join(used)} into {dest} ({len(missing)} files)")
    source = " + ".join(parts) + ", checksums verified"
    x_train, t_train, x_test, t_test = arrays
    return (x_train, t_train), (x_test, t_test), spec.num_classes, 255, source


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
    source = "scikit-learn's bundled digits (offline)"
    return (x[train], t[train]), (x[test], t[test]), 10, 16, source


def _features(x: np.ndarray, scale: int, normalize: bool, flatten: bool) -> np.ndarray:
    x = x.reshape(len(x), -1) if flatten else x.reshape(len(x), 1, *x.shape[1:])
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
    """Load "mnist", "fashion-mnist" or "digits" as host arrays; "auto" is MNIST, else digits.

    "auto" falls back to the offline digits (with `notice` set) only when MNIST's files are absent
    and cannot be downloaded for want of a network; a bad file in a folder the user named raises
    instead. Naming a dataset never falls back. `progress=False` hides the download bar, which is
    drawn only on a terminal anyway.
    """
    name = choose("dataset", name, (*DATASETS, "auto"))
    notice = None
    if name == "digits":
        parts = _load_digits()
    elif name == "auto":
        name = "mnist"
        try:
            parts = _load_idx(name, data_dir, download, progress)
        except _Unavailable as exc:
            try:
                parts = _load_digits()
            except DataError as err:
                raise DataError(f"{exc}; the offline fallback failed too: {err}") from None
            name = "digits"
            notice = (
                f"MNIST is not in {exc.where} and could not be downloaded ({exc.why}); using "
                f"scikit-learn's offline 8x8 digits instead. Pass --data-dir to a folder holding "
                f"MNIST, or --dataset mnist to get an error instead of this fallback"
            )
    else:
        parts = _load_idx(name, data_dir, download, progress)

    (x_train, t_train), (x_test, t_test), num_classes, scale, source = parts
    return Dataset(
        name=name,
        x_train=_features(x_train, scale, normalize, flatten),
        t_train=_labels(t_train, len(x_train), num_classes, f"{name} training set", one_hot_label),
        x_test=_features(x_test, scale, normalize, flatten),
        t_test=_labels(t_test, len(x_test), num_classes, f"{name} test set", one_hot_label),
        num_classes=num_classes,
        source=source,
        notice=notice,
    )


def load_mnist(normalize=True, flatten=True, one_hot_label=False, data_dir=None):
    """The book's `load_mnist`: ((x_train, t_train), (x_test, t_test)) as NumPy arrays.

    Like the book's, it needs MNIST itself (found or downloaded) and never falls back to digits.
    """
    d = load_dataset(
        "mnist", data_dir, normalize=normalize, flatten=flatten, one_hot_label=one_hot_label
    )
    return (d.x_train, d.t_train), (d.x_test, d.t_test)
