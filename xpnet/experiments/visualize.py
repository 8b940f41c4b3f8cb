"""Pictures: the slides' activation functions with their derivatives, and what a saved model learned.

Everything drawn is computed by xpnet itself on the chosen backend and device, and moved to the
host (`xpnet.backend.to_numpy`) only to be plotted: the activations by `xpnet.functions`, their
derivatives by the layers' backward passes, a model's predictions by the model. Each picture is
written with the arrays it shows beside it (an .npz of the same name), so the numbers can be
checked.

The command line is `python scripts/visualize.py {activations,model} ...` (`--help` for each).
"""

from __future__ import annotations

import argparse
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..backend import BACKENDS, DEVICES, DTYPES, Backend, resolve, to_numpy
from ..errors import CheckpointError, ConfigError, DataError, XpnetError
from ..fileio import atomic_write
from ..nn import functions
from ..nn.layers import ReLU, Sigmoid, Tanh
from ..training.checkpoint import (
    Checkpoint,
    build_model,
    describe,
    load_checkpoint,
    load_model,
    model_file,
)

#: The slides' grid: np.arange(-5.0, 5.0, 0.1).
X_RANGE = (-5.0, 5.0, 0.1)

#: The activations in the order they are drawn: (name, function, layer class or None, y-limits).
#: The y-limits of sigmoid and ReLU are the slides' (the step function shares the sigmoid's).
ACTIVATIONS = (
    ("step_function", functions.step_function, None, (-0.1, 1.1)),
    ("sigmoid", functions.sigmoid, Sigmoid, (-0.1, 1.1)),
    ("relu", functions.relu, ReLU, (-1.1, 5.6)),
    ("tanh", functions.tanh, Tanh, (-1.1, 1.1)),
)
#: One y-range for every derivative panel, so their heights compare at a glance.
DERIVATIVE_YLIM = (-0.1, 1.1)

#: Image shapes (C, H, W) of the datasets xpnet loads, for drawing the weights of a flat input.
IMAGE_SHAPES = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "digits": (1, 8, 8)}


# -- activations ------------------------------------------------------------------------------


def compute_activations(be: Backend, dtype="float32") -> dict:
    """The slides' x grid and every activation and derivative on it, as arrays on `be`.

    Keys: "x"; each activation's name ("sigmoid", ...) for f(x) computed by `xpnet.functions`;
    "d_" + name for df/dx computed by the layer's backward pass: forward(x), then backward(ones).
    The step function has no layer (its derivative is 0 wherever it exists), so no "d_step_function".
    """
    x = be.asarray(np.arange(*X_RANGE), dtype)
    xp = be.xp
    out = {"x": x}
    for name, fn, layer_cls, _ in ACTIVATIONS:
        out[name] = fn(x)
        if layer_cls is not None:
            layer = layer_cls()
            layer.forward(x, train=True)
            out["d_" + name] = layer.backward(xp.ones_like(x))
    return out


@dataclass
class ActivationCurves:
    """The arrays of the activation picture, on the host, and where they were computed."""

    arrays: dict[str, np.ndarray]
    backend: str
    device: str
    dtype: str


def activation_curves(device=None, backend=None, dtype="float32") -> ActivationCurves:
    """compute_activations on the chosen device and backend, moved to the host for plotting."""
    be = resolve(device, backend)
    arrays = {k: to_numpy(v) for k, v in compute_activations(be, dtype).items()}
    return ActivationCurves(arrays, be.name, str(be.device), dtype)


def plot_activations(curves: ActivationCurves, path) -> Path:
    """Top row: the four activations on the slides' ranges; bottom row: their derivatives."""
    plt = _pyplot()
    a = curves.arrays
    x = a["x"]
    n = len(ACTIVATIONS)
    fig, axes = plt.subplots(2, n, figsize=(3.4 * n, 6.4), layout="constrained", sharex=True)
    for col, (name, _, layer_cls, ylim) in enumerate(ACTIVATIONS):
        top, bottom = axes[0, col], axes[1, col]
        top.plot(x, a[name], color="C0")
        top.set(title=f"{name}(x)", ylim=ylim)
        bottom.set(title=f"d {name}/dx", ylim=DERIVATIVE_YLIM, xlabel="x")
        if layer_cls is None:
            bottom.text(
                0.5, 0.55,
                "0 wherever it exists\n(undefined at x = 0):\nno gradient flows back,\n"
                "so it has no layer",
                transform=bottom.transAxes, ha="center", va="center", fontsize=9, color="0.3",
            )  # fmt: skip
        else:
            d = a["d_" + name]
            bottom.plot(x, d, color="C1")
            peak = float(d.max())
            bottom.axhline(peak, color="C1", lw=0.8, ls=":")
            bottom.text(
                0.04, 0.6, f"{layer_cls.__name__}.backward(1)\nmax {peak:.3g}",
                transform=bottom.transAxes, ha="left", va="center", fontsize=8.5, color="0.3",
            )  # fmt: skip
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
            ax.axhline(0, color="0.6", lw=0.6)
            ax.axvline(0, color="0.6", lw=0.6)
    axes[0, 0].set_ylabel("f(x)")
    axes[1, 0].set_ylabel("df/dx")
    fig.suptitle(
        f"activations on x in [-5, 5) step 0.1, computed by xpnet on {curves.backend} "
        f"({curves.device}, {curves.dtype}); derivatives from the layers' backward passes"
    )
    return _save_png(fig, path)


def draw_activations(out, device=None, backend=None, dtype="float32", name="activations") -> dict:
    """Write `name`.png (the picture) and `name`.npz (its arrays) into `out`; return both paths."""
    curves = activation_curves(device, backend, dtype)
    out = Path(out)
    png = plot_activations(curves, out / f"{name}.png")
    npz = _save_npz(out / f"{name}.npz", curves.arrays)
    return {"png": png, "npz": npz, "curves": curves}


# -- a saved model ----------------------------------------------------------------------------


def first_weight(net):
    """The first layer's weight W: (in, out) for an Affine layer, (FN, C, FH, FW) for a convolution."""
    for layer in net.layers.values():
        if "W" in getattr(layer, "param_names", ()):
            return layer.W
    raise CheckpointError("the model has no layer with a weight W to draw")


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
    """'784-50-10 relu, 10000 iterations' for a checkpoint (the weight shapes for other networks)."""
    shapes = {k: v.shape for k, v in ckpt.params.items()}
    act = ckpt.model.get("activation")
    head = describe(shapes) + (f" {act}" if act and "hidden_sizes" in ckpt.model else "")
    return f"{head}, {ckpt.iteration} iterations"


@dataclass
class Misclassified:
    """The test samples a model gets wrong, in test-set order, on the host."""

    indices: np.ndarray  # positions in the test set (int64)
    true: np.ndarray  # true labels
    pred: np.ndarray  # predicted labels
    confidence: np.ndarray  # softmax probability of the predicted label
    n_test: int


def predict_labels(net, x: np.ndarray, batch_size: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Predicted labels and their softmax probabilities for host inputs `x`, computed on net's device.

    `x` is fed in the first layer's layout: flattened (N, D) for an Affine layer, as it is for a
    convolution (N, C, H, W).
    """
    be = net.backend
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


def find_misclassified(net, x_test: np.ndarray, t_test: np.ndarray) -> Misclassified:
    """Every test sample whose predicted label differs from its true label."""
    pred, conf = predict_labels(net, x_test)
    t = np.asarray(t_test)
    if t.ndim == 2:
        t = t.argmax(axis=1)
    wrong = np.flatnonzero(pred != t)
    return Misclassified(wrong, t[wrong], pred[wrong], conf[wrong], len(t))


def load_test_set(ckpt: Checkpoint, dataset: str | None = None, data_dir=None):
    """The test split of the dataset the run used (or `dataset`), as images (N, C, H, W)."""
    from ..data import load_dataset

    used = ckpt.extra.get("dataset", {}) if isinstance(ckpt.extra, dict) else {}
    name = dataset or used.get("name") or ckpt.config.get("dataset")
    if not name:
        raise DataError(f"{ckpt.path} does not say which dataset it was trained on; pass --dataset")
    if data_dir is None:
        data_dir = ckpt.config.get("data_dir")
    return load_dataset(name, data_dir, flatten=False, progress=False)


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
    `{prefix}misclassified.png`, each with an .npz of the arrays drawn. The initial weights are
    rebuilt from the checkpoint's description and seed (runs do not save them).
    """
    path = model_file(path)
    ckpt = load_checkpoint(path)
    net = load_model(path, device, backend, dtype=ckpt.config.get("dtype", "float32"))
    be = net.backend
    out = Path(out) if out is not None else path.parent
    notes: list[str] = []

    test = None
    if misclassified:
        test = load_test_set(ckpt, dataset, data_dir)
    name = test.name if test is not None else (dataset or ckpt.extra.get("dataset", {}).get("name"))

    W = first_weight(net)
    image_shape = None  # a convolution's filters are images already
    if W.ndim == 2:
        image_shape = (
            tuple(test.x_test.shape[1:])
            if test is not None
            else guess_image_shape(W.shape[0], name)
        )
    after = filters_as_images(W, image_shape)
    init = initial_network(ckpt, be, dtype=ckpt.config.get("dtype", "float32"))
    before = None
    if init is None:
        notes.append("the checkpoint does not say how to rebuild its initial weights")
    else:
        before = filters_as_images(first_weight(init), image_shape)
    files = {}
    what = describe_model(ckpt)
    title = f"{what}: first layer weights"
    files["filters"] = plot_filters(
        after, out / f"{prefix}filters.png", before=before, max_filters=max_filters, title=title,
        before_label=f"before training (seed {_seed(ckpt)})",
    )  # fmt: skip
    arrays = {"after": after} if before is None else {"before": before, "after": after}
    files["filters_npz"] = _save_npz(out / f"{prefix}filters.npz", arrays)

    mis = None
    accuracy = None
    if test is not None:
        mis = find_misclassified(net, test.x_test, test.t_test)
        accuracy = 1 - len(mis.indices) / mis.n_test
        files["misclassified"] = plot_misclassified(
            test.x_test, mis, out / f"{prefix}misclassified.png", max_images=max_images,
            title=f"{what} on the {test.name} test set",
        )  # fmt: skip
        files["misclassified_npz"] = _save_npz(
            out / f"{prefix}misclassified.npz",
            {
                "indices": mis.indices,
                "true": mis.true,
                "pred": mis.pred,
                "confidence": mis.confidence,
            },
        )
    return ModelPictures(files, after, before, mis, name, accuracy, notes)


def tile(images: np.ndarray, ncols: int, pad: int = 1) -> np.ndarray:
    """Images (K, H, W) or (K, H, W, 3) laid out in a grid with `pad` NaN pixels between them."""
    k, h, w = images.shape[:3]
    nrows = math.ceil(k / ncols)
    grid = np.full(
        (nrows * (h + pad) - pad, ncols * (w + pad) - pad, *images.shape[3:]), np.nan, np.float64
    )
    for i in range(k):
        r, c = divmod(i, ncols)
        grid[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = images[i]
    return grid


def _displayable(filters: np.ndarray) -> tuple[np.ndarray, bool]:
    """Filters (K, C, H, W) as images scaled each to its own range: (K, H, W) in [-1, 1], or RGB."""
    f = filters.astype(np.float64)
    if f.shape[1] == 3:  # colour filters: each one's own min..max onto 0..1
        lo = f.min(axis=(1, 2, 3), keepdims=True)
        span = np.maximum(f.max(axis=(1, 2, 3), keepdims=True) - lo, 1e-12)
        return np.moveaxis((f - lo) / span, 1, -1), True
    f = f[:, 0]  # one channel (for other channel counts, the first)
    scale = np.maximum(np.abs(f).max(axis=(1, 2), keepdims=True), 1e-12)
    return f / scale, False


def plot_filters(
    after: np.ndarray,
    path,
    *,
    before=None,
    max_filters: int = 100,
    title: str = "",
    before_label: str = "before training",
) -> Path:
    """The filters (K, C, H, W) as a grid of images; before and after side by side when given."""
    plt = _pyplot()
    k = min(after.shape[0], max_filters)
    ncols = min(k, 10)
    panels = ([(before_label, before)] if before is not None else []) + [("after training", after)]
    nrows = math.ceil(k / ncols)
    width = 5.2 * len(panels)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(width, 0.5 + 5.2 * nrows / ncols + 0.6), layout="constrained"
    )
    axes = np.atleast_1d(axes)
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="white")  # the gaps between filters
    for ax, (label, filters) in zip(axes, panels, strict=True):
        images, rgb = _displayable(filters[:k])
        grid = tile(images, ncols)
        if rgb:
            ax.imshow(np.nan_to_num(grid, nan=1.0), interpolation="nearest")
        else:
            ax.imshow(grid, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
        shown = f"{k} of {filters.shape[0]}" if k < filters.shape[0] else f"{k}"
        ax.set_title(f"{label}: {shown} units", fontsize=10)
        ax.set_axis_off()
    c, h, w = after.shape[1:]
    fig.suptitle(
        f"{title}\neach {h}x{w} image scaled to its own largest |weight| "
        f"(red positive, blue negative)"
        if c != 3
        else f"{title}\neach filter scaled to its own range",
        fontsize=10,
    )
    return _save_png(fig, path)


def plot_misclassified(
    images: np.ndarray, mis: Misclassified, path, *, max_images: int = 40, title: str = ""
) -> Path:
    """The first `max_images` misclassified test images with their true and predicted labels."""
    plt = _pyplot()
    k = min(len(mis.indices), max_images)
    ncols = max(1, min(k, 10))
    nrows = max(1, math.ceil(k / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(1.25 * ncols + 0.3, 1.45 * nrows + 0.8), layout="constrained",
        squeeze=False,
    )  # fmt: skip
    for ax in axes.flat:
        ax.set_axis_off()
    for i in range(k):
        ax = axes.flat[i]
        img = images[mis.indices[i]]
        if img.ndim == 3 and img.shape[0] == 3:
            ax.imshow(np.moveaxis(img, 0, -1), interpolation="nearest")
        else:
            ax.imshow(img.reshape(img.shape[-2:]), cmap="gray_r", interpolation="nearest")
        ax.set_title(
            f"{mis.true[i]}→{mis.pred[i]} ({mis.confidence[i]:.0%})", fontsize=9, color="C3"
        )
    n_wrong, n = len(mis.indices), mis.n_test
    shown = f"the first {k}" if k < n_wrong else "all"
    if n_wrong == 0:
        axes.flat[0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle(
        f"{title}: {n_wrong} of {n} misclassified ({1 - n_wrong / n:.2%} accuracy); {shown} shown\n"
        f"label: true→predicted (probability of the prediction)",
        fontsize=10,
    )
    return _save_png(fig, path)


# -- files ------------------------------------------------------------------------------------


def _pyplot():
    from ..training.curves import _pyplot

    return _pyplot()


def _save_png(fig, path) -> Path:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))


def _save_npz(path, arrays: dict) -> Path:
    return atomic_write(path, lambda f: np.savez(f, **arrays))


# -- command line -----------------------------------------------------------------------------

COMMANDS = ("activations", "model")


def build_parser() -> argparse.ArgumentParser:
    from ..apps.train import DATASET_CHOICES, positive_int

    p = argparse.ArgumentParser(
        prog="visualize.py",
        description="Draw xpnet's pictures: the activation functions and their derivatives, or a "
        "saved model's first-layer weights and misclassified test images. A model file may be "
        "given without the subcommand: visualize.py runs/X/model.npz",
    )
    sub = p.add_subparsers(dest="command", metavar="{activations,model}")
    sub.required = True

    def where(q, default_device):
        q.add_argument("--device", choices=DEVICES, default=default_device,
                       help=f"where to compute (default: {default_device})")  # fmt: skip
        q.add_argument("--backend", choices=BACKENDS, default=None,
                       help="array library (default: cupy for cuda, numpy for cpu)")  # fmt: skip
        q.add_argument("--debug", action="store_true", help="show tracebacks of errors")

    a = sub.add_parser(
        "activations",
        help="step function, sigmoid, ReLU, tanh and their derivatives (activations.png)",
        description="Draw step_function, sigmoid, relu and tanh on the slides' x range and "
        "y-limits, computed by xpnet on the chosen device, and their derivatives from the layers' "
        "backward passes. Writes activations.png and activations.npz (the arrays drawn).",
    )
    a.add_argument("--out", metavar="DIR", required=True, help="output folder")
    a.add_argument("--dtype", choices=DTYPES, default="float32", help="(default: float32)")
    where(a, "auto")

    m = sub.add_parser(
        "model",
        help="a saved model's first-layer weights and misclassified test images",
        description="For a saved model (model.npz or checkpoint.npz of a run, or the run's folder): "
        "the first layer's weights as images, before training (rebuilt from the run's seed) and "
        "after, and a grid of the test images it gets wrong. Writes PREFIXfilters.png, "
        "PREFIXmisclassified.png and an .npz of the arrays drawn beside each.",
    )
    m.add_argument("model", metavar="PATH", help="model.npz, checkpoint.npz, or a run folder")
    m.add_argument("--out", metavar="DIR", default=None,
                   help="output folder (default: the model's folder)")  # fmt: skip
    m.add_argument("--prefix", default="", help="prefix of the file names, e.g. mlp-")
    m.add_argument("--dataset", choices=DATASET_CHOICES[1:], default=None,
                   help="test set to use (default: the one the run used)")  # fmt: skip
    m.add_argument("--data-dir", metavar="DIR", default=None,
                   help="folder holding the dataset (default: the run's, else $XPNET_DATA_DIR)")  # fmt: skip
    m.add_argument("--max-filters", type=positive_int, default=100, metavar="N",
                   help="draw at most N first-layer units (default: 100)")  # fmt: skip
    m.add_argument("--max-images", type=positive_int, default=40, metavar="N",
                   help="draw at most N misclassified images (default: 40)")  # fmt: skip
    m.add_argument("--no-misclassified", action="store_true",
                   help="draw only the weights (no dataset needed)")  # fmt: skip
    where(m, "cpu")
    return p


def _normalize_argv(argv: list[str]) -> list[str]:
    """`visualize.py runs/X/model.npz ...` means `visualize.py model runs/X/model.npz ...`."""
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        if argv[0].endswith(".npz") or Path(argv[0]).is_dir():
            return ["model", *argv]
    return argv


def run(args) -> int:
    from ..apps.train import prepare_output_folder

    if args.out is not None:  # before any work, so a bad --out costs no time
        prepare_output_folder(Path(args.out))
    if args.command == "activations":
        done = draw_activations(args.out, args.device, args.backend, args.dtype)
        c = done["curves"]
        print(f"computed on {c.backend} ({c.device}, {c.dtype})")
        print(f"wrote {done['png']} and {done['npz']}")
        return 0
    if args.command == "model":
        pics = draw_model(
            args.model, args.out, prefix=args.prefix, dataset=args.dataset,
            data_dir=args.data_dir, device=args.device, backend=args.backend,
            max_filters=args.max_filters, max_images=args.max_images,
            misclassified=not args.no_misclassified,
        )  # fmt: skip
        for note in pics.notes:
            print(f"notice: {note}")
        if pics.misclassified is not None:
            m = pics.misclassified
            print(
                f"{pics.dataset} test set: {len(m.indices)} of {m.n_test} misclassified "
                f"(accuracy {pics.accuracy:.4f})"
            )
        print("wrote " + ", ".join(str(p) for p in pics.files.values()))
        return 0
    raise ConfigError(f"unknown command {args.command!r}; choose one of: {', '.join(COMMANDS)}")


def main(argv=None) -> int:
    import sys

    from ..apps.train import run_command

    argv = _normalize_argv(list(sys.argv[1:] if argv is None else argv))
    return run_command(build_parser(), run, argv)
