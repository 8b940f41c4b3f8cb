"""A comparison's report: a Markdown table, every history as JSON, and the picture, written
atomically into one folder; an unfinished one beside the complete one, never over it.

`<name>.md`, `<name>.json` and `<name>.png` only ever hold a complete comparison: every variant
trained to its end (or its dataset unavailable). A comparison that was interrupted, or in which a
variant failed, goes to `<name>.partial.md/.json/.png` instead. A rerun with the same settings
keeps the variants these reports hold (`read_earlier`, run_comparison's `resume`) and trains only
what is missing; once complete it replaces `<name>.*` and the partial files are removed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ...fileio import atomic_write_text
from .catalogue import BATCH_SIZE, DATASET_TITLES
from .plots import plot, plot_panels
from .record import Report, to_json

SUFFIXES = (".md", ".json", ".png")


_COLUMNS = ("variant", "dataset", "network", "activation", "init", "optimizer", "lr",
            "regularization", "iterations", "train acc", "test acc", "loss", "time (s)",
            "status")  # fmt: skip


def _columns(report: Report) -> tuple[str, ...]:
    # "regularization" only where a variant has some (batch norm, dropout, weight decay)
    if any(o.settings.get("regularization") for o in report.outcomes):
        return _COLUMNS
    return tuple(c for c in _COLUMNS if c != "regularization")


def table_rows(report: Report) -> list[list[str]]:
    """The Markdown table's cells, one row per variant in the comparison's order."""
    rows = []
    for o in report.outcomes:
        s, f = o.settings, o.final
        cells = {
            "variant": o.label, "dataset": s.get("dataset", ""), "network": s.get("network", ""),
            "activation": s.get("activation", ""), "init": s.get("init", ""),
            "optimizer": s.get("optimizer", ""), "lr": f"{s['lr']:g}" if "lr" in s else "",
            "regularization": s.get("regularization", "") or "none",
            "iterations": str(o.iterations) if o.history else "",
            "train acc": f"{f['train_acc']:.4f}" if f else "—",
            "test acc": f"{f['test_acc']:.4f}" if f else "—",
            "loss": f"{f['loss']:.4f}" if f else "—",
            "time (s)": f"{o.seconds:.1f}" if o.history else "", "status": o.status,
        }  # fmt: skip
        rows.append([cells[c] for c in _columns(report)])
    return [[cell.replace("|", "\\|") for cell in row] for row in rows]


def markdown(report: Report) -> str:
    c = report.comparison
    data = "; ".join(
        f"{DATASET_TITLES.get(d['name'], d['name'])}: {d['train_samples']} train / "
        f"{d['test_samples']} test samples from {d['source']}"
        for d in report.datasets.values()
    )
    evaluations = len(range(0, report.iters, report.log_every)) + 1
    columns = _columns(report)
    length = f"{report.iters} iterations"
    if report.epochs is not None:
        length += f" ({report.epochs:g} epochs of {report.steps_per_epoch} updates)"
    lines = [f"# {c.name}: {c.title}", ""]
    if not report.complete:
        lines += [f"**Partial report:** {unfinished(report)}.", ""]
    if report.command:
        lines += ["```", report.command, "```", ""]
    lines += [
        f"{c.summary}. Every variant: batch {BATCH_SIZE}, {length}, seed "
        f"{report.seed} (so the same sample order on one dataset), {report.backend}, "
        f"{report.dtype}.",
        "",
        f"Data: {data or 'none could be loaded'}.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
        *("| " + " | ".join(row) + " |" for row in table_rows(report)),
        "",
        f"train acc and test acc: accuracy on the whole training and test sets after the last "
        f"update; loss: the mean minibatch loss over the last {report.log_every} iterations; time: "
        f'wall-clock seconds including {evaluations} evaluations. "diverged at iteration N": '
        f"the first log point (every {report.log_every} iterations) at which the loss was NaN or "
        f"infinite; its curve ends at the last finite one.",
    ]
    return "\n".join(lines) + "\n"


def unfinished(report: Report) -> str:
    """What a partial report lacks, and how to finish it, in a sentence."""
    variants = report.comparison.variants
    trained = sum(o.trained or o.status.startswith("unavailable") for o in report.outcomes)
    parts = []
    failed = sum(o.failed for o in report.outcomes)
    if failed:
        parts.append(f"{failed} failed")
    if report.interrupted is not None:
        parts.append(f"{len(variants) - trained - failed} not finished (interrupted)")
    return (
        f"{trained} of {len(variants)} variants trained, {' and '.join(parts)}; the same command "
        f"run again into this folder trains only the missing ones"
    )


def stem(name: str, complete: bool = True) -> str:
    """The file name, less the suffix, of a complete report or of a partial one."""
    return name if complete else f"{name}.partial"


def read_earlier(out, name: str) -> dict[Path, dict]:
    """The JSON of comparison `name`'s reports in `out` by path, newest first: the partial one,
    then the complete one (their values are run_comparison's `resume`).

    A file that cannot be read or parsed is no report (it will be replaced); only the variants of
    one with this run's settings and each variant's config are ever kept (record.earlier_outcomes).
    """
    docs = {}
    for complete in (False, True):
        path = Path(out) / f"{stem(name, complete)}.json"
        try:
            doc = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict):
            docs[path] = doc
    return docs


def worth_writing(report: Report) -> bool:
    """False for a partial report in which no variant finished or failed: it would hold nothing."""
    return report.complete or any(o.trained or o.failed for o in report.outcomes)


def write_report(report: Report, out) -> list[Path]:
    """Write the report into `out`: <name>.md, .json and (with matplotlib) .png when complete,
    else <name>.partial.* (nothing when no variant finished); a complete one removes the partial
    files it supersedes. Returns the paths written."""
    from ...training.curves import have_matplotlib

    out, name = Path(out), report.comparison.name
    if not worth_writing(report):
        return []
    base = stem(name, report.complete)
    paths = [
        atomic_write_text(out / f"{base}.md", markdown(report)),
        atomic_write_text(out / f"{base}.json", to_json(report)),
    ]
    if have_matplotlib():
        draw = plot_panels if report.comparison.epochs is not None else plot
        paths.insert(0, draw(report, out / f"{base}.png"))
    else:
        print(
            f"notice: matplotlib is not installed, so {base}.png was not drawn (pip install matplotlib)",
            file=sys.stderr,
        )
    if report.complete:  # the partial files it supersedes would only mislead
        for suffix in SUFFIXES:
            stale = out / f"{stem(name, complete=False)}{suffix}"
            try:
                stale.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                print(f"warning: could not remove {stale} ({exc.strerror or exc}); it is older "
                      f"than {name}{suffix}", file=sys.stderr)  # fmt: skip
    return paths
