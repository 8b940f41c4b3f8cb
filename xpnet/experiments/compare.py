"""Comparison experiments: the slides' to-do list, each one command that writes a plot and a table.

A comparison trains a few variants of one configuration that differ in one respect (activation,
initial weights, learning rate, depth, width, optimizer, dataset). Every variant uses the same seed
and batch size, hence the same initial-weight stream and the same sample order (the Trainer draws
each epoch's order from (seed, epoch) alone). Each dataset is loaded once and shared by the variants.

Into one folder go `<name>.png` (training loss and test accuracy, one line per variant),
`<name>.md` (a table of the final values) and `<name>.json` (every history). A variant whose loss
becomes NaN or infinite is recorded as diverged, with the curve it logged until then; in the
`dataset` comparison a dataset that cannot be had is recorded as unavailable and skipped.

Chapter 6 and 7's comparisons (`batchnorm`, `overfit`, `cnn`) follow the book's figures: they run
for a number of epochs rather than iterations, may train on the first `n_train` training samples
only (the book's `x_train[:N]`: the same samples for every variant and every run; the test set
stays whole), and are drawn against epochs as small multiples: one panel per `Variant.panel`, with
the training and/or test accuracy as the comparison's `curves` say.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shlex
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..apps.common import add_runner_options, positive_int, run_command, seed_int
from ..apps.train import DATASET_CHOICES
from ..backend import BACKENDS, Backend, resolve
from ..data.datasets import Dataset, load_dataset
from ..errors import ConfigError, DataError, TrainingDiverged, choose
from ..fileio import atomic_write, atomic_write_text
from ..nn.optimizers import OPTIMIZERS
from ..parallel.dask import Runner, open_runner
from ..progress import safe_print
from ..training.runs import new_run_dir, prepare_output_folder
from ..training.trainer import Interrupted, TrainConfig, Trainer

BATCH_SIZE = 100
FULL_ITERS = 3000  # 5 epochs of MNIST at batch 100: long enough for every effect below to show
QUICK_ITERS = 500  # about 33 epochs of the 1497 digits: seconds per comparison
QUICK_SUBSET = (5000, 1000)  # train/test samples kept of MNIST-sized datasets under --quick
CURVE_POINTS = 20  # log lines per curve; each evaluates the whole training and test sets
DEEP = [100, 100, 100, 100]  # the book's 5-layer net for the init and optimizer comparisons

#: display names, for tables and legends
DATASET_TITLES = {
    "mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "digits": "digits (8x8)",
}  # fmt: skip
_INIT_TITLES = {"xavier": "Xavier", "lecun": "LeCun", "glorot": "Glorot", "he": "He"}
_ACTIVATION_TITLES = {"relu": "ReLU", "sigmoid": "sigmoid", "tanh": "tanh"}
_ACTIVATION_COLORS = {"sigmoid": "C0", "tanh": "C1", "relu": "C2"}


@dataclass(frozen=True)
class Variant:
    """One line of a comparison: a label and the TrainConfig fields that set it apart."""

    label: str
    settings: dict
    style: dict = field(default_factory=dict)  # matplotlib line options, to group related lines
    panel: str | None = None  # small multiples: variants with the same panel share one plot
    line: str | None = None  # its name in the legend of a panel plot (default: the label)


@dataclass(frozen=True)
class Comparison:
    """Variants of one configuration; the fields after `variants` are for the epoch-based ones.

    With `epochs` set, a run is that many epochs of its training set (`quick_epochs` under
    --quick), logged every `log_epochs` epochs, and the picture is a panel plot against epochs
    (plot_panels) of the accuracies named in `curves`, plus accuracy against wall time if
    `time_panel`. `n_train` keeps the first n_train training samples (all the test samples).
    """

    name: str
    title: str
    summary: str  # one line for --help
    base: dict  # TrainConfig fields shared by every variant
    variants: tuple[Variant, ...]
    n_train: int | None = None
    epochs: float | None = None
    quick_epochs: float | None = None
    log_epochs: float = 1.0
    curves: tuple[str, ...] = ("test",)  # "train" and/or "test" accuracy, in panel plots
    time_panel: bool = False


def _act(name: str, hidden: list[int], init, deep_style: bool = False) -> Variant:
    layers = "1 hidden layer" if len(hidden) == 1 else f"{len(hidden)} hidden layers"
    style = {"color": _ACTIVATION_COLORS[name], "linestyle": "--" if deep_style else "-"}
    return Variant(
        f"{_ACTIVATION_TITLES[name]}, {layers}",
        {"hidden": hidden, "activation": name, "init": init},
        style,
    )


def _init(activation: str, init) -> Variant:
    title = f"std {init}" if isinstance(init, float) else _INIT_TITLES[init]
    return Variant(
        f"{_ACTIVATION_TITLES[activation]}, {title}",
        {"activation": activation, "init": init},
        {"linestyle": "--" if activation == "sigmoid" else "-"},
    )


def _bn(init: float, batchnorm: bool) -> Variant:
    # the book's figure: solid with batch normalization, dashed without
    style = {"color": "C0", "linestyle": "-"} if batchnorm else {"color": "C1", "linestyle": "--"}
    return Variant(
        f"{'with' if batchnorm else 'without'} batch norm, std {init:g}",
        {"batchnorm": batchnorm, "init": init},
        style,
        panel=f"initial std {init:g}",
        line="with batch norm" if batchnorm else "without",
    )


BATCHNORM_INITS = (1.0, 0.3, 0.1, 0.03, 0.01, 0.001)  # of the book's 16, from 1 to 1e-4
BOOK_DEEP = [100] * 5  # ch06/batch_norm_test.py's MultiLayerNetExtend
BOOK_OVERFIT = [100] * 6  # ch06/overfit_*.py's "7-layer" net

# The optimizer comparison's rates: the book's for SGD, Momentum and AdaGrad (0.01) and Adam
# (0.001); Nesterov as Momentum; RMSProp and AdamW as Adam: rules that divide by √v move each
# weight by about lr per step whatever the gradient's scale, so they take the smaller rate.
OPTIMIZER_LRS = {
    "sgd": 0.01,
    "momentum": 0.01,
    "nesterov": 0.01,
    "adagrad": 0.01,
    "rmsprop": 0.001,
    "adam": 0.001,
    "adamw": 0.001,
}

COMPARISONS: dict[str, Comparison] = {
    c.name: c
    for c in (
        Comparison(
            "activation",
            "sigmoid vs tanh vs ReLU, shallow and deep",
            "sigmoid, tanh and ReLU on the slides' 1-hidden-layer net and on a 4-hidden-layer net",
            # each group keeps one init for every activation, so only the activation differs:
            # the slides' std 0.01 for one hidden layer; for four, Xavier (the book's choice for
            # sigmoid and tanh; std 0.01 would stop all three, see the init comparison)
            {"optimizer": "sgd", "lr": 0.1},
            tuple(_act(a, [50], 0.01) for a in ("sigmoid", "tanh", "relu"))
            + tuple(_act(a, DEEP, "xavier", deep_style=True) for a in ("sigmoid", "tanh", "relu")),
        ),
        Comparison(
            "init",
            "initial weights on a 5-layer net",
            "initial weight std 0.01 vs Xavier vs He, with sigmoid and ReLU, on a 5-layer net",
            {"hidden": DEEP, "optimizer": "sgd", "lr": 0.1},
            (
                _init("sigmoid", 0.01),
                _init("sigmoid", "xavier"),
                _init("relu", 0.01),
                _init("relu", "xavier"),
                _init("relu", "he"),
            ),
        ),
        Comparison(
            "lr",
            "learning rate sweep",
            "SGD learning rates from 0.001 to 100 on the slides' net",
            {"hidden": [50], "activation": "relu", "init": 0.01, "optimizer": "sgd"},
            tuple(
                Variant(f"lr {lr:g}", {"lr": lr})
                for lr in (0.001, 0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0)
            ),
        ),
        Comparison(
            "depth",
            "number of hidden layers",
            "1 to 5 hidden layers of 100 ReLU units, He init",
            {"activation": "relu", "init": "he", "optimizer": "sgd", "lr": 0.1},
            tuple(
                Variant(f"{k} hidden layer{'s' if k > 1 else ''}", {"hidden": [100] * k})
                for k in range(1, 6)
            ),
        ),
        Comparison(
            "width",
            "width of the hidden layer",
            "one hidden layer of 10, 50, 100, 500 or 1000 ReLU units, He init",
            {"activation": "relu", "init": "he", "optimizer": "sgd", "lr": 0.1},
            tuple(Variant(f"{w} units", {"hidden": [w]}) for w in (10, 50, 100, 500, 1000)),
        ),
        Comparison(
            "optimizer",
            "optimizers on a 5-layer net",
            "SGD, Momentum, Nesterov, AdaGrad, RMSProp, Adam and AdamW on a 5-layer ReLU net, He init",
            {"hidden": DEEP, "activation": "relu", "init": "he"},
            tuple(
                Variant(f"{OPTIMIZERS[name].__name__}, lr {lr:g}", {"optimizer": name, "lr": lr})
                for name, lr in OPTIMIZER_LRS.items()
            ),
        ),
        Comparison(
            "dataset",
            "the slides' net on each dataset",
            "the slides' net (50 ReLU units, std 0.01, SGD lr 0.1) on MNIST, Fashion-MNIST and digits",
            {"hidden": [50], "activation": "relu", "init": 0.01, "optimizer": "sgd", "lr": 0.1},
            tuple(
                Variant(DATASET_TITLES[d], {"dataset": d})
                for d in ("mnist", "fashion-mnist", "digits")
            ),
        ),
        Comparison(
            "batchnorm",
            "batch normalization at several initial weight scales",
            "a 5-hidden-layer ReLU net with and without batch normalization, initial std 1 to "
            "0.001 (the book's figure: SGD lr 0.01, 1,000 training samples, 20 epochs)",
            {"hidden": BOOK_DEEP, "activation": "relu", "optimizer": "sgd", "lr": 0.01},
            tuple(_bn(init, bn) for init in BATCHNORM_INITS for bn in (True, False)),
            n_train=1000,
            epochs=20,
            quick_epochs=20,
            curves=("train",),
        ),
        Comparison(
            "overfit",
            "overfitting 300 samples: weight decay and dropout",
            "a 6-hidden-layer ReLU net (He init, SGD lr 0.01) on 300 training samples for 201 "
            "epochs: no regularization vs weight decay 0.1 vs dropout 0.2",
            {
                "hidden": BOOK_OVERFIT,
                "activation": "relu",
                "init": "he",
                "optimizer": "sgd",
                "lr": 0.01,
            },
            (
                Variant("no regularization", {}, panel="no regularization", line=""),
                Variant(
                    "weight decay 0.1", {"weight_decay": 0.1}, panel="weight decay 0.1", line=""
                ),
                Variant("dropout 0.2", {"dropout": 0.2}, panel="dropout 0.2", line=""),
            ),
            n_train=300,
            epochs=201,
            curves=("train", "test"),
        ),
        Comparison(
            "cnn",
            "the slides' MLP vs SimpleConvNet",
            "the slides' 784-50-10 MLP (SGD lr 0.1) vs the book's SimpleConvNet (Adam lr 0.001), "
            "same epochs and sample order",
            {},
            (
                Variant(
                    "MLP (50 hidden ReLU), SGD lr 0.1",
                    {"model": "mlp", "hidden": [50], "init": 0.01, "optimizer": "sgd", "lr": 0.1},
                    {"color": "C0"},
                    line="MLP",
                ),
                Variant(
                    "SimpleConvNet, Adam lr 0.001",
                    {"model": "simple-cnn", "init": 0.01, "optimizer": "adam", "lr": 0.001},
                    {"color": "C3"},
                    line="SimpleConvNet",
                ),
            ),
            epochs=4,
            quick_epochs=20,
            log_epochs=0.5,
            curves=("train", "test"),
            time_panel=True,
        ),
    )
}


# ---------------------------------------------------------------------------------------------
# Data


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


# ---------------------------------------------------------------------------------------------
# Running


@dataclass
class Outcome:
    """What became of one variant: status "ok", "diverged at iteration N", "unavailable: ..."."""

    label: str
    settings: dict  # the table's columns: network, activation, init, optimizer, lr, dataset
    status: str
    history: list[dict] = field(default_factory=list)
    iterations: int = 0  # updates done
    seconds: float = 0.0  # wall time, moving the data to the device included, loading it not
    detail: str = ""  # the full message of a divergence or failure
    config: dict | None = None
    style: dict = field(default_factory=dict)

    @property
    def final(self) -> dict | None:
        """The final record of a run that completed; None otherwise."""
        return self.history[-1] if self.history and self.history[-1].get("final") else None


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
        "activation": _ACTIVATION_TITLES[config.activation],
        "init": f"std {init:g}" if isinstance(init, float) else _INIT_TITLES.get(init, init),
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
) -> Report:
    """Train every variant of a comparison (a name in COMPARISONS, or your own) and report them.

    `load(name)` gives a dataset (a DataCache shares them between variants and comparisons);
    `dataset` is the one every variant trains on unless it names its own (as in the `dataset`
    comparison). A DataError from `load` propagates, except for a variant's own dataset, which is
    then "unavailable". A SIGINT or SIGTERM stops after the current step: the report then holds
    what finished and says so.

    `runner` (xpnet.search.open_runner) runs the variants elsewhere, e.g. on Dask workers, side
    by side: `load` must then be a DataCache, whose folder and --quick setting each worker uses
    to load the data itself. Outcomes arrive (and `on_outcome` is called) as variants finish;
    the report keeps the comparison's order.
    """
    if not isinstance(comparison, Comparison):
        comparison = COMPARISONS[choose("comparison", comparison, tuple(COMPARISONS))]
    steps_per_epoch = None
    if comparison.epochs is not None:  # the length follows the training set's size
        n = len(load(dataset).x_train)
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
    if runner is not None and type(runner) is not Runner:
        return _run_elsewhere(report, runner, load, backend, dataset, on_outcome)
    for variant in comparison.variants:
        if report.interrupted is not None:
            outcome = Outcome(variant.label, {}, "not run (interrupted)", style=variant.style)
        else:
            outcome = _run_variant(comparison, variant, load, backend, report, dataset)
        report.outcomes.append(outcome)
        if on_outcome:
            on_outcome(outcome)
    return report


_WORKER_CACHES: dict = {}  # per worker process: (data_dir, quick) -> DataCache


def variant_task(report: Report, index: int, data: tuple, where: tuple, dataset: str):
    """Run variant `index` of `report.comparison` on a worker: (outcome, datasets, signal)."""
    if data not in _WORKER_CACHES:
        _WORKER_CACHES[data] = DataCache(*data)
    local = replace(report, outcomes=[], datasets={})
    variant = report.comparison.variants[index]
    try:
        outcome = _run_variant(
            report.comparison, variant, _WORKER_CACHES[data], resolve(*where), local, dataset
        )
    except DataError as exc:  # its subclasses carry more than a message, and would not unpickle
        raise DataError(str(exc)) from None
    return outcome, local.datasets, local.interrupted


def _run_elsewhere(report: Report, runner: Runner, load, backend: Backend, dataset, on_outcome):
    if not isinstance(load, DataCache):
        raise ConfigError("to run variants on workers, `load` must be a DataCache (workers load "
                          "the data themselves from its folder)")  # fmt: skip
    data, where = (load.data_dir, load.quick), (str(backend.device), backend.name)
    variants = report.comparison.variants
    tasks = [(f"variant-{i}", (report, i, data, where, dataset)) for i in range(len(variants))]
    done: dict[int, Outcome] = {}
    try:
        for key, result in runner.run(variant_task, tasks):
            i = int(key.rsplit("-", 1)[1])
            if isinstance(result, Exception):
                outcome = Outcome(variants[i].label, {}, "failed", detail=str(result),
                                  style=variants[i].style)  # fmt: skip
            else:
                outcome, datasets, signum = result
                for name, described in datasets.items():
                    report.datasets.setdefault(name, described)
                if signum is not None:
                    report.interrupted = signum
            done[i] = outcome
            if on_outcome:
                on_outcome(outcome)
    except KeyboardInterrupt:
        report.interrupted = signal.SIGINT
    for i, variant in enumerate(variants):
        report.outcomes.append(
            done.get(i) or Outcome(variant.label, {}, "not run (interrupted)", style=variant.style)
        )
    return report


def _run_variant(comparison, variant, load, backend, report: Report, dataset: str) -> Outcome:
    config = TrainConfig(
        **{"dataset": dataset, **comparison.base, **variant.settings},
        device=str(backend.device), backend=backend.name, dtype=report.dtype,
        batch_size=BATCH_SIZE, iters=report.iters, seed=report.seed, log_every=report.log_every,
    )  # fmt: skip
    try:
        data = load(config.dataset)
    except DataError as exc:
        if "dataset" not in variant.settings:  # the data every variant needs: a real error
            raise
        reason = unavailable_reason(exc)
        return Outcome(variant.label, _settings_of(config, None), f"unavailable: {reason}",
                       detail=str(exc), config=asdict(config), style=variant.style)  # fmt: skip
    if comparison.n_train:
        data = first_train(data, comparison.n_train)
    report.datasets.setdefault(data.name, _describe(data))
    config.dataset = data.name
    t0 = time.perf_counter()
    trainer = Trainer(config, data, None, verbose=False, progress=False, backend=backend)
    status, detail = "ok", ""
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
    return Outcome(
        variant.label,
        _settings_of(config, data),
        status,
        list(trainer.history),
        trainer.iteration,
        time.perf_counter() - t0,
        detail,
        asdict(config),
        variant.style,
    )


# ---------------------------------------------------------------------------------------------
# Writing


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
    if report.interrupted is not None:
        lines += [
            "",
            "The run was interrupted; the variants after the interrupted one were not run.",
        ]
    return "\n".join(lines) + "\n"


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def to_json(report: Report) -> str:
    c = report.comparison
    doc = {
        "comparison": c.name,
        "title": c.title,
        "summary": c.summary,
        "command": report.command,
        "backend": report.backend,
        "dtype": report.dtype,
        "batch_size": BATCH_SIZE,
        "iterations": report.iters,
        "epochs": report.epochs,
        "n_train": c.n_train,
        "seed": report.seed,
        "log_every": report.log_every,
        "quick": report.quick,
        "datasets": list(report.datasets.values()),
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
    return json.dumps(_json_safe(doc), indent=1, allow_nan=False) + "\n"


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
    from ..training.curves import plot_comparison

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
        f"seed {report.seed}"
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
    from ..training.curves import _pyplot

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
        f"{c.title}\n{names} ({samples}), batch {BATCH_SIZE}, {length}, seed {report.seed}"
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


def write_report(report: Report, out) -> list[Path]:
    """Write <name>.md, <name>.json and, when matplotlib is installed, <name>.png into `out`."""
    from ..training.curves import have_matplotlib

    out, name = Path(out), report.comparison.name
    paths = [
        atomic_write_text(out / f"{name}.md", markdown(report)),
        atomic_write_text(out / f"{name}.json", to_json(report)),
    ]
    if have_matplotlib():
        draw = plot_panels if report.comparison.epochs is not None else plot
        paths.insert(0, draw(report, out / f"{name}.png"))
    else:
        print(
            f"notice: matplotlib is not installed, so {name}.png was not drawn (pip install matplotlib)",
            file=sys.stderr,
        )
    return paths


# ---------------------------------------------------------------------------------------------
# The command line


def build_parser() -> argparse.ArgumentParser:
    names = (*COMPARISONS, "all")
    p = argparse.ArgumentParser(
        prog="compare.py",
        description="Run one of the slides' comparison experiments: train a few variants that "
        "differ in one respect, with the same seed and sample order, and write a plot and a table.",
        epilog="Comparisons: "
        + "; ".join(f"{c.name}: {c.summary}" for c in COMPARISONS.values())
        + "; all: each of them in turn. "
        f"Default length: {FULL_ITERS} iterations on MNIST (batch {BATCH_SIZE}); --quick: "
        f"{QUICK_ITERS} iterations on the offline digits (or on {QUICK_SUBSET[0]} MNIST samples "
        f"with --dataset mnist); batchnorm, overfit and cnn run for the book's number of epochs "
        f"instead. Writes <name>.png, <name>.md and <name>.json into --out.",
    )
    p.add_argument("comparison", choices=names, metavar="COMPARISON",
                   help=f"one of: {', '.join(names)}")  # fmt: skip
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output folder (default: a new folder under runs/)")  # fmt: skip
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: the GPU when CuPy sees one, else the CPU (default: auto)")  # fmt: skip
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="array library (default: cupy for cuda, numpy for cpu)")  # fmt: skip
    p.add_argument("--data-dir", metavar="DIR", default=None,
                   help="folder holding the dataset files; default: $XPNET_DATA_DIR, else ~/.cache/xpnet")  # fmt: skip
    p.add_argument("--dataset", choices=DATASET_CHOICES, default=None,
                   help="what every comparison but `dataset` trains on (default: auto, i.e. MNIST if "
                   "it can be had, else digits; digits with --quick)")  # fmt: skip
    p.add_argument("--iters", type=positive_int, default=None, metavar="N",
                   help=f"iterations per variant (default: {FULL_ITERS}; {QUICK_ITERS} with --quick)")  # fmt: skip
    p.add_argument("--seed", type=seed_int, default=0, metavar="S",
                   help="seed of the initial weights and the sample order (default: 0)")  # fmt: skip
    p.add_argument("--quick", action="store_true",
                   help="a small version that runs in seconds (offline digits, fewer iterations)")  # fmt: skip
    add_runner_options(p)
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return p


def _print_outcome(o: Outcome) -> None:
    if o.final:
        f = o.final
        note = "" if o.status == "ok" else f"  {o.status}"
        safe_print(f"  {o.label:<26} test acc {f['test_acc']:.4f}  train acc {f['train_acc']:.4f}  "
                   f"{o.seconds:6.1f} s{note}")  # fmt: skip
    else:
        time_ = f"  {o.seconds:6.1f} s" if o.history else ""
        safe_print(f"  {o.label:<26} {o.status}{time_}")


def _print_dataset(d: Dataset) -> None:
    if d.notice:
        print(f"notice: {d.notice}", file=sys.stderr)
    safe_print(
        f"dataset: {d.name} from {d.source} ({len(d.x_train)} train / {len(d.x_test)} test samples)"
    )


def run(args, argv) -> int:
    names = list(COMPARISONS) if args.comparison == "all" else [args.comparison]
    dataset = args.dataset or ("digits" if args.quick else "auto")
    be = resolve(args.device, args.backend)
    safe_print(f"backend: {be}, dtype float32")
    load = DataCache(args.data_dir, args.quick, on_load=_print_dataset)
    if names != ["dataset"]:
        load(dataset)  # a missing or broken dataset is an error before anything runs
    if args.dataset and "dataset" in names:
        print("notice: the dataset comparison trains on each dataset; --dataset applies to the others",
              file=sys.stderr)  # fmt: skip
    created: list[Path] = []
    if args.out:
        out = Path(args.out)
        # a comparison writes only its own NAME.png/.md/.json, so a shared folder (docs/img) is fine
        prepare_output_folder(out, created, reuse=True)
    else:
        out = new_run_dir("runs", f"compare-{args.comparison}")
        created.append(out)
    try:
        safe_print(f"output:  {out}")
        command = "python scripts/compare.py " + shlex.join(argv)
        runner = open_runner(args.workers, args.scheduler)
        try:
            if type(runner) is not Runner:
                safe_print(f"running the variants {runner.where}")
            return _run_all(args, names, dataset, be, load, out, command, runner)
        finally:
            runner.close()
    finally:
        # a comparison that failed before writing anything leaves no empty folder behind
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()


def _run_all(args, names, dataset, be, load, out, command, runner) -> int:
    for name in names:
        c = COMPARISONS[name]
        if args.iters or c.epochs is None:
            iters = args.iters or (QUICK_ITERS if args.quick else FULL_ITERS)
            safe_print(f"{name}: {c.summary}; {iters} iterations each")
        else:
            epochs = (c.quick_epochs or c.epochs) if args.quick else c.epochs
            safe_print(f"{name}: {c.summary}; {epochs:g} epochs each")
        report = run_comparison(
            name, load, be, dataset=dataset, iters=args.iters, quick=args.quick, seed=args.seed,
            on_outcome=_print_outcome, runner=runner,
        )  # fmt: skip
        report.command = command
        paths = write_report(report, out)
        safe_print(f"wrote {out}/{{{', '.join(p.name for p in paths)}}}")
        if report.interrupted is not None:
            print("interrupted: the finished variants are in the files above", file=sys.stderr)
            return 128 + report.interrupted
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_command(build_parser(), lambda args: run(args, argv), argv)
