"""What the variants train on: each dataset loaded once, and the subsets the comparisons take."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ...data import Dataset, load_dataset
from ...errors import ConfigError, DataError
from .catalogue import QUICK_SUBSET


def subset(dataset: Dataset, n_train: int, n_test: int) -> Dataset:
    """The first n_train training and n_test test samples (the files' order is already mixed)."""
    n_train, n_test = min(n_train, len(dataset.x_train)), min(n_test, len(dataset.x_test))
    return replace(
        dataset,
        x_train=dataset.x_train[:n_train],
        t_train=dataset.t_train[:n_train],
        x_test=dataset.x_test[:n_test],
        t_test=dataset.t_test[:n_test],
        source=f"{dataset.source}; first {n_train} train / {n_test} test samples (--quick)",
    )


def first_train(dataset: Dataset, n_train: int) -> Dataset:
    """The first n_train training samples, all the test samples: the book's `x_train[:N]`.

    Deterministic (the files' order is already mixed), so every variant and every run of a
    comparison trains on the same samples.
    """
    if n_train < 1:
        raise ConfigError(f"n_train must be positive, got {n_train}")
    n_train = min(n_train, len(dataset.x_train))
    return replace(
        dataset,
        x_train=dataset.x_train[:n_train],
        t_train=dataset.t_train[:n_train],
        source=f"{dataset.source}; its first {n_train} training samples",
    )


class DataCache:
    """Loads each dataset once (its --quick subset if `quick`) and remembers failures as well.

    `on_load(dataset)` is called once per dataset loaded, e.g. to print where it came from.
    """

    def __init__(self, data_dir=None, quick: bool = False, on_load: Callable | None = None):
        self.data_dir = data_dir
        self.quick = quick
        self.on_load = on_load
        self._loaded: dict[str, Dataset | DataError] = {}

    def __call__(self, name: str) -> Dataset:
        if name not in self._loaded:
            try:
                dataset = load_dataset(name, self.data_dir, progress=False)
            except DataError as exc:
                self._loaded[name] = exc
            else:
                if self.quick and dataset.name != "digits":
                    dataset = subset(dataset, *QUICK_SUBSET)
                self._loaded[name] = dataset
                self._loaded.setdefault(dataset.name, dataset)  # "auto" is MNIST or digits
                if self.on_load:
                    self.on_load(dataset)
        result = self._loaded[name]
        if isinstance(result, DataError):
            raise result
        return result


def unavailable_reason(exc: DataError) -> str:
    """One line saying why a dataset cannot be had, without the advice that follows it."""
    why, where = getattr(exc, "why", None), getattr(exc, "where", None)
    if why and where:  # missing and not downloadable
        return f"not in {where} and could not be downloaded ({why})"
    # messages read "what went wrong; what to do": keep the first part
    return str(exc).split("; ")[0].strip()
