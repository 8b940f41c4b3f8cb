"""MNIST's four IDX files read with NumPy alone, and the curves drawn with matplotlib: the
reference commands' loader and picture.

What a script outside xpnet does: find the files (plain or .gz) in a folder and decode them; no
checksums, no download. Used by slides_mnist.py, torch_mnist.py and numpy_mnist.py, so that a
whole-command timing of those scripts carries no import of xpnet.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
from pathlib import Path

import numpy as np

FILES = {
    "x_train": "train-images-idx3-ubyte",
    "t_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "t_test": "t10k-labels-idx1-ubyte",
}


def parser(doc: str, out: bool = True) -> argparse.ArgumentParser:
    """The reference commands' options: --data-dir, --out (when `out`), --iters and --seed, with
    the first paragraph of `doc` as the description."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    if out:
        p.add_argument("--out", required=True)
    p.add_argument("--iters", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    return p


def read_idx(path: Path) -> np.ndarray:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def path(folder, key: str) -> Path:
    """The file of `key` (a key of FILES) in `folder`: plain, or else gzipped; a missing file ends
    the script with one line."""
    plain = Path(folder) / FILES[key]
    for candidate in (plain, plain.with_name(f"{plain.name}.gz")):
        if candidate.is_file():
            return candidate
    sys.exit(f"error: {folder} holds no {plain.name} (nor {plain.name}.gz): --data-dir must be "
             f"a folder with MNIST's four IDX files")  # fmt: skip


def load(folder) -> dict:
    """{x_train, t_train, x_test, t_test}: images flattened to float32 in [0, 1], int64 labels."""
    out = {}
    for key in FILES:
        a = read_idx(path(folder, key))
        out[key] = (a.reshape(len(a), -1).astype(np.float32) / 255.0 if key[0] == "x"
                    else a.astype(np.int64))  # fmt: skip
    return out


def plot(history: list, path: Path) -> None:
    """The loss and the accuracies of `history` (records with iteration, loss, train_acc and
    test_acc) side by side, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    it = [r["iteration"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(it, [r["loss"] for r in history], marker=".", label="training loss")
    for key in ("train_acc", "test_acc"):
        ax_acc.plot(it, [r[key] for r in history], marker=".", label=key)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_metrics(records: list, path: Path) -> None:
    """`records` as JSON lines in `path`, replaced whole (a Ctrl-C mid-write leaves the last
    complete file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    os.replace(tmp, path)


def run(main) -> None:
    """Exit with `main()`'s status; Ctrl-C is one line and status 130, not a traceback."""
    try:
        status = main()
    except KeyboardInterrupt:
        print("interrupted: the files written so far are complete", file=sys.stderr)
        status = 130
    sys.exit(status)
