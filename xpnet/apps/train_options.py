"""The `train` command's options: what each means, and which TrainConfig fields they set."""

from __future__ import annotations

import argparse

from ..backend import BACKENDS, DEVICES, DTYPES
from ..data import DATASETS
from ..nn.layers import ACTIVATIONS
from ..training.config import MODELS, TrainConfig
from .common import fraction, non_negative_float, positive_float, positive_int, seed_int

DATASET_CHOICES = ("auto", *DATASETS)


def init_value(text: str):
    """--init: a number (compared by value on --resume, so "0.01" equals 0.01) or a name."""
    try:
        return float(text)
    except ValueError:
        return text


# what the run writes into its folder; --overwrite removes them first, so nothing stale remains
OUTPUT_FILES = (
    "config.json", "metrics.jsonl", "model.npz", "checkpoint.npz", "curves.png",
    "events.out.tfevents.*",
)  # fmt: skip


def build_parser(prog: str = "train.py") -> argparse.ArgumentParser:
    d = TrainConfig()
    from ..nn.optimizers import OPTIMIZERS

    p = argparse.ArgumentParser(
        prog=prog,
        description="Train a network with hand-written backprop (xpnet). The defaults reproduce "
        "the slides: a 784-50-10 ReLU net, SGD lr 0.1, batch 100, 10,000 iterations on MNIST (about "
        "97% test accuracy, seconds on a CPU). --model simple-cnn and deep-cnn train the book's "
        "chapter 7 and 8 convolutional networks (Adam lr 0.001; 98.9% and 99.4% after 20 epochs, "
        "minutes to an hour on a CPU).",
        epilog="Outputs go to --out: config.json (what ran, as it took effect), metrics.jsonl (one "
        "line per epoch, the last the final result), curves.png, checkpoint.npz (for --resume) and "
        "model.npz (the trained model, loadable on any backend with xpnet.load_model).",
    )
    g = p.add_argument_group("where to run")
    g.add_argument("--device", choices=DEVICES, default=None,
                   help="auto: the GPU when CuPy sees one, else the CPU; cuda without a GPU warns "
                   "and falls back to the CPU (default: auto)")  # fmt: skip
    g.add_argument("--backend", choices=BACKENDS, default=None,
                   help="array library (default: cupy for cuda, numpy for cpu)")  # fmt: skip
    g.add_argument(
        "--dtype", choices=DTYPES, default=None, help=f"floating dtype (default: {d.dtype})"
    )
    g.add_argument("--no-fused", dest="fused", action="store_const", const=False, default=None,
                   help="run every step through the layers themselves (the book's code), not "
                   "the fused kernels of xpnet.fast; the same numbers up to rounding, slower")  # fmt: skip

    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASET_CHOICES, default=None,
                   help="auto: MNIST if it is on disk or can be downloaded, else scikit-learn's "
                   "offline 8x8 digits (with a notice); naming mnist never falls back (default: auto)")  # fmt: skip
    g.add_argument("--data-dir", metavar="DIR", default=None,
                   help="folder holding the dataset files (it must exist); default: $XPNET_DATA_DIR, "
                   "else ~/.cache/xpnet, where missing files are downloaded")  # fmt: skip

    g = p.add_argument_group("model")
    g.add_argument("--model", choices=MODELS, default=None,
                   help="mlp: fully connected (the slides'); simple-cnn, deep-cnn: the book's chapter 7 "
                   "convolutional networks (default optimizer for these: adam, lr 0.001) (default: mlp)")  # fmt: skip
    g.add_argument("--batchnorm", action="store_const", const=True, default=None,
                   help="batch normalization before each hidden activation (mlp, deep-cnn)")  # fmt: skip
    g.add_argument("--dropout", type=fraction, default=None, metavar="RATIO",
                   help="dropout ratio after each hidden activation (default: 0; deep-cnn: 0.5)")  # fmt: skip
    g.add_argument("--hidden", type=positive_int, nargs="+", metavar="N", default=None,
                   help="hidden layer sizes, e.g. --hidden 100 100 100 (default: 50; the CNNs' Affine: "
                   "100 for simple-cnn, 50 for deep-cnn)")  # fmt: skip
    g.add_argument("--activation", choices=tuple(ACTIVATIONS), default=None,
                   help=f"hidden activation (default: {d.activation})")  # fmt: skip
    g.add_argument("--init", type=init_value, default=None, metavar="STD|NAME",
                   help="initial weight std (a number) or xavier, lecun, glorot, he (default: 0.01)")  # fmt: skip

    g = p.add_argument_group("training")
    g.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default=None,
                   help=f"update rule (default: {d.optimizer})")  # fmt: skip
    g.add_argument(
        "--lr",
        type=positive_float,
        default=None,
        help="learning rate (default: 0.1, the slides', for sgd; the optimizer's own otherwise: "
        "0.01 for momentum, nesterov, adagrad, rmsprop; 0.001 for adam, adamw)",
    )
    g.add_argument("--weight-decay", type=non_negative_float, default=None, metavar="LAMBDA",
                   help="L2 penalty λ: adds ½·λ·Σ‖W‖² to the loss (default: 0)")  # fmt: skip
    g.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"minibatch size (default: {d.batch_size})",
    )
    length = g.add_mutually_exclusive_group()
    length.add_argument(
        "--iters",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"number of updates (default: {d.iters})",
    )
    length.add_argument(
        "--epochs",
        type=positive_float,
        default=None,
        metavar="E",
        help="number of epochs (instead of --iters)",
    )
    g.add_argument(
        "--seed",
        type=seed_int,
        default=None,
        metavar="S",
        help="seed for initial weights and sample order (default: 0)",
    )
    g.add_argument("--log-every", type=positive_int, default=None, metavar="N",
                   help="iterations between log lines (default: one epoch)")  # fmt: skip
    g.add_argument("--eval-samples", type=positive_int, default=None, metavar="N",
                   help="log lines before the last measure accuracy on the first N training and "
                   "N test samples only (the last on all), for long runs on big sets (default: all)")  # fmt: skip

    g = p.add_argument_group("output and checkpoints")
    g.add_argument("--out", metavar="DIR", default=None,
                   help="output folder, new or empty (default: a new folder under runs/; with --resume, "
                   "the checkpoint's folder)")  # fmt: skip
    g.add_argument("--overwrite", action="store_true",
                   help="let --out name a folder that holds another run, replacing its outputs")  # fmt: skip
    g.add_argument("--checkpoint-every", type=positive_int, default=None, metavar="N",
                   help="also write checkpoint.npz every N iterations (default: at every log line)")  # fmt: skip
    g.add_argument("--resume", metavar="CHECKPOINT", default=None,
                   help="continue the run saved in CHECKPOINT (runs/X/checkpoint.npz, or the folder runs/X)")  # fmt: skip
    g.add_argument("--no-progress", action="store_true", help="do not draw the progress bar")
    g.add_argument("--no-plot", action="store_true", help="do not write curves.png")
    g.add_argument("--tensorboard", action="store_true",
                   help="also log loss and accuracies for TensorBoard into the output folder "
                   "(`tensorboard --logdir runs`); needs pip install 'xpnet[tensorboard]'")  # fmt: skip
    g.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return p


def config_from_args(args) -> dict:
    """The options the user actually gave, as TrainConfig fields."""
    given = {
        k: getattr(args, k)
        for k in ("device", "backend", "dtype", "dataset", "data_dir", "model", "batchnorm", "dropout", "hidden", "activation", "init",
                  "optimizer", "lr", "weight_decay", "batch_size", "iters", "epochs", "seed", "log_every",
                  "checkpoint_every", "fused", "eval_samples")
        if getattr(args, k) is not None
    }  # fmt: skip
    if "epochs" in given:
        given["iters"] = TrainConfig.iters
    return given
