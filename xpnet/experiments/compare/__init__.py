"""Comparison experiments: the slides' to-do list, each one command that writes a plot and a table.

A comparison trains a few variants of one configuration that differ in one respect (activation,
initial weights, learning rate, depth, width, optimizer, dataset). Every variant uses the same seed
and batch size, hence the same initial-weight stream and the same sample order. Each dataset is
loaded once and shared by the variants.

Into one folder go `<name>.png` (training loss and test accuracy, one line per variant),
`<name>.md` (a table of the final values) and `<name>.json` (every history); an interrupted
comparison, or one in which a variant failed, goes to `<name>.partial.*` beside them. A rerun with
the same settings keeps the variants those files hold and trains only what is missing.

catalogue: the comparisons (Variant, Comparison, COMPARISONS); data: the datasets they train on
(DataCache); run: training them (run_comparison); record: what became of them (Outcome,
Report, their JSON); report and plots: the Markdown and the pictures.
The command line is xpnet.apps.compare (scripts/compare.py).
"""

from .catalogue import (
    BATCH_SIZE,
    BATCHNORM_INITS,
    COMPARISONS,
    DATASET_TITLES,
    FULL_ITERS,
    QUICK_ITERS,
    QUICK_SUBSET,
    Comparison,
    Variant,
)
from .data import DataCache, first_train, subset, unavailable_reason
from .plots import panels, plot, plot_panels
from .record import Outcome, Report, earlier_outcomes, pick_earlier, resume_mismatch, to_json
from .report import markdown, read_earlier, table_rows, write_report
from .run import run_comparison, variant_task

__all__ = [
    "BATCHNORM_INITS", "BATCH_SIZE", "COMPARISONS", "DATASET_TITLES", "FULL_ITERS", "QUICK_ITERS",
    "QUICK_SUBSET", "Comparison", "DataCache", "Outcome", "Report", "Variant", "earlier_outcomes",
    "first_train", "markdown", "panels", "pick_earlier", "plot", "plot_panels", "read_earlier",
    "resume_mismatch",
    "run_comparison", "subset", "table_rows", "to_json", "unavailable_reason", "variant_task",
    "write_report",
]  # fmt: skip
