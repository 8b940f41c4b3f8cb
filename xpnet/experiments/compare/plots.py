"""The comparisons' pictures: loss and accuracy against iterations, or the book's small
multiples against epochs."""

from __future__ import annotations

import math
from pathlib import Path

from ...fileio import atomic_write
from .catalogue import BATCH_SIZE, DATASET_TITLES, Variant
from .record import Outcome, Report


def _partial(report: Report) -> str:
    if report.complete:
        return ""
    trained = sum(o.trained for o in report.outcomes)
    return f" (partial: {trained} of {len(report.comparison.variants)} variants trained)"


def _acc_ylim(report: Report) -> tuple[float, float]:
    return _acc_ylim_of([o.final["test_acc"] for o in report.outcomes if o.final])


def _acc_ylim_of(finals: list[float]) -> tuple[float, float]:
    # When every run ends high, zoom in on the top: 0.96 against 0.98 is the point there, and on
    # a 0..1 axis it is invisible. The first log points fall below the axis then.
    low = min(finals, default=0.0)
    if low < 0.6:
        return (0.0, 1.0)
    return (math.floor((low - 0.05) * 10) / 10, 1.0)


def plot(report: Report, path) -> Path:
    from ...training.curves import plot_comparison

    runs, styles = {}, {}
    for o in report.outcomes:
        # "diverged at iteration 150" -> "(diverged)", "unavailable: ..." -> "(unavailable)": the
        # table has the rest. A variant with no curve still gets its legend entry, so the plot
        # says it was tried.
        short = o.status.split(":")[0].split(" at ")[0]
        label = o.label if o.final else f"{o.label} ({short})"
        runs[label] = o.history
        styles[label] = dict(o.style)
        if not o.history:  # its name in the legend, with no line sample
            styles[label].update(linestyle="none")
        elif not o.final:  # mark where the curve stops
            styles[label].update(marker="x", markevery=[len(o.history) - 1])
    names = ", ".join(DATASET_TITLES.get(d["name"], d["name"]) for d in report.datasets.values())
    title = (
        f"{report.comparison.title}: {names}, batch {BATCH_SIZE}, {report.iters} iterations, "
        f"seed {report.seed}{_partial(report)}"
    )
    return plot_comparison(runs, path, title, styles=styles, acc_ylim=_acc_ylim(report))


_CURVE_TITLES = {"train": "train", "test": "test"}
_CURVE_COLORS = {"train": "C0", "test": "C1"}  # when the variant sets no colour of its own
_CURVE_LINES = {"train": "-", "test": "--"}


def panels(report: Report) -> dict[str, list[tuple[Variant, Outcome]]]:
    """The outcomes grouped by Variant.panel, in the comparison's order (one group if none)."""
    groups: dict[str, list] = {}
    for variant, outcome in zip(report.comparison.variants, report.outcomes, strict=True):
        groups.setdefault(variant.panel or "", []).append((variant, outcome))
    return groups


def _curve_style(variant: Variant, outcome: Outcome, curve: str, both: bool) -> tuple[str, dict]:
    """(legend label, Axes.plot options) of one accuracy curve of one variant."""
    style = dict(variant.style)
    name = variant.line if variant.line is not None else variant.label
    if both:  # train and test: solid and dashed, the variant's colour or the curve's
        style.setdefault("color", _CURVE_COLORS[curve])
        style["linestyle"] = _CURVE_LINES[curve]
        name = f"{name} {_CURVE_TITLES[curve]}".strip()
    if outcome.history and not outcome.final:  # mark where a diverged curve stops
        short = outcome.status.split(":")[0].split(" at ")[0]
        name = f"{name} ({short})"
        style.update(marker="x", markevery=[len(outcome.history) - 1])
    return name, style


def plot_panels(report: Report, path) -> Path:
    """The book's small multiples: accuracy against epochs, one panel per Variant.panel.

    Each panel draws the accuracies in `comparison.curves` of its variants (train solid, test
    dashed when both are drawn); with `time_panel`, a last panel draws the test accuracy against
    wall-clock seconds. One legend for the figure, under the panels.
    """
    from ...training.curves import _pyplot

    plt = _pyplot()
    c = report.comparison
    groups = panels(report)
    both = len(c.curves) > 1
    n = len(groups) + bool(c.time_panel)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(max(4.2 * cols, 10), 3.3 * rows + 1.6), squeeze=False, sharey=True
    )
    flat = list(axes.flat)
    handles: dict[str, object] = {}
    spe = report.steps_per_epoch or 1
    xlabel = "epoch" if report.steps_per_epoch else "iteration"
    # zoom in on the top when every drawn curve ends high, as the iteration plots do
    finals = [o.final[f"{k}_acc"] for o in report.outcomes if o.final for k in c.curves]
    low, high = _acc_ylim_of(finals)
    ylim = (low, high + 0.02 * (high - low))  # a curve at 100% stays clear of the frame
    for ax, (title, members) in zip(flat, groups.items(), strict=False):
        for variant, outcome in members:
            x = [r["iteration"] / spe for r in outcome.history]
            for curve in c.curves:
                name, style = _curve_style(variant, outcome, curve, both)
                (line,) = ax.plot(x, [r[f"{curve}_acc"] for r in outcome.history], **style)
                handles.setdefault(name, line)
            if not outcome.history:  # tried but nothing to draw: its legend entry says why
                name = f"{variant.line or variant.label} ({outcome.status.split(':')[0]})"
                handles.setdefault(name, ax.plot([], [], linestyle="none")[0])
        ax.set(title=title, xlabel=xlabel, ylim=ylim)
    if c.time_panel:
        ax = flat[len(groups)]
        for variant, outcome in zip(c.variants, report.outcomes, strict=True):
            name, style = _curve_style(variant, outcome, "test", both)
            ax.plot([r["seconds"] for r in outcome.history],
                    [r["test_acc"] for r in outcome.history], **style)  # fmt: skip
        ax.set(title="test accuracy against wall time", xlabel="seconds (evaluations included)",
               ylim=ylim)  # fmt: skip
        if all(r["seconds"] > 0 for o in report.outcomes for r in o.history):
            ax.set_xscale("log")  # a fast and a slow model side by side
    for ax in flat[:n]:
        ax.grid(alpha=0.3)
    for ax in flat[n:]:
        ax.set_visible(False)
    ylabel = "accuracy (train solid, test dashed)" if both else f"{c.curves[0]} accuracy"
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    names = ", ".join(d["name"] if d["name"] not in DATASET_TITLES else DATASET_TITLES[d["name"]]
                      for d in report.datasets.values())  # fmt: skip
    samples = ", ".join(f"{d['train_samples']} training samples" for d in report.datasets.values())
    length = f"{report.epochs:g} epochs" if report.epochs is not None else f"{report.iters} iters"
    fig.suptitle(
        f"{c.title}{_partial(report)}\n{names} ({samples}), batch {BATCH_SIZE}, {length}, "
        f"seed {report.seed}"
    )
    # the legend gets a strip of its own under the panels (tight_layout leaves it out)
    ncol = min(len(handles), 4)
    strip = 0.3 * math.ceil(len(handles) / ncol) + 0.2  # inches
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=ncol,
               frameon=False)  # fmt: skip
    fig.tight_layout(rect=(0, strip / fig.get_figheight(), 1, 1))
    return _save_figure(fig, path)


def _save_figure(fig, path) -> Path:
    # as plots._save, keeping the layout drawn above
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))
