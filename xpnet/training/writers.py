"""The callbacks that write (the console, the progress bar, metrics.jsonl, TensorBoard,
checkpoints) and the one that turns SIGINT/SIGTERM into a stop between steps.

Writers are `one_process`: in a data-parallel run one process writes for all.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from pathlib import Path

from ..errors import ConfigError
from ..fileio import atomic_write_text
from ..progress import Progress, safe_print
from .callbacks import Callback, DivergenceGuard, Evaluation, FileQueue, LossMeter

#: at most this many updates run between two looks at the clock for a time-based checkpoint
CHECK_CLOCK_EVERY = 1_000
#: a checkpoint is written at least this often (seconds), however long the log interval
CHECKPOINT_SECONDS = 600.0


class StopSignals(Callback):
    """SIGINT and SIGTERM become `trainer.stop_signal`, acted on between steps (and between
    evaluation chunks), so a checkpoint is never half a step. A second SIGINT while a stop is
    pending raises KeyboardInterrupt at once. Handlers are only installed in the main thread.

    In a data-parallel run a signal only becomes `trainer.pending_signal`: the processes stop
    together at the step their communicator agrees on (xpnet.parallel), never one alone."""

    order = 0

    def __init__(self):
        self._saved: dict = {}

    def on_fit_start(self, trainer) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, frame):
            stopping = trainer.stop_signal is not None or trainer.pending_signal is not None
            if stopping and signum == signal.SIGINT:
                raise KeyboardInterrupt
            trainer.pending_signal = signum
            if trainer.comm.size == 1:
                trainer.stop_signal = signum

        for sig in (signal.SIGINT, signal.SIGTERM):
            self._saved[sig] = signal.signal(sig, handler)

    def on_fit_end(self, trainer, reason: str) -> None:
        while self._saved:
            sig, handler = self._saved.popitem()
            signal.signal(sig, handler)


class ProgressBar(Callback):
    """A tqdm bar of the iterations on stderr (only on a terminal unless `enabled`); log lines
    are written above it."""

    order = 90
    one_process = True

    def __init__(self, enabled=None):
        self.enabled = enabled
        self.bar: Progress | None = None

    def on_fit_start(self, trainer) -> None:
        self.bar = Progress(trainer.total_iters, "train", enabled=self.enabled)
        self.bar.set(trainer.iteration)

    def on_step_end(self, trainer, loss) -> None:
        if self.bar is not None:  # None in `Trainer.advance` outside `run`
            self.bar.update()

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line)
        else:
            safe_print(line)

    def on_fit_end(self, trainer, reason: str) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Console(Callback):
    """The slides' log line on stdout: `iter 600 / 10000 | loss … | train acc: … test acc: …`."""

    order = 80
    one_process = True

    def __init__(self, bar: ProgressBar | None = None):
        self.bar = bar

    def on_record(self, trainer, record: dict) -> None:
        label = "final" if record.get("final") else "iter"
        line = (
            f"{label} {record['iteration']:5d} / {trainer.total_iters} | loss {record['loss']:.4f} | "
            f"train acc: {record['train_acc']:.4f} test acc: {record['test_acc']:.4f}"
        )
        if "evaluated_on" in record:
            line += f" (first {record['evaluated_on']} samples)"
        self.write(line)

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line)
        else:
            safe_print(line)


class Forecast(Callback):
    """Says, once, how long a run will take when that is more than a minute: after the first
    couple of seconds of steps, from their pace and the first evaluation's time (a CNN on a CPU,
    a GPU run fallen back to the CPU, a long --epochs)."""

    order = 25  # before the evaluation (30): its on_interval starts the evaluation's clock
    one_process = True
    #: seconds of steps measured before the forecast; runs shorter than this say nothing
    MEASURE = 2.0
    #: a run expected to end sooner than this (seconds) is not announced
    ANNOUNCE = 60.0

    def __init__(self, console: Console):
        self.console = console
        self.start = None  # (clock, iteration) when the steps began
        self.eval_seconds = 0.0
        self.beside = False  # the evaluations run on a worker while the steps go on
        self.done = False

    def on_fit_start(self, trainer) -> None:
        if trainer.iteration > 0 and self.start is None:  # resumed: no first evaluation to time
            self.start = (time.perf_counter(), trainer.iteration)

    def on_interval(self, trainer, record: dict) -> None:
        self._interval_t0 = time.perf_counter()

    def on_record(self, trainer, record: dict) -> None:
        if self.start is None and not self.done:  # the first line: its evaluation's time
            evaluation = trainer.callback(Evaluation)
            # evaluated on the other core while the steps went on: no time of its own to add
            self.beside = evaluation is not None and evaluation.worker is not None
            self.eval_seconds = 0.0 if self.beside else time.perf_counter() - self._interval_t0
            self.start = (time.perf_counter(), trainer.iteration)

    def on_step_end(self, trainer, loss) -> None:
        if self.done or self.start is None or trainer.iteration % 8:
            return
        seconds = time.perf_counter() - self.start[0]
        if seconds < self.MEASURE:
            return
        self.done = True
        per_step = seconds / (trainer.iteration - self.start[1])
        left = trainer.total_iters - trainer.iteration
        lines = -(-left // trainer.log_every)
        eta = per_step * left + self.eval_seconds * lines
        if eta >= self.ANNOUNCE:
            evaluations = ("evaluations beside the steps" if self.beside
                           else f"{lines} evaluations of {self.eval_seconds:.2g} s")  # fmt: skip
            self.console.write(
                f"forecast: about {_duration(eta)} more on {trainer.be.device} "
                f"({per_step * 1e3:.3g} ms a step, {evaluations})"
            )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.1f} hours"


class RunRecord(Callback):
    """config.json in the run folder: what runs, as it took effect (the configuration with the
    model's own defaults filled in, the data, the backend and device, the processes), written
    with the first log line of every session of the run (a run that fails before it leaves none)."""

    order = 80
    one_process = True

    def __init__(self, out: Path, files: FileQueue | None = None):
        self.path = Path(out) / "config.json"
        self.written = False
        self.files = files

    def on_fit_start(self, trainer) -> None:
        self.written = False

    def on_record(self, trainer, record: dict) -> None:
        if self.written:
            return
        self.written = True
        from .. import __version__

        config = {f: getattr(trainer.config, f) for f in trainer.config.__dataclass_fields__}
        d = trainer.dataset
        record = {
            "xpnet": __version__,
            "config": {**config, "dataset": d.name},
            "data": {"name": d.name, "source": d.source, "train": trainer.data.x_train.shape[0],
                     "test": trainer.data.x_test.shape[0], "classes": trainer.data.num_classes},
            "backend": trainer.be.name,
            "device": str(trainer.be.device),
            "steps": "fused kernels" if trainer.fused is not None else "the layers",
            "processes": trainer.comm.size,
            "iterations": trainer.total_iters,
            "network": trainer.config.describe_net(
                math.prod(trainer.data.x_train.shape[1:]), trainer.data.num_classes
            ),
        }  # fmt: skip
        write(self.files, atomic_write_text, self.path, json.dumps(record, indent=2) + "\n")


class MetricsFile(Callback):
    """metrics.jsonl in the run folder: every log line's record, rewritten atomically."""

    order = 81
    one_process = True

    def __init__(self, out: Path, files: FileQueue | None = None):
        self.path = Path(out) / "metrics.jsonl"
        self.files = files

    def on_record(self, trainer, record: dict) -> None:
        text = "".join(json.dumps(r) + "\n" for r in trainer.history)
        write(self.files, atomic_write_text, self.path, text)


def write(files: FileQueue | None, fn, *args) -> None:
    """fn(*args) on `files`' thread, or here and now without one."""
    if files is None:
        fn(*args)
    else:
        files.submit(fn, *args)


#: TensorBoard tag -> metrics.jsonl key (the accuracies share one section)
TENSORBOARD_TAGS = {"loss": "loss", "accuracy/train": "train_acc", "accuracy/test": "test_acc"}


class TensorBoard(Callback):
    """Each log line as TensorBoard scalars in the run folder (`tensorboard --logdir runs`)."""

    order = 82
    one_process = True

    def __init__(self, out: Path):
        self.out = Path(out)
        self.writer = None

    def on_fit_start(self, trainer) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ConfigError(
                "--tensorboard needs tensorboardX: pip install 'xpnet[tensorboard]' (or tensorboardX)"
            ) from None
        # a resumed run drops what an interrupted one logged past its checkpoint
        self.writer = SummaryWriter(logdir=str(self.out), purge_step=trainer.iteration or None)

    def on_record(self, trainer, record: dict) -> None:
        for tag, key in TENSORBOARD_TAGS.items():
            self.writer.add_scalar(tag, record[key], record["iteration"])
        self.writer.flush()

    def on_fit_end(self, trainer, reason: str) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class Checkpointer(Callback):
    """checkpoint.npz in the run folder at every log line (or every `every` iterations), at least
    every CHECKPOINT_SECONDS, and when a signal stops the run; model.npz at the end.

    `trainer.save` asks every callback first (`on_save`): the divergence guard refuses
    non-finite weights, so the last checkpoint written is always a finite one.

    Every process of a data-parallel run takes the same decisions (the clock of the time-based
    checkpoint through `comm.any`) and calls `trainer.save` at the same steps; rank 0 writes.
    """

    order = 85

    def __init__(self, out: Path, every: int | None = None, files: FileQueue | None = None):
        self.path = Path(out) / "checkpoint.npz"
        self.model_path = Path(out) / "model.npz"
        self.every = every
        self.files = files  # None: every checkpoint is written before `save` returns
        self._saved_at = time.perf_counter()
        self._due = None  # a checkpoint due at the line being emitted: True, or one taken then

    def on_fit_start(self, trainer) -> None:
        self._saved_at = time.perf_counter()

    def save(self, trainer, path: Path | None = None, wait: bool = True) -> Path:
        """A checkpoint of this step at `path`; on disk when this returns, unless `wait` is
        False (written by the file queue while the steps go on)."""
        self._saved_at = time.perf_counter()
        path = path or self.path
        if wait or self.files is None:
            return trainer.save(path)
        trainer.finish_line()  # as trainer.save: a checkpoint holds every line before its step
        self.files.submit(trainer.capture(copy=True), path)
        return path

    def _late(self, trainer) -> bool:
        # a long interval must not mean hours without a checkpoint; all processes agree on it
        return trainer.comm.any(time.perf_counter() - self._saved_at > CHECKPOINT_SECONDS)

    def on_step_end(self, trainer, loss) -> None:
        i = trainer.iteration
        if not i % trainer.log_every or i >= trainer.total_iters:
            return  # a log line follows: on_record decides
        if self.every and not i % self.every:
            self.save(trainer, wait=False)
        elif not i % CHECK_CLOCK_EVERY and self._late(trainer):
            self.save(trainer, wait=False)

    def on_close(self, trainer, record: dict) -> None:
        # decided at the line's step; a line still being evaluated gets its checkpoint taken now
        # and written with it, so the file is the one an unoverlapped run writes
        i, self._due = record["iteration"], None
        if record.get("final") or (
            i > 0 and (self.every is None or not i % self.every or self._late(trainer))
        ):
            self._due = trainer.capture(record) if trainer.line_pending else True

    def on_record(self, trainer, record: dict) -> None:
        due, self._due = self._due, None
        if due is True:
            self.save(trainer, wait=False)
        elif due is not None:  # taken at the line's step
            self._saved_at = time.perf_counter()
            write(self.files, due, self.path)
        if record.get("final"):
            self.save(trainer, self.model_path, wait=False)


def default_callbacks(
    out, *, verbose=True, progress=None, tensorboard=False, checkpoint_every=None
):
    """The callbacks of a run into folder `out` (None: nothing is written)."""
    callbacks = [StopSignals(), LossMeter(), DivergenceGuard(), Evaluation()]
    bar = ProgressBar(progress) if progress is not False else None
    callbacks += [bar] if bar is not None else []
    if verbose:
        console = Console(bar)
        callbacks += [console, Forecast(console)]
    if out is not None:
        files = FileQueue()
        callbacks += [RunRecord(out, files), MetricsFile(out, files), files]
        callbacks += [Checkpointer(out, checkpoint_every, files)]
        callbacks += [TensorBoard(out)] if tensorboard else []
    return callbacks
