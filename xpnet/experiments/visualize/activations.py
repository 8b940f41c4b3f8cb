"""The slides' activation functions with their derivatives, computed by xpnet on any backend.

The activations are computed by `xpnet.nn.functions`, their derivatives by the layers' backward
passes, on the chosen backend and device; the arrays move to the host only to be plotted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...backend import Backend, resolve, to_numpy
from ...nn import functions
from ...nn.layers import ReLU, Sigmoid, Tanh
from .plots import pyplot, save_npz, save_png

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


def activation_outputs(name: str = "activations") -> tuple[str, str]:
    """The files `draw_activations` writes: the picture and its arrays."""
    return f"{name}.png", f"{name}.npz"


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
    plt = pyplot()
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
    return save_png(fig, path)


def draw_activations(out, device=None, backend=None, dtype="float32", name="activations") -> dict:
    """Write `name`.png (the picture) and `name`.npz (its arrays) into `out`; return both paths."""
    curves = activation_curves(device, backend, dtype)
    out = Path(out)
    png_name, npz_name = activation_outputs(name)
    png = plot_activations(curves, out / png_name)
    npz = save_npz(out / npz_name, curves.arrays)
    return {"png": png, "npz": npz, "curves": curves}
