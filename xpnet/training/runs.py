"""Run folders: a fresh one per run, refused when it holds another run, and claimed while written.

These are the library's rules, for every caller (the commands, the search, the comparisons): a
folder that holds files is never written into unless the caller says it resumes or replaces that
run, and a marker file holding the writer's pid keeps two processes out of one folder.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import shutil
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


def _matches(name: str, outputs: tuple[str, ...]) -> bool:
    return any(name == o or (o.endswith("*") and name.startswith(o[:-1])) for o in outputs)


def prepare_output_folder(
    out: Path,
    created: list | None = None,
    *,
    reuse: bool = False,
    overwrite: bool = False,
    outputs: tuple[str, ...] = (),
    aside: Path | None = None,
    options: tuple[str, ...] = ("--resume", "--overwrite"),
) -> Path:
    """Create the output folder before any training, so a bad --out costs no time.

    A folder that already holds files is refused (it is another run's), unless `reuse` (the run
    being resumed) or `overwrite`: then its `outputs` (a name ending in * is a prefix) are moved
    into the folder `aside` (inside `out`; the caller puts them back if the new run fails before
    it starts, see RunFolder), or removed when `aside` is None, so nothing stale is listed.
    `options` are the caller's options that the refusal may suggest. Folders made here are
    appended to `created`.
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
            hints = ["choose a new folder"]
            if "--resume" in options and "checkpoint.npz" in entries:
                hints.append(f"resume that run with --resume {out}")
            if "--overwrite" in options:
                hints.append("pass --overwrite to replace it")
            advice = ", ".join(hints[:-1]) + (" or " if len(hints) > 1 else "") + hints[-1]
            raise ConfigError(f"--out {out} already holds files ({shown}); {advice}")
        for name in entries if overwrite else ():
            if not _matches(name, outputs):
                continue
            try:
                if aside is None:
                    (out / name).unlink()
                else:
                    aside.mkdir(exist_ok=True)
                    os.replace(out / name, aside / name)
            except FileNotFoundError:
                pass
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


class RunFolder:
    """A run's output folder for the length of a `with` block: made or checked, and claimed.

    On leaving the block, the claim is released; if the block failed, the folders made here are
    removed again while they are still empty. With `overwrite`, the outputs of the run being
    replaced are moved aside, not deleted, until `commit()` says the new run has started: a usage
    error, missing data or Ctrl-C while loading puts them back as they were.
    """

    def __init__(self, out: Path | None, *, reuse=False, overwrite=False, outputs=()):
        self.out = Path(out) if out is not None else None
        self.reuse, self.overwrite, self.outputs = reuse, overwrite, tuple(outputs)
        self.created: list[Path] = []
        self.claims: list[Path] = []
        self.aside: Path | None = None

    def __enter__(self) -> RunFolder:
        if self.out is not None:
            self._open(self.out)
        return self

    def _open(self, out: Path) -> None:
        aside = out / f".xpnet-replaced-{os.getpid()}" if self.overwrite else None
        try:
            prepare_output_folder(out, self.created, reuse=self.reuse, overwrite=self.overwrite,
                                  outputs=self.outputs, aside=aside)  # fmt: skip
        finally:
            self.aside = aside if aside is not None and aside.exists() else None
        claim(out, self.claims)

    def new(self, root="runs", tag: str = "") -> Path:
        """Make and claim a fresh folder `root/YYYYmmdd-HHMMSS[-tag][-n]` (no --out given)."""
        root = Path(root)
        if not root.exists():
            self.created.append(root)
        self.out = new_run_dir(root, tag)
        self.created.append(self.out)
        claim(self.out, self.claims)
        return self.out

    def commit(self) -> None:
        """The new run has started: the outputs it replaces are gone for good."""
        if self.aside is not None:
            shutil.rmtree(self.aside, ignore_errors=True)
            self.aside = None

    def __exit__(self, kind, error, tb) -> None:
        if self.aside is not None:  # the new run never started: the old one is put back
            for moved in self.aside.iterdir():
                with contextlib.suppress(OSError):
                    os.replace(moved, self.aside.parent / moved.name)
            with contextlib.suppress(OSError):
                self.aside.rmdir()
        release(self.claims)
        if kind is not None:
            remove_if_empty(self.created)


def reason(exc: OSError) -> str:
    return (os.strerror(exc.errno) if exc.errno else str(exc)).lower()


def new_run_dir(root="runs", tag: str = "") -> Path:
    """A fresh folder `runs/YYYYmmdd-HHMMSS[-tag][-n]` that did not exist before."""
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
