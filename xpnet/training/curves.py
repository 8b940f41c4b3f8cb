"""Training curves as PNG files (matplotlib, headless), drawn in this process or by a helper
process started with the run (`Painter`), so that importing matplotlib does not hold up its end."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from ..errors import XpnetError
from ..fileio import atomic_write


def have_matplotlib() -> bool:
    """Whether matplotlib is installed (found, not imported: its import takes 0.4 s)."""
    return importlib.util.find_spec("matplotlib") is not None


class Painter:
    """A helper process that imports matplotlib while the run trains and draws `plot_run`'s
    picture when asked: the run waits only for the drawing of its final curves, not the import.

    `draw` returns once the file is written (atomically, by the same `plot_run`, so the picture is
    the one drawn in-process); `close` ends a helper that was not asked (a failed run). The helper
    ignores Ctrl-C (the run's to act on) and ends when the run goes away (its input closes).
    """

    def __init__(self):
        package_root = str(Path(__file__).resolve().parents[2])
        code = f"import sys; sys.path.insert(0, {package_root!r}); import xpnet.training.curves as c; c.serve()"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip

    def draw(self, history: list[dict], path, title: str = "") -> Path:
        job = json.dumps({"history": history, "path": str(path), "title": title}).encode()
        process, self.process = self.process, None
        if process is None:
            raise XpnetError("the curves' helper process was already used")
        out, err = process.communicate(job)
        if process.returncode != 0 or out.strip() != b"written":
            lines = err.decode(errors="replace").strip().splitlines() or ["no message"]
            raise XpnetError(f"could not draw {path}: {lines[-1]}")
        return Path(path)

    def close(self) -> None:
        if self.process is not None:
            process, self.process = self.process, None
            process.kill()
            process.communicate()


def serve() -> None:
    """The helper process of `Painter`: import, warm up, then draw the one picture asked for."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _pyplot()
    # a first drawing loads the fonts and fills the caches while the run still trains
    warm = [{"iteration": i, "loss": 1.0, "train_acc": 0.5, "test_acc": 0.5} for i in (0, 1)]
    plot_run(warm, None, "warm-up")
    job = sys.stdin.buffer.read()
    if not job:  # the run ended without asking
        return
    job = json.loads(job)
    plot_run(job["history"], job["path"], job["title"])
    sys.stdout.write("written\n")
    sys.stdout.flush()
    sys.stderr.flush()
    # the run waits for this process to end: skip tearing down matplotlib's modules (0.15-0.24 s
    # measured), which frees nothing the finished, fsynced picture needs
    os._exit(0)


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


def _save(fig, path) -> Path | None:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    if path is None:  # drawn only (the helper's warm-up)
        return None
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))
