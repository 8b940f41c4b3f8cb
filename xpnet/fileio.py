"""Atomic file writes: a file is either the old version or the complete new one, never half-written."""

from __future__ import annotations

import contextlib
import errno
import os
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
