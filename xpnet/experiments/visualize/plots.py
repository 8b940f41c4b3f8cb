"""Drawing grids of images (filters, test images) and writing a picture with its arrays."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from ...fileio import atomic_write
from ...training.curves import _pyplot as pyplot


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
    plt = pyplot()
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
    return save_png(fig, path)


def plot_misclassified(
    images: np.ndarray, mis, path, *, max_images: int = 40, title: str = ""
) -> Path:
    """The first `max_images` misclassified test images (a `Misclassified`) with their true and
    predicted labels."""
    plt = pyplot()
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
    return save_png(fig, path)


def save_png(fig, path) -> Path:
    """Write the figure as a PNG (atomically) and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))


def save_npz(path, arrays: dict) -> Path:
    """Write the arrays a picture shows beside it (atomically)."""
    return atomic_write(path, lambda f: np.savez(f, **arrays))
