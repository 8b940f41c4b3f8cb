"""MNIST's four IDX files read with NumPy alone (the reference commands' loader).

What a script outside xpnet does: find the files (plain or .gz) in a folder and decode them; no
checksums, no download. Used by slides_mnist.py and torch_mnist.py, so that a whole-command timing
of those scripts carries no import of xpnet.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

FILES = {
    "x_train": "train-images-idx3-ubyte",
    "t_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "t_test": "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path) -> np.ndarray:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(folder) -> dict:
    """{x_train, t_train, x_test, t_test}: images flattened to float32 in [0, 1], int64 labels."""
    folder = Path(folder)
    out = {}
    for key, name in FILES.items():
        path = folder / name if (folder / name).exists() else folder / f"{name}.gz"
        a = read_idx(path)
        out[key] = (a.reshape(len(a), -1).astype(np.float32) / 255.0 if key[0] == "x"
                    else a.astype(np.int64))  # fmt: skip
    return out
