"""A dependency-free one-line progress bar on stderr."""

from __future__ import annotations

import sys
import time


def _format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60:d}:{seconds % 60:02d}"


class Progress:
    """A progress bar redrawn in place (at most 10 times a second) when the stream is a terminal.

    When the stream is not a terminal (a log file, CI) the bar is not drawn, so logs stay clean;
    `write` prints a line either way, above the bar.
    """

    def __init__(
        self, total: int | None, desc: str = "", unit: str = "it", stream=None, enabled=None
    ):
        self.total = total
        self.desc = desc
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.n = 0
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._width = 0

    def update(self, n: int = 1) -> None:
        self.n += n
        self._draw()

    def set(self, n: int) -> None:
        self.n = n
        self._draw()

    def write(self, line: str, stream=None) -> None:
        """Print a line above the bar (to stdout by default)."""
        self._clear()
        print(line, file=stream if stream is not None else sys.stdout, flush=True)
        self._draw(force=True)

    def close(self) -> None:
        self._draw(force=True)
        if self.enabled and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def text(self) -> str:
        elapsed = time.perf_counter() - self.start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        if self.unit == "B":
            done = (
                f"{self.n / 2**20:.1f}/{self.total / 2**20:.1f} MiB"
                if self.total
                else f"{self.n / 2**20:.1f} MiB"
            )
            speed = f"{rate / 2**20:.1f} MiB/s"
        else:
            done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
            speed = f"{rate:.1f} {self.unit}/s"
        if self.total:
            frac = min(self.n / self.total, 1.0)
            bar = "#" * int(frac * 24)
            eta = (self.total - self.n) / rate if rate > 0 else 0.0
            return f"{self.desc} [{bar:<24}] {100 * frac:5.1f}% {done} {speed} eta {_format_seconds(eta)}"
        return f"{self.desc} {done} {speed}"

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self._last_draw < 0.1 and self.n != self.total:
            return
        self._last_draw = now
        line = self.text()
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)

    def _clear(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
