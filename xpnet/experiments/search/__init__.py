"""Random hyperparameter search (the book's chapter 6), in one process or on a Dask cluster.

The book's search: a 6-layer ReLU MLP (six hidden layers of 100 units, He initial weights, as its
`MultiLayerNet(hidden_size_list=[100] * 6)`), trained with SGD at batch 100 for 50 epochs on 400 of
the first 500 MNIST training images and validated on the other 100 (never the test set); the
learning rate is 10^U(-6, -2) and the weight decay 10^U(-8, -4); 100 trials, then the 20 best
validation curves.

Every trial's hyperparameters, initial weights and sample order come from child `trial` of
`numpy.random.SeedSequence(seed)`, and the validation split from that root itself, so a trial's
result does not depend on where or in which order it runs. Finished trials are appended to
`trials.jsonl` one line at a time (flushed and fsynced), so an interrupted search keeps them and a
re-run with the same `--out` runs only the rest.

Where trials run is the `Runner`'s business, shared with `scripts/compare.py`: in this process
(no Dask needed), on a `distributed.LocalCluster` of single-threaded worker processes, or on an
existing Dask cluster given by its scheduler's address. Workers load the dataset themselves.
"""

from ...parallel.dask import Runner, open_runner
from .config import SearchConfig, trial_settings
from .core import SearchFolder, search
from .log import TrialLog
from .report import SearchResult, markdown, plot_best, write_report
from .trial import PLACEMENT_FIELDS, run_trial, validation_split

__all__ = [
    "PLACEMENT_FIELDS",
    "Runner",
    "SearchConfig",
    "SearchFolder",
    "SearchResult",
    "TrialLog",
    "markdown",
    "open_runner",
    "plot_best",
    "run_trial",
    "search",
    "trial_settings",
    "validation_split",
    "write_report",
]
