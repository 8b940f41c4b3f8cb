"""A saved model on its test set: predictions, accuracy and errors, as saved and with fewer bits.

`evaluate` loads the model (any backend and device) and the test split of the dataset its run
used, and measures the test accuracy; then, as the book's ``half_float_network.py`` does (chapter
8), the accuracy with every stored number of the model (weights, biases, batch-norm statistics)
and the test images rounded to float16 and to bfloat16 (`xpnet.nn.precision`), and how many
predictions the rounding changed. The command line is `xpnet.apps.evaluate`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ..backend import to_numpy
from ..errors import CheckpointError, DataError, choose
from ..nn import functions
from ..nn.precision import FORMATS, round_to
from .checkpoint import (
    Checkpoint,
    build_model,
    load_checkpoint,
    load_model,
    model_file,
    restore_params,
)
from .placement import split_to_device

#: Image shapes (C, H, W) of the datasets xpnet loads, known before loading (or downloading) one.
IMAGE_SHAPES = {
    "mnist": (1, 28, 28),
    "fashion-mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "digits": (1, 8, 8),
}

# -- the test set and the predictions ---------------------------------------------------------


def trained_on(ckpt: Checkpoint) -> str | None:
    """The name of the dataset the checkpoint's run used, when it says."""
    used = ckpt.extra.get("dataset", {}) if isinstance(ckpt.extra, dict) else {}
    name = used.get("name") if isinstance(used, dict) else None
    return name or ckpt.config.get("dataset")


def load_test_set(ckpt: Checkpoint, dataset: str | None = None, data_dir=None):
    """The test split of the dataset the run used (or `dataset`), as images (N, C, H, W).

    `data_dir` None: the run's own folder for the run's dataset, the default place for another.

    The images must fit the model (`check_fits`): a mismatch is a DataError naming both.
    """
    from ..data import load_dataset

    name = dataset or trained_on(ckpt)
    if not name:
        raise DataError(f"{ckpt.path} does not say which dataset it was trained on; pass --dataset")
    if name in IMAGE_SHAPES:  # before minutes of loading, or a download
        check_fits(ckpt, IMAGE_SHAPES[name], name)
    if data_dir is None and name == trained_on(ckpt):  # the run's folder holds the run's dataset
        data_dir = ckpt.config.get("data_dir")
    test = load_dataset(name, data_dir, flatten=False, progress=False)
    check_fits(ckpt, test.x_test.shape[1:], test.name)
    return test


def input_shape(ckpt: Checkpoint) -> tuple[int, ...] | None:
    """The shape of one input the model takes: (C, H, W) for a CNN, (D,) for an MLP; None when
    the checkpoint does not describe it."""
    model = ckpt.model if isinstance(ckpt.model, dict) else {}
    if model.get("input_dim") is not None:
        return tuple(int(n) for n in model["input_dim"])
    if model.get("input_size") is not None:
        return (int(model["input_size"]),)
    return None


def check_fits(ckpt: Checkpoint, sample_shape, dataset: str) -> None:
    """Refuse test images of `sample_shape` that the model cannot take, naming the dataset and
    the one the model was trained on (before anything is computed or written)."""
    want, have = input_shape(ckpt), tuple(int(n) for n in sample_shape)
    if want is None:
        return
    fits = math.prod(want) == math.prod(have) if len(want) == 1 else want == have
    if fits:
        return
    kind = ckpt.model.get("model", "mlp")
    takes = f"{want[0]} inputs" if len(want) == 1 else f"images of shape {want}"
    images = "x".join(str(n) for n in have)
    trained = trained_on(ckpt)
    advice = (
        f"pass --dataset {trained} (the dataset it was trained on)"
        if trained and trained != dataset
        else "pass --dataset with the dataset it was trained on"
    )
    raise DataError(
        f"this {kind} model takes {takes}, but the {dataset} test images are {images} "
        f"({math.prod(have)} values); {advice}"
    )


def first_weight(net):
    """The first layer's weight W: (in, out) for an Affine layer, (FN, C, FH, FW) for a convolution."""
    for layer in net.layers.values():
        if "W" in getattr(layer, "param_names", ()):
            return layer.W
    raise CheckpointError("the model has no layer with a weight W")


def predict_labels(
    net, x: np.ndarray, batch_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted labels and their softmax probabilities for host inputs `x`, computed on net's device.

    `x` is fed in the first layer's layout: flattened (N, D) for an Affine layer, as it is for a
    convolution (N, C, H, W); in chunks of `batch_size` samples (default: the network's
    ``eval_batch_size``, which bounds the memory of its largest activation).
    """
    be = net.backend
    batch_size = batch_size or getattr(net, "eval_batch_size", None) or len(x)
    if first_weight(net).ndim == 2:
        x = x.reshape(x.shape[0], -1)
    xp = be.xp
    labels, probs = [], []
    for start in range(0, x.shape[0], batch_size):
        scores = net.predict(be.asarray(x[start : start + batch_size], net.dtype), train=False)
        p = functions.softmax(scores)
        labels.append(to_numpy(xp.argmax(scores, axis=-1)))
        probs.append(to_numpy(xp.max(p, axis=-1)))
    return np.concatenate(labels).astype(np.int64), np.concatenate(probs)


def labels_of(t) -> np.ndarray:
    """Class indices from integer labels or one-hot rows, on the host."""
    t = np.asarray(t)
    return t.argmax(axis=1) if t.ndim == 2 else t


# -- fewer bits (chapter 8) -------------------------------------------------------------------


@dataclass
class Result:
    """One row of an evaluation: the model's numbers and the test images stored in `precision`."""

    precision: str
    accuracy: float
    errors: int
    changed: int  # test images whose predicted label differs from the model's as saved
    n_test: int


@dataclass
class Evaluation:
    """What `evaluate` measured, and on what."""

    model: str
    dataset: str
    backend: str
    dtype: str
    results: list[Result]


def evaluate(
    path, formats=FORMATS, dataset=None, data_dir=None, device="cpu", backend=None
) -> Evaluation:
    """Test accuracy of the model saved at `path` (a model.npz, checkpoint.npz or run folder), as
    saved and with its numbers and the test images rounded to each of `formats` (each once)."""
    formats = list(dict.fromkeys(formats))  # `--precision float16 float16` is one row
    for fmt in formats:  # an unknown format fails before any loading
        choose("precision", fmt, FORMATS)
    ckpt = load_checkpoint(model_file(path))
    saved_dtype = str(next(iter(ckpt.params.values())).dtype)
    net = build_model(ckpt.model, device, backend, saved_dtype)
    test = load_test_set(ckpt, dataset, data_dir)
    t = labels_of(test.t_test)

    def row(name: str, x: np.ndarray, reference: np.ndarray | None):
        pred, _ = predict_labels(net, x)
        changed = 0 if reference is None else int(np.count_nonzero(pred != reference))
        errors = int(np.count_nonzero(pred != t))
        return pred, Result(name, (len(t) - errors) / len(t), errors, changed, len(t))

    def rounded(arrays: dict, fmt: str) -> dict:  # integer buffers (counters) stay as they are
        return {
            k: round_to(v, fmt) if np.issubdtype(v.dtype, np.floating) else v
            for k, v in arrays.items()
        }

    restore_params(net, ckpt)
    saved, first = row(f"{saved_dtype} (as saved)", test.x_test, None)
    results = [first]
    for fmt in formats:
        restore_params(
            net,
            dataclasses.replace(
                ckpt, params=rounded(ckpt.params, fmt), buffers=rounded(ckpt.buffers, fmt)
            ),
        )
        results.append(row(fmt, round_to(test.x_test, fmt), saved)[1])
    kind = ckpt.model.get("model", "mlp")
    what = f"{type(net).__name__} ({kind}), {ckpt.iteration} iterations"
    return Evaluation(what, test.name, str(net.backend), saved_dtype, results)


def table(ev: Evaluation) -> str:
    """The evaluation as a Markdown table, under a line saying what was evaluated and where."""
    n = ev.results[0].n_test
    lines = [
        f"{ev.model}; {ev.dataset} test set ({n} images); computed in {ev.dtype} on {ev.backend}",
        "",
        "| weights and test images | test accuracy | errors | predictions changed |",
        "|---|---:|---:|---:|",
    ]
    for r in ev.results:
        changed = "" if r is ev.results[0] else str(r.changed)
        lines.append(f"| {r.precision} | {100 * r.accuracy:.2f}% | {r.errors} | {changed} |")
    return "\n".join(lines)


def accuracy_of(path, dataset, device="cpu", backend=None) -> float:
    """Test accuracy of the model saved at `path` on `dataset`, on any backend."""
    net = load_model(path, device, backend)
    shape = dataset.image_shape if net.sample_ndim == 3 else None
    x, t = split_to_device(
        dataset.x_test, dataset.t_test, dataset.num_classes, "test", net.backend, net.dtype, shape
    )
    return net.accuracy(x, t)
