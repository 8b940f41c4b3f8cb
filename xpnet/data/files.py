"""A dataset's files on disk: where they are looked for, which folders may be written, loading them.

Files are looked up in a folder the user names (`data_dir`, the CLI's --data-dir, else
$XPNET_DATA_DIR) or in xpnet's own cache (`fetch.cache_root()`), directly in it or in
`<dir>/<name>/`. Every file is checked against its published MD5 before use (`catalogue`), so a
truncated, corrupt or foreign file is never trained on.

A folder the user named is read, never written: it must exist and hold the dataset asked for.
A typo, an empty folder, another dataset's folder or a folder lacking some of the files is a
one-line error saying what to do (name the right folder, or leave the setting out to download
into the cache); nothing is created, downloaded, deleted or rewritten there, and a bad file there
is named, never touched. Only the cache receives downloads, and only there is a bad file repaired
(announced, deleted and fetched again once).
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import DataError
from . import cache
from .catalogue import RESOURCES, IdxDataset, IdxFile
from .fetch import DataUnavailable, cache_root, fetch, unwritable
from .formats import BadFile, read_bytes


def named(data_dir) -> bool:
    return data_dir is not None and str(data_dir) != ""


def data_root(data_dir) -> tuple[Path, str | None]:
    """The data folder and, when the user named it, how (for messages); None for the cache."""
    if named(data_dir):
        return Path(data_dir).expanduser(), "--data-dir"
    env = os.environ.get("XPNET_DATA_DIR")
    if env:
        return Path(env).expanduser(), "XPNET_DATA_DIR"
    return cache_root(), None


def _find(root: Path, key: str, spec) -> Path | None:
    # The dataset's own subfolder first: MNIST and Fashion-MNIST share file names, so a flat
    # folder is only a fallback. (Path.is_file is False, not an error, under a regular file.)
    for folder in (root / key, root):
        for filename in spec.candidates:
            path = folder / filename
            if path.is_file():
                return path
    return None


def locate(key: str, root) -> list[Path | None]:
    """Where in the folder `root` the loader looks for each file of dataset `key` and finds it
    (None for one it does not find); nothing is read or verified."""
    return [_find(Path(root), key, f) for f in RESOURCES[key].files]


def _holds_a_dataset(root: Path) -> bool:
    """Whether `root` holds a file of any dataset xpnet knows, directly or in its subfolder."""
    return any(_find(root, key, f) for key, spec in RESOURCES.items() for f in spec.files)


def _should_hold(key: str, root: Path) -> str:
    """What a data folder should hold for dataset `key`, for messages."""
    spec = RESOURCES[key]
    names = [f.name for f in spec.files]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    how = (
        " (each may end in .gz)"
        if isinstance(spec, IdxDataset)
        else " (the archive as downloaded, not extracted: its published MD5 is what verifies it)"
    )
    return f"{spec.title}'s {listed}{how}, directly or in {root / key}"


def _instead(named_by: str, title: str) -> str:
    """How to get `title` downloaded instead of looking in a folder the user named."""
    how = "leave --data-dir out" if named_by == "--data-dir" else "unset XPNET_DATA_DIR"
    return f"{how} to download {title} into the cache {cache_root()}"


def _check_named_root(root: Path, named_by: str | None, key: str) -> None:
    """A folder the user named must exist: a typo is an error, never a folder created for it."""
    if named_by is None or root.is_dir():
        return
    what = "is not a folder" if root.exists() else "does not exist"
    undo = (
        f"check the path, or leave --data-dir out to use the cache {cache_root()}"
        if named_by == "--data-dir"
        else f"create it, or unset XPNET_DATA_DIR to use the cache {cache_root()}"
    )
    raise DataError(
        f"{named_by} {root} {what}; it should be a folder holding {_should_hold(key, root)}; {undo}"
    )


def _holds(root: Path) -> str:
    """A short description of what a folder holds, for "wrong files" messages."""
    try:
        names = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    except OSError:
        return f"{root} does not exist or cannot be listed"
    if not names:
        return f"{root} is empty"
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return f"{root} holds {', '.join(names[:3])}{more}"


def _lacking(key: str, root: Path, named_by: str, missing: list, found: list) -> DataError:
    """The error for a folder the user named that lacks (some of) the dataset's files."""
    spec = RESOURCES[key]
    instead = _instead(named_by, spec.title)
    notes = [why for _, why in missing if why]
    if not found and not _holds_a_dataset(root):
        holds = _holds(root)
        if not holds.endswith(" is empty"):
            holds += f" but none of the {spec.title} files"
        return DataError(
            f"{named_by} {root} holds no dataset: {holds}; it should hold "
            f"{_should_hold(key, root)}; check the path, or {instead}"
        )
    if not found:
        return DataError(
            f"{named_by} {root} holds no {spec.title} files{notes[0] if notes else ''}: "
            f"{_holds(root)}; it should hold {_should_hold(key, root)}; point {named_by} at the "
            f"folder holding them, or {instead}"
        )
    names = [
        spec.files[i].name + ("[.gz]" if isinstance(spec.files[i], IdxFile) else "")
        for i, _ in missing
    ]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return DataError(
        f"{named_by} {root} lacks {spec.title}'s {listed}{notes[0] if notes else ''}; "
        f"put them in {root / key} or {root}, or {instead}"
    )


def _try_decode(path: Path, spec):
    try:
        return cache.decode(read_bytes(path), spec, str(path))
    except BadFile as exc:
        return exc


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def load_files(key: str, data_dir, download: bool, progress):
    """A downloadable dataset's (x_train, t_train, x_test, t_test, class_names) with images
    (N, [C,] H, W) uint8, its number of classes, largest pixel value, and where it came from."""
    spec = RESOURCES[key]
    root, named_by = data_root(data_dir)
    _check_named_root(root, named_by, key)
    decoded: list = [None] * len(spec.files)
    found: list[Path] = []
    missing: list[tuple[int, str]] = []  # (index, why it is missing, for messages)
    paths = [_find(root, key, f) for f in spec.files]
    # Inflating and hashing release the GIL, so the files load side by side.
    with ThreadPoolExecutor(max_workers=len(spec.files)) as pool:
        jobs = [
            None if path is None else pool.submit(_try_decode, path, f)
            for path, f in zip(paths, spec.files, strict=True)
        ]
        results = [None if job is None else job.result() for job in jobs]
    for i, (path, result) in enumerate(zip(paths, results, strict=True)):
        if path is None:
            missing.append((i, ""))
        elif not isinstance(result, BadFile):
            decoded[i] = result
            found.append(path)
        elif result.other is not None and path.parent == root:
            # another dataset's genuine file in a flat folder (MNIST's, when Fashion-MNIST is
            # asked for): not this dataset's, and not to be touched
            missing.append((i, f" ({path} is {RESOURCES[result.other].title}'s)"))
        elif named_by is not None:
            # Not ours to touch: the user may have put it there on purpose.
            raise DataError(
                f"{result}; replace it with a genuine copy, point {named_by} at another folder, "
                f"or {_instead(named_by, spec.title)}"
            )
        else:
            # Our own cache: repaired, and said so before the (possibly long) download starts.
            action = "deleting it and downloading it again" if download else "deleting it"
            print(f"notice: the cached {result}; {action}", file=sys.stderr, flush=True)
            try:
                path.unlink()
            except OSError as err:
                raise unwritable(path.parent, err) from None
            missing.append((i, f" (the cached copy {result.reason}, so it was deleted)"))

    if missing and named_by is not None:
        raise _lacking(key, root, named_by, missing, found)
    dest = root / key
    if missing and not download:
        names = ", ".join(
            spec.files[i].name + ("[.gz]" if isinstance(spec.files[i], IdxFile) else "")
            for i, _ in missing
        )
        hint = f" ({_holds(root)})" if not found else ""
        raise DataUnavailable(
            f"{spec.title}'s {names} not found in {dest} or {root}{hint} and downloading is off; "
            f"turn downloads on, pass --data-dir to a folder holding them, or use --dataset digits",
            "downloading is off",
            root,
        )
    used: list[str] = []
    for i, why in missing:
        decoded[i], mirror = fetch(key, spec.files[i], dest, progress, why)
        if mirror not in used:
            used.append(mirror)

    folders = sorted({str(p.parent) for p in found})
    parts = [f"{' and '.join(folders)} ({_plural(len(found), 'file')})"] if found else []
    if used:
        parts.append(
            f"downloaded from {', '.join(used)} into {dest} ({_plural(len(missing), 'file')})"
        )
    source = " + ".join(parts) + ", checksums verified"
    return spec.assemble(decoded), spec.num_classes, spec.scale, source
