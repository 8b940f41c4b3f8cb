"""The catalogue of comparisons: each one configuration and the variants that differ in one respect.

A `Comparison` names the TrainConfig fields every variant shares (`base`) and its `Variant`s, each
a label and the fields that set it apart. Chapter 6 and 7's comparisons (`batchnorm`, `overfit`,
`cnn`) follow the book's figures: they run for a number of epochs rather than iterations, may
train on the first `n_train` training samples only (the book's `x_train[:N]`), and are drawn
against epochs as small multiples: one panel per `Variant.panel`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...nn.optimizers import OPTIMIZERS

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
INIT_TITLES = {"xavier": "Xavier", "lecun": "LeCun", "glorot": "Glorot", "he": "He"}
ACTIVATION_TITLES = {"relu": "ReLU", "sigmoid": "sigmoid", "tanh": "tanh"}
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
        f"{ACTIVATION_TITLES[name]}, {layers}",
        {"hidden": hidden, "activation": name, "init": init},
        style,
    )


def _init(activation: str, init) -> Variant:
    title = f"std {init}" if isinstance(init, float) else INIT_TITLES[init]
    return Variant(
        f"{ACTIVATION_TITLES[activation]}, {title}",
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
