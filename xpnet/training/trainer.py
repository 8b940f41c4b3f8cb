"""Training: the slides' minibatch loop, with everything around it in callbacks.

The loop draws a minibatch (xpnet.training.placement.Sampler), runs forward and backward (the
fused step of xpnet.fast where the backend has one, else the layers), calls the hooks after
backward, updates the weights, and every log interval asks the callbacks (xpnet.training.callbacks
and .writers) to measure and then write the interval's record. Loss values stay on the device and
are read once per log line; nothing in the loop reads a device value.

A checkpoint holds the weights, the optimizer's state, the iteration, the history and every
callback's state; `load_state_dict` continues from it exactly (the minibatches are a function of
(seed, epoch)), and refuses a checkpoint of a different run.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from ..backend import Backend, resolve, synchronize
from ..errors import ConfigError
from ..fast import optimizer_kernel, plan
from ..nn.optimizers import make_optimizer
from .callbacks import Callback, FileQueue, Interrupted, StopRequested
from .checkpoint import (
    Checkpoint,
    checkpoint_payload,
    load_checkpoint,
    restore_params,
    save_checkpoint,
    write_checkpoint,
)
from .comm import SingleProcess
from .config import (
    FIXED_ON_RESUME,
    MAX_ITERATIONS,
    TrainConfig,
    build_network,
    check_unchanged,
    resumed_config,
)
from .placement import Sampler, to_device
from .writers import Checkpointer, default_callbacks

#: batch × parameters under which NumPy's training steps run BLAS on one thread: a second thread
#: costs more to wake than it saves on such small products. Measured on 2 cores: the slides'
#: 784-50-10 net at batch 100 (4·10⁶), 306 µs a step on one thread against 327 µs on two; four
#: hidden layers of 100 (1.1·10⁷), 0.77 against 0.85 ms; 784-1000-1000-10 at batch 1000 (1.8·10⁹),
#: 62 ms against 36 ms; SimpleConvNet (4.3·10⁷) the same either way. Evaluation always uses all.
SMALL_STEP = 2e7
#: the longest default log interval (iterations): a log line and a checkpoint come regularly even
#: for `--epochs 1e9` (and a checkpoint at least every writers.CHECKPOINT_SECONDS)
MAX_LOG_INTERVAL = 10_000


class Trainer:
    """Trains `config`'s network on `dataset` (a host `xpnet.data.Dataset`, moved to the device
    once) and writes its run into `out` (None: nothing is written).

    `verbose=False` prints nothing; `progress=None` draws a progress bar only on a terminal;
    `tensorboard=True` also logs for TensorBoard. `callbacks` are added to the defaults; `comm`
    is the run's processes (xpnet.training.comm; a data-parallel run passes its own).
    """

    def __init__(self, config: TrainConfig, dataset, out=None, *, verbose=True, progress=None,
                 backend: Backend | None = None, tensorboard=False, callbacks=(), comm=None):  # fmt: skip
        self.config = config.validate()
        self.dataset = dataset
        self.be = backend if backend is not None else resolve(config.device, config.backend)
        self.comm = comm if comm is not None else SingleProcess()
        self.data = to_device(dataset, self.be, config.dtype, images=config.model != "mlp")
        self.n_train = n_train = self.data.x_train.shape[0]
        if config.batch_size > n_train:
            raise ConfigError(
                f"batch size {config.batch_size} is larger than the training set ({n_train} samples)"
            )
        shard = (self.comm.rank, self.comm.size)
        self.sampler = Sampler(self.data, config.batch_size, config.seed, self.be, shard)
        self.steps_per_epoch = self.sampler.steps_per_epoch
        self.total_iters = config.iters
        if config.epochs is not None:
            self.total_iters = math.ceil(config.epochs * self.steps_per_epoch)
        if self.total_iters > MAX_ITERATIONS:
            raise ConfigError(f"{config.epochs} epochs is more updates than any run can make")
        # default: once per epoch, as the slides; on small datasets every few epochs (<= ~50 lines),
        # but never fewer than one line per MAX_LOG_INTERVAL iterations, however long the run
        epochs_per_line = max(1, math.ceil(self.total_iters / self.steps_per_epoch / 50))
        self.log_every = config.log_every or min(
            self.steps_per_epoch * epochs_per_line, max(self.steps_per_epoch, MAX_LOG_INTERVAL)
        )
        # a huge --init overflows while the weights are cast to the dtype: the first log line
        # reports that (blaming the init) instead of NumPy's warning
        with np.errstate(over="ignore", invalid="ignore"):
            self.net = build_network(config, tuple(self.data.x_train.shape[1:]),
                                     self.data.num_classes, self.be)  # fmt: skip
        self.optimizer = make_optimizer(config.optimizer, lr=config.lr)
        # the fast path: the same step in fewer operations where the backend has kernels; it reads
        # and writes the layers' own arrays, so the network stays the one source of truth
        self.fused = plan(self.net) if config.fused else None
        if config.fused:  # --no-fused: the optimizer's own rules too, not only the layers
            self.optimizer.kernels = optimizer_kernel
        self.out = Path(out) if out is not None else None
        self.iteration = 0
        self.history: list[dict] = []
        self.elapsed = 0.0  # seconds of training (evaluation included) before this `run`
        self.stop_signal: int | None = None  # set by StopSignals, acted on between steps
        # a signal this process received; in one process it is the stop signal at once, in a
        # data-parallel run it stops every process at the step they agree on (comm)
        self.pending_signal: int | None = None
        self._t0: float | None = None
        self.last_checkpoint: tuple[Path, int] | None = None  # (path, iteration) of the last save
        # a log line measured at its step whose evaluation still runs on a worker: (record, job)
        self._line: tuple[dict, Future] | None = None
        every = config.checkpoint_every
        mine = default_callbacks(self.out, verbose=verbose, progress=progress,
                                 tensorboard=tensorboard, checkpoint_every=every)  # fmt: skip
        self.callbacks = sorted(
            (c for c in [*mine, *callbacks] if self.comm.rank == 0 or not c.one_process),
            key=lambda c: c.order,
        )

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> dict:
        """Train to the configured iteration count; return the final metrics record.

        Raises TrainingDiverged on a non-finite loss or weights, and Interrupted on SIGINT or
        SIGTERM (after writing a checkpoint of the current step). A finished run returns its final
        record and writes nothing.
        """
        if self.finished:
            return self.history[-1]
        self._t0, reason = time.perf_counter(), "error"
        try:
            for callback in self.callbacks:
                callback.on_fit_start(self)
            # overflow is caught from the loss at the next log line, with advice; NumPy's own
            # floating-point warnings would only repeat it less clearly
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                if self._line_due():  # iteration 0, or a line a signal dropped (resumed)
                    self._interval(final=self.iteration == self.total_iters)
                while self.iteration < self.total_iters and self.stop_signal is None:
                    line = (self.iteration // self.log_every + 1) * self.log_every
                    self.advance(min(line, self.total_iters))
                    if self.stop_signal is None:
                        self._interval(final=self.iteration == self.total_iters)
                self.finish_line()
            if self.stop_signal is not None:
                reason = "signal"
                raise self._interrupted()
            reason = "done"
        finally:
            self._line = None  # after an error: the line being evaluated is not written
            self.elapsed, self._t0 = self.seconds(), None
            for callback in self.callbacks:
                if reason == "error":  # the first error is the one to report
                    with contextlib.suppress(Exception):
                        callback.on_fit_end(self, reason)
                else:
                    callback.on_fit_end(self, reason)
        return self.history[-1]

    def advance(self, stop: int) -> None:
        """Train until iteration `stop` (or a stop request): the steps, with the per-step hooks."""
        net, opt, sampler = self.net, self.optimizer, self.sampler
        if self.fused is not None:
            forward_backward = self.fused.forward_backward
        else:

            def forward_backward(x, t):  # the data were checked once, in to_device
                return net.forward_backward(x, t, check=False)

        after_backward = self._hooks("on_after_backward")
        step_end = self._hooks("on_step_end")
        with self.blas_threads():
            while self.iteration < stop and self.stop_signal is None:
                loss = forward_backward(*sampler.batch(self.iteration))
                for hook in after_backward:
                    hook(self)
                opt.update(net.params, net.grads)
                self.iteration += 1
                for hook in step_end:
                    hook(self, loss)
                if self._line is not None and self._line[1].done():
                    self.finish_line()

    def _line_due(self) -> bool:
        """Whether this step's line is unwritten: the run's start, or a line a signal dropped."""
        at_line = self.iteration % self.log_every == 0 or self.iteration == self.total_iters
        return at_line and (not self.history or self.history[-1]["iteration"] < self.iteration)

    def _interval(self, final: bool = False) -> None:
        """A log line: readers measure, the interval closes, writers emit it (when done: `defer`)."""
        self.finish_line()  # the previous line first: the lines come in order
        if final:
            synchronize(self.net.params["W1"])  # the time of the last line includes the last step
        record = {
            "iteration": self.iteration,
            "epoch": round(self.iteration / self.steps_per_epoch, 4),
        }
        try:
            for callback in self.callbacks:
                callback.on_interval(self, record)
        except StopRequested:  # a signal during the evaluation: this line is dropped
            return
        record["seconds"] = round(self.seconds(), 4)
        if final:
            record["final"] = True
        for callback in self.callbacks:
            callback.on_close(self, record)
        if self._line is None or self._line[0] is not record:
            self._emit(record)

    def defer(self, record: dict, job: Future) -> None:
        """`job`, running while the steps go on, completes `record` (its result: the values)."""
        self._line = (record, job)

    @property
    def line_pending(self) -> bool:
        """Whether a log line waits for its evaluation (then `history` lacks it so far)."""
        return self._line is not None

    def finish_line(self) -> None:
        """Wait for the evaluation of the deferred log line, if any, and emit the line."""
        if self._line is not None:
            record, job = self._line
            values = job.result()
            self._line = None
            record.update(values)
            self._emit(record)

    def _emit(self, record: dict) -> None:
        self.history.append(record)
        for callback in self.callbacks:
            callback.on_record(self, record)

    def _hooks(self, name: str) -> list:
        """The callbacks' `name` methods that do something (per-step hooks cost every step)."""
        return [getattr(c, name) for c in self.callbacks if getattr(type(c), name) is not getattr(
            Callback, name)]  # fmt: skip

    def _interrupted(self) -> Interrupted:
        name, saver = signal.Signals(self.stop_signal).name, self.callback(Checkpointer)
        if saver is None:
            where = "nothing saved (no output folder)" if self.out is None else "rank 0 saves"
            return Interrupted(f"{name} at iteration {self.iteration}; {where}", self.stop_signal)
        path = saver.save(self)
        return Interrupted(
            f"{name} at iteration {self.iteration} of {self.total_iters}; checkpoint saved to "
            f"{path}. Resume with: xpnet train --resume {path}",
            self.stop_signal,
        )

    def steps_on_one_thread(self) -> bool:
        """Whether the training steps run BLAS on one thread (NumPy, batch × parameters under
        SMALL_STEP): then the other core is idle during the steps."""
        n_params = sum(math.prod(p.shape) for p in self.net.params.values())
        return self.be.name == "numpy" and self.config.batch_size * n_params <= SMALL_STEP

    def blas_threads(self):
        """A context in which the training steps run: on NumPy, BLAS on one thread when the step's
        products are small (batch × parameters under SMALL_STEP), all threads otherwise."""
        if not self.steps_on_one_thread():
            return contextlib.nullcontext()
        from threadpoolctl import threadpool_limits

        return threadpool_limits(1, user_api="blas")

    # -- state ----------------------------------------------------------------------------------

    def callback(self, kind: type):
        """The first callback of class `kind`, or None."""
        return next((c for c in self.callbacks if isinstance(c, kind)), None)

    def seconds(self) -> float:
        """Seconds of training (evaluation included) in all sessions of this run so far."""
        return self.elapsed + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0)

    def weights_finite(self) -> bool:
        xp = self.be.xp
        return all(bool(xp.all(xp.isfinite(w))) for w in self.net.params.values())

    @property
    def checkpoint_path(self) -> Path | None:
        return self.out / "checkpoint.npz" if self.out else None

    @property
    def finished(self) -> bool:
        """True when the run (e.g. one restored from a checkpoint) already ended with its final line."""
        return self.iteration >= self.total_iters and bool(self.history) and bool(
            self.history[-1].get("final"))  # fmt: skip

    def state_dict(self) -> dict:
        """The run's progress and every callback's state (a checkpoint's ``extra``)."""
        state = {
            "history": self.history,
            "elapsed": self.seconds(),
            "dataset": {"name": self.dataset.name, "source": self.dataset.source},
            # the whole random state of the rest of the run: each epoch's order is a function of
            # (seed, epoch), so the iteration above is where a resumed run picks it up
            "random_state": {
                "seed": self.config.seed,
                "epoch_order": "numpy.random.default_rng([seed, epoch]).permutation(n_train)",
                "epoch": self.iteration // self.steps_per_epoch,
                "step_in_epoch": self.iteration % self.steps_per_epoch,
            },
        }
        for callback in self.callbacks:
            state.update(callback.state_dict())
        return state

    def save(self, path) -> Path:
        """Write a checkpoint of the current step (every callback may refuse: non-finite weights).

        In a data-parallel run every process calls it at the same step (the callbacks' `on_save`
        may reduce over the processes) and rank 0 writes the file.
        """
        self.finish_line()  # a checkpoint holds every line measured before its step
        files = self.callback(FileQueue)
        if files is not None:
            files.wait()  # the writes asked before this one land first, never over it
        return self.capture()(path)

    def capture(self, line: dict | None = None, copy: bool = False):
        """A checkpoint of this step, taken now and written by calling the result with a path;
        `line`: this step's record, still being evaluated (held as it is when written); `copy`:
        copied now, to be written while the steps go on (a line's checkpoint always is)."""
        for callback in self.callbacks:
            callback.on_save(self)
        config = {f: getattr(self.config, f) for f in self.config.__dataclass_fields__}
        # the dataset actually used ("digits" after an "auto" fallback), so a resume loads it
        config["dataset"] = self.dataset.name
        extra = self.state_dict()
        if line is not None:
            extra["history"] = [*extra["history"], line]
        iteration, rank0 = self.iteration, self.comm.rank == 0
        args = {"iteration": iteration, "config": config, "extra": extra}
        copied = None
        if rank0 and (line is not None or copy):  # copied now; a line as evaluated since
            copied = checkpoint_payload(self.net, self.optimizer, copy=True, **args)

        def write(path) -> Path:
            if rank0 and copied is None:
                save_checkpoint(path, self.net, self.optimizer, **args)
            elif rank0:
                if line is not None:
                    copied[1]["extra"]["history"][-1] = dict(line)
                write_checkpoint(path, *copied)
            self.last_checkpoint = (Path(path), iteration)
            return Path(path)

        return write

    def load_state_dict(self, ckpt: Checkpoint) -> None:
        """Continue the run saved in `ckpt`, refusing one whose model, optimizer, seed, batch size
        or data differ from this trainer's (a resume continues the same run)."""
        if ckpt.config:
            saved = TrainConfig.from_saved(ckpt.config)
            check_unchanged(self.config, saved, [k for k in FIXED_ON_RESUME if k != "dataset"])
        used = ckpt.extra.get("dataset", {}).get("name") if isinstance(ckpt.extra, dict) else None
        if used is not None and used != self.dataset.name:
            raise ConfigError(
                f"{ckpt.path} was trained on {used}, not {self.dataset.name}; resume it with "
                f"--dataset {used}"
            )
        restore_params(self.net, ckpt)
        state = ckpt.optimizer_state(self.net.backend)
        if state is not None:
            self.optimizer.load_state_dict(state)
        self.iteration = ckpt.iteration
        if self.iteration > self.total_iters:
            raise ConfigError(
                f"the checkpoint is at iteration {self.iteration}, past the requested "
                f"{self.total_iters}; ask for more iterations"
            )
        self.history = [dict(r) for r in ckpt.extra.get("history", [])]
        if self.history and self.history[-1].get("final") and self.iteration < self.total_iters:
            del self.history[-1]["final"]  # a finished run asked for more: an ordinary line now
        self.elapsed = float(ckpt.extra.get("elapsed", 0.0))
        for callback in self.callbacks:
            callback.load_state_dict(ckpt.extra)

    @classmethod
    def resume(cls, path, dataset, out=None, overrides=None, **kwargs) -> Trainer:
        """A Trainer continuing the run saved in checkpoint `path`; `overrides` may change only
        how long and where it runs (xpnet.training.config.resumed_config)."""
        ckpt = load_checkpoint(path)
        config = resumed_config(ckpt, overrides)
        trainer = cls(config, dataset, out if out is not None else Path(path).parent, **kwargs)
        trainer.load_state_dict(ckpt)
        return trainer
