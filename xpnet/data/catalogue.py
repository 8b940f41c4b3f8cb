"""The datasets xpnet knows, file by file, with the checksums that prove a copy genuine.

`RESOURCES` maps a dataset's key to its spec: the files it is made of, each with its exact shape
or layout and published MD5s, and what it decodes to. A spec's `decode(blob, where)` parses a
file's bytes (`xpnet.data.formats`) and verifies them against those MD5s, raising `BadFile` for a
truncated, corrupt or foreign copy; where the files come from is `xpnet.data.files`' business.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .formats import GZIP_MAGIC, BadFile, gunzip, parse_idx, read_batches

DATASETS = ("mnist", "fashion-mnist", "cifar10", "digits")
DIGIT_NAMES = tuple("0123456789")


def md5_of(data) -> str:
    return hashlib.md5(data).hexdigest()


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
        return self.name + (".gz" if blob.startswith(GZIP_MAGIC) else "")

    def decode(self, blob: bytes, where: str) -> np.ndarray:
        return self.unpack(blob, where)[0]

    def unpack(self, blob: bytes, where: str, blob_md5: str | None = None) -> tuple:
        """Parse one file and prove it genuine: exact shape, then gz or raw MD5.

        Returns (array, the uncompressed bytes, their MD5 or None where the gz MD5 sufficed);
        `blob_md5` is the MD5 of `blob` when the caller has it already. Each file is decompressed
        once and those bytes are both hashed and parsed; the shape is checked before the checksum
        because "images of shape (100, 8, 8)" says more than a checksum mismatch.
        """
        gz = blob.startswith(GZIP_MAGIC)
        gz_ok = gz and self.md5_gz is not None and (blob_md5 or md5_of(blob)) == self.md5_gz
        raw = gunzip(blob, where)
        array = self.parse(raw, where)
        md5 = None
        if not gz_ok:
            md5 = md5_of(raw)
            if md5 != self.md5_raw:
                other = _whose(md5)
                hint = (
                    f": it is {RESOURCES[other].title}'s file (--dataset {other})" if other else ""
                )
                raise BadFile(where, f"has the wrong checksum (md5 of its data {md5}){hint}", other)
        return array, raw, md5

    def parse(self, raw: bytes, where: str) -> np.ndarray:
        """The array of the uncompressed file `raw`, of this file's exact shape (not verified)."""
        array = parse_idx(raw, where)
        if array.shape != self.shape or array.dtype != np.uint8:
            raise BadFile(
                where,
                f"holds {array.dtype} data of shape {array.shape}, not the uint8 {self.shape} of "
                f"{self.name}",
            )
        return array


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
        """(x_train, t_train, x_test, t_test, class_names), the archive proven genuine: its layout
        first ("data_batch_3.bin is missing" says more than a checksum mismatch), then its MD5."""
        if not blob.startswith(GZIP_MAGIC):
            raise BadFile(
                where, f"is not a gzip file: it starts with {blob[:4].hex(' ')}, not 1f 8b"
            )
        # Hashing and inflating both release the GIL: side by side they take the time of one.
        with ThreadPoolExecutor(max_workers=2) as pool:
            md5_job = pool.submit(md5_of, blob)
            raw = gunzip(blob, where)
            md5 = md5_job.result()
        decoded = read_batches(raw, self, where)
        if md5 != self.md5:
            raise BadFile(
                where,
                f"has the wrong checksum (md5 {md5}, not the published {self.md5} of {self.name})",
            )
        return decoded


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


def _whose(md5: str) -> str | None:
    """The dataset whose file has this raw MD5 (Fashion-MNIST reuses MNIST's file names)."""
    for key, spec in RESOURCES.items():
        if any(md5 == getattr(f, "md5_raw", None) for f in spec.files):
            return key
    return None
