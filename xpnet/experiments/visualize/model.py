"""What a saved model learned: its first layer's weights as images, before and after training, and
the test images it gets wrong.

The predictions are the model's own, on the chosen backend and device; each picture is written
with the arrays it shows beside it (an .npz of the same name).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...backend import Backend, to_numpy
from ...errors import CheckpointError, ConfigError, DataError, XpnetError
from ...training.checkpoint import (
    Checkpoint,
    build_model,
    describe,
    load_checkpoint,
    load_model,
    model_file,
)
from ...training.evaluation import (
    IMAGE_SHAPES,
    check_fits,
    first_weight,
    labels_of,
    load_test_set,
    predict_labels,
    trained_on,
)
from .plots import plot_filters, plot_misclassified, save_npz


def filters_as_images(W, image_shape) -> np.ndarray:
    """The first layer's weights as images (K, C, H, W) on the host.

    An Affine weight (in, out) gives one image per output unit: column k reshaped to `image_shape`
    (C, H, W), the input pixels that unit weighs. A convolution weight (FN, C, FH, FW) is its filters.
    """
    W = to_numpy(W)
    if W.ndim == 4:
        return W
    if W.ndim != 2:
        raise CheckpointError(f"cannot draw a first-layer weight of shape {W.shape} as images")
    if math.prod(image_shape) != W.shape[0]:
        raise DataError(
            f"the model takes {W.shape[0]} inputs, which are not images of shape {image_shape}; "
            f"pass --dataset with the dataset the model was trained on"
        )
    return W.T.reshape(W.shape[1], *image_shape)


def guess_image_shape(n_inputs: int, dataset: str | None) -> tuple[int, int, int]:
    """(C, H, W) of a flat input of `n_inputs` values: the dataset's own, else a square."""
    if dataset in IMAGE_SHAPES and math.prod(IMAGE_SHAPES[dataset]) == n_inputs:
        return IMAGE_SHAPES[dataset]
    for c in (1, 3):
        side = math.isqrt(n_inputs // c)
        if c * side * side == n_inputs:
            return (c, side, side)
    raise DataError(
        f"the model takes {n_inputs} inputs, which are not square images; "
        f"pass --dataset with the dataset the model was trained on"
    )


def _seed(ckpt: Checkpoint) -> int | None:
    for source in (ckpt.model, ckpt.config, ckpt.extra.get("random_state", {})):
        if isinstance(source, dict) and source.get("seed") is not None:
            return int(source["seed"])
    return None


def initial_network(ckpt: Checkpoint, be: Backend, dtype="float32"):
    """The network the run started from, rebuilt from the checkpoint's description and seed.

    Networks draw their initial weights on the host from a NumPy generator seeded with `seed`, so
    the same description and seed give the same initial weights on every backend. Returns None
    when the checkpoint does not say which seed (or network) it used.
    """
    seed, m = _seed(ckpt), ckpt.model
    if seed is None:
        return None
    try:
        return build_model(m, device=be, dtype=dtype, seed=seed)
    except (KeyError, TypeError, XpnetError):
        return None


def describe_model(ckpt: Checkpoint) -> str:
    """'784-50-10 relu, 10000 iterations' for a fully connected net; 'simple-cnn, 13,150
    parameters, 30 iterations' for others (their weight shapes make a title of several lines)."""
    shapes = {k: v.shape for k, v in ckpt.params.items()}
    act = ckpt.model.get("activation")
    if all(len(s) == 2 for k, s in shapes.items() if k.startswith("W")):
        head = describe(shapes) + (f" {act}" if act and "hidden_sizes" in ckpt.model else "")
    else:
        n = sum(v.size for v in ckpt.params.values())
        head = f"{ckpt.model.get('model', 'network')}, {n:,} parameters"
    return f"{head}, {ckpt.iteration} iterations"


@dataclass
class Misclassified:
    """The test samples a model gets wrong, in test-set order, on the host."""

    indices: np.ndarray  # positions in the test set (int64)
    true: np.ndarray  # true labels
    pred: np.ndarray  # predicted labels
    confidence: np.ndarray  # softmax probability of the predicted label
    n_test: int


def find_misclassified(net, x_test: np.ndarray, t_test: np.ndarray) -> Misclassified:
    """Every test sample whose predicted label differs from its true label."""
    pred, conf = predict_labels(net, x_test)
    t = labels_of(t_test)
    wrong = np.flatnonzero(pred != t)
    return Misclassified(wrong, t[wrong], pred[wrong], conf[wrong], len(t))


def check_prefix(prefix: str) -> str:
    """A file-name prefix names no folder: the pictures stay in the output folder."""
    seps = {"/", os.sep, os.altsep or "/"}
    if any(s in prefix for s in seps) or "\0" in prefix:
        raise ConfigError(
            f"--prefix {prefix!r} must be the start of a file name, without a folder; "
            f"choose the folder with --out"
        )
    return prefix


def model_outputs(prefix: str = "", misclassified: bool = True) -> tuple[str, ...]:
    """The files `draw_model` writes into its output folder."""
    names = ("filters",) + (("misclassified",) if misclassified else ())
    return tuple(f"{check_prefix(prefix)}{n}.{ext}" for n in names for ext in ("png", "npz"))


@dataclass
class ModelPictures:
    """What `draw_model` drew and wrote."""

    files: dict[str, Path]
    filters_after: np.ndarray
    filters_before: np.ndarray | None
    misclassified: Misclassified | None
    dataset: str | None
    accuracy: float | None = None
    notes: list[str] = field(default_factory=list)


def model_folder(path) -> Path:
    """The folder a saved model's pictures go by default: the model file's."""
    return model_file(path).parent


def draw_model(
    path,
    out=None,
    *,
    prefix: str = "",
    dataset: str | None = None,
    data_dir=None,
    device="cpu",
    backend=None,
    max_filters: int = 100,
    max_images: int = 40,
    misclassified: bool = True,
) -> ModelPictures:
    """Draw a saved model's first-layer weights (before and after training) and its test mistakes.

    Writes into `out` (default: the model's folder) `{prefix}filters.png` and
    `{prefix}misclassified.png`, each with an .npz of the arrays drawn (`model_outputs`). The
    initial weights are rebuilt from the checkpoint's description and seed (runs do not save
    them). Everything is computed, and a test set that does not fit the model refused, before
    the first file is written.
    """
    check_prefix(prefix)
    path = model_file(path)
    ckpt = load_checkpoint(path)
    dtype = ckpt.config.get("dtype", "float32")
    net = load_model(path, device, backend, dtype=dtype)
    out = Path(out) if out is not None else path.parent
    notes: list[str] = []

    test = None
    if misclassified:
        test = load_test_set(ckpt, dataset, data_dir)
    elif dataset in IMAGE_SHAPES:
        check_fits(ckpt, IMAGE_SHAPES[dataset], dataset)
    name = test.name if test is not None else (dataset or trained_on(ckpt))

    W = first_weight(net)
    image_shape = None  # a convolution's filters are images already
    if W.ndim == 2:
        image_shape = (
            tuple(test.x_test.shape[1:])
            if test is not None
            else guess_image_shape(W.shape[0], name)
        )
    after = filters_as_images(W, image_shape)
    init = initial_network(ckpt, net.backend, dtype=dtype)
    before = None
    if init is None:
        notes.append("the checkpoint does not say how to rebuild its initial weights")
    else:
        before = filters_as_images(first_weight(init), image_shape)
    mis = None if test is None else find_misclassified(net, test.x_test, test.t_test)

    files = {}
    what = describe_model(ckpt)
    files["filters"] = plot_filters(
        after, out / f"{prefix}filters.png", before=before, max_filters=max_filters,
        title=f"{what}: first layer weights", before_label=f"before training (seed {_seed(ckpt)})",
    )  # fmt: skip
    arrays = {"after": after} if before is None else {"before": before, "after": after}
    files["filters_npz"] = save_npz(out / f"{prefix}filters.npz", arrays)
    accuracy = None
    if mis is not None:
        accuracy = 1 - len(mis.indices) / mis.n_test
        files["misclassified"] = plot_misclassified(
            test.x_test, mis, out / f"{prefix}misclassified.png", max_images=max_images,
            title=f"{what} on the {test.name} test set",
        )  # fmt: skip
        files["misclassified_npz"] = save_npz(
            out / f"{prefix}misclassified.npz",
            {
                "indices": mis.indices,
                "true": mis.true,
                "pred": mis.pred,
                "confidence": mis.confidence,
            },
        )
    return ModelPictures(files, after, before, mis, name, accuracy, notes)
