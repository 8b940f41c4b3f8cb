"""Atomic file writes: a file is either the old version or the complete new one, never half-written;
and pickles of weights read without running code (`load_pickle`).

Atomic replacement (a temporary file beside it, then a rename) is for regular files. A path that
is a symbolic link is written through: its target is replaced atomically, the link stays. A path
that is a device or a pipe (``/dev/null``, ``/dev/stdout``, a FIFO) is written directly, as a
shell's ``>>`` would (appending: ``/dev/stdout`` redirected to a file keeps what was printed
before): renaming over it would replace the device node or pipe by a file. A folder is refused.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import numbers
import os
import pickle
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .errors import CheckpointError, XpnetError

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_NO_ACCESS = {errno.EACCES, errno.EPERM, errno.EROFS}
_MAX_LINKS = 40  # as Linux's own limit on symbolic links followed in one path


class WriteError(XpnetError, OSError):
    """A file could not be written (read-only, full, or missing directory)."""


def destination(path) -> tuple[Path, bool]:
    """Where a write of `path` goes, and whether it goes there directly (not atomically).

    A regular file or a missing one: itself, atomically. A symbolic link (also one whose target
    does not exist yet): its final target, atomically, so the link survives. A device, pipe or
    socket, or a link into /proc (``/dev/stdout`` is one): directly. A folder: WriteError.
    """
    path = Path(path)
    target = path
    for _ in range(_MAX_LINKS):
        if not target.is_symlink():
            break
        if Path(os.path.realpath(target.parent)).parts[1:2] == ("proc",):
            # /proc/self/fd/N names an open file of this process, not a name to replace
            if target.is_dir():
                raise WriteError(f"cannot write {path}: it is a folder; name a file")
            return path, True
        target = target.parent / os.readlink(target)
    else:
        raise WriteError(f"cannot write {path}: too many levels of symbolic links")
    return _non_regular(path, target)


def _non_regular(path: Path, target: Path) -> tuple[Path, bool]:
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return target, False
    except OSError:  # unreadable folder and the like: the write itself will say what is wrong
        return target, False
    if stat.S_ISDIR(mode):
        raise WriteError(f"cannot write {path}: it is a folder; name a file")
    return (target, False) if stat.S_ISREG(mode) else (path, True)


def atomic_write(path, write: Callable, binary: bool = True) -> Path:
    """Write `path` by calling write(file) on a temporary file beside it, then renaming it over.

    The temporary file is flushed and fsynced before `os.replace`, and the directory is fsynced
    after, so a crash or kill at any moment leaves either the previous file or the new one.
    Temporaries of the same file left by processes that no longer exist (killed mid-write) are
    removed first. For symbolic links, devices and pipes see `destination`. Returns `path`.
    """
    path = Path(path)
    mode = ("wb" if binary else "w", {} if binary else {"encoding": "utf-8"})
    target, direct = destination(path)
    if direct:
        for stream in (sys.stdout, sys.stderr):  # /dev/stdout: after what was printed before
            with contextlib.suppress(AttributeError, OSError, ValueError):
                stream.flush()
        try:  # appending: /dev/stdout redirected to a file keeps what is in it
            with open(path, "a" + mode[0][1:], **mode[1]) as f:
                write(f)
        except OSError as exc:
            raise _write_error(path, exc) from None
        return path
    tmp = target.with_name(f"{_tmp_prefix(target.name)}{os.getpid()}")
    try:
        if target == path:  # a link's target folder is the link's business, not ours
            path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target)
        with open(tmp, mode[0], **mode[1]) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except OSError as exc:
        raise _write_error(path, exc) from None
    finally:
        with contextlib.suppress(OSError):  # gone already, or its folder never existed
            tmp.unlink()
    return path


def _tmp_prefix(name: str) -> str:
    return f".{name}.tmp-"


def _write_error(path: Path, exc: OSError) -> WriteError:
    if exc.errno in _NO_SPACE:
        advice = "free some space or choose another output folder"
    elif exc.errno in _NO_ACCESS:
        advice = "make the folder writable or choose another output folder"
    else:
        advice = "choose another output folder"
    reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
    return WriteError(f"cannot write {path}: {reason}; {advice}")


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporaries of `path` (``.NAME.tmp-PID``) whose process no longer exists.

    A process killed mid-write (SIGKILL, power loss) leaves its temporary behind, possibly
    hundreds of MB of a checkpoint. One of a live process (or of a pid this process cannot
    tell) is being written, and is kept. Returns the files removed.
    """
    prefix = _tmp_prefix(path.name)
    removed = []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return removed
    for name in names:
        pid = name[len(prefix) :]
        if not (name.startswith(prefix) and pid.isdigit()) or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):  # another writer removed it first
            (path.parent / name).unlink()
            removed.append(path.parent / name)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if pid <= 0:
        return True  # not a process id: leave the file to whoever made it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else (or unknowable): keep its file
        return True
    return True


def check_writable(path: Path, option: str) -> None:
    """Refuse an output file the command could not write, before any work is done.

    `option` names the command-line option that gave `path` (for the message).
    """
    from .errors import ConfigError

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; name a file")
    try:
        target, direct = destination(path)
    except WriteError as exc:
        raise ConfigError(f"{option}: {exc}") from None
    if direct:  # a device or pipe is written in place: only its own permission counts
        if not os.access(path, os.W_OK):
            raise ConfigError(f"{option} {path}: not writable; choose another path")
        return
    folder = target.parent
    if not folder.is_dir():
        raise ConfigError(f"{option} {path}: the folder {folder} does not exist")
    if target.exists() and not os.access(target, os.W_OK):
        raise ConfigError(f"{option} {path}: not writable; choose another path")
    try:  # root passes os.access everywhere, so try a file beside it
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{target.name}.probe-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{option} {path}: cannot write in {folder} ({exc.strerror or exc})"
        ) from None


def atomic_write_text(path, text: str) -> Path:
    """Atomically replace `path` with `text` (UTF-8); see `atomic_write`."""
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


# -- pickles of weights ---------------------------------------------------------------------------

#: the only globals a pickle of weights may name: what NumPy's arrays and scalars are rebuilt
#: from (numpy.core before NumPy 2, numpy._core since), and the bytes decoder of protocols 0-2
_PICKLE_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class _PlainUnpickler(pickle.Unpickler):
    """An unpickler that can build NumPy arrays and Python's own containers, and nothing else."""

    def __init__(self, file, path):
        super().__init__(file)
        self.path = path

    def find_class(self, module, name):
        if module.startswith("numpy.core."):  # NumPy 1's name for the same functions
            module = "numpy._core." + module[len("numpy.core.") :]
        if (module, name) not in _PICKLE_GLOBALS:
            raise CheckpointError(
                f"{self.path}: refusing to load {module}.{name}; a pickle of weights may hold only "
                f"NumPy arrays, dicts, lists, numbers and strings (anything else could run code)"
            )
        return getattr(importlib.import_module(module), name)

    def persistent_load(self, pid):
        raise CheckpointError(f"{self.path}: refusing a pickle with external references")


def _check_plain(obj, path, depth: int = 0) -> None:
    """A CheckpointError unless `obj` is made of numeric arrays, dicts, lists, numbers, strings."""
    if depth > 100:
        raise CheckpointError(f"{path}: the pickle nests too deep for a file of weights")
    if isinstance(obj, dict):
        for key, value in obj.items():
            _check_plain(key, path, depth + 1)
            _check_plain(value, path, depth + 1)
    elif isinstance(obj, list):
        for value in obj:
            _check_plain(value, path, depth + 1)
    elif isinstance(obj, np.ndarray | np.generic):
        if obj.dtype.kind not in "biufc":
            raise CheckpointError(
                f"{path}: refusing NumPy values of dtype {obj.dtype}; a pickle of weights holds "
                f"numbers"
            )
    elif not isinstance(obj, str | numbers.Number):
        raise CheckpointError(
            f"{path}: refusing a {type(obj).__name__}; a pickle of weights may hold only NumPy "
            f"arrays, dicts, lists, numbers and strings"
        )


def load_pickle(path):
    """The contents of pickle file `path`, built without running any code the file names.

    Only NumPy arrays (of numbers), dicts, lists, numbers and strings are accepted (what a file of
    weights such as the book's params.pkl holds); a file naming any other class or function is
    refused with a CheckpointError before that name is looked up, so it cannot run code.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = _PlainUnpickler(f, path).load()
    except CheckpointError:
        raise
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # truncated or not a pickle: whatever pickle raised, in one line
        why = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path} is not a readable pickle of weights ({why})") from None
    _check_plain(obj, path)
    return obj


def save_pickle(obj, path) -> Path:
    """Atomically write `obj` (arrays, dicts, lists, numbers, strings) as a pickle to `path`."""
    _check_plain(obj, path)
    return atomic_write(path, lambda f: pickle.dump(obj, f, protocol=4))
