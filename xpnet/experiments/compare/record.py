"""What became of a comparison's variants (Outcome, Report), as JSON and back from it.

The JSON (`to_json`) holds every history; read back (`earlier_outcomes`), the variants an earlier
run of the same settings trained to their end are kept by a rerun, not trained again.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from .catalogue import BATCH_SIZE, Comparison

#: the statuses of a variant trained to its end: a rerun of an unfinished comparison keeps them
TRAINED = ("ok", "loss did not fall", "diverged at")
NOT_RUN = "not run (interrupted)"


@dataclass
class Outcome:
    """What became of one variant: status "ok", "diverged at iteration N", "failed: ...", ..."""

    label: str
    settings: dict  # the table's columns: network, activation, init, optimizer, lr, dataset
    status: str
    history: list[dict] = field(default_factory=list)
    iterations: int = 0  # updates done
    seconds: float = 0.0  # wall time, moving the data to the device included, loading it not
    detail: str = ""  # the full message of a divergence or failure
    config: dict | None = None
    style: dict = field(default_factory=dict)
    kept: bool = False  # taken from an earlier run of the same settings, not trained again

    @property
    def final(self) -> dict | None:
        """The final record of a run that completed; None otherwise."""
        return self.history[-1] if self.history and self.history[-1].get("final") else None

    @property
    def trained(self) -> bool:
        """Trained to its end: finished, diverged, or no better than untrained."""
        return self.status.startswith(TRAINED)

    @property
    def failed(self) -> bool:
        return self.status.startswith("failed")


@dataclass
class Report:
    comparison: Comparison
    backend: str
    dtype: str
    iters: int
    seed: int
    log_every: int
    quick: bool
    command: str | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    datasets: dict[str, dict] = field(default_factory=dict)  # name -> sizes and source
    interrupted: int | None = None  # the signal number, when stopped early
    steps_per_epoch: int | None = None  # epoch-based comparisons: updates per epoch

    @property
    def epochs(self) -> float | None:
        """The run's length in epochs, for the epoch-based comparisons."""
        return self.iters / self.steps_per_epoch if self.steps_per_epoch else None

    @property
    def complete(self) -> bool:
        """Every variant trained to its end, or its dataset unavailable: nothing left to run."""
        return len(self.outcomes) == len(self.comparison.variants) and all(
            o.trained or o.status.startswith("unavailable") for o in self.outcomes
        )

    def settings(self) -> dict:
        """What makes two runs of a comparison the same run (top-level fields of its JSON)."""
        return {
            "comparison": self.comparison.name,
            "backend": self.backend,
            "dtype": self.dtype,
            "batch_size": BATCH_SIZE,
            "iterations": self.iters,
            "seed": self.seed,
            "log_every": self.log_every,
            "quick": self.quick,
            "n_train": self.comparison.n_train,
        }


def json_safe(value):
    """`value` with NaN and infinities as None (JSON has neither), tuples as lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def resume_mismatch(doc: dict, report: Report) -> list[str]:
    """The settings in which an earlier run's JSON `doc` differs from `report`'s, as phrases."""
    return [
        f"{key} {doc.get(key)!r} there, {value!r} now"
        for key, value in report.settings().items()
        if doc.get(key) != value
    ]


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def outcome_from_json(v: dict, style: dict) -> Outcome | None:
    """A trained variant of an earlier run's JSON as an Outcome; None if it is not one."""
    try:
        history = [dict(r) for r in v["history"]]
        ok = history and all(
            _number(r.get(k))
            for r in history
            for k in ("iteration", "loss", "train_acc", "test_acc")
        )
        o = Outcome(str(v["label"]), dict(v["settings"]), str(v["status"]), history,
                    int(v["iterations"]), float(v["seconds"]), str(v.get("detail") or ""),
                    dict(v["config"]), dict(style), kept=True)  # fmt: skip
    except (KeyError, TypeError, ValueError):
        return None
    return o if ok and o.trained else None


def pick_earlier(docs, report: Report) -> dict | None:
    """The first of earlier runs' JSON `docs` (newest first) whose settings are `report`'s."""
    for doc in docs or ():
        if isinstance(doc, dict) and not resume_mismatch(doc, report):
            return doc
    return None


def earlier_outcomes(docs, report: Report) -> dict[str, Outcome]:
    """The variants trained to their end in the first of `docs` of `report`'s settings, by label."""
    doc = pick_earlier(docs, report)
    if doc is None:
        return {}
    styles = {v.label: v.style for v in report.comparison.variants}
    kept = {}
    for v in doc.get("variants") or []:
        o = outcome_from_json(v, styles.get(v.get("label"), {})) if isinstance(v, dict) else None
        if o is not None and o.label in styles:
            kept[o.label] = o
    return kept


def to_json(report: Report) -> str:
    c = report.comparison
    doc = {
        **report.settings(),
        "title": c.title,
        "summary": c.summary,
        "command": report.command,
        "epochs": report.epochs,
        "datasets": list(report.datasets.values()),
        "complete": report.complete,
        "interrupted": report.interrupted is not None,
        "variants": [
            {
                "label": o.label,
                "status": o.status,
                "settings": o.settings,
                "iterations": o.iterations,
                "seconds": round(o.seconds, 3),
                "final": o.final,
                "detail": o.detail,
                "config": o.config,
                "history": o.history,
            }
            for o in report.outcomes
        ],
    }
    return json.dumps(json_safe(doc), indent=1, allow_nan=False) + "\n"
