"""Training curves as PNG files (matplotlib, headless)."""

from __future__ import annotations

import io
from pathlib import Path

from ..errors import XpnetError
from ..fileio import atomic_write


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise XpnetError(
            "matplotlib is not installed; pip install matplotlib to draw curves"
        ) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_run(history: list[dict], path, title: str = "") -> Path:
    """Loss, train and test accuracy of one run against iterations (two panels)."""
    plt = _pyplot()
    it = [r["iteration"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(it, [r["loss"] for r in history], marker=".", label="training loss")
    ax_loss.set(xlabel="iteration", ylabel="mean minibatch loss", title="loss")
    # the last values in the legend: at the top of a 0-1 axis 98.9% and 99.4% look alike
    for key, name in (("train_acc", "train"), ("test_acc", "test")):
        label = f"{name} (last {history[-1][key]:.4f})" if history else name
        ax_acc.plot(it, [r[key] for r in history], marker=".", label=label)
    ax_acc.set(xlabel="iteration", ylabel="accuracy", title="accuracy", ylim=(0, 1))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_comparison(
    runs: dict[str, list[dict]],
    path,
    title: str = "",
    log_loss: bool = True,
    *,
    styles: dict[str, dict] | None = None,
    acc_ylim: tuple[float, float] = (0.0, 1.0),
) -> Path:
    """One line per variant: training loss and test accuracy against iterations.

    `styles` maps a label to extra `Axes.plot` options (colour, line style, markers), so related
    variants can share a colour. A run with a single log record is drawn as a dot. The legend is
    drawn once, beside the accuracy panel, so it hides no curve however many variants there are.
    """
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.2))
    for label, history in runs.items():
        it = [r["iteration"] for r in history]
        style = {"marker": "o"} if len(history) == 1 else {}
        style.update((styles or {}).get(label, {}))
        ax_loss.plot(it, [r["loss"] for r in history], label=label, **style)
        ax_acc.plot(it, [r["test_acc"] for r in history], label=label, **style)
    ax_loss.set(xlabel="iteration", ylabel="mean minibatch loss", title="training loss")
    if log_loss:
        ax_loss.set_yscale("log")
    ax_acc.set(xlabel="iteration", ylabel="test accuracy", title="test accuracy", ylim=acc_ylim)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    ax_acc.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _save(fig, path) -> Path:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))
