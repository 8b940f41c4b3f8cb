"""Running a comparison: each variant trained, or kept from an earlier run of the same settings.

Every variant uses the same seed and batch size, hence the same initial-weight stream and the same
sample order (the Trainer draws each epoch's order from (seed, epoch) alone). A variant whose loss
becomes NaN or infinite is recorded as diverged, with the curve it logged until then; one that
raises (a ConfigError, a MemoryError, ...) is recorded as failed, and the others run on. Ctrl-C
or SIGTERM stops after the current step: the report keeps what finished and says what did not run.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, replace

from ...backend import Backend, resolve
from ...data import Dataset
from ...errors import ConfigError, DataError, TrainingDiverged, XpnetError, choose
from ...nn.optimizers import OPTIMIZERS
from ...parallel.dask import Runner
from ...training.trainer import Interrupted, TrainConfig, Trainer
from .catalogue import (
    ACTIVATION_TITLES,
    BATCH_SIZE,
    COMPARISONS,
    CURVE_POINTS,
    DATASET_TITLES,
    FULL_ITERS,
    INIT_TITLES,
    QUICK_ITERS,
    Comparison,
)
from .data import DataCache, first_train, unavailable_reason
from .record import NOT_RUN, Outcome, Report, earlier_outcomes, json_safe


def _settings_of(config: TrainConfig, dataset: Dataset | None) -> dict:
    sizes = (
        "-".join(str(n) for n in [dataset.x_train[0].size, *config.hidden, dataset.num_classes])
        if dataset
        else ""
    )
    if dataset and config.model == "simple-cnn":
        sizes = f"conv 30@5x5-pool-{config.hidden[0]}-{dataset.num_classes}"
    elif dataset and config.model == "deep-cnn":
        sizes = f"DeepConvNet-{config.hidden[0]}-{dataset.num_classes}"
    init, name = config.init, dataset.name if dataset else config.dataset
    optimizer = OPTIMIZERS[config.optimizer].__name__
    if config.optimizer == "adamw":  # its decay is on by default: say so
        optimizer += f" (decay {OPTIMIZERS['adamw']().weight_decay:g})"
    regularization = [
        *(["batch norm"] if config.batchnorm else []),
        *([f"dropout {config.dropout:g}"] if config.dropout else []),
        *([f"weight decay {config.weight_decay:g}"] if config.weight_decay else []),
    ]
    return {
        "dataset": DATASET_TITLES.get(name, name),
        "network": sizes,
        "activation": ACTIVATION_TITLES.get(config.activation, config.activation),
        "init": f"std {init:g}" if isinstance(init, float) else INIT_TITLES.get(init, init),
        "optimizer": optimizer,
        "lr": config.lr,
        "regularization": ", ".join(regularization),
    }


def _describe(dataset: Dataset) -> dict:
    return {
        "name": dataset.name,
        "source": dataset.source,
        "train_samples": int(dataset.x_train.shape[0]),
        "test_samples": int(dataset.x_test.shape[0]),
    }


class Stopped(KeyboardInterrupt):
    """SIGTERM outside a training loop: stop the comparison as Ctrl-C does."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _sigterm_stops():
    # during training the Trainer's own handlers stop after the current step; this one covers the
    # moments between (loading, building a net), which would otherwise end the process at once
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Stopped(signum)

    saved = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, saved)


def _signum(exc: KeyboardInterrupt) -> int:
    return getattr(exc, "signum", signal.SIGINT)


def run_comparison(
    comparison: str | Comparison,
    load: Callable[[str], Dataset],
    backend: Backend,
    *,
    dataset: str = "auto",
    iters: int | None = None,
    quick: bool = False,
    seed: int = 0,
    dtype: str = "float32",
    on_outcome: Callable[[Outcome], None] | None = None,
    runner: Runner | None = None,
    resume: list[dict] | None = None,
    on_start: Callable[[Report], None] | None = None,
) -> Report:
    """Train every variant of a comparison (a name in COMPARISONS, or your own) and report them.

    `load(name)` gives a dataset (a DataCache shares them between variants and comparisons);
    `dataset` is the one every variant trains on unless it names its own (as in the `dataset`
    comparison). A DataError for that shared dataset is raised before any variant runs; a
    variant's own dataset that cannot be had makes it "unavailable". A variant that raises is
    "failed" and the others run on. A SIGINT or SIGTERM stops after the current step: the report
    then holds what finished and says so.

    `resume` holds the JSON (record.to_json) of earlier runs, newest first: in the first whose
    settings are this run's, the variants trained to their end with the same TrainConfig are kept
    (Outcome.kept), not trained again.
    `on_start(report)` is called once the length is known, before any variant runs.

    `runner` (xpnet.parallel.dask.open_runner) runs the variants elsewhere, e.g. on Dask workers,
    side by side: `load` must then be a DataCache, whose folder and --quick setting each worker
    uses to load the data itself. Outcomes arrive (and `on_outcome` is called) as variants
    finish; the report keeps the comparison's order.
    """
    if not isinstance(comparison, Comparison):
        comparison = COMPARISONS[choose("comparison", comparison, tuple(COMPARISONS))]
    shared = any("dataset" not in {**comparison.base, **v.settings} for v in comparison.variants)
    n = len(load(dataset).x_train) if shared or comparison.epochs is not None else 0
    steps_per_epoch = None
    if comparison.epochs is not None:  # the length follows the training set's size
        n = min(n, comparison.n_train) if comparison.n_train else n
        steps_per_epoch = max(n // BATCH_SIZE, 1)  # as the Trainer counts them
    if iters:
        log_every = max(1, round(iters / CURVE_POINTS))
    elif steps_per_epoch:
        epochs = (comparison.quick_epochs or comparison.epochs) if quick else comparison.epochs
        iters = math.ceil(epochs * steps_per_epoch)
        log_every = max(1, round(comparison.log_epochs * steps_per_epoch))
    else:
        iters = QUICK_ITERS if quick else FULL_ITERS
        log_every = max(1, round(iters / CURVE_POINTS))
    report = Report(comparison, str(backend), dtype, iters, seed, log_every, quick)
    report.steps_per_epoch = steps_per_epoch
    earlier = earlier_outcomes(resume, report)
    if on_start:
        on_start(report)
    with _sigterm_stops():
        if runner is not None and type(runner) is not Runner:
            return _run_elsewhere(report, runner, load, backend, dataset, on_outcome, earlier)
        variants = comparison.variants
        try:
            for variant in variants:
                outcome = _run_variant(
                    comparison, variant, load, backend, report, dataset, earlier.get(variant.label)
                )
                report.outcomes.append(outcome)
                if on_outcome:
                    on_outcome(outcome)
                if report.interrupted is not None:
                    break
        except KeyboardInterrupt as exc:  # outside a training loop: that variant did not run
            report.interrupted = _signum(exc)
        for variant in variants[len(report.outcomes) :]:
            report.outcomes.append(Outcome(variant.label, {}, NOT_RUN, style=variant.style))
            if on_outcome:
                on_outcome(report.outcomes[-1])
    return report


_WORKER_CACHES: dict = {}  # per worker process: (data_dir, quick) -> DataCache


def variant_task(report: Report, index: int, data: tuple, where: tuple, dataset: str):
    """Run variant `index` of `report.comparison` on a worker: (outcome, datasets, signal)."""
    if data not in _WORKER_CACHES:
        _WORKER_CACHES[data] = DataCache(*data)
    local = replace(report, outcomes=[], datasets={})
    variant = report.comparison.variants[index]
    outcome = _run_variant(
        report.comparison, variant, _WORKER_CACHES[data], resolve(*where), local, dataset
    )
    return outcome, local.datasets, local.interrupted


def _run_elsewhere(report: Report, runner: Runner, load, backend, dataset, on_outcome, earlier):
    if not isinstance(load, DataCache):
        raise ConfigError("to run variants on workers, `load` must be a DataCache (workers load "
                          "the data themselves from its folder)")  # fmt: skip
    c, done, stop = report.comparison, {}, None
    for i, variant in enumerate(c.variants):  # kept ones are checked here, where `earlier` is
        if variant.label in earlier:
            with contextlib.suppress(XpnetError, OSError, MemoryError):
                config = _config(c, variant, backend, report, dataset)
                _data(c, config, load, report)
                if _same_config(earlier[variant.label], config):
                    done[i] = earlier[variant.label]
                    if on_outcome:
                        on_outcome(done[i])
    data, where = (load.data_dir, load.quick), (str(backend.device), backend.name)
    tasks = [(f"variant-{i}", (report, i, data, where, dataset))
             for i in range(len(c.variants)) if i not in done]  # fmt: skip
    try:
        for key, result in runner.run(variant_task, tasks):
            i = int(key.rsplit("-", 1)[1])
            if isinstance(result, Exception):
                outcome = Outcome(c.variants[i].label, {}, _failure(result)[0],
                                  detail=str(result), style=c.variants[i].style)  # fmt: skip
            else:
                outcome, datasets, signum = result
                for name, described in datasets.items():
                    report.datasets.setdefault(name, described)
                if signum is not None:
                    report.interrupted = signum
            done[i] = outcome
            if on_outcome:
                on_outcome(outcome)
    except KeyboardInterrupt as exc:
        report.interrupted = _signum(exc)
    except (XpnetError, OSError) as exc:  # the cluster went away: what finished is kept
        stop = _failure(exc)
    for i, variant in enumerate(c.variants):
        status, detail = stop or (NOT_RUN, "")
        report.outcomes.append(
            done.get(i) or Outcome(variant.label, {}, status, detail=detail, style=variant.style)
        )
    return report


def _failure(exc: BaseException) -> tuple[str, str]:
    """(status, detail) of a variant that raised: one line for the table, the whole story after."""
    if isinstance(exc, MemoryError):
        short, detail = "out of memory", f"{type(exc).__name__}: {exc}"
    elif isinstance(exc, XpnetError):
        short, detail = str(exc).split("; ")[0], str(exc)
    else:  # a bug: its traceback goes into the JSON
        short = f"{type(exc).__name__}: {exc}"
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    short = " ".join(short.split())
    return f"failed: {short if len(short) <= 120 else short[:117] + '...'}", detail


def _config(comparison, variant, backend, report: Report, dataset: str) -> TrainConfig:
    return TrainConfig(
        **{"dataset": dataset, **comparison.base, **variant.settings},
        device=str(backend.device), backend=backend.name, dtype=report.dtype,
        batch_size=BATCH_SIZE, iters=report.iters, seed=report.seed, log_every=report.log_every,
    )  # fmt: skip


def _data(comparison, config: TrainConfig, load, report: Report) -> Dataset:
    """The data `config` trains on (DataError if it cannot be had); names it in `config`."""
    data = load(config.dataset)
    if comparison.n_train:
        data = first_train(data, comparison.n_train)
    report.datasets.setdefault(data.name, _describe(data))
    config.dataset = data.name
    return data


def _same_config(earlier: Outcome, config: TrainConfig) -> bool:
    # compared as the JSON holds it: tuples as lists, no NaN
    return earlier.config == json.loads(json.dumps(json_safe(asdict(config))))


def _run_variant(comparison, variant, load, backend, report, dataset, earlier=None) -> Outcome:
    """Train one variant, or return `earlier` when it trained the same config; raises only on
    Ctrl-C or SIGTERM outside the training loop."""
    config = data = trainer = None
    status, detail, t0 = "ok", "", time.perf_counter()
    try:
        config = _config(comparison, variant, backend, report, dataset)
        try:
            data = _data(comparison, config, load, report)
        except DataError as exc:
            if "dataset" not in variant.settings:  # the shared data, loaded before: it failed
                raise
            return Outcome(variant.label, _settings_of(config, None),
                           f"unavailable: {unavailable_reason(exc)}", detail=str(exc),
                           config=asdict(config), style=variant.style)  # fmt: skip
        if earlier is not None and _same_config(earlier, config):
            return earlier
        t0 = time.perf_counter()
        trainer = Trainer(config, data, None, verbose=False, progress=False, backend=backend)
        try:
            last = trainer.run()
            first = trainer.history[0]["loss"]
            if last["loss"] >= first:  # finite, yet no better than the untrained net: say so
                status = f"loss did not fall ({first:.2f} → {last['loss']:.2f})"
        except TrainingDiverged as exc:
            status, detail = f"diverged at iteration {trainer.iteration}", str(exc)
        except Interrupted as exc:
            status, detail = f"interrupted at iteration {trainer.iteration}", str(exc)
            report.interrupted = exc.signum
        except KeyboardInterrupt as exc:  # a second Ctrl-C: stop now, keep the curve so far
            status = f"interrupted at iteration {trainer.iteration}"
            report.interrupted = _signum(exc)
    except Exception as exc:
        status, detail = _failure(exc)
    try:
        settings = _settings_of(config, data) if config is not None else {}
    except Exception:  # a config too broken to describe has failed already
        settings = {}
    return Outcome(
        variant.label,
        settings,
        status,
        list(trainer.history) if trainer else [],
        trainer.iteration if trainer else 0,
        time.perf_counter() - t0,
        detail,
        asdict(config) if config is not None else None,
        variant.style,
    )
