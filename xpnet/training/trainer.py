"""Training: the slides' minibatch SGD loop, with data on the device and no host sync per step.

The training set is moved to the device once. Each epoch's sample order is one permutation drawn on
the host from a generator seeded with (seed, epoch) and moved once; minibatches are slices of it
gathered with `xp.take` on the device. Loss values stay on the device and are read once per log
interval, which is also where a NaN or infinite loss is caught. Because the order depends only on
(seed, epoch), a run resumed from a checkpoint continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from array_api_compat import is_numpy_namespace

from ..backend import Backend, resolve, synchronize
from ..errors import (
    ConfigError,
    DataError,
    LabelError,
    ShapeError,
    TrainingDiverged,
    XpnetError,
    choose,
)
from ..fast.fused import FusedStep, optimizer_kernel
from ..fileio import atomic_write_text
from ..nn.functions import check_labels
from ..nn.initializers import parse_init
from ..nn.network import MultiLayerNet, count_correct
from ..nn.optimizers import make_optimizer
from ..progress import Progress
from .checkpoint import (
    Checkpoint,
    load_checkpoint,
    model_classes,
    restore_params,
    save_checkpoint,
)


@dataclass
class TrainConfig:
    """Everything that defines a training run. The defaults are the slides' configuration."""

    dataset: str = "auto"
    data_dir: str | None = None
    device: str = "auto"
    backend: str | None = None
    dtype: str = "float32"
    model: str = "mlp"  # or "simple-cnn", "deep-cnn" (chapter 7's networks, on image data)
    hidden: list[int] | None = None  # default: [50] (mlp, deep-cnn's Affine), [100] (simple-cnn)
    activation: str = "relu"
    init: str | float = 0.01
    optimizer: str | None = None  # default: the slides' SGD for the mlp, the book's Adam for CNNs
    lr: float | None = None  # default: the slides' 0.1 for SGD, each optimizer's own otherwise
    batchnorm: bool = False  # batch normalization before each hidden activation (mlp, deep-cnn)
    dropout: float | None = None  # dropout ratio after hidden activations; None: 0, deep-cnn's 0.5
    weight_decay: float = 0.0
    batch_size: int = 100
    iters: int = 10_000
    epochs: float | None = None  # if given, overrides iters
    seed: int = 0
    log_every: int | None = None  # default: once per epoch (every few on small datasets)
    checkpoint_every: int | None = None  # default: at every log line
    fused: bool = True  # the fast path (xpnet.fused) where the backend has one; False: the layers

    def __post_init__(self):
        model = choose("model", self.model, MODELS)
        if self.hidden is None:
            self.hidden = [100] if model == "simple-cnn" else [50]
        if self.optimizer is None:
            self.optimizer = "sgd" if model == "mlp" else "adam"
        if self.lr is None:
            name = self.optimizer.lower() if isinstance(self.optimizer, str) else self.optimizer
            self.lr = 0.1 if name == "sgd" else make_optimizer(name).lr

    def validate(self) -> TrainConfig:
        """Raise ConfigError for impossible values (the CLI reports them as usage errors)."""
        checks = [
            (
                self.lr > 0 and math.isfinite(self.lr),
                f"learning rate must be positive, got {self.lr}",
            ),
            (self.batch_size > 0, f"batch size must be positive, got {self.batch_size}"),
            (
                isinstance(self.seed, int) and 0 <= self.seed < 2**63,
                f"seed must be an integer >= 0, got {self.seed!r}",
            ),
            (self.iters > 0, f"iteration count must be positive, got {self.iters}"),
            (
                self.epochs is None or self.epochs > 0,
                f"epoch count must be positive, got {self.epochs}",
            ),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (all(h > 0 for h in self.hidden), f"hidden sizes must be positive, got {self.hidden}"),
            (
                self.log_every is None or self.log_every > 0,
                f"log interval must be positive, got {self.log_every}",
            ),
            (
                self.checkpoint_every is None or self.checkpoint_every > 0,
                f"checkpoint interval must be positive, got {self.checkpoint_every}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        parse_init(self.init)
        return self

    def describe_net(self, input_size: int, output_size: int) -> str:
        init = f"std {self.init}" if isinstance(parse_init(self.init), float) else self.init
        wd = f", weight decay {self.weight_decay}" if self.weight_decay else ""
        if self.model == "simple-cnn":
            return f"SimpleConvNet (conv 30@5x5 - pool - {self.hidden[0]} - {output_size}), init {init}{wd}"
        if self.model == "deep-cnn":
            bn = " with batch norm" if self.batchnorm else ""
            return f"DeepConvNet (6 conv 3x3, 16-16-32-32-64-64 - {self.hidden[0]} - {output_size}){bn}, He init{wd}"
        sizes = "-".join(str(n) for n in [input_size, *self.hidden, output_size])
        extras = (", batch norm" if self.batchnorm else "") + (
            f", dropout {self.dropout}" if self.dropout else ""
        )
        return f"{sizes} {self.activation}, init {init}{wd}{extras}"


#: the networks the Trainer builds: those a checkpoint can name
MODELS = tuple(model_classes())


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the n training samples in `epoch` (host int64): a function of (seed, epoch)
    alone, so a resumed run, and every benchmark runner, takes the same minibatches."""
    return np.random.default_rng([seed, epoch]).permutation(n)


#: batch × parameters under which NumPy's training steps run BLAS on one thread: a second thread
#: costs more to wake than it saves on such small products. Measured on 2 cores: the slides'
#: 784-50-10 net at batch 100 (4·10⁶), 306 µs a step on one thread against 327 µs on two; four
#: hidden layers of 100 (1.1·10⁷), 0.77 against 0.85 ms; 784-1000-1000-10 at batch 1000 (1.8·10⁹),
#: 62 ms against 36 ms; SimpleConvNet (4.3·10⁷) the same either way. Evaluation always uses all.
SMALL_STEP = 2e7


def build_network(config: TrainConfig, data, be: Backend):
    """The network `config` describes, sized for `data` (DeviceData), on `be`."""
    sample, classes = tuple(data.x_train.shape[1:]), data.num_classes
    common = {"device": be, "dtype": config.dtype, "seed": config.seed}
    if config.model == "mlp":
        return MultiLayerNet(
            math.prod(sample), config.hidden, classes, config.activation, config.init,
            config.weight_decay, config.batchnorm, config.dropout or 0.0, **common,
        )  # fmt: skip
    from ..nn.convnet import DeepConvNet, SimpleConvNet

    if config.model == "simple-cnn":
        return SimpleConvNet(
            sample, hidden_size=config.hidden[0], output_size=classes,
            weight_init_std=config.init, weight_decay=config.weight_decay, **common,
        )  # fmt: skip
    dropout = {} if config.dropout is None else {"dropout_ratio": config.dropout}
    return DeepConvNet(
        sample, hidden_size=config.hidden[0], output_size=classes, batchnorm=config.batchnorm,
        weight_decay=config.weight_decay, **dropout, **common,
    )  # fmt: skip


#: the longest default log interval (iterations): a log line and a checkpoint come regularly even
#: for `--epochs 1e9`; on top of it a checkpoint is written at least every CHECKPOINT_SECONDS
MAX_LOG_INTERVAL = 10_000
CHECKPOINT_SECONDS = 600.0
#: at most this many updates run between two looks at the clock and the signal flag
_CHUNK = 1_000


class _Nothing:
    """No signal has arrived, and no bar to draw (what `Trainer.advance` runs the steps with)."""

    signum = None

    def update(self) -> None:
        pass


_NO_SIGNAL = _NO_BAR = _Nothing()


class Interrupted(XpnetError):
    """Training was stopped by SIGINT or SIGTERM; a checkpoint was written."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class _StopSignals:
    """Turn SIGINT/SIGTERM into a flag checked between steps, so a checkpoint is never half a step.

    A second SIGINT while the flag is set raises KeyboardInterrupt at once.
    """

    def __init__(self):
        self.signum: int | None = None
        self._saved: dict = {}

    def _handler(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


@dataclass
class DeviceData:
    """A dataset's arrays on the training device (features in the network dtype, int64 labels)."""

    x_train: object
    t_train: object
    x_test: object
    t_test: object
    num_classes: int
    #: the training images as uint8 codes and the factor that makes them x_train (codes · factor,
    #: the same bits), for gathering a quarter of the bytes each step; None when not image data
    codes_train: object = None
    factor: float = 1.0


def uint8_codes(x: np.ndarray, scale, rows: int = 512) -> np.ndarray | None:
    """The uint8 codes c with c · float32(1/scale) == x exactly, or None when x is not such data.

    Derived from the features themselves (never stored beside them), so features changed after
    loading are never replaced by stale codes; in blocks of `rows`, about 0.1 s for MNIST.
    """
    if not scale or x.dtype != np.float32:
        return None
    factor, codes = np.float32(1 / scale), np.empty(x.shape, np.uint8)
    block = np.empty((min(rows, len(x)), *x.shape[1:]), np.float32)
    back = np.empty_like(block)
    for start in range(0, len(x), rows):
        part = x[start : start + rows]
        b, k = block[: len(part)], back[: len(part)]
        np.rint(np.multiply(part, np.float32(scale), out=b), out=b)
        if b.min() < 0 or b.max() > 255:
            return None
        codes[start : start + rows] = b
        np.multiply(codes[start : start + rows], factor, out=k, dtype=np.float32)
        if not np.array_equal(k, part):
            return None
    return codes


def _codes_to_device(dataset, be: Backend, dtype: str, shape):
    """The training images as uint8 codes on the device, and the factor that makes them the
    float32 features exactly; (None, 1.0) when they are not such data, or not on NumPy."""
    if dtype != "float32" or not is_numpy_namespace(be.xp):
        # elsewhere the cast and the multiply are separate operations a step (on a GPU, two more
        # kernel launches), which cost more than the smaller gather saves
        return None, 1.0
    scale = getattr(dataset, "scale", None)
    codes = uint8_codes(np.asarray(dataset.x_train), scale)
    if codes is None:
        return None, 1.0
    return be.asarray(np.reshape(codes, (codes.shape[0], *(shape or (-1,))))), 1.0 / scale


def _check_labels(t: np.ndarray, num_classes: int, what: str) -> np.ndarray:
    """`what`'s labels as int64 class indices (one-hot rows become their argmax), checked once."""
    t = np.asarray(t)
    if t.ndim == 2:  # one-hot rows
        t = t.argmax(axis=1)
    try:
        check_labels(t, (t.shape[0] if t.ndim else 0, num_classes))
    except (LabelError, ShapeError) as error:
        raise DataError(f"{what} data: {error}") from None
    return t.astype(np.int64, copy=False)


def _split_to_device(x, t, num_classes: int, what: str, be: Backend, dtype, shape=None):
    """One split's features (flattened, or each sample in `shape`, in `dtype`) and checked int64
    labels, on the device."""
    x = be.asarray(np.reshape(x, (x.shape[0], *(shape or (-1,)))), dtype)
    return x, be.asarray(_check_labels(t, num_classes, what))


def to_device(dataset, be: Backend, dtype: str, images: bool = False) -> DeviceData:
    """Validate a host dataset once and move it to the device once (as C×H×W images for CNNs)."""
    shape = None
    if images:
        shape = getattr(dataset, "image_shape", None)
        if shape is None:
            raise DataError(
                f"the {dataset.name} dataset has no image shape, so a CNN cannot train on it; "
                f"use --model mlp"
            )
    if (
        dataset.t_train.shape[0] != dataset.x_train.shape[0]
        or dataset.t_test.shape[0] != dataset.x_test.shape[0]
    ):
        raise DataError("the number of labels differs from the number of samples")
    c = dataset.num_classes
    x_train, t_train = _split_to_device(
        dataset.x_train, dataset.t_train, c, "training", be, dtype, shape
    )
    x_test, t_test = _split_to_device(dataset.x_test, dataset.t_test, c, "test", be, dtype, shape)
    codes, factor = _codes_to_device(dataset, be, dtype, shape)
    return DeviceData(x_train, t_train, x_test, t_test, c, codes, factor)


class Trainer:
    """Runs the training loop, logs per interval, writes metrics and checkpoints into `out`.

    `dataset` is an `xpnet.datasets.Dataset` (or anything with its fields) on the host; it is
    moved to `backend` (default: resolved from the config) once. `verbose=False` prints nothing;
    `progress=None` draws a progress bar only on a terminal. With `out=None` nothing is written.
    `tensorboard=True` also logs each metrics line for TensorBoard into `out` (needs tensorboardX).
    """

    def __init__(
        self,
        config: TrainConfig,
        dataset,
        out=None,
        *,
        verbose=True,
        progress=None,
        backend=None,
        tensorboard=False,
    ):
        self.config = config.validate()
        self.dataset = dataset
        self.be = backend if backend is not None else resolve(config.device, config.backend)
        self.data = to_device(dataset, self.be, config.dtype, images=config.model != "mlp")
        self.n_train = self.data.x_train.shape[0]
        if config.batch_size > self.n_train:
            raise ConfigError(
                f"batch size {config.batch_size} is larger than the training set ({self.n_train} samples)"
            )
        self.steps_per_epoch = max(self.n_train // config.batch_size, 1)
        self.total_iters = (
            math.ceil(config.epochs * self.steps_per_epoch)
            if config.epochs is not None
            else config.iters
        )
        # default: once per epoch, as the slides; on small datasets every few epochs (<= ~50 lines),
        # but never fewer than one line per MAX_LOG_INTERVAL iterations, however long the run
        epochs_per_line = max(1, math.ceil(self.total_iters / self.steps_per_epoch / 50))
        self.log_every = config.log_every or min(
            self.steps_per_epoch * epochs_per_line,
            max(self.steps_per_epoch, MAX_LOG_INTERVAL),
        )
        self.checkpoint_every = config.checkpoint_every
        # a huge --init overflows while the weights are cast to the dtype: the first log line
        # reports that (blaming the init) instead of NumPy's warning
        with np.errstate(over="ignore", invalid="ignore"):
            self.net = build_network(config, self.data, self.be)
        self.optimizer = make_optimizer(config.optimizer, lr=config.lr)
        if config.fused:  # --no-fused: the optimizer's own rules too, not only the layers
            self.optimizer.kernels = optimizer_kernel
        # the same step in fewer operations where the backend has kernels; it reads and writes
        # the layers' own arrays, so the network stays the one source of truth
        self.fused = FusedStep.plan(self.net) if config.fused else None
        self.out = Path(out) if out is not None else None
        self.verbose = verbose
        self.progress = progress
        self.iteration = 0
        self.history: list[dict] = []
        self.elapsed = 0.0  # seconds of training (evaluation included) before this process
        self._losses: list = []  # device scalars since the last log line
        self._carried = (0.0, 0)  # (sum, count) of losses restored from a checkpoint
        self._perm = (None, None)  # (epoch, device permutation)
        self._saved_at = time.perf_counter()  # wall clock of the last checkpoint
        # TensorBoard event files beside metrics.jsonl (which stays the record that is always
        # written); opened when the run starts, so a resumed run knows where to continue
        self._tensorboard = bool(tensorboard and self.out)
        self.tensorboard = None

    # -- resuming -----------------------------------------------------------------------------

    @classmethod
    def resume(cls, path, dataset, out=None, overrides=None, **kwargs) -> Trainer:
        """A Trainer continuing the run saved in checkpoint `path` (options in `overrides` win)."""
        ckpt = load_checkpoint(path)
        config = TrainConfig(**{**ckpt.config, **(overrides or {})})
        trainer = cls(config, dataset, out if out is not None else Path(path).parent, **kwargs)
        trainer.restore(ckpt)
        return trainer

    def restore(self, ckpt: Checkpoint) -> None:
        restore_params(self.net, ckpt)
        state = ckpt.optimizer_state(self.net.backend)
        if state is not None:
            self.optimizer.load_state_dict(state)
        self.iteration = ckpt.iteration
        self.history = [dict(r) for r in ckpt.extra.get("history", [])]
        if self.history and self.history[-1].get("final") and self.iteration < self.total_iters:
            # a finished run asked for more iterations: its final line becomes an ordinary one
            del self.history[-1]["final"]
        self.elapsed = float(ckpt.extra.get("elapsed", 0.0))
        self._carried = (
            float(ckpt.extra.get("loss_sum", 0.0)),
            int(ckpt.extra.get("loss_count", 0)),
        )
        if self.iteration > self.total_iters:
            raise ConfigError(
                f"the checkpoint is at iteration {self.iteration}, past the requested {self.total_iters}; "
                f"ask for more iterations"
            )

    # -- the loop -----------------------------------------------------------------------------

    def _epoch_order(self, epoch: int):
        """This epoch's sample order on the device (drawn on the host, moved once per epoch)."""
        if self._perm[0] != epoch:
            perm = epoch_order(self.config.seed, epoch, self.n_train)
            self._perm = (epoch, self.be.asarray(perm))
        return self._perm[1]

    def blas_threads(self):
        """A context in which the training steps run: on NumPy, BLAS on one thread when the step's
        products are small (batch × parameters under SMALL_STEP), all threads otherwise."""
        n_params = sum(math.prod(p.shape) for p in self.net.params.values())
        if self.be.name != "numpy" or self.config.batch_size * n_params > SMALL_STEP:
            return contextlib.nullcontext()
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # an optional speed-up
            return contextlib.nullcontext()
        return threadpool_limits(1, user_api="blas")

    def advance(self, stop: int) -> None:
        """Train until iteration `stop`: the steps alone, without log lines, checkpoints, a
        progress bar or signal handling (for benchmarks and tests that time or watch the steps)."""
        self._steps(stop, _NO_SIGNAL, _NO_BAR)

    def _steps(self, stop: int, stop_signals: _StopSignals, bar: Progress) -> None:
        """Run updates until `self.iteration == stop` (or a signal arrives)."""
        with self.blas_threads():
            self._run_steps(stop, stop_signals, bar)

    def _run_steps(self, stop: int, stop_signals: _StopSignals, bar: Progress) -> None:
        xp = self.be.xp
        net, opt, B = self.net, self.optimizer, self.config.batch_size
        x, t = self.data.x_train, self.data.t_train
        losses = self._losses
        codes = self.data.codes_train
        if codes is not None:
            # a quarter of the bytes to gather (uint8), normalized as the dataset was: the same
            # float32 values, ~25 µs less per step of the slides' net (docs/performance.md)
            float32, factor = x.dtype, np.float32(self.data.factor)

            def gather_x(i):  # NumPy only: the cast inside the multiply, one pass, no temporary
                return np.multiply(np.take(codes, i, axis=0), factor, dtype=float32)
        else:

            def gather_x(i):
                return xp.take(x, i, axis=0)

        # the data were checked once in to_device, so the step skips the checks
        if self.fused is not None:
            forward_backward = self.fused.forward_backward
        else:

            def forward_backward(xb, tb):
                return net.forward_backward(xb, tb, check=False)

        while self.iteration < stop:
            epoch, k = divmod(self.iteration, self.steps_per_epoch)
            order = self._epoch_order(epoch)
            for j in range(k, min(self.steps_per_epoch, k + stop - self.iteration)):
                idx = order[j * B : (j + 1) * B]
                losses.append(forward_backward(gather_x(idx), xp.take(t, idx, axis=0)))
                opt.update(net.params, net.grads)
                self.iteration += 1
                bar.update()
                if stop_signals.signum is not None:
                    return

    def _loss_so_far(self) -> tuple[float, int]:
        """Sum and count of the losses since the last log line (one host read)."""
        total, count = self._carried
        if self._losses:
            xp = self.be.xp
            total += float(xp.sum(xp.stack(self._losses)))
            count += len(self._losses)
        return total, count

    def _evaluate(self) -> tuple[float, float]:
        d = self.data
        if self.fused is not None:
            predict = self.fused.predict
        else:

            def predict(xb):
                return self.net.predict(xb, train=False)

        chunk = self.net.eval_batch_size
        train = count_correct(predict, d.x_train, d.t_train, chunk)
        test = count_correct(predict, d.x_test, d.t_test, chunk)
        return int(train) / d.x_train.shape[0], int(test) / d.x_test.shape[0]

    def _diverged(self, total: float, count: int) -> TrainingDiverged:
        start = self.history[-1]["iteration"] if self.history else 0
        kept = (
            f"the last finite checkpoint is {self.checkpoint_path} (iteration {start})"
            if self.checkpoint_path and self.checkpoint_path.exists()
            else "no checkpoint was written"
        )
        if self.iteration == 0:  # before any update: the learning rate played no part
            loss = total / max(count, 1)
            xp = self.be.xp
            finite = all(bool(xp.all(xp.isfinite(w))) for w in self.net.params.values())
            if not finite:
                return TrainingDiverged(
                    f"the loss is {loss} before the first update: the initial weights "
                    f"(init {self.config.init}) overflow {self.config.dtype}; use a smaller --init, "
                    f"e.g. 0.01 or he"
                )
            if self.config.weight_decay:
                return TrainingDiverged(
                    f"the loss is {loss} before the first update: the L2 penalty of weight decay "
                    f"{self.config.weight_decay} overflows {self.config.dtype}; use a smaller "
                    f"--weight-decay, e.g. 1e-4"
                )
            return TrainingDiverged(
                f"the loss is {loss} before the first update; check that the data are finite"
            )
        # a resumed run keeps its learning rate, so the advice is a new run, not --resume
        return TrainingDiverged(
            f"the loss became {total / max(count, 1)} between iterations {start} and {self.iteration} "
            f"(lr {self.config.lr}); {kept}. Start a new run with a smaller learning rate, "
            f"e.g. --lr {self.config.lr / 10:g}"
        )

    def _log_line(self, t0: float, final: bool = False) -> dict:
        total, count = self._loss_so_far()
        if not math.isfinite(total):
            raise self._diverged(total, count)
        if count == 0:  # iteration 0: the loss of the first batch, before any update
            idx = self._epoch_order(0)[: self.config.batch_size]
            xp = self.be.xp
            total = float(
                self.net.loss(
                    xp.take(self.data.x_train, idx, axis=0),
                    xp.take(self.data.t_train, idx, axis=0),
                    train=False,
                )
            )
            count = 1
            if not math.isfinite(total):
                raise self._diverged(total, count)
        train_acc, test_acc = self._evaluate()
        self._losses.clear()
        self._carried = (0.0, 0)
        record = {
            "iteration": self.iteration,
            "epoch": round(self.iteration / self.steps_per_epoch, 4),
            "loss": total / count,
            "train_acc": train_acc,
            "test_acc": test_acc,
            "seconds": round(self.elapsed + time.perf_counter() - t0, 4),
        }
        if final:
            record["final"] = True
        self.history.append(record)
        return record

    @property
    def checkpoint_path(self) -> Path | None:
        return self.out / "checkpoint.npz" if self.out else None

    def save(self, path, t0: float) -> Path:
        """Write a checkpoint of the current step (refusing to save a diverged state)."""
        total, count = self._loss_so_far()
        if not math.isfinite(total):
            raise self._diverged(total, count)
        extra = {
            "history": self.history,
            "elapsed": self.elapsed + time.perf_counter() - t0,
            "loss_sum": total,
            "loss_count": count,
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
        self._saved_at = time.perf_counter()
        return save_checkpoint(
            path,
            self.net,
            self.optimizer,
            iteration=self.iteration,
            # the dataset actually used ("digits" after an "auto" fallback), so a resume loads it
            config={**asdict(self.config), "dataset": self.dataset.name},
            extra=extra,
        )

    def _write_metrics(self) -> None:
        if self.out:
            atomic_write_text(
                self.out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.history)
            )

    def _print(self, record: dict, bar: Progress) -> None:
        if not self.verbose:
            return
        label = "final" if record.get("final") else "iter"
        bar.write(
            f"{label} {record['iteration']:5d} / {self.total_iters} | loss {record['loss']:.4f} | "
            f"train acc: {record['train_acc']:.4f} test acc: {record['test_acc']:.4f}"
        )

    @property
    def finished(self) -> bool:
        """True when the run (e.g. one restored from a checkpoint) already ended with its final line."""
        return (
            self.iteration >= self.total_iters
            and bool(self.history)
            and bool(self.history[-1].get("final"))
        )

    def run(self) -> dict:
        """Train to the configured iteration count; return the final metrics record.

        Raises TrainingDiverged on a NaN/inf loss and Interrupted on SIGINT/SIGTERM (after writing
        a checkpoint of the current step). A run that is already finished returns its final record
        and writes nothing.
        """
        if self.finished:
            return self.history[-1]
        if self._tensorboard:
            # a resumed run drops what an interrupted one logged past its checkpoint
            self.tensorboard = open_tensorboard(self.out, purge_step=self.iteration or None)
        t0 = time.perf_counter()
        self._saved_at = t0
        total = self.total_iters
        # overflow to inf/NaN is detected from the loss at the next log line, with advice; NumPy's
        # own floating-point warnings would only repeat it less clearly
        quiet = np.errstate(over="ignore", invalid="ignore", divide="ignore")
        try:
            with (
                quiet,
                _StopSignals() as stop_signals,
                Progress(total, "train", enabled=self.progress) as bar,
            ):
                bar.set(self.iteration)
                if self.iteration == 0:
                    self._emit(self._log_line(t0), bar)
                while self.iteration < total:
                    targets = [
                        total,
                        (self.iteration // self.log_every + 1) * self.log_every,
                        self.iteration + _CHUNK,
                    ]
                    if self.checkpoint_every:
                        targets.append(
                            (self.iteration // self.checkpoint_every + 1) * self.checkpoint_every
                        )
                    self._steps(min(targets), stop_signals, bar)
                    if stop_signals.signum is not None:
                        raise self._interrupt(stop_signals.signum, t0)
                    if self.iteration == total:
                        break
                    saved = False
                    if self.iteration % self.log_every == 0:
                        self._emit(self._log_line(t0), bar)
                        if self.checkpoint_every is None and self.out:
                            self.save(self.checkpoint_path, t0)
                            saved = True
                    if (
                        self.checkpoint_every
                        and self.iteration % self.checkpoint_every == 0
                        and self.out
                    ):
                        self.save(self.checkpoint_path, t0)
                        saved = True
                    # a long interval must not mean hours without a checkpoint
                    late = time.perf_counter() - self._saved_at > CHECKPOINT_SECONDS
                    if not saved and late and self.out:
                        self.save(self.checkpoint_path, t0)
                synchronize(self.net.params["W1"])
                record = self._log_line(t0, final=True)
                self._emit(record, bar)
                if self.out:
                    self.save(self.checkpoint_path, t0)
                    self.save(self.out / "model.npz", t0)
        finally:
            if self.tensorboard is not None:
                self.tensorboard.close()
                self.tensorboard = None
        return record

    def _emit(self, record: dict, bar: Progress) -> None:
        self._print(record, bar)
        self._write_metrics()
        if self.tensorboard is not None:
            step = record["iteration"]
            for tag, key in TENSORBOARD_TAGS.items():
                self.tensorboard.add_scalar(tag, record[key], step)
            self.tensorboard.flush()

    def _interrupt(self, signum: int, t0: float) -> Interrupted:
        name = signal.Signals(signum).name
        if not self.out:
            return Interrupted(
                f"{name} at iteration {self.iteration}; nothing saved (no output folder)", signum
            )
        path = self.save(self.checkpoint_path, t0)
        return Interrupted(
            f"{name} at iteration {self.iteration} of {self.total_iters}; checkpoint saved to {path}. "
            f"Resume with: python scripts/train.py --resume {path}",
            signum,
        )


#: TensorBoard tag -> metrics.jsonl key (the accuracies share one section)
TENSORBOARD_TAGS = {"loss": "loss", "accuracy/train": "train_acc", "accuracy/test": "test_acc"}


def open_tensorboard(out: Path, purge_step: int | None = None):
    """A tensorboardX SummaryWriter logging into `out` (`tensorboard --logdir runs` shows all runs)."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ConfigError(
            "--tensorboard needs tensorboardX: pip install 'xpnet[tensorboard]' (or tensorboardX)"
        ) from None
    return SummaryWriter(logdir=str(out), purge_step=purge_step)


def accuracy_of(path, dataset, device="cpu", backend=None) -> float:
    """Test accuracy of the model saved at `path` on `dataset`, on any backend."""
    from .checkpoint import load_model

    net = load_model(path, device, backend)
    shape = dataset.image_shape if net.sample_ndim == 3 else None
    x, t = _split_to_device(
        dataset.x_test, dataset.t_test, dataset.num_classes, "test", net.backend, net.dtype, shape
    )
    return net.accuracy(x, t)
