"""A training run's configuration: the slides' defaults, each model's own, and only options that act.

An option the chosen model does not take is refused, never ignored: a run records what took
effect, and a resume enforces what it recorded. The rules of a resume live here too, so every
caller (the command line, a script, the search) gets the same: a resumed run keeps what defines
its model and its minibatches, and may only change how long it runs and where.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from ..errors import ConfigError, choose
from ..nn.convnet import DeepConvNet, SimpleConvNet
from ..nn.initializers import parse_init
from ..nn.mlp import MultiLayerNet
from ..nn.optimizers import make_optimizer
from .checkpoint import model_classes

#: the networks the Trainer builds: those a checkpoint can name
MODELS = tuple(model_classes())

#: what a resumed run keeps: its model, its optimizer and its minibatches
FIXED_ON_RESUME = (
    "dataset", "model", "hidden", "activation", "init", "optimizer", "lr", "weight_decay",
    "batch_size", "seed", "dtype", "batchnorm", "dropout",
)  # fmt: skip

#: a bound on the number of updates: far more than any run can finish, and still exact in a float
MAX_ITERATIONS = 10**12


@dataclass
class TrainConfig:
    """Everything that defines a training run. The defaults are the slides' configuration.

    Options left at None take the model's own default: init 0.01 (mlp, simple-cnn) or He
    (deep-cnn); dropout 0 (mlp) or 0.5 (deep-cnn); hidden [50] (mlp, deep-cnn's Affine) or [100]
    (simple-cnn); the slides' SGD with lr 0.1 for the mlp, the book's Adam (lr 0.001) for the CNNs.
    """

    dataset: str = "auto"
    data_dir: str | None = None
    device: str = "auto"
    backend: str | None = None
    dtype: str = "float32"
    model: str = "mlp"  # or "simple-cnn", "deep-cnn" (chapter 7's networks, on image data)
    hidden: list[int] | None = None
    activation: str = "relu"
    init: str | float | None = None
    optimizer: str | None = None
    lr: float | None = None
    batchnorm: bool = False  # batch normalization before each hidden activation (mlp, deep-cnn)
    dropout: float | None = None  # dropout ratio after hidden activations (mlp, deep-cnn)
    weight_decay: float = 0.0
    batch_size: int = 100
    iters: int = 10_000
    epochs: float | None = None  # if given, overrides iters
    seed: int = 0
    log_every: int | None = None  # default: once per epoch (every few on small datasets)
    checkpoint_every: int | None = None  # default: at every log line
    eval_samples: int | None = None  # log lines before the last measure the first N samples only
    fused: bool = True  # the fast path (xpnet.fast) where the backend has one; False: the layers

    def __post_init__(self):
        model = choose("model", self.model, MODELS)
        if self.hidden is None:
            self.hidden = [100] if model == "simple-cnn" else [50]
        if self.init is None:
            self.init = "he" if model == "deep-cnn" else 0.01
        if self.dropout is None:
            self.dropout = 0.5 if model == "deep-cnn" else 0.0
        if self.optimizer is None:
            self.optimizer = "sgd" if model == "mlp" else "adam"
        if self.lr is None:
            name = self.optimizer.lower() if isinstance(self.optimizer, str) else self.optimizer
            self.lr = 0.1 if name == "sgd" else make_optimizer(name).lr

    def validate(self) -> TrainConfig:
        """Raise ConfigError for impossible values and for options the model does not take."""
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
            (
                0 < self.iters <= MAX_ITERATIONS,
                f"iteration count must be positive, got {self.iters}",
            ),
            (
                self.epochs is None or 0 < self.epochs < math.inf,
                f"epoch count must be positive, got {self.epochs}",
            ),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (all(h > 0 for h in self.hidden), f"hidden sizes must be positive, got {self.hidden}"),
            (0 <= self.dropout < 1, f"dropout ratio must be in [0, 1), got {self.dropout}"),
            (
                self.log_every is None or self.log_every > 0,
                f"log interval must be positive, got {self.log_every}",
            ),
            (
                self.checkpoint_every is None or self.checkpoint_every > 0,
                f"checkpoint interval must be positive, got {self.checkpoint_every}",
            ),
            (
                self.eval_samples is None or self.eval_samples > 0,
                f"the evaluation sample count must be positive, got {self.eval_samples}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        parse_init(self.init)
        self._check_model_options()
        if self.batchnorm and self.batch_size < 2:
            raise ConfigError(
                "--batchnorm normalizes over the batch and needs 2 or more samples in it; "
                "use --batch-size 2 or more"
            )
        return self

    def _check_model_options(self) -> None:
        """Refuse every option the chosen model would ignore (a silent wrong result otherwise)."""
        model = self.model
        if model == "mlp":  # takes every option (its activation is checked by the network)
            return
        refused = []
        if len(self.hidden) != 1:
            refused.append(
                f"--hidden {' '.join(map(str, self.hidden))} ({model} has one hidden Affine "
                f"layer: give one size)"
            )
        if self.activation != "relu":
            refused.append(f"--activation {self.activation} ({model} uses ReLU, as the book's)")
        if model == "simple-cnn":
            if self.batchnorm:
                refused.append("--batchnorm (simple-cnn has no batch normalization)")
            if self.dropout:
                refused.append(f"--dropout {self.dropout} (simple-cnn has no dropout layers)")
        if model == "deep-cnn" and parse_init(self.init) != "he":
            refused.append(f"--init {self.init} (deep-cnn always starts from He weights)")
        if refused:
            raise ConfigError(
                f"{model} does not take {'; '.join(refused)}; drop the option, or use --model mlp"
            )

    def epochs_or_iters(self) -> str:
        return f"{self.epochs} epochs" if self.epochs is not None else f"{self.iters} iterations"

    def describe_net(self, input_size: int, output_size: int) -> str:
        """One line naming the network and what shapes it: only options that take effect."""
        init = parse_init(self.init)
        init = f"init std {init}" if isinstance(init, float) else f"init {init}"
        wd = f", weight decay {self.weight_decay}" if self.weight_decay else ""
        if self.model == "simple-cnn":
            return (
                f"SimpleConvNet (conv 30@5x5 - pool - {self.hidden[0]} - {output_size}), {init}{wd}"
            )
        if self.model == "deep-cnn":
            bn = " with batch norm" if self.batchnorm else ""
            drop = f", dropout {self.dropout}" if self.dropout else ", no dropout"
            return (
                f"DeepConvNet (6 conv 3x3, 16-16-32-32-64-64 - {self.hidden[0]} - {output_size})"
                f"{bn}, He init{drop}{wd}"
            )
        sizes = "-".join(str(n) for n in [input_size, *self.hidden, output_size])
        extras = (", batch norm" if self.batchnorm else "") + (
            f", dropout {self.dropout}" if self.dropout else ""
        )
        return f"{sizes} {self.activation}, {init}{wd}{extras}"

    @classmethod
    def from_saved(cls, saved: dict) -> TrainConfig:
        """The configuration a checkpoint recorded, as it took effect.

        Checkpoints written before options were checked against the model may record options
        their model ignored (a CNN's --activation, simple-cnn's --dropout and --batchnorm,
        deep-cnn's --init, extra --hidden sizes): those are replaced by what the model used.
        """
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in saved.items() if k in known}
        model = values.get("model", "mlp")
        if model in ("simple-cnn", "deep-cnn"):
            values["activation"] = "relu"
            if values.get("hidden"):
                values["hidden"] = list(values["hidden"][:1])
        if model == "simple-cnn":
            values.update(batchnorm=False, dropout=0.0)
        if model == "deep-cnn":
            values["init"] = "he"
        return cls(**values)


def _same(option: str, given, saved) -> bool:
    if option == "init":  # "0.01", 0.01 and 1e-2 are one std; names ignore case
        try:
            return parse_init(given) == parse_init(saved)
        except ConfigError:
            return False
    if option in ("lr", "weight_decay", "dropout") and given is not None and saved is not None:
        return float(given) == float(saved)
    return given == saved


def _show(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def check_unchanged(config: TrainConfig, saved: TrainConfig, options=FIXED_ON_RESUME) -> None:
    """Refuse a resume that would change what defines the run (ConfigError naming each option)."""
    changed = [k for k in options if not _same(k, getattr(config, k), getattr(saved, k))]
    if changed:
        diffs = ", ".join(
            f"--{k.replace('_', '-')} {_show(getattr(config, k))} "
            f"(the run used {_show(getattr(saved, k))})"
            for k in changed
        )
        raise ConfigError(
            f"{diffs}: a resumed run keeps its settings; drop them to resume, or start a new run"
        )


def resumed_config(ckpt, changes: dict | None = None) -> TrainConfig:
    """The configuration of the run saved in checkpoint `ckpt`, resumed with `changes`.

    Only how long it runs and where may change (iters, epochs, device, backend, log and
    checkpoint intervals, the fast path); a change to anything in FIXED_ON_RESUME is refused.
    """
    saved = dict(ckpt.config)
    # the dataset actually used: checkpoints from before it was recorded say "auto"
    used = ckpt.extra.get("dataset", {}).get("name") if isinstance(ckpt.extra, dict) else None
    if saved.get("dataset") == "auto" and used:
        saved["dataset"] = used
    base = TrainConfig.from_saved(saved)
    changes = dict(changes or {})
    if "epochs" in changes or "iters" in changes:  # a new length replaces the old one entirely
        changes.setdefault("epochs", None)
        if changes["epochs"] is not None:
            changes.setdefault("iters", TrainConfig.iters)
    merged = {f.name: getattr(base, f.name) for f in fields(TrainConfig)}
    config = TrainConfig(**{**merged, **changes})
    fixed = [k for k in FIXED_ON_RESUME if k in changes]
    check_unchanged(config, base, fixed)
    return config


def build_network(config: TrainConfig, sample_shape: tuple, classes: int, be):
    """The network `config` describes, for samples of `sample_shape` and `classes` classes, on `be`."""
    common = {"device": be, "dtype": config.dtype, "seed": config.seed}
    if config.model == "mlp":
        return MultiLayerNet(
            math.prod(sample_shape), config.hidden, classes, config.activation, config.init,
            config.weight_decay, config.batchnorm, config.dropout, **common,
        )  # fmt: skip
    if config.model == "simple-cnn":
        return SimpleConvNet(
            sample_shape, hidden_size=config.hidden[0], output_size=classes,
            weight_init_std=config.init, weight_decay=config.weight_decay, **common,
        )  # fmt: skip
    return DeepConvNet(
        sample_shape, hidden_size=config.hidden[0], output_size=classes, batchnorm=config.batchnorm,
        weight_decay=config.weight_decay, dropout_ratio=config.dropout, **common,
    )  # fmt: skip
