"""The parts of training around the loop: callbacks, and the readers among them.

A callback is called at fixed points of `Trainer.run` (xpnet.training.trainer): the loop itself
only draws batches, steps and updates. Each log interval has three phases: readers measure into
the interval's record (`on_interval`: the loss meter, the divergence guard, the evaluation), the
interval is closed at its step (`on_close`: per-interval sums start over, a checkpoint due takes
what it needs), then, once the record is complete, writers emit it (`on_record`: the console, the
metrics file, TensorBoard, the checkpointer; in xpnet.training.writers). The record is complete at
once, except where the evaluation runs on a worker thread while the steps go on (`Evaluation`):
then it is emitted a few steps later, in order, with the same numbers. A callback keeps its own state in the
checkpoint (`state_dict` / `load_state_dict`; the keys of all callbacks share one namespace, the
checkpoint's ``extra``). Writers are marked `one_process`: a data-parallel run gives them to one
process only.

The reductions (`trainer.comm.sum`) are the identity in one process; in a data-parallel run they
add up the processes' shares once per log line, never per step.
"""

from __future__ import annotations

import math
from concurrent import futures

from array_api_compat import array_namespace

from ..errors import TrainingDiverged, XpnetError


class Callback:
    """A part of training that the Trainer calls at fixed points. Every hook is optional."""

    #: callbacks run in ascending order: signals first, readers, the guard, then writers
    order = 50
    #: True for writers (files, console): a data-parallel run gives them to one process only
    one_process = False

    def on_fit_start(self, trainer) -> None:
        """Before the first step of this `run` (a resumed run too)."""

    def on_after_backward(self, trainer) -> None:
        """The gradients are in the layers, the update has not happened yet (every step)."""

    def on_step_end(self, trainer, loss) -> None:
        """After the update; `loss` is the step's loss as a 0-d device array (every step)."""

    def on_interval(self, trainer, record: dict) -> None:
        """A log line is due: measure into `record` (readers) or refuse it (the guard)."""

    def on_close(self, trainer, record: dict) -> None:
        """The interval ends at this step (its evaluation may still be running on a worker):
        start per-interval state over, take now what must be of this step."""

    def on_record(self, trainer, record: dict) -> None:
        """The log line's record is complete and in `trainer.history`: emit it (writers)."""

    def on_save(self, trainer) -> None:
        """A checkpoint is about to be written: raise to refuse it."""

    def on_fit_end(self, trainer, reason: str) -> None:
        """`run` ends: reason is "done", "signal" or "error" (the exception propagates)."""

    def state_dict(self) -> dict:
        """What this callback needs to continue after a resume (JSON and arrays)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a checkpoint's saved state (all callbacks' keys: take your own)."""


class Interrupted(XpnetError):
    """Training was stopped by SIGINT or SIGTERM; a checkpoint was written."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class StopRequested(Exception):
    """A signal arrived while a callback was working (an evaluation): stop at this step."""


class FileQueue(Callback):
    """Writes the run's files (config.json, metrics.jsonl, checkpoints) on a thread of its own,
    one after another in the order asked, so the steps never wait for the disk: each atomic
    write ends in two fsyncs, 1 to 40 ms apiece on the 2-core machine (docs/performance.md §17).

    `submit` raises the first earlier write that failed; `wait` returns once every write asked
    is done, raising the first failure. A line's writes run beside the next interval's steps, no
    further: each log line waits for the previous line's (`on_interval`), so when a line is
    printed the checkpoint of the line before is on disk, as it was when the writes were made in
    the loop (a killed run loses no more). The run also waits at its end (`on_fit_end`, after the
    other writers') and before it reports a checkpoint saved on a signal: when `run` returns,
    every file is on disk. Every process of a data-parallel run has one (rank 0's writes).
    """

    order = 99

    def __init__(self):
        self._pool: futures.ThreadPoolExecutor | None = None
        self._jobs: list[futures.Future] = []

    def submit(self, write, *args) -> None:
        """Call write(*args) on the queue's thread, after every write asked before it."""
        done = [job for job in self._jobs if job.done()]
        self._jobs = [job for job in self._jobs if not job.done()]
        for job in done:
            job.result()  # an earlier write failed: say so now, not at the end of the run
        if self._pool is None:
            self._pool = futures.ThreadPoolExecutor(1, thread_name_prefix="xpnet-files")
        self._jobs.append(self._pool.submit(write, *args))

    def settle(self) -> None:
        """Wait for every write asked so far, raising nothing (`wait` or `submit` will)."""
        futures.wait(self._jobs)

    def wait(self) -> None:
        """Wait for every write asked so far; raise the first that failed."""
        self.settle()
        jobs, self._jobs = self._jobs, []
        for job in jobs:
            job.result()

    def on_interval(self, trainer, record: dict) -> None:
        self.wait()  # the previous line's files, written while this interval's steps ran

    def on_fit_end(self, trainer, reason: str) -> None:
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None


class LossMeter(Callback):
    """The mean training loss over each log interval, read from the device once per log line.

    The step losses stay on the device as 0-d arrays until the log line (no host sync per step).
    The sum and count of an unfinished interval are saved, so a run resumed mid-interval reports
    the loss of one that was never stopped (to the rounding of float32 partial sums). At iteration
    0 the loss is that of the first batch before any update.

    In a data-parallel run a step's loss is the mean of the processes' (each the mean over its
    share of the global batch); the sums are added up once per log line, and the saved partial
    sum is the whole run's, so any number of processes resumes it.
    """

    order = 10

    def __init__(self):
        self.losses: list = []  # device scalars since the last log line
        self.carried = (0.0, 0)  # (sum, count) of the whole run, restored from a checkpoint
        self._at_save: tuple[float, int] | None = None  # so_far at the save under way

    def on_step_end(self, trainer, loss) -> None:
        self.losses.append(loss)

    def _local(self) -> tuple[float, int]:
        """Sum and count of this process's losses since the last log line (one host read)."""
        if not self.losses:
            return 0.0, 0
        xp = array_namespace(self.losses[0])
        return float(xp.sum(xp.stack(self.losses))), len(self.losses)

    def so_far(self, trainer) -> tuple[float, int]:
        """Sum and count of the steps' losses since the last log line, over all processes (a
        reduction every process takes part in)."""
        total, count = self._local()
        size = trainer.comm.size
        if size > 1:
            total, count = trainer.comm.sum([total, count])
            total, count = total / size, int(count) // size
        return self.carried[0] + total, self.carried[1] + count

    def on_interval(self, trainer, record: dict) -> None:
        total, count = self.so_far(trainer)
        if count == 0:  # iteration 0: the loss of the first batch, before any update
            x, t = trainer.sampler.batch(0)
            with trainer.blas_threads():  # as the steps compute theirs, overlapped or not
                loss = float(trainer.net.loss(x, t, train=False))
            (total,), count = trainer.comm.sum([loss]), 1
            total /= trainer.comm.size
        record["loss"] = total / count

    def on_close(self, trainer, record: dict) -> None:
        self.losses.clear()
        self.carried = (0.0, 0)

    def on_save(self, trainer) -> None:
        self._at_save = self.so_far(trainer)

    def state_dict(self) -> dict:
        if self._at_save is not None:  # the save under way: the whole run's partial sums
            (total, count), self._at_save = self._at_save, None
        else:  # the same host read a log line makes, at a checkpoint only
            total, count = self._local()
            total, count = self.carried[0] + total, self.carried[1] + count
        return {"loss_sum": total, "loss_count": count}

    def load_state_dict(self, state: dict) -> None:
        self.losses.clear()
        self.carried = (float(state.get("loss_sum", 0.0)), int(state.get("loss_count", 0)))


class DivergenceGuard(Callback):
    """Stops a run whose loss or weights are no longer finite, with advice, and refuses to write
    a checkpoint from non-finite weights (the last finite one is kept)."""

    order = 20

    def on_interval(self, trainer, record: dict) -> None:
        loss = record.get("loss", 0.0)
        if not math.isfinite(loss):
            raise self.diverged(trainer, loss)
        if not trainer.weights_finite():  # the last updates, after the last loss was computed
            raise self.diverged(trainer, loss, weights=True)

    def on_save(self, trainer) -> None:
        meter = trainer.callback(LossMeter)
        loss = meter.so_far(trainer)[0] if meter is not None else 0.0
        if not math.isfinite(loss):
            raise self.diverged(trainer, loss)
        if not trainer.weights_finite():  # an update since the last loss made them inf or NaN
            raise self.diverged(trainer, loss, weights=True)

    def diverged(self, trainer, loss: float, weights: bool = False) -> TrainingDiverged:
        config = trainer.config
        start = trainer.history[-1]["iteration"] if trainer.history else 0
        files = trainer.callback(FileQueue)
        if files is not None:  # a checkpoint still being written counts once it is on disk
            files.settle()
        saved = trainer.last_checkpoint  # (path, iteration) of this process's last, or None
        kept = (
            f"the last finite checkpoint is {saved[0]} (iteration {saved[1]})"
            if saved is not None
            else "no checkpoint was written"
        )
        if trainer.iteration == 0:  # before any update: the learning rate played no part
            if not trainer.weights_finite():
                return TrainingDiverged(
                    f"the loss is {loss} before the first update: the initial weights "
                    f"(init {config.init}) overflow {config.dtype}; use a smaller --init, "
                    f"e.g. 0.01 or he"
                )
            if config.weight_decay:
                return TrainingDiverged(
                    f"the loss is {loss} before the first update: the L2 penalty of weight decay "
                    f"{config.weight_decay} overflows {config.dtype}; use a smaller "
                    f"--weight-decay, e.g. 1e-4"
                )
            return TrainingDiverged(
                f"the loss is {loss} before the first update; check that the data are finite"
            )
        what = "the weights became inf or NaN" if weights else f"the loss became {loss}"
        # a resumed run keeps its learning rate, so the advice is a new run, not --resume
        return TrainingDiverged(
            f"{what} between iterations {start} and {trainer.iteration} (lr {config.lr}); "
            f"{kept}. Start a new run with a smaller learning rate, e.g. --lr {config.lr / 10:g}"
        )


class Evaluation(Callback):
    """Train and test accuracy at every log line, in chunks of the network's evaluation batch.

    With `config.eval_samples` = N, every line but the last measures the first N samples of each
    set (as the book's Trainer does; the record says so in "evaluated_on"), the last all of them.

    Between chunks it looks for a stop request, so a signal during a long evaluation is acted on
    at once (the unfinished line is dropped; the checkpoint is of the current step). In a
    data-parallel run each process counts its share of the rows and the counts are added once.

    Overlapped (`overlapping`: NumPy, a fused fully connected step small enough that BLAS runs it
    on one thread, one process, an evaluation of at most OVERLAP_MAX_WORK): the second core is
    idle during the steps, so each line but the last is evaluated there, on a worker thread, on a
    copy of the weights taken at the line's step, while the steps go on (BLAS and NumPy's loops
    release the GIL); the trainer emits the line once it is done. The final line counts the train
    set on the worker and the test set on the main thread. BLAS stays on one thread for the whole
    run (no thread count changes under a running evaluation), so the run overlaps only where one
    thread can give the bits all threads give, checked on the run's own weights, rows and chunk
    shapes: OpenBLAS 0.3.31 splits the sum over k of MNIST's first layer between two threads,
    and one thread summing the same halves gives its bits (xpnet.training.exact); where no such
    sum is found, the lines are evaluated between the steps. Such an evaluation takes well under
    a second: a stop request waits for it and the line it measures is kept.
    """

    order = 30
    #: rows × parameters of the largest evaluation run on the worker (MNIST's 70,000 rows on the
    #: slides' 784-50-10 net: 2.8·10⁹); larger ones run as before, between the steps
    OVERLAP_MAX_WORK = 1e10

    def __init__(self):
        self.worker = None  # the thread that evaluates while the steps go on (overlapped only)
        self.cuts = None  # how one BLAS thread sums the scores as all threads do (overlapped)
        self._one_thread = None  # the BLAS limit held for the whole run (overlapped only)

    def overlapping(self, trainer) -> bool:
        """Whether this run's evaluations go to a worker thread (see the class docstring)."""
        return self._overlap_cuts(trainer) is not None

    def _overlap_cuts(self, trainer):
        """The cuts of the worker's exact predictions (xpnet.training.exact), or None where the
        run does not overlap."""
        if trainer.comm.size > 1:  # data-parallel: each process evaluates a share, as before
            return None
        if not hasattr(trainer.fused, "frozen") or not trainer.steps_on_one_thread():
            return None  # GPU, torch (threads of its own), the layers, or steps on all cores
        d, params = trainer.data, sum(math.prod(p.shape) for p in trainer.net.params.values())
        if (d.x_train.shape[0] + d.x_test.shape[0]) * params > self.OVERLAP_MAX_WORK:
            return None
        from .exact import one_thread_cuts

        return one_thread_cuts(trainer)

    def on_fit_start(self, trainer) -> None:
        self.cuts = self._overlap_cuts(trainer)
        if self.cuts is None:
            return
        from concurrent.futures import ThreadPoolExecutor

        self._one_thread = trainer.blas_threads()
        self._one_thread.__enter__()
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="xpnet-evaluation")

    def on_fit_end(self, trainer, reason: str) -> None:
        if self.worker is not None:
            self.worker.shutdown(wait=True, cancel_futures=True)
            self.worker = None
        if self._one_thread is not None:
            self._one_thread.__exit__(None, None, None)
            self._one_thread = None

    def on_interval(self, trainer, record: dict) -> None:
        d, net = trainer.data, trainer.net
        if trainer.fused is not None:
            predict = trainer.fused.predict
        else:

            def predict(xb):
                return net.predict(xb, train=False)

        chunk = net.eval_batch_size
        n = trainer.config.eval_samples
        final = trainer.iteration >= trainer.total_iters
        if final:
            n = None  # the final line: the whole sets
        sets = [(x[:n, ...], t[:n, ...]) for x, t in ((d.x_train, d.t_train), (d.x_test, d.t_test))]
        some = n is not None and n < max(d.x_train.shape[0], d.x_test.shape[0])
        if self.worker is None:
            counts = [self.count_correct(trainer, predict, x, t, chunk) for x, t in sets]
        elif final:  # nothing left to overlap: both cores on the two sets
            predict = trainer.fused.cut(self.cuts).predict
            train = self.worker.submit(self.count_correct, trainer, predict, *sets[0], chunk, False)
            counts = [None, self.count_correct(trainer, predict, *sets[1], chunk, False)]
            counts[0] = train.result()
        else:  # the keys now, in their order; the numbers when the worker has them
            record.update({"train_acc": None, "test_acc": None})
            record.update({"evaluated_on": n} if some else {})
            predict = trainer.fused.frozen(self.cuts).predict  # this step's weights, copied
            job = self.worker.submit(self._accuracies, trainer, predict, sets, chunk)
            trainer.defer(record, job)
            return
        record.update(self._accuracies(trainer, None, sets, chunk, counts))
        record.update({"evaluated_on": n} if some else {})

    @classmethod
    def _accuracies(cls, trainer, predict, sets, chunk, counts=None) -> dict:
        """{"train_acc", "test_acc"} of `sets`, counting with `predict` unless `counts` are given."""
        if counts is None:  # on the worker: a stop request waits for it (it takes little time)
            counts = [cls.count_correct(trainer, predict, x, t, chunk, False) for x, t in sets]
        train, test = trainer.comm.sum([int(c) for c in counts])  # the host reads, once per set
        return {"train_acc": train / sets[0][0].shape[0], "test_acc": test / sets[1][0].shape[0]}

    @staticmethod
    def count_correct(trainer, predict, x, t, chunk: int, stoppable: bool = True) -> int:
        """Correct predictions among this process's share of the rows of (x, t), on the device;
        between chunks a stop request ends it (StopRequested) when `stoppable`."""
        xp = trainer.be.xp
        n, rank, size = x.shape[0], trainer.comm.rank, trainer.comm.size
        start, stop = n * rank // size, n * (rank + 1) // size
        correct = 0
        for i in range(start, stop, chunk):
            if stoppable and trainer.stop_signal is not None:
                raise StopRequested
            j = min(i + chunk, stop)
            hits = xp.argmax(predict(x[i:j, ...]), axis=1) == t[i:j]
            correct = correct + xp.sum(xp.astype(hits, xp.int64))
        return correct
