"""The file formats, bytes to arrays: IDX files (MNIST, Fashion-MNIST) and CIFAR's binary batches.

Decoding only: whether the bytes are the genuine published ones is the catalogue's business
(`xpnet.data.catalogue`), fetching and caching them `xpnet.data.fetch` and `xpnet.data.cache`'s.
A file that does not parse raises `BadFile`, a one-line DataError naming it.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import tarfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

GZIP_MAGIC = b"\x1f\x8b"

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


class BadFile(DataError):
    """A file that is not the file it should be; `reason` is the message without the name."""

    def __init__(self, name: str, reason: str, other: str | None = None):
        super().__init__(f"{name} {reason}")
        self.reason = reason
        self.other = other  # the dataset the file genuinely belongs to, if another one


def strerror(exc: OSError) -> str:
    """The OS's words for `exc`, lower case, for the middle of a sentence."""
    return (os.strerror(exc.errno) if exc.errno else str(exc)).lower()


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {strerror(exc)}") from None


def read_idx(source) -> np.ndarray:
    """Read an IDX file (gzip-compressed or not) from a path or from its bytes.

    The header is checked against the data: a wrong magic, an unknown type code, or a data length
    other than the product of the dimensions raises DataError naming the file. uint8 data comes back
    as a read-only view of the bytes (no copy); other types are converted to native byte order.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return parse_idx(gunzip(bytes(source), "<bytes>"), "<bytes>")
    path = Path(source)
    return parse_idx(gunzip(read_bytes(path), str(path)), str(path))


def gunzip(data: bytes, name: str) -> bytes:
    """The decompressed bytes if `data` starts with the gzip magic, else `data` itself."""
    if not data.startswith(GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise BadFile(name, f"is a truncated or corrupt gzip file ({exc})") from None


def parse_idx(data: bytes, name: str) -> np.ndarray:
    """The array an uncompressed IDX file holds; `name` is the file's, for messages."""
    if len(data) < 4:
        raise BadFile(name, f"is truncated: {len(data)} bytes, shorter than an IDX header")
    if data[0] or data[1]:
        raise BadFile(name, f"is not an IDX file: it starts with {data[:4].hex(' ')}, not 00 00")
    dtype = _IDX_TYPES.get(data[2])
    if dtype is None:
        raise BadFile(name, f"is corrupt: unknown IDX data type code 0x{data[2]:02x}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0:
        raise BadFile(name, "is corrupt: its IDX header declares 0 dimensions")
    if len(data) < header:
        raise BadFile(
            name, f"is truncated: {len(data)} bytes, shorter than its {header}-byte header"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    count = math.prod(shape)
    expected, got = count * dtype.itemsize, len(data) - header
    if got < expected:
        raise BadFile(
            name, f"is truncated: {got} bytes of data where its header promises {expected} {shape}"
        )
    if got > expected:
        raise BadFile(
            name,
            f"is corrupt: {got - expected} extra bytes after the {expected} its header promises",
        )
    array = np.frombuffer(data, dtype, count, header).reshape(shape)
    return array if dtype.byteorder in "=|" else array.astype(dtype.newbyteorder("="))


def read_batches(raw: bytes, spec, name: str) -> tuple:
    """The (x_train, t_train, x_test, t_test, class_names) of an uncompressed batches archive.

    `spec` gives the layout (a `catalogue.BinaryBatches`): the folder inside the tar, the train and
    test batch files of `records` fixed-size records each (`label_bytes` label bytes, the last one
    the class, then the C·H·W image bytes in C order) and the class-names file. Images come back
    (N, C, H, W) uint8. Members are read at their offsets in `raw`: nothing is extracted, so names
    inside the archive never reach the filesystem.
    """
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            members = {m.name: m for m in tar.getmembers()}
    except tarfile.TarError as exc:
        raise BadFile(name, f"is corrupt: not a tar archive inside the gzip ({exc})") from None

    def member(filename: str) -> memoryview:
        path = f"{spec.folder}/{filename}"
        m = members.get(path)
        if m is None or not m.isfile():
            raise BadFile(name, f"is not {spec.name} as published: it lacks {path}")
        if m.offset_data + m.size > len(raw):
            raise BadFile(name, f"is truncated: {path} ends past the end of the archive")
        return memoryview(raw)[m.offset_data : m.offset_data + m.size]

    record = spec.label_bytes + math.prod(spec.image_shape)

    def batches(filenames: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        rows = []
        for filename in filenames:
            data = member(filename)
            if len(data) != spec.records * record:
                raise BadFile(
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
    return x_train, t_train, x_test, t_test, names
