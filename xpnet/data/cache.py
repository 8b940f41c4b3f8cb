"""Uncompressed copies of verified IDX files in xpnet's own cache: a second load skips inflating.

MNIST ships as .gz files; inflating train-images (10 MB to 47 MB) is most of loading it. After a
.gz file has been verified and inflated once, its uncompressed bytes are kept in
<cache>/unpacked/<name>.<md5 of the uncompressed file> (the cache is `fetch.cache_root()`, never a
folder the user named), headed by one line: the MD5 of the .gz file they came from.

What "verified" means for such a copy, read instead of inflating the .gz:
- the .gz file is hashed as always (cheap: it is the small one), and the copy is used only if its
  first line names exactly that MD5, so a copy is tied to the very source bytes it came from;
- the copy's uncompressed bytes must hash to the file's MD5 in the catalogue (`IdxFile.md5_raw`),
  the checksum an uncompressed copy in the data folder is verified with: the copy is proven to be
  the genuine file, not merely the file as xpnet once wrote it (no checksum of xpnet's own making
  is trusted);
- those bytes are parsed by the same IDX reader with the same shape check, so the arrays are
  bit-identical to inflating the source (they are views of the same bytes).
So the cached path hashes the uncompressed bytes where the plain path inflates them (and, for a
re-compressed copy, hashes them too). A copy is written only when the inflated bytes do hash to
`md5_raw` (a file verified by its gz MD5 alone, under a wrong or unknown `md5_raw`, gets none).

A copy that is missing, unreadable, of another source (stale) or corrupt is ignored; the source
is then decoded as usual and the copy rewritten. Writes are atomic (`xpnet.fileio.atomic_write`),
and any failure to write is ignored: without a cache (no HOME, a read-only one) loading works as
before, only slower. The copy is read as plain bytes by the IDX reader: nothing in it can run code.
CIFAR-10 has none: it publishes only the archive's MD5, nothing to verify a copy with.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from ..fileio import atomic_write
from .catalogue import IdxFile, md5_of
from .fetch import cache_root, make_cache_folder
from .formats import GZIP_MAGIC, BadFile

UNPACKED = "unpacked"  # the folder inside the cache


def decode(blob: bytes, spec, where: str):
    """`spec.decode(blob, where)`, through the verified uncompressed copy when there is one."""
    if not (isinstance(spec, IdxFile) and spec.md5_raw and blob.startswith(GZIP_MAGIC)):
        return spec.decode(blob, where)
    source = md5_of(blob)
    entry = cache_root() / UNPACKED / f"{spec.name}.{spec.md5_raw}"
    array = _read(entry, spec, source)
    if array is not None:
        return array
    array, raw, raw_md5 = spec.unpack(blob, where, source)
    if (raw_md5 or md5_of(raw)) == spec.md5_raw:
        _write(entry, source, raw)
    return array


def _header(source: str) -> bytes:
    return f"{source}\n".encode("ascii")


def _read(entry: Path, spec: IdxFile, source: str) -> np.ndarray | None:
    """The array of the copy at `entry` if it comes from `source` and is genuine, else None."""
    header = _header(source)
    try:
        data = entry.read_bytes()
    except OSError:
        return None
    if not data.startswith(header):
        return None  # absent, from another source, or cut short
    raw = memoryview(data)[len(header) :]
    if md5_of(raw) != spec.md5_raw:
        return None
    try:
        return spec.parse(raw, str(entry))
    except BadFile:  # cannot happen for the genuine bytes; never an error if it does
        return None


def _write(entry: Path, source: str, raw: bytes) -> None:
    def write(f):
        f.write(_header(source))
        f.write(raw)

    try:
        make_cache_folder(entry.parent)
        atomic_write(entry, write)
    except (DataError, OSError):  # WriteError is an OSError
        pass
