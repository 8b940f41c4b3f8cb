"""Fetching into xpnet's own cache: where that cache is, the mirrors, and verified atomic downloads.

The cache is $XDG_CACHE_HOME/xpnet, else ~/.cache/xpnet. xpnet creates it, and its base folder
(~/.cache, or $XDG_CACHE_HOME as the XDG spec asks), but never the folder above: with
HOME=/nonexistent there is no cache, which is said in one line (and "auto" falls back to digits),
never a /nonexistent/.cache/xpnet made for it. Downloads go only into the cache: a folder the
user named is read, never written (`xpnet.data.files`).

Each file is streamed from the first mirror that delivers it whole and genuine into a hidden
temporary file beside its final name, verified, fsynced and only then renamed, so that name is
either absent or complete and genuine, even after Ctrl-C or a crash.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError
from ..fileio import fsync_dir
from ..progress import Progress
from .catalogue import RESOURCES
from .formats import BadFile, strerror

# Seconds a mirror may stay silent (connecting or between chunks) before the next one is tried.
TIMEOUT = 30.0
_CHUNK = 1 << 16

# Module-level so tests (and users behind a local mirror) can replace them.
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


class DataUnavailable(DataError):
    """A dataset's files are missing and cannot be had: no network, downloading is off, or the
    cache they would be downloaded into cannot be made or written. Nothing the user named is
    wrong, so callers may fall back (as "auto" does to digits); a bad file, or a named folder that
    does not exist or lacks the dataset, is a plain DataError instead. `why` says which, `where`
    the folder.
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
# The cache


def _cache_place() -> tuple[Path, Path]:
    """xpnet's cache folder and the folder that must already exist for xpnet to create it."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "xpnet", base.parent


def cache_root() -> Path:
    """xpnet's own cache folder: $XDG_CACHE_HOME/xpnet, else ~/.cache/xpnet."""
    return _cache_place()[0]


def make_cache_folder(folder: Path) -> bool:
    """Create `folder` (inside the cache) unless it exists; True when it was created.

    Raises DataUnavailable when it cannot be: the folder above the cache's base (HOME) does not
    exist, or it cannot be written.
    """
    if folder.is_dir():
        return False
    root, anchor = _cache_place()
    if not anchor.exists():
        why = f"cannot create the cache {root}: {anchor} does not exist"
        raise DataUnavailable(
            f"{why}; set HOME or XDG_CACHE_HOME to an existing folder, or point --data-dir or "
            f"XPNET_DATA_DIR at a folder that holds the dataset",
            why,
            folder,
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise unwritable(folder, exc) from None
    return True


def unwritable(directory: Path, exc: OSError) -> DataUnavailable:
    """A cache folder that cannot be written to: like no network, the dataset cannot be had, so
    "auto" falls back to digits over it."""
    why = f"cannot write to {directory}: {strerror(exc)}"
    return DataUnavailable(
        f"{why}; set XDG_CACHE_HOME to a writable folder, or point --data-dir or XPNET_DATA_DIR "
        f"at a folder that holds the dataset",
        why,
        directory,
    )


# ---------------------------------------------------------------------------------------------
# Downloading


def _brief(exc: BaseException) -> str:
    import urllib.error

    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def _receive(url: str, out, directory: Path, progress: bool | None) -> bytes:
    """Stream `url` into the open file `out` and return the bytes; a transfer problem is _MirrorFailed."""
    # imported here: a run on files at hand never needs the network modules (30 ms with ssl)
    import http.client
    import urllib.error
    import urllib.request

    network_errors = (OSError, http.client.HTTPException, ValueError)
    try:
        response = urllib.request.urlopen(url, timeout=TIMEOUT)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise _MirrorFailed(url, _brief(exc), network=True) from None
    except network_errors as exc:
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
                except network_errors as exc:
                    raise _MirrorFailed(url, _brief(exc), network=True) from None
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise unwritable(directory, exc) from None
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
    their name; the temporary file is removed on every failure.
    """
    tmp = directory / f".{spec.name}.part-{os.getpid()}"
    renamed = False
    try:
        try:
            out = open(tmp, "wb")  # closed by the with below
        except OSError as exc:
            raise unwritable(directory, exc) from None
        with out:
            blob = _receive(url, out, directory, progress)
            try:
                array = spec.decode(blob, url)
            except BadFile as exc:
                raise _MirrorFailed(url, exc.reason, network=False) from None
            try:
                out.flush()
                os.fsync(out.fileno())
            except OSError as exc:
                raise unwritable(directory, exc) from None
        final = directory / spec.local_name(blob)
        try:
            os.replace(tmp, final)
        except OSError as exc:
            raise unwritable(directory, exc) from None
        renamed = True
        fsync_dir(directory)
        return array
    finally:
        if not renamed:
            try:
                tmp.unlink()
            except OSError:
                pass


def fetch(key: str, spec, dest: Path, progress, note: str = "") -> tuple:
    """Download one file of dataset `key` into the cache folder `dest`, trying each mirror once in
    order; returns (decoded, mirror). `note` says why it is missing, for messages."""
    created = make_cache_folder(dest)
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
