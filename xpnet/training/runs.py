"""Run folders: a fresh one per run, refused when it holds another run, and claimed while written.

These are the library's rules, for every caller (the commands, the search, the comparisons): a
folder that holds files is never written into unless the caller says it resumes or replaces that
run, and a marker file holding the writer's pid keeps two processes out of one folder.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
from pathlib import Path

from ..errors import ConfigError, XpnetError

RUNNING = ".xpnet-running"  # in an output folder while a run writes into it (holds the pid)


def claim(out: Path, claims: list[Path]) -> None:
    """Mark `out` as in use, atomically, so two runs never write into one folder."""
    marker = out / RUNNING
    for _ in range(2):
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if alive(marker):
                raise XpnetError(
                    f"another run (process {marker.read_text().strip()}) is writing into {out}; "
                    f"wait for it, or choose another --out"
                ) from None
            with contextlib.suppress(OSError):  # left by a run that was killed: take over
                marker.unlink()
            continue
        except OSError as exc:
            raise XpnetError(
                f"cannot write into {out}: {reason(exc)}; choose another --out"
            ) from None
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        claims.append(marker)
        return


def alive(marker: Path) -> bool:
    try:
        pid = int(marker.read_text().strip())
    except (OSError, ValueError):
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def release(claims: list[Path]) -> None:
    while claims:
        with contextlib.suppress(OSError):
            claims.pop().unlink()


def same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def remove_if_empty(folders: list[Path]) -> None:
    for folder in reversed(folders):
        with contextlib.suppress(OSError):  # not empty, or gone: keep what is there
            folder.rmdir()


def prepare_output_folder(
    out: Path,
    created: list | None = None,
    *,
    reuse: bool = False,
    overwrite: bool = False,
    outputs: tuple[str, ...] = (),
) -> Path:
    """Create the output folder before any training, so a bad --out costs no time.

    A folder that already holds files is refused (it is another run's), unless `reuse` (the run
    being resumed) or `overwrite` (its outputs are removed first, so nothing stale is listed).
    Folders made here are appended to `created`.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder; choose another output folder")
    if out.is_dir() and not reuse:
        try:
            entries = sorted(p.name for p in out.iterdir())
            if RUNNING in entries and alive(out / RUNNING):
                raise XpnetError(
                    f"another run is writing into {out}; wait for it, or choose another --out"
                )
        except OSError as exc:
            raise XpnetError(f"cannot read the output folder {out}: {reason(exc)}") from None
        if entries and not overwrite:
            shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
            raise ConfigError(
                f"--out {out} already holds files ({shown}); choose a new folder, resume that run "
                f"with --resume {out}, or pass --overwrite to replace it"
            )
        for name in entries if overwrite else ():
            if any(name == o or (o.endswith("*") and name.startswith(o[:-1])) for o in outputs):
                with contextlib.suppress(FileNotFoundError):
                    try:
                        (out / name).unlink()
                    except OSError as exc:
                        raise XpnetError(
                            f"cannot replace {out / name}: {reason(exc)}; choose another --out"
                        ) from None
    missing = [p for p in (out, *out.parents) if not p.exists()]
    try:
        for folder in reversed(missing):
            folder.mkdir()
            if created is not None:
                created.append(folder)
    except FileExistsError:
        raise ConfigError(
            f"--out {out}: a part of that path is a file, not a folder; choose another output folder"
        ) from None
    except OSError as exc:
        raise XpnetError(
            f"cannot create the output folder {out}: {reason(exc)}; choose another with --out"
        ) from None
    return out


def reason(exc: OSError) -> str:
    return (os.strerror(exc.errno) if exc.errno else str(exc)).lower()


def new_run_dir(root="runs", tag: str = "") -> Path:
    """A fresh folder runs/YYYYmmdd-HHMMSS[-tag][-n] that did not exist before."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / (f"{stamp}-{tag}" if tag else stamp)
    path, n = base, 1
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        except OSError as exc:
            raise XpnetError(
                f"cannot create the output folder {path}: {exc.strerror or exc}; choose one with --out"
            ) from None
