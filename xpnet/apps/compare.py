"""The comparisons' command line: `python scripts/compare.py NAME` (`python -m xpnet.apps.compare`).

--out is checked for writing before anything trains. One line per variant as it finishes. A
comparison that was interrupted, or in which a variant failed, is written as <name>.partial.*,
never over a complete <name>.*. The same command run again keeps the variants the reports in --out
hold (unless --retrain) and trains only what is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import shlex
import signal
import sys
import threading
from pathlib import Path

from ..backend import BACKENDS, resolve
from ..data import DATASETS, Dataset
from ..experiments.compare import (
    BATCH_SIZE,
    COMPARISONS,
    FULL_ITERS,
    QUICK_ITERS,
    QUICK_SUBSET,
    DataCache,
    Outcome,
    Report,
    pick_earlier,
    read_earlier,
    resume_mismatch,
    run_comparison,
    write_report,
)
from ..experiments.compare.report import SUFFIXES, stem, unfinished, worth_writing
from ..fileio import check_writable
from ..parallel.dask import Runner, open_runner
from ..training.runs import new_run_dir, prepare_output_folder, remove_if_empty
from .common import add_runner_options, positive_int, run_command, say, seed_int

DATASET_CHOICES = ("auto", *DATASETS)


def build_parser(prog: str = "compare.py") -> argparse.ArgumentParser:
    names = (*COMPARISONS, "all")
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run one of the slides' comparison experiments: train a few variants that "
        "differ in one respect, with the same seed and sample order, and write a plot and a table.",
        epilog="Comparisons: "
        + "; ".join(f"{c.name}: {c.summary}" for c in COMPARISONS.values())
        + "; all: each of them in turn. "
        f"Default length: {FULL_ITERS} iterations on MNIST (batch {BATCH_SIZE}); --quick: "
        f"{QUICK_ITERS} iterations on the offline digits (or on {QUICK_SUBSET[0]} MNIST samples "
        f"with --dataset mnist); batchnorm, overfit and cnn run for the book's number of epochs "
        f"instead. Writes <name>.png, <name>.md and <name>.json into --out; an interrupted "
        f"comparison, or one in which a variant failed, as <name>.partial.* (never over a "
        f"complete <name>.*). The same command run again keeps the variants these files hold "
        f"and trains only what is missing.",
    )
    p.add_argument("comparison", choices=names, metavar="COMPARISON",
                   help=f"one of: {', '.join(names)}")  # fmt: skip
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output folder (default: a new folder under runs/)")  # fmt: skip
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: the GPU when CuPy sees one, else the CPU (default: auto)")  # fmt: skip
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="array library (default: cupy for cuda, numpy for cpu)")  # fmt: skip
    p.add_argument("--data-dir", metavar="DIR", default=None,
                   help="folder holding the dataset files; default: $XPNET_DATA_DIR, else ~/.cache/xpnet")  # fmt: skip
    p.add_argument("--dataset", choices=DATASET_CHOICES, default=None,
                   help="what every comparison but `dataset` trains on (default: auto, i.e. MNIST if "
                   "it can be had, else digits; digits with --quick)")  # fmt: skip
    p.add_argument("--iters", type=positive_int, default=None, metavar="N",
                   help=f"iterations per variant (default: {FULL_ITERS}; {QUICK_ITERS} with --quick)")  # fmt: skip
    p.add_argument("--seed", type=seed_int, default=0, metavar="S",
                   help="seed of the initial weights and the sample order (default: 0)")  # fmt: skip
    p.add_argument("--quick", action="store_true",
                   help="a small version that runs in seconds (offline digits, fewer iterations)")  # fmt: skip
    p.add_argument("--retrain", action="store_true",
                   help="train every variant again, even those the reports in --out already hold "
                   "(default: keep them when their settings are this run's)")  # fmt: skip
    add_runner_options(p)
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return p


def _print_outcome(o: Outcome, width: int = 26, debug: bool = False) -> None:
    kept = "  (kept from the earlier run)" if o.kept else ""
    if o.final:
        f = o.final
        note = "" if o.status == "ok" else f"  {o.status}"
        say(f"  {o.label:<{width}} test acc {f['test_acc']:.4f}  train acc {f['train_acc']:.4f}  "
            f"{o.seconds:6.1f} s{note}{kept}")  # fmt: skip
    else:
        time_ = f"  {o.seconds:6.1f} s" if o.history else ""
        say(f"  {o.label:<{width}} {o.status}{time_}{kept}")
    if debug and o.failed and o.detail:
        print(o.detail.rstrip(), file=sys.stderr)


def _print_dataset(d: Dataset) -> None:
    if d.notice:
        print(f"notice: {d.notice}", file=sys.stderr)
    say(
        f"dataset: {d.name} from {d.source} ({len(d.x_train)} train / {len(d.x_test)} test samples)"
    )


def _announce(earlier: dict[Path, dict] | None, out: Path, report: Report) -> None:
    """The comparison's first line, and which earlier report in `out` it resumes (`earlier`:
    read_earlier's; None with --retrain)."""
    c = report.comparison
    length = f"{report.iters} iterations"
    if report.epochs is not None:
        length += f" ({report.epochs:.3g} epochs)"
    say(f"{c.name}: {c.summary}; {length} each")
    resumed = pick_earlier((earlier or {}).values(), report)
    partial = out / f"{stem(c.name, complete=False)}.json"
    if resumed is not None:
        path = next(p for p, doc in earlier.items() if doc is resumed)
        say(f"resuming {path}: the variants it holds are kept (--retrain trains them again)")
    if earlier is not None and partial.exists() and earlier.get(partial) is not resumed:
        differs = resume_mismatch(earlier[partial], report) if partial in earlier else []
        why = "; ".join(differs) or "unreadable"
        print(f"notice: {partial} is of other settings ({why}): its variants are not kept, and "
              f"this run's report replaces it", file=sys.stderr)  # fmt: skip


@contextlib.contextmanager
def _signals_deferred():
    """Ctrl-C or SIGTERM while the three files are written waits for the last of them, so a
    report is never half new (a .md of this run beside a .json of the last)."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    saved = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum))
             for sig in (signal.SIGINT, signal.SIGTERM)}  # fmt: skip
    try:
        yield caught
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def run(args, argv, prog: str = "compare.py") -> int:
    names = list(COMPARISONS) if args.comparison == "all" else [args.comparison]
    dataset = args.dataset or ("digits" if args.quick else "auto")
    be = resolve(args.device, args.backend)
    created: list[Path] = []
    if args.out:
        out = Path(args.out)
        # a comparison writes only its own NAME.* files, so a shared folder (docs/img) is fine
        prepare_output_folder(out, created, reuse=True)
    else:
        out = new_run_dir("runs", f"compare-{args.comparison}")
        created.append(out)
    try:
        for name in names:  # before the hours of training, not after them
            for complete in (True, False):
                for suffix in SUFFIXES:
                    check_writable(out / f"{stem(name, complete)}{suffix}", "--out")
        say(f"backend: {be}, dtype float32")
        load = DataCache(args.data_dir, args.quick, on_load=_print_dataset)
        if names != ["dataset"]:
            load(dataset)  # a missing or broken dataset is an error before anything runs
        if args.dataset and "dataset" in names:
            print("notice: the dataset comparison trains on each dataset; --dataset applies to "
                  "the others", file=sys.stderr)  # fmt: skip
        say(f"output:  {out}")
        # the command as it was typed: the script, or `xpnet compare`
        launcher = f"python scripts/{prog}" if prog.endswith(".py") else prog
        command = f"{launcher} {shlex.join(argv)}"
        runner = open_runner(args.workers, args.scheduler)
        try:
            if type(runner) is not Runner:
                say(f"running the variants {runner.where}")
            return _run_all(args, names, dataset, be, load, out, command, runner)
        finally:
            runner.close()
    finally:
        # a comparison that failed before writing anything leaves no empty folder behind
        remove_if_empty(created)


def _run_all(args, names, dataset, be, load, out: Path, command, runner) -> int:
    failed = 0
    for name in names:
        earlier = None if args.retrain else read_earlier(out, name)
        width = max(26, *(len(v.label) for v in COMPARISONS[name].variants))
        report = run_comparison(
            name, load, be, dataset=dataset, iters=args.iters, quick=args.quick, seed=args.seed,
            on_outcome=functools.partial(_print_outcome, width=width, debug=args.debug),
            runner=runner, resume=list((earlier or {}).values()),
            on_start=functools.partial(_announce, earlier, out),
        )  # fmt: skip
        report.command = command
        with _signals_deferred() as caught:
            paths = write_report(report, out)
        if paths:
            say(f"wrote {out}/{{{', '.join(p.name for p in paths)}}}")
        signum = report.interrupted if report.interrupted is not None else next(iter(caught), None)
        if not report.complete:
            what = "interrupted" if report.interrupted is not None else "error"
            if not worth_writing(report):
                print(f"{what}: {name}: no variant finished; nothing was written", file=sys.stderr)
            else:
                kept = ""
                if (out / f"{name}.json").exists():
                    kept = f" ({name}.md, .json and .png, of an earlier complete run, are left as "
                    kept += "they were)"
                print(f"{what}: {name}: {unfinished(report)}{kept}", file=sys.stderr)
            failed += sum(o.failed for o in report.outcomes)
        if signum is not None:
            if report.interrupted is None:
                print("interrupted after the files above were written", file=sys.stderr)
            return 128 + signum
    return 1 if failed else 0


def main(argv=None, prog: str = "compare.py") -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_command(build_parser(prog), lambda args: run(args, argv, prog), argv)


if __name__ == "__main__":
    sys.exit(main())
