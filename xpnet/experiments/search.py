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

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..apps.common import positive_int, run_command
from ..errors import ConfigError, DataError, choose
from ..fileio import atomic_write_text, fsync_dir
from ..parallel.dask import (
    Runner,
    TaskFailed,
    blas_threads,
    open_runner,
    worker_name,
)
from ..training.runs import prepare_output_folder
from ..training.trainer import Interrupted, TrainConfig, Trainer

# ---------------------------------------------------------------------------------------------
# Where tasks run


# ---------------------------------------------------------------------------------------------
# The search


@dataclass
class SearchConfig:
    """A random search. The defaults are the book's (chapter 6, hyperparameter_optimization.py)."""

    trials: int = 100
    epochs: int = 50
    dataset: str = "mnist"
    data_dir: str | None = None
    n_data: int = 500  # the first n_data training images are all the search sees
    validation: float = 0.2  # the fraction of them held out for validation
    seed: int = 0
    lr_range: tuple[float, float] = (-6.0, -2.0)  # log10
    weight_decay_range: tuple[float, float] = (-8.0, -4.0)  # log10
    hidden: list[int] = field(default_factory=lambda: [100] * 6)
    activation: str = "relu"
    init: str | float = "he"
    batch_size: int = 100
    dtype: str = "float32"

    def validate(self) -> SearchConfig:
        choose("dataset", self.dataset, ("mnist", "fashion-mnist", "digits"))
        n_val = self.n_validation
        checks = [
            (self.trials > 0, f"--trials must be positive, got {self.trials}"),
            (self.epochs > 0, f"--epochs must be positive, got {self.epochs}"),
            (self.batch_size > 0, f"--batch-size must be positive, got {self.batch_size}"),
            (
                bool(self.hidden) and all(h > 0 for h in self.hidden),
                f"--hidden sizes must be positive, got {self.hidden}",
            ),
            (0 < self.validation < 1, f"--validation must lie in (0, 1), got {self.validation}"),
            (
                n_val >= 1 and self.n_data - n_val >= self.batch_size,
                f"--n-data {self.n_data} with --validation {self.validation} leaves "
                f"{self.n_data - n_val} training samples for batches of {self.batch_size}",
            ),
        ]
        for name in ("lr_range", "weight_decay_range"):
            low, high = getattr(self, name)
            checks.append((
                math.isfinite(low) and math.isfinite(high) and low <= high,
                f"--{name.replace('_', '-')} must be LOW HIGH (exponents of 10), got {low} {high}",
            ))  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self

    @property
    def n_validation(self) -> int:
        return int(self.n_data * self.validation)

    def defining(self) -> dict:
        """The settings a trial's result depends on: a resumed search must not change them."""
        d = asdict(self)
        for key in ("trials", "data_dir"):
            d.pop(key)
        d["lr_range"], d["weight_decay_range"] = list(self.lr_range), list(self.weight_decay_range)
        return d


def trial_settings(config: SearchConfig, trial: int) -> dict:
    """Trial `trial`'s hyperparameters and seed, drawn from child `trial` of SeedSequence(seed)."""
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(trial,)))
    lr = 10 ** float(rng.uniform(*config.lr_range))
    weight_decay = 10 ** float(rng.uniform(*config.weight_decay_range))
    return {"lr": lr, "weight_decay": weight_decay, "seed": int(rng.integers(2**31))}


_SPLITS: dict = {}  # per process: workers load and split the data once, then reuse it


def validation_split(dataset: str, data_dir, n_data: int, validation: float, seed: int):
    """A Dataset of the first `n_data` training samples whose "test" split is the validation split.

    The n_data samples are shuffled by SeedSequence(seed) (as the book's shuffle_dataset), the
    first int(n_data * validation) of them validate and the rest train. The real test set is never
    used. Loaded once per process.
    """
    from ..data import load_dataset

    key = (dataset, str(data_dir), n_data, validation, seed)
    if key not in _SPLITS:
        full = load_dataset(dataset, data_dir, progress=False)
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
        raise DataError(f"{exc} (on {worker_name()})") from None
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


class TrialLog:
    """trials.jsonl: one JSON line per finished trial, each flushed and fsynced as it is written."""

    def __init__(self, path):
        self.path = Path(path)

    def read(self) -> dict[int, dict]:
        """The finished trials by number; a torn last line (a crash mid-write) is cut off."""
        if not self.path.exists():
            return {}
        raw = self.path.read_bytes()
        good = raw[: raw.rfind(b"\n") + 1]
        if len(good) != len(raw):
            with open(self.path, "r+b") as f:
                f.truncate(len(good))
        records = {}
        for n, line in enumerate(good.decode("utf-8").splitlines(), 1):
            try:
                record = json.loads(line)
                records[int(record["trial"])] = record
            except (ValueError, KeyError, TypeError):
                raise DataError(
                    f"{self.path} line {n} is not a trial record; move the file away to start over"
                ) from None
        return records

    def append(self, record: dict) -> None:
        line = json.dumps(record, allow_nan=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


@dataclass
class SearchResult:
    config: SearchConfig
    trials: dict[int, dict]  # every finished trial, earlier runs' included
    ran: int  # trials run by this call
    seconds: float  # wall time of this call
    where: str
    interrupted: int | None = None  # the signal that stopped the search early
    paths: list[Path] = field(default_factory=list)

    def ranked(self) -> list[dict]:
        """Finished trials, best validation accuracy first (failed ones last)."""
        ok = [r for r in self.trials.values() if r["status"] == "ok"]
        failed = [r for r in self.trials.values() if r["status"] != "ok"]
        ok.sort(key=lambda r: (-r["val_acc"], r["trial"]))
        return ok + sorted(failed, key=lambda r: r["trial"])


def _check_resume(out: Path, config: SearchConfig) -> None:
    path = out / "search.json"
    wanted = config.defining()
    if path.exists():
        try:
            stored = json.loads(path.read_text())["settings"]
        except (ValueError, KeyError, TypeError):
            raise DataError(f"{path} is not a search description; choose another --out") from None
        if stored != wanted:
            diff = ", ".join(
                f"{k} {stored.get(k)!r} there, {wanted.get(k)!r} now"
                for k in sorted(set(stored) | set(wanted))
                if stored.get(k) != wanted.get(k)
            )
            raise ConfigError(
                f"{out} holds a search with other settings ({diff}); rerun with its settings to "
                f"continue it, or choose another --out"
            )
    else:
        atomic_write_text(path, json.dumps({"settings": wanted}, indent=1) + "\n")


def search(
    config: SearchConfig,
    out,
    *,
    runner: Runner | None = None,
    on_trial: Callable[[dict], None] | None = None,
    command: str | None = None,
) -> SearchResult:
    """Run the trials of `config` not yet in `out`/trials.jsonl, then write the table and plot.

    Ctrl-C (KeyboardInterrupt, or SIGINT caught by a trial in this process) stops the search; the
    finished trials stay in trials.jsonl, the report is written from them and the result says
    `interrupted`. A dataset the workers cannot load raises DataError.
    """
    config.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_resume(out, config)
    log = TrialLog(out / "trials.jsonl")
    done = log.read()
    todo = [k for k in range(config.trials) if k not in done]
    runner = runner or Runner()
    t0 = time.perf_counter()
    ran, interrupted = 0, None
    try:
        tasks = [(f"trial-{k}", (config, k)) for k in todo]
        for key, result in runner.run(run_trial, tasks):
            if isinstance(result, TaskFailed):
                k = int(key.rsplit("-", 1)[1])
                result = {"trial": k, "status": "failed", **trial_settings(config, k), "network": None,
                          "error": str(result), "curve": None, "val_acc": None,
                          "train_acc": None, "seconds": None, "worker": None, "host": None,
                          "pid": None, "blas_threads": None, "data": None}  # fmt: skip
            log.append(result)
            done[result["trial"]] = result
            ran += 1
            if on_trial:
                on_trial(result)
    except KeyboardInterrupt:
        interrupted = signal.SIGINT
    except Interrupted as exc:  # SIGINT or SIGTERM, caught by a trial in this process
        interrupted = exc.signum
    seconds = time.perf_counter() - t0
    trials = {k: v for k, v in sorted(done.items()) if k < config.trials}
    result = SearchResult(config, trials, ran, seconds, runner.where, interrupted)
    result.paths = write_report(result, out, command)
    return result


# ---------------------------------------------------------------------------------------------
# Writing

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
        f"{len(result.trials)} of {c.trials} trials finished ({len(failed)} failed)"
        + (
            " — interrupted; rerun the same command to finish"
            if result.interrupted is not None
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
    from ..training.curves import _pyplot, _save

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
    from ..training.curves import have_matplotlib

    out = Path(out)
    paths = [atomic_write_text(out / "results.md", markdown(result, command))]
    if have_matplotlib():
        png = plot_best(result, out / "best-curves.png")
        if png:
            paths.append(png)
    fsync_dir(out)
    return paths


# ---------------------------------------------------------------------------------------------
# The command line


def _range(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def add_runner_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where to run")
    g.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="start a local Dask cluster of N single-threaded worker processes "
                   '(needs pip install "xpnet[distributed]")')  # fmt: skip
    g.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="run on an existing Dask cluster (workers need xpnet and the data); "
                   "default: everything in this process")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    d = SearchConfig()
    p = argparse.ArgumentParser(
        prog="search.py",
        description="Random search over the learning rate and weight decay (the book's chapter 6): "
        "train many small nets with hyperparameters drawn at random, rank them by validation "
        "accuracy, and draw the best learning curves.",
        epilog="Writes trials.jsonl (one line per finished trial), results.md and best-curves.png "
        "into --out; rerunning with the same --out finishes an interrupted search.",
    )
    p.add_argument("--out", metavar="DIR", default="runs/search",
                   help="output folder; finished trials there are kept (default: runs/search)")  # fmt: skip
    p.add_argument("--trials", type=positive_int, default=d.trials, help=f"default: {d.trials}")
    p.add_argument("--epochs", type=positive_int, default=d.epochs, help=f"default: {d.epochs}")
    p.add_argument("--dataset", choices=("mnist", "fashion-mnist", "digits"), default=d.dataset,
                   help=f"default: {d.dataset}")  # fmt: skip
    p.add_argument("--data-dir", metavar="DIR", default=None,
                   help="folder holding the dataset files; default: $XPNET_DATA_DIR, else ~/.cache/xpnet")  # fmt: skip
    p.add_argument("--n-data", type=positive_int, default=d.n_data,
                   help=f"training samples used, validation included (default: {d.n_data})")  # fmt: skip
    p.add_argument("--validation", type=float, default=d.validation,
                   help=f"fraction of them held out for validation (default: {d.validation})")  # fmt: skip
    p.add_argument("--seed", type=int, default=d.seed, help=f"default: {d.seed}")
    p.add_argument("--lr-range", type=_range, nargs=2, default=d.lr_range, metavar=("LOW", "HIGH"),
                   help="learning rate 10^U(LOW, HIGH) (default: -6 -2)")  # fmt: skip
    p.add_argument("--weight-decay-range", type=_range, nargs=2, default=d.weight_decay_range,
                   metavar=("LOW", "HIGH"), help="weight decay 10^U(LOW, HIGH) (default: -8 -4)")  # fmt: skip
    p.add_argument("--hidden", type=positive_int, nargs="+", default=d.hidden, metavar="N",
                   help="hidden layer sizes (default: six of 100, the book's)")  # fmt: skip
    p.add_argument(
        "--batch-size", type=positive_int, default=d.batch_size, help=f"default: {d.batch_size}"
    )
    add_runner_options(p)
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return p


def _print_trial(r: dict) -> None:
    head = f"trial {r['trial']:4d}  lr {r['lr']:.2e}  wd {r['weight_decay']:.2e}"
    if r["status"] == "ok":
        print(
            f"{head}  val acc {r['val_acc']:.3f}  {r['seconds']:6.1f} s  {r['worker']}", flush=True
        )
    else:
        print(f"{head}  failed: {r['error']}", flush=True)


def run(args, argv) -> int:
    config = SearchConfig(
        trials=args.trials, epochs=args.epochs, dataset=args.dataset, data_dir=args.data_dir,
        n_data=args.n_data, validation=args.validation, seed=args.seed,
        lr_range=tuple(args.lr_range), weight_decay_range=tuple(args.weight_decay_range),
        hidden=list(args.hidden), batch_size=args.batch_size,
    ).validate()  # fmt: skip
    command = "python scripts/search.py " + shlex.join(argv)
    # the same --out resumes the search: its settings are checked right below
    out = prepare_output_folder(Path(args.out), reuse=True)
    _check_resume(out, config)  # other settings in --out: an error before any cluster starts
    previous = len(TrialLog(out / "trials.jsonl").read())
    runner = open_runner(args.workers, args.scheduler)
    try:
        print(f"search: {config.trials} trials ({previous} already in {out}) {runner.where}")
        result = search(config, out, runner=runner, on_trial=_print_trial, command=command)
    finally:
        runner.close()
    ok = [r for r in result.trials.values() if r["status"] == "ok"]
    best = result.ranked()[0] if ok else None
    print(f"{result.ran} trials in {result.seconds:.1f} s {result.where}; "
          f"{len(result.trials)} of {config.trials} finished")  # fmt: skip
    if best:
        print(f"best: trial {best['trial']}, val acc {best['val_acc']:.3f}, lr {best['lr']:.3e}, "
              f"weight decay {best['weight_decay']:.3e}")  # fmt: skip
    print(f"wrote {out / 'trials.jsonl'}, " + ", ".join(str(p) for p in result.paths))
    if result.interrupted is not None:
        print(f"interrupted: {len(result.trials)} finished trials are kept in {out / 'trials.jsonl'}; "
              f"continue with: {command}", file=sys.stderr)  # fmt: skip
        return 128 + result.interrupted
    return 0


def main(argv: Iterable[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_command(build_parser(), lambda args: run(args, argv), argv)
