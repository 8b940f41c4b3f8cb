"""The visualize command: the activation picture, or a saved model's weights and mistakes.

``python scripts/visualize.py {activations,model} ...`` (or ``python -m xpnet.apps.visualize``);
the library is `xpnet.experiments.visualize`. Pictures go into a folder by name: the command
replaces its own pictures there (activations.png, PREFIXfilters.png, ...) and never touches any
other file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..backend import BACKENDS, DEVICES, DTYPES
from ..data import DATASETS
from ..errors import ConfigError, XpnetError
from ..experiments.visualize import (
    activation_outputs,
    draw_activations,
    draw_model,
    model_folder,
    model_outputs,
)
from ..fileio import check_writable
from ..training.runs import reason, remove_if_empty
from .common import positive_int, run_command, say

COMMANDS = ("activations", "model")


def build_parser(prog: str = "visualize.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Draw xpnet's pictures: the activation functions and their derivatives, or a "
        "saved model's first-layer weights and misclassified test images. A model file may be "
        "given without the subcommand: visualize.py runs/X/model.npz",
    )
    sub = p.add_subparsers(dest="command", metavar="{activations,model}")
    sub.required = True

    def where(q, default_device):
        q.add_argument("--device", choices=DEVICES, default=default_device,
                       help=f"where to compute (default: {default_device})")  # fmt: skip
        q.add_argument("--backend", choices=BACKENDS, default=None,
                       help="array library (default: cupy for cuda, numpy for cpu)")  # fmt: skip
        q.add_argument("--debug", action="store_true", help="show tracebacks of errors")

    a = sub.add_parser(
        "activations",
        help="step function, sigmoid, ReLU, tanh and their derivatives (activations.png)",
        description="Draw step_function, sigmoid, relu and tanh on the slides' x range and "
        "y-limits, computed by xpnet on the chosen device, and their derivatives from the layers' "
        "backward passes. Writes activations.png and activations.npz (the arrays drawn).",
    )
    a.add_argument("--out", metavar="DIR", required=True,
                   help="output folder (created if missing; only activations.png and .npz there "
                   "are replaced)")  # fmt: skip
    a.add_argument("--dtype", choices=DTYPES, default="float32", help="(default: float32)")
    where(a, "auto")

    m = sub.add_parser(
        "model",
        help="a saved model's first-layer weights and misclassified test images",
        description="For a saved model (model.npz or checkpoint.npz of a run, or the run's folder): "
        "the first layer's weights as images, before training (rebuilt from the run's seed) and "
        "after, and a grid of the test images it gets wrong. Writes PREFIXfilters.png, "
        "PREFIXmisclassified.png and an .npz of the arrays drawn beside each, replacing those "
        "files only.",
    )
    m.add_argument("model", metavar="PATH", help="model.npz, checkpoint.npz, or a run folder")
    m.add_argument("--out", metavar="DIR", default=None,
                   help="output folder (default: the model's folder; created if missing)")  # fmt: skip
    m.add_argument("--prefix", default="", help="start of the file names, e.g. mlp- (no folder)")
    m.add_argument("--dataset", choices=DATASETS, default=None,
                   help="test set to use (default: the one the run used)")  # fmt: skip
    m.add_argument("--data-dir", metavar="DIR", default=None,
                   help="folder holding the dataset (default: the run's for its dataset, else "
                   "$XPNET_DATA_DIR)")  # fmt: skip
    m.add_argument("--max-filters", type=positive_int, default=100, metavar="N",
                   help="draw at most N first-layer units (default: 100)")  # fmt: skip
    m.add_argument("--max-images", type=positive_int, default=40, metavar="N",
                   help="draw at most N misclassified images (default: 40)")  # fmt: skip
    m.add_argument("--no-misclassified", action="store_true",
                   help="draw only the weights (no dataset needed)")  # fmt: skip
    where(m, "cpu")
    return p


def _normalize_argv(argv: list[str]) -> list[str]:
    """`visualize.py runs/X/model.npz ...` means `visualize.py model runs/X/model.npz ...`."""
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        if argv[0].endswith(".npz") or Path(argv[0]).is_dir():
            return ["model", *argv]
    return argv


def pictures_folder(out: Path, names, created: list[Path], *, create: bool = True) -> Path:
    """The folder the pictures `names` go into, made (into `created`) when missing and `create`.

    A folder that holds other files is fine: only the named pictures are replaced. Each must be
    writable, and none a folder, before any work is done.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder; choose another output folder")
    if create:
        missing = [p for p in (out, *out.parents) if not p.exists()]
        try:
            for folder in reversed(missing):
                folder.mkdir()
                created.append(folder)
        except FileExistsError:
            raise ConfigError(
                f"--out {out}: a part of that path is a file, not a folder; "
                f"choose another output folder"
            ) from None
        except OSError as exc:
            raise XpnetError(
                f"cannot create the output folder {out}: {reason(exc)}; choose another --out"
            ) from None
    if out.is_dir():
        for name in names:
            if (out / name).is_dir():
                raise ConfigError(
                    f"--out {out} holds a folder named {name}, where a picture goes; "
                    f"move it or choose another --out"
                )
            check_writable(out / name, "--out")
    return out


def run(args) -> int:
    created: list[Path] = []
    try:
        return _draw(args, created)
    except BaseException:
        remove_if_empty(created)  # a failed command leaves no empty folder behind
        raise


def _draw(args, created: list[Path]) -> int:
    if args.command == "activations":
        out = pictures_folder(Path(args.out), activation_outputs(), created)
        done = draw_activations(out, args.device, args.backend, args.dtype)
        c = done["curves"]
        say(f"computed on {c.backend} ({c.device}, {c.dtype})")
        say(f"wrote {done['png']} and {done['npz']}")
        return 0
    if args.command == "model":
        names = model_outputs(args.prefix, not args.no_misclassified)
        if args.out is not None:
            out = pictures_folder(Path(args.out), names, created)
        else:  # the model's own folder: never made here (a missing model is draw_model's error)
            out = pictures_folder(model_folder(args.model), names, created, create=False)
        pics = draw_model(
            args.model, out, prefix=args.prefix, dataset=args.dataset,
            data_dir=args.data_dir, device=args.device, backend=args.backend,
            max_filters=args.max_filters, max_images=args.max_images,
            misclassified=not args.no_misclassified,
        )  # fmt: skip
        for note in pics.notes:
            say(f"notice: {note}")
        if pics.misclassified is not None:
            m = pics.misclassified
            say(
                f"{pics.dataset} test set: {len(m.indices)} of {m.n_test} misclassified "
                f"(accuracy {pics.accuracy:.4f})"
            )
        say("wrote " + ", ".join(str(p) for p in pics.files.values()))
        return 0
    raise ConfigError(f"unknown command {args.command!r}; choose one of: {', '.join(COMMANDS)}")


def main(argv=None, prog: str = "visualize.py") -> int:
    argv = _normalize_argv(list(sys.argv[1:] if argv is None else argv))
    return run_command(build_parser(prog), run, argv)


if __name__ == "__main__":
    sys.exit(main())
