"""The `train` command: `python scripts/train.py` (or `xpnet-train`).

Defaults are the slides' experiment: a 784-50-10 ReLU net, weights N(0, 0.01²), SGD with lr 0.1,
batch 100, 10,000 iterations on MNIST. Errors a user can cause print one line (exit 2 for usage
errors, 1 for runtime failures, 130/143 after Ctrl-C/SIGTERM with a checkpoint); --debug shows
the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

from .backend import BACKENDS, DEVICES, DTYPES
from .datasets import DATASETS
from .errors import ConfigError, XpnetError
from .layers import ACTIVATIONS
from .train import MODELS, Interrupted, TrainConfig, Trainer, new_run_dir

DATASET_CHOICES = ("auto", *DATASETS)

# options that define the model and its training: a resumed run must not change them
_FIXED_ON_RESUME = (
    "dataset", "model", "hidden", "activation", "init", "optimizer", "lr", "weight_decay", "batch_size", "seed",
    "dtype", "batchnorm", "dropout",
)  # fmt: skip


def _argument(convert, ok, what: str):
    """An argparse type: convert(text), accepted only when ok(value), else 'must be <what>'."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


positive_int = _argument(int, lambda v: v > 0, "a positive integer")
# NaN fails both comparisons, and infinity is no learning rate either
positive_float = _argument(float, lambda v: 0 < v < float("inf"), "a positive number")
non_negative_float = _argument(float, lambda v: 0 <= v < float("inf"), "a number >= 0")
fraction = _argument(float, lambda v: 0 <= v < 1, "a number in [0, 1)")


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    from .optimizers import OPTIMIZERS

    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train a fully connected network with hand-written backprop (xpnet). "
        "The defaults reproduce the slides: 784-50-10 ReLU net, SGD lr 0.1, batch 100, "
        "10,000 iterations on MNIST (about 97% test accuracy).",
        epilog="Outputs go to --out: metrics.jsonl (one line per epoch, the last the final result), "
        "curves.png, checkpoint.npz (for --resume) and model.npz (the trained model, loadable on any "
        "backend with xpnet.checkpoint.load_model).",
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
                   "the fused kernels of xpnet.fused; the same numbers up to rounding, slower")  # fmt: skip

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
    g.add_argument("--init", default=None, metavar="STD|NAME",
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
        type=int,
        default=None,
        metavar="S",
        help="seed for initial weights and sample order (default: 0)",
    )
    g.add_argument("--log-every", type=positive_int, default=None, metavar="N",
                   help="iterations between log lines (default: one epoch)")  # fmt: skip

    g = p.add_argument_group("output and checkpoints")
    g.add_argument("--out", metavar="DIR", default=None,
                   help="output folder (default: a new folder under runs/; with --resume, the checkpoint's folder)")  # fmt: skip
    g.add_argument("--checkpoint-every", type=positive_int, default=None, metavar="N",
                   help="also write checkpoint.npz every N iterations (default: at every log line)")  # fmt: skip
    g.add_argument("--resume", metavar="CHECKPOINT", default=None,
                   help="continue the run saved in CHECKPOINT (e.g. runs/X/checkpoint.npz)")  # fmt: skip
    g.add_argument("--no-progress", action="store_true", help="do not draw the progress bar")
    g.add_argument("--no-plot", action="store_true", help="do not write curves.png")
    g.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return p


def _config_from_args(args) -> dict:
    """The options the user actually gave, as TrainConfig fields."""
    given = {
        k: getattr(args, k)
        for k in ("device", "backend", "dtype", "dataset", "data_dir", "model", "batchnorm", "dropout", "hidden", "activation", "init",
                  "optimizer", "lr", "weight_decay", "batch_size", "iters", "epochs", "seed", "log_every",
                  "checkpoint_every", "fused")
        if getattr(args, k) is not None
    }  # fmt: skip
    if "epochs" in given:
        given["iters"] = TrainConfig().iters
    return given


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def _load_data(config: TrainConfig, progress):
    from .datasets import load_dataset

    return load_dataset(config.dataset, config.data_dir, progress=progress)


def run(args) -> int:
    given = _config_from_args(args)
    progress = False if args.no_progress else None
    ckpt = None
    if args.resume:
        from .checkpoint import load_checkpoint

        ckpt = load_checkpoint(args.resume)
        saved = ckpt.config
        changed = [k for k in _FIXED_ON_RESUME if k in given and given[k] != saved.get(k)]
        if changed:
            opts = ", ".join("--" + k.replace("_", "-") for k in changed)
            raise ConfigError(
                f"{opts}: not what the checkpoint's run used; drop them to resume, or start a new run"
            )
        if "epochs" in given or "iters" in given:
            given.setdefault("epochs", None)
        config = TrainConfig(**{**saved, **given})
    else:
        config = TrainConfig(**given)
    config.validate()

    t_start = time.perf_counter()
    from .backend import resolve

    be = resolve(config.device, config.backend)
    # before the data is loaded, so a bad --out costs no time
    out = Path(args.out) if args.out else (Path(args.resume).parent if args.resume else None)
    if out is not None:
        prepare_output_folder(out)
    dataset = _load_data(config, progress)
    if dataset.notice:
        print(f"notice: {dataset.notice}", file=sys.stderr)
    if out is None:
        out = new_run_dir("runs", dataset.name)
    trainer = Trainer(config, dataset, out, progress=progress, backend=be)
    if ckpt is not None:
        trainer.restore(ckpt)

    n_train, n_test = dataset.x_train.shape[0], dataset.x_test.shape[0]
    path = "fused kernels" if trainer.fused is not None else "the layers"
    print(f"backend: {be.name} on {be.device}, dtype {config.dtype}; steps through {path}")
    print(
        f"dataset: {dataset.name} from {dataset.source} ({n_train} train / {n_test} test samples)"
    )
    print(
        f"model:   {config.describe_net(dataset.x_train[0].size, dataset.num_classes)}; "
        f"{config.optimizer} lr {config.lr}, batch {config.batch_size}, {trainer.total_iters} iterations "
        f"({trainer.total_iters / trainer.steps_per_epoch:.1f} epochs), seed {config.seed}"
    )
    if args.resume:
        print(f"resuming from {args.resume} at iteration {trainer.iteration}")
    print(f"output:  {out}")

    try:
        record = trainer.run()
    finally:
        if not args.no_plot and trainer.history:
            _plot(trainer, out)
    wall = time.perf_counter() - t_start
    print(
        f"done: test accuracy {record['test_acc']:.4f}, train accuracy {record['train_acc']:.4f} "
        f"after {trainer.total_iters} iterations; {wall:.1f} s in all ({record['seconds']:.1f} s training)"
    )
    files = ["metrics.jsonl", "model.npz", "checkpoint.npz"] + (
        ["curves.png"] if (out / "curves.png").exists() else []
    )
    print(f"wrote {out}/{{{', '.join(files)}}}")
    return 0


def _plot(trainer, out: Path) -> None:
    from .plots import have_matplotlib, plot_run

    if not have_matplotlib():
        print(
            "notice: matplotlib is not installed, so curves.png was not drawn (pip install matplotlib)",
            file=sys.stderr,
        )
        return
    c = trainer.config
    title = f"{trainer.dataset.name}: {c.describe_net(trainer.data.x_train.shape[1], trainer.data.num_classes)}, {c.optimizer} lr {c.lr}"
    plot_run(trainer.history, out / "curves.png", title)


def prepare_output_folder(out: Path) -> Path:
    """Create the output folder before any training, so a bad --out costs no time."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(
            f"--out {out} is a file, not a folder; choose another output folder"
        ) from None
    except OSError as exc:
        reason = (os.strerror(exc.errno) if exc.errno else str(exc)).lower()
        raise XpnetError(
            f"cannot create the output folder {out}: {reason}; choose another with --out"
        ) from None
    return out


def run_command(parser: argparse.ArgumentParser, run, argv=None) -> int:
    """Parse `argv` and call run(args), turning errors a user can cause into one line and an exit status.

    Exit 2 for usage errors (argparse's own and ConfigError), 1 for other XpnetErrors, 128 + the
    signal after Ctrl-C or SIGTERM; a traceback only with --debug.
    """
    args = parser.parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        return run(args)
    except Interrupted as exc:
        print(f"\ninterrupted: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("\ninterrupted; nothing more was written", file=sys.stderr)
        return 130
    except ConfigError as exc:
        if args.debug:
            traceback.print_exc()
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except XpnetError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 1


def main(argv=None) -> int:
    return run_command(build_parser(), run, argv)
