"""The evaluate command: a saved model's test accuracy, as saved and in 16 bits (chapter 8).

``python scripts/evaluate.py runs/X`` (or ``python -m xpnet.apps.evaluate``); the library is
`xpnet.training.evaluation`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from ..backend import BACKENDS, DEVICES
from ..data import DATASETS
from ..errors import ConfigError
from ..fileio import atomic_write_text, check_writable
from ..nn.precision import FORMATS
from ..training.checkpoint import model_file
from ..training.evaluation import evaluate, table
from .common import run_command, say


def build_parser(prog: str = "evaluate.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="A saved model's test accuracy, as saved and with its weights and the test "
        "images rounded to 16-bit formats (the book's chapter 8 experiment).",
    )
    p.add_argument("model", metavar="PATH", help="model.npz, checkpoint.npz, or a run folder")
    p.add_argument("--precision", nargs="*", choices=FORMATS, default=list(FORMATS),
                   help="formats to round to (default: all; none: only the saved model)")  # fmt: skip
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="test set to use (default: the one the run used)")  # fmt: skip
    p.add_argument("--data-dir", metavar="DIR", default=None,
                   help="folder holding the dataset (default: the run's for its dataset, else "
                   "$XPNET_DATA_DIR)")  # fmt: skip
    p.add_argument("--device", choices=DEVICES, default="cpu", help="(default: cpu)")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="array library (default: cupy for cuda, numpy for cpu)")  # fmt: skip
    p.add_argument("--json", metavar="PATH", default=None, help="also write the results here")
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return p


def run(args) -> int:
    if args.json is not None:  # before the minutes an evaluation can take
        check_writable(Path(args.json), "--json")
        if same_file(Path(args.json), model_file(args.model)):
            raise ConfigError(f"--json {args.json} is the model itself; name another file")
    ev = evaluate(
        args.model, args.precision, args.dataset, args.data_dir, args.device, args.backend
    )
    say(table(ev))
    if args.json is not None:
        atomic_write_text(Path(args.json), json.dumps(dataclasses.asdict(ev), indent=1))
    return 0


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:  # one of them does not exist (yet)
        return False


def main(argv=None, prog: str = "evaluate.py") -> int:
    return run_command(build_parser(prog), run, argv)


if __name__ == "__main__":
    sys.exit(main())
