"""A search's report: results.md (the ranked table) and best-curves.png (the book's figure)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ...fileio import atomic_write_text, fsync_dir
from .config import SearchConfig


@dataclass
class SearchResult:
    config: SearchConfig
    trials: dict[int, dict]  # every finished trial, earlier runs' included
    ran: int  # trials run by this call
    seconds: float  # wall time of this call
    where: str
    interrupted: int | None = None  # the signal that stopped the search early
    lost: list[int] = field(default_factory=list)  # trials lost with their workers, not recorded
    paths: list[Path] = field(default_factory=list)

    def ranked(self) -> list[dict]:
        """Finished trials, best validation accuracy first (failed ones last)."""
        ok = [r for r in self.trials.values() if r["status"] == "ok"]
        failed = [r for r in self.trials.values() if r["status"] != "ok"]
        ok.sort(key=lambda r: (-r["val_acc"], r["trial"]))
        return ok + sorted(failed, key=lambda r: r["trial"])


BEST_SHOWN = 20


def markdown(result: SearchResult, command: str | None = None, best: int = BEST_SHOWN) -> str:
    c = result.config
    ranked = result.ranked()
    ok = [r for r in ranked if r["status"] == "ok"]
    failed = [r for r in ranked if r["status"] != "ok"]
    source = next((r["data"] for r in ranked if r.get("data")), "")
    net = next((r["network"] for r in ranked if r.get("network")), "")
    net = net or "-".join(str(n) for n in ["in", *c.hidden, "out"])
    lines = ["# Random hyperparameter search", ""]
    if command:
        lines += ["```", command, "```", ""]
    lines += [
        f"{len(result.trials)} of {c.trials} trials finished ({len(failed)} failed"
        + (f", {len(result.lost)} lost with their workers" if result.lost else "")
        + ")"
        + (
            " — interrupted; rerun the same command to finish"
            if result.interrupted is not None
            else " — rerun the same command to run the lost ones"
            if result.lost
            else ""
        )
        + f". Each: {net} {c.activation} net, init {c.init}, SGD at batch {c.batch_size} for "
        f"{c.epochs} epochs; learning rate 10^U({c.lr_range[0]:g}, {c.lr_range[1]:g}), weight "
        f"decay 10^U({c.weight_decay_range[0]:g}, {c.weight_decay_range[1]:g}); seed {c.seed} "
        f"(trial k draws from child k of SeedSequence({c.seed})).",
        "",
        f"Data: {c.dataset}, {source or 'see trials.jsonl'}. **val acc is accuracy on the "
        f"validation split, not on the test set.**",
        "",
        f"This run: {result.ran} trials in {result.seconds:.1f} s {result.where}.",
        "",
        f"Best {min(best, len(ok))} of {len(ok)} finished trials:",
        "",
        "| rank | trial | val acc | train acc | learning rate | weight decay | time (s) | worker |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rank, r in enumerate(ok[:best], 1):
        lines.append(
            f"| {rank} | {r['trial']} | {r['val_acc']:.3f} | {r['train_acc']:.4f} | "
            f"{r['lr']:.3e} | {r['weight_decay']:.3e} | {r['seconds']:.1f} | {r['worker']} |"
        )
    if failed:
        lines += ["", "Failed trials:", ""]
        lines += [
            f"- trial {r['trial']} (lr {r['lr']:.3e}, weight decay {r['weight_decay']:.3e}): "
            f"{r['error']}"
            for r in failed
        ]
    return "\n".join(lines) + "\n"


def plot_best(result: SearchResult, path, best: int = BEST_SHOWN, cols: int = 5) -> Path | None:
    """The book's figure: validation (solid) and training (dashed) accuracy per epoch, best first."""
    from ...training.curves import _pyplot, _save

    ranked = [r for r in result.ranked() if r["status"] == "ok"][:best]
    if not ranked:
        return None
    plt = _pyplot()
    rows = math.ceil(len(ranked) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.0 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= len(ranked):
            ax.axis("off")
            continue
        r = ranked[i]
        curve = r["curve"]
        ax.plot(curve["epoch"], curve["val_acc"], label="validation")
        ax.plot(curve["epoch"], curve["train_acc"], "--", label="train")
        ax.set_ylim(0.0, 1.0)
        ax.set_title(
            f"Best-{i + 1}: {r['val_acc']:.2f}\nlr {r['lr']:.1e}, wd {r['weight_decay']:.1e}",
            fontsize=8,
        )
        ax.tick_params(labelsize=7)
        if i % cols:
            ax.set_yticklabels([])
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7, loc="lower right")
    c = result.config
    fig.suptitle(
        f"{c.dataset}: best {len(ranked)} of {len(result.trials)} trials, accuracy per epoch "
        f"(solid: validation, dashed: train)",
        fontsize=10,
    )
    return _save(fig, path)


def write_report(result: SearchResult, out, command: str | None = None) -> list[Path]:
    """results.md and, when matplotlib is installed, best-curves.png in `out`."""
    from ...training.curves import have_matplotlib

    out = Path(out)
    paths = [atomic_write_text(out / "results.md", markdown(result, command))]
    if have_matplotlib():
        png = plot_best(result, out / "best-curves.png")
        if png:
            paths.append(png)
    fsync_dir(out)
    return paths
