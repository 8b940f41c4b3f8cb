"""What every command shares: argument types, printing that survives a closed pipe, and one line
per error a user can cause (`run_command`)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import traceback
import warnings

from ..errors import ConfigError, XpnetError
from ..progress import mute, safe_print
from ..training.trainer import Interrupted


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


seed_int = _argument(int, lambda v: 0 <= v < 2**63, "an integer >= 0")


def add_runner_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where to run")
    g.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="start a local Dask cluster of N single-threaded worker processes "
                   '(needs pip install "xpnet[distributed]")')  # fmt: skip
    g.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="run on an existing Dask cluster (workers need xpnet and the data); "
                   "default: everything in this process")  # fmt: skip


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def say(line: str) -> None:
    """Print to stdout; a closed pipe or full device stops the printing, never the run."""
    safe_print(line)


def exit_status(error: BaseException) -> int:
    """The exit status `run_command` gives a command that raised `error`."""
    if isinstance(error, Interrupted):
        return 128 + error.signum
    if isinstance(error, KeyboardInterrupt):
        return 130
    if isinstance(error, ConfigError):
        return 2
    if isinstance(error, SystemExit):
        return error.code if isinstance(error.code, int) else 1
    return 1


def run_command(parser: argparse.ArgumentParser, run, argv=None) -> int:
    """Parse `argv` and call run(args), turning errors a user can cause into one line and an exit status.

    Exit 2 for usage errors (argparse's own and ConfigError), 1 for other XpnetErrors, 128 + the
    signal after Ctrl-C or SIGTERM; a traceback only with --debug.
    """
    for stream in (sys.stdout, sys.stderr):
        # a character the terminal cannot show (λ, →) is replaced, never a traceback
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="replace")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error; --help into a closed pipe stays quiet
        _flush_stdout()
        return exc.code if isinstance(exc.code, int) else 2
    warnings.showwarning = _show_warning
    try:
        return run(args)
    except MemoryError:
        if args.debug:
            traceback.print_exc()
        print(
            "error: out of memory: the network or the data does not fit; try smaller --hidden "
            "sizes or a smaller --batch-size",
            file=sys.stderr,
        )
        return 1
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
    except OSError as exc:  # a file or device failed in a way no more specific handler knew
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        _flush_stdout()


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        mute(sys.stdout)
