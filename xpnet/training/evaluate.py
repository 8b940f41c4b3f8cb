"""A saved model on its test set: accuracy and errors, as saved and with fewer bits (chapter 8).

``python scripts/evaluate.py runs/X/model.npz`` loads the model (any backend and device), the
test split of the dataset its run used, and prints the test accuracy; then, as the book's
``half_float_network.py`` does, the accuracy with every stored number of the model (weights,
biases, batch-norm statistics) and the test images rounded to float16 and to bfloat16
(`xpnet.precision`), and how many predictions the rounding changed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..backend import BACKENDS, DEVICES
from ..errors import choose
from ..experiments.visualize import load_test_set, predict_labels
from ..nn.precision import FORMATS, round_to
from .checkpoint import build_model, load_checkpoint, model_file, restore_params


@dataclass
class Result:
    """One row of an evaluation: the model's numbers and the test images stored in `precision`."""

    precision: str
    accuracy: float
    errors: int
    changed: int  # test images whose predicted label differs from the model's as saved
    n_test: int


@dataclass
class Evaluation:
    """What `evaluate` measured, and on what."""

    model: str
    dataset: str
    backend: str
    dtype: str
    results: list[Result]


def evaluate(
    path, formats=FORMATS, dataset=None, data_dir=None, device="cpu", backend=None
) -> Evaluation:
    """Test accuracy of the model saved at `path` (a model.npz, checkpoint.npz or run folder), as
    saved and with its numbers and the test images rounded to each of `formats`."""
    for fmt in formats:  # an unknown format fails before any loading
        choose("precision", fmt, FORMATS)
    ckpt = load_checkpoint(model_file(path))
    saved_dtype = str(next(iter(ckpt.params.values())).dtype)
    net = build_model(ckpt.model, device, backend, saved_dtype)
    test = load_test_set(ckpt, dataset, data_dir)
    t = np.asarray(test.t_test)
    t = t.argmax(axis=1) if t.ndim == 2 else t

    def row(name: str, x: np.ndarray, reference: np.ndarray | None):
        pred, _ = predict_labels(net, x)
        changed = 0 if reference is None else int(np.count_nonzero(pred != reference))
        errors = int(np.count_nonzero(pred != t))
        return pred, Result(name, (len(t) - errors) / len(t), errors, changed, len(t))

    def rounded(arrays: dict, fmt: str) -> dict:  # integer buffers (counters) stay as they are
        return {
            k: round_to(v, fmt) if np.issubdtype(v.dtype, np.floating) else v
            for k, v in arrays.items()
        }

    restore_params(net, ckpt)
    saved, first = row(f"{saved_dtype} (as saved)", test.x_test, None)
    results = [first]
    for fmt in formats:
        restore_params(
            net,
            dataclasses.replace(
                ckpt, params=rounded(ckpt.params, fmt), buffers=rounded(ckpt.buffers, fmt)
            ),
        )
        results.append(row(fmt, round_to(test.x_test, fmt), saved)[1])
    kind = ckpt.model.get("model", "mlp")
    what = f"{type(net).__name__} ({kind}), {ckpt.iteration} iterations"
    return Evaluation(what, test.name, str(net.backend), saved_dtype, results)


def table(ev: Evaluation) -> str:
    n = ev.results[0].n_test
    lines = [
        f"{ev.model}; {ev.dataset} test set ({n} images); computed in {ev.dtype} on {ev.backend}",
        "",
        "| weights and test images | test accuracy | errors | predictions changed |",
        "|---|---:|---:|---:|",
    ]
    for r in ev.results:
        changed = "" if r is ev.results[0] else str(r.changed)
        lines.append(f"| {r.precision} | {100 * r.accuracy:.2f}% | {r.errors} | {changed} |")
    return "\n".join(lines)


# -- command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from ..apps.train import DATASET_CHOICES

    p = argparse.ArgumentParser(
        prog="evaluate.py",
        description="A saved model's test accuracy, as saved and with its weights and the test "
        "images rounded to 16-bit formats (the book's chapter 8 experiment).",
    )
    p.add_argument("model", metavar="PATH", help="model.npz, checkpoint.npz, or a run folder")
    p.add_argument("--precision", nargs="*", choices=FORMATS, default=list(FORMATS),
                   help="formats to round to (default: all; none: only the saved model)")  # fmt: skip
    p.add_argument("--dataset", choices=DATASET_CHOICES[1:], default=None,
                   help="test set to use (default: the one the run used)")  # fmt: skip
    p.add_argument("--data-dir", metavar="DIR", default=None,
                   help="folder holding the dataset (default: the run's, else $XPNET_DATA_DIR)")  # fmt: skip
    p.add_argument("--device", choices=DEVICES, default="cpu", help="(default: cpu)")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="array library (default: cupy for cuda, numpy for cpu)")  # fmt: skip
    p.add_argument("--json", metavar="PATH", default=None, help="also write the results here")
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return p


def run(args) -> int:
    from ..apps.train import say
    from ..fileio import atomic_write_text, check_writable

    if args.json is not None:  # before the minutes an evaluation can take
        check_writable(Path(args.json), "--json")
    ev = evaluate(
        args.model, args.precision, args.dataset, args.data_dir, args.device, args.backend
    )
    say(table(ev))
    if args.json is not None:
        atomic_write_text(Path(args.json), json.dumps(dataclasses.asdict(ev), indent=1))
    return 0


def main(argv=None) -> int:
    from ..apps.train import run_command

    return run_command(build_parser(), run, argv)
