"""Atomic file writes: a file is either the old version or the complete new one, never half-written."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import XpnetError

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_NO_ACCESS = {errno.EACCES, errno.EPERM, errno.EROFS}


class WriteError(XpnetError, OSError):
    """A file could not be written (read-only, full, or missing directory)."""


def atomic_write(path, write: Callable, binary: bool = True) -> Path:
    """Write `path` by calling write(file) on a temporary file beside it, then renaming it over.

    The temporary file is flushed and fsynced before `os.replace`, and the directory is fsynced
    after, so a crash or kill at any moment leaves either the previous file or the new one.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        if exc.errno in _NO_SPACE:
            advice = "free some space or choose another output folder"
        elif exc.errno in _NO_ACCESS:
            advice = "make the folder writable or choose another output folder"
        else:
            advice = "choose another output folder"
        reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        raise WriteError(f"cannot write {path}: {reason}; {advice}") from None
    finally:
        with contextlib.suppress(OSError):  # gone already, or its folder never existed
            tmp.unlink()
    return path


def check_writable(path: Path, option: str) -> None:
    """Refuse an output file the command could not write, before any work is done.

    `option` names the command-line option that gave `path` (for the message).
    """
    from .errors import ConfigError

    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; name a file")
    if not folder.is_dir():
        raise ConfigError(f"{option} {path}: the folder {folder} does not exist")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{option} {path}: not writable; choose another path")
    try:  # root passes os.access everywhere, so try a file beside it
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{path.name}.probe-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{option} {path}: cannot write in {folder} ({exc.strerror or exc})"
        ) from None


def atomic_write_text(path, text: str) -> Path:
    """Atomically replace `path` with `text` (UTF-8)."""
    return atomic_write(path, lambda f: f.write(text), binary=False)


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (where the platform and filesystem allow it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
