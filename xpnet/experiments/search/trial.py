"""One trial: the validation split it trains on, its training, and the record it leaves."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import replace

import numpy as np

from ...errors import DataError
from ...parallel.dask import worker_name
from ...training.exact import blas_threads
from ...training.trainer import Interrupted, TrainConfig, Trainer
from .config import SearchConfig, trial_settings

_SPLITS: dict = {}  # per process: workers load and split the data once, then reuse it


def validation_split(
    dataset: str, data_dir, n_data: int, validation: float, seed: int, *, progress=False
):
    """A Dataset of the first `n_data` training samples whose "test" split is the validation split.

    The n_data samples are shuffled by SeedSequence(seed) (as the book's shuffle_dataset), the
    first int(n_data * validation) of them validate and the rest train. The real test set is never
    used. Loaded once per process; `progress` as load_dataset's (a download's bar).
    """
    from ...data import load_dataset

    key = (dataset, str(data_dir), n_data, validation, seed)
    if key not in _SPLITS:
        full = load_dataset(dataset, data_dir, progress=progress)
        if len(full.x_train) < n_data:
            raise DataError(
                f"{dataset} has only {len(full.x_train)} training samples, not {n_data}"
            )
        order = np.random.default_rng(np.random.SeedSequence(seed)).permutation(n_data)
        n_val = int(n_data * validation)
        val, train = order[:n_val], order[n_val:]
        _SPLITS[key] = replace(
            full,
            x_train=full.x_train[train],
            t_train=full.t_train[train],
            x_test=full.x_train[val],
            t_test=full.t_train[val],
            source=f"{full.source}; {len(train)} train / {n_val} validation samples of the first "
            f"{n_data} training samples (shuffled by seed {seed}); the test set is not used",
            notice=None,
        )
    return _SPLITS[key]


def run_trial(config: SearchConfig, trial: int) -> dict:
    """Train trial `trial` and return its record (status "failed" with the message if it raises).

    A dataset that cannot be loaded raises instead: it is no property of the trial.
    """
    try:
        data = validation_split(
            config.dataset, config.data_dir, config.n_data, config.validation, config.seed
        )
    except DataError as exc:  # its subclasses carry more than a message, and would not unpickle
        where = worker_name()
        raise DataError(
            f"{exc} (on the worker {where})" if where != "local" else str(exc)
        ) from None
    t0 = time.perf_counter()  # training only: a worker loads the data once, for its first trial
    settings = trial_settings(config, trial)
    sizes = [data.x_train[0].size, *config.hidden, data.num_classes]
    record = {"trial": trial, "status": "ok", **settings, "network": "-".join(map(str, sizes))}
    train_config = TrainConfig(
        dataset=data.name, device="cpu", backend="numpy", dtype=config.dtype, hidden=list(config.hidden),
        activation=config.activation, init=config.init, optimizer="sgd", lr=settings["lr"],
        weight_decay=settings["weight_decay"], batch_size=config.batch_size, epochs=config.epochs,
        seed=settings["seed"],
        # one log line (loss, train and validation accuracy) per epoch, as the book's Trainer
        log_every=max(len(data.x_train) // config.batch_size, 1),
    )  # fmt: skip
    trainer = None
    try:
        trainer = Trainer(train_config, data, None, verbose=False, progress=False)
        trainer.run()
    except Interrupted:
        raise
    except Exception as exc:  # a trial that fails is a result too: record it and go on
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    history = trainer.history if trainer is not None else []
    record["curve"] = {
        "epoch": [r["epoch"] for r in history],
        "loss": [r["loss"] for r in history],
        "train_acc": [r["train_acc"] for r in history],
        "val_acc": [r["test_acc"] for r in history],
    }
    final = history[-1] if record["status"] == "ok" else None
    record["val_acc"] = final["test_acc"] if final else None
    record["train_acc"] = final["train_acc"] if final else None
    record["seconds"] = round(time.perf_counter() - t0, 3)
    record["worker"] = worker_name()
    record["host"] = socket.gethostname()
    record["pid"] = os.getpid()
    record["blas_threads"] = blas_threads()
    record["data"] = data.source
    return record


#: fields of a trial record that say where and how fast it ran, not what it found
PLACEMENT_FIELDS = ("seconds", "worker", "host", "pid", "blas_threads", "data")
