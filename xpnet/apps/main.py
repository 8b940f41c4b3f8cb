"""`xpnet COMMAND [OPTIONS]`: every command of xpnet under one name (also `python -m xpnet`).

Each command is also a script (`python scripts/train.py ...`) and an entry point of its own
(`xpnet-train ...`); `xpnet COMMAND --help` shows its options.
"""

from __future__ import annotations

import importlib
import sys

from .. import __version__

#: command -> (module under xpnet.apps, what it does)
COMMANDS = {
    "train": ("train", "train a network (the slides' experiment by default)"),
    "compare": ("compare", "train the book's variants of one idea side by side, with a report"),
    "search": ("search", "random hyperparameter search, here or on a Dask cluster"),
    "evaluate": ("evaluate", "a saved model's test accuracy, as saved and in 16 bits"),
    "visualize": ("visualize", "pictures: activations, first-layer filters, misclassified digits"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    return (
        "usage: xpnet [--version] COMMAND [OPTIONS]\n\n"
        "Neural networks from scratch, after 'Deep Learning from Scratch', on any array backend.\n\n"
        "commands:\n" + "\n".join(lines) + "\n\n`xpnet COMMAND --help` shows a command's options."
    )


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"xpnet {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(
            f"xpnet: error: unknown command {name!r}; choose one of: {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return 2
    try:
        module = importlib.import_module(f"xpnet.apps.{COMMANDS[name][0]}")
    except KeyboardInterrupt:
        print("\ninterrupted while starting; nothing was written", file=sys.stderr)
        return 130
    return module.main(rest, prog=f"xpnet {name}")


if __name__ == "__main__":
    sys.exit(main())
