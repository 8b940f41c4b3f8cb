"""Progress bars: tqdm, with the two things xpnet adds.

tqdm does the drawing (terminal width, redraw rate, byte counts with `unit="B"`, `write` above the
bar). xpnet's `Progress` keeps the small interface the trainer and the downloader call
(`update`, `set`, `write`, `close`, a context manager) and adds:

- `enabled=None` draws only on a terminal, so logs and CI output stay free of carriage returns;
- `write` survives a closed or full standard output (`train.py | head -3`, `> /dev/full`): it stops
  printing and says so once on stderr, and the run goes on writing its files.
"""

from __future__ import annotations

import contextlib
import os
import sys
import weakref


class Progress:
    """A tqdm bar on stderr, drawn only when `enabled` (default: when stderr is a terminal)."""

    def __init__(
        self, total: int | None, desc: str = "", unit: str = "it", stream=None, enabled=None
    ):
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = _isatty(self.stream)
        self.enabled = bool(enabled)
        self.bar = None
        self._n, self._total = 0, total  # the count of a bar that is not drawn
        if not self.enabled:  # no tqdm at all: its import alone is 40 ms of a run's start-up
            return
        from tqdm import tqdm

        byte_units = {"unit_scale": True, "unit_divisor": 1024} if unit == "B" else {}
        self.bar = tqdm(
            total=total, desc=desc, unit=unit, file=self.stream, disable=False,
            dynamic_ncols=True, leave=True, **byte_units,
        )  # fmt: skip

    @property
    def n(self) -> int:
        return self.bar.n if self.bar is not None else self._n

    @property
    def total(self) -> int | None:
        return self.bar.total if self.bar is not None else self._total

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)
        else:
            self._n += n

    def set(self, n: int) -> None:
        """Jump to `n` (a resumed run starts where it stopped)."""
        if self.bar is None:
            self._n = n
            return
        self.bar.n = n
        self.bar.last_print_n = n
        self.bar.refresh()

    def write(self, line: str, stream=None) -> None:
        """Print a line above the bar (to stdout by default)."""
        stream = stream if stream is not None else sys.stdout
        if self.enabled:
            with self.bar.external_write_mode(file=stream):
                safe_print(line, stream)
        else:
            safe_print(line, stream)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


# streams that failed (weakly held: an id could be reused by a later, healthy stream)
_muted: weakref.WeakSet = weakref.WeakSet()


def safe_print(line: str, stream=None) -> bool:
    """Print `line` and flush; when the stream is closed or full, stop printing to it.

    A reader that went away (BrokenPipeError) or a full device (ENOSPC) must not end a training
    run: the results go to files, so the line is dropped, later lines too, and stderr says so once.
    Returns False when the line was dropped.
    """
    stream = stream if stream is not None else sys.stdout
    if _is_muted(stream):
        return False
    try:
        try:
            print(line, file=stream, flush=True)
        except UnicodeEncodeError:  # an ASCII terminal or PYTHONIOENCODING=ascii: "→" as "?"
            encoding = getattr(stream, "encoding", None) or "ascii"
            print(line.encode(encoding, "replace").decode(encoding), file=stream, flush=True)
        return True
    except (OSError, ValueError) as exc:  # ValueError: the stream was closed
        mute(stream)
        if stream is not sys.stderr:
            reason = "the reader went away" if isinstance(exc, BrokenPipeError) else str(exc)
            with contextlib.suppress(OSError, ValueError):
                print(
                    f"warning: stopped printing to standard output ({reason}); "
                    "the run goes on and writes its files",
                    file=sys.stderr,
                    flush=True,
                )
        return False


def _is_muted(stream) -> bool:
    try:
        return stream in _muted
    except TypeError:
        return False


def mute(stream) -> None:
    """Send all further output of `stream` (stdout or stderr) to os.devnull.

    Python flushes sys.stdout at exit; with a broken pipe that flush would print another error, so
    the file descriptor itself is pointed at os.devnull (what the Python docs advise for SIGPIPE).
    """
    with contextlib.suppress(TypeError):  # a stream that takes no weak reference
        _muted.add(stream)
    with contextlib.suppress(AttributeError, ValueError, OSError):
        fd = stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
