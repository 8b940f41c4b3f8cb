"""The comparisons' command line: `python scripts/compare.py NAME` (`python -m xpnet.apps.compare`).

--out is checked for writing before anything trains. One line per variant as it finishes. A
comparison that was interrupted, or in which a variant failed, is written as <name>.partial.*,
never over a complete <name>.*; the same command run again trains only what is missing there.
"""

from __future__ import annotations

import argparse
import functools
import shlex
import sys
from pathlib import Path

from ..backend import BACKENDS, resolve
from ..data.datasets import DATASETS, Dataset
from ..experiments.compare import (
    BATCH_SIZE,
    COMPARISONS,
    FULL_ITERS,
    QUICK_ITERS,
    QUICK_SUBSET,
    DataCache,
    Outcome,
    Report,
    read_earlier,
    resume_mismatch,
    run_comparison,
    write_report,
)
from ..experiments.compare.report import SUFFIXES, stem, unfinished
from ..fileio import check_writable
from ..parallel.dask import Runner, open_runner
from ..training.runs import new_run_dir, prepare_output_folder, remove_if_empty
from .common import add_runner_options, positive_int, run_command, say, seed_int

DATASET_CHOICES = ("auto", *DATASETS)


def build_parser() -> argparse.ArgumentParser:
    names = (*COMPARISONS, "all")
    p = argparse.ArgumentParser(
        prog="compare.py",
        description="Run one of the slides' comparison experiments: train a few variants that "
        "differ in one respect, with the same seed and sample order, and write a plot and a table.",
        epilog="Comparisons: "
        + "; ".join(f"{c.name}: {c.summary}" for c in COMPARISONS.values())
        + "; all: each of them in turn. "
        f"Default length: {FULL_ITERS} iterations on MNIST (batch {BATCH_SIZE}); --quick: "
        f"{QUICK_ITERS} iterations on the offline digits (or on {QUICK_SUBSET[0]} MNIST samples "
        f"with --dataset mnist); batchnorm, overfit and cnn run for the book's number of epochs "
        f"instead. Writes <name>.png, <name>.md and <name>.json into --out. An interrupted "
        f"comparison, or one in which a variant failed, is written as <name>.partial.* (never "
        f"over a complete <name>.*); the same command run again trains only what is missing.",
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
    add_runner_options(p)
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return p


def _print_outcome(o: Outcome, debug: bool = False) -> None:
    kept = "  (kept from the earlier run)" if o.kept else ""
    if o.final:
        f = o.final
        note = "" if o.status == "ok" else f"  {o.status}"
        say(f"  {o.label:<26} test acc {f['test_acc']:.4f}  train acc {f['train_acc']:.4f}  "
            f"{o.seconds:6.1f} s{note}{kept}")  # fmt: skip
    else:
        time_ = f"  {o.seconds:6.1f} s" if o.history else ""
        say(f"  {o.label:<26} {o.status}{time_}{kept}")
    if debug and o.failed and o.detail:
        print(o.detail.rstrip(), file=sys.stderr)


def _print_dataset(d: Dataset) -> None:
    if d.notice:
        print(f"notice: {d.notice}", file=sys.stderr)
    say(
        f"dataset: {d.name} from {d.source} ({len(d.x_train)} train / {len(d.x_test)} test samples)"
    )


def _announce(earlier: dict | None, out: Path, report: Report) -> None:
    """The comparison's first line, and whether an earlier partial report is resumed."""
    c = report.comparison
    length = f"{report.iters} iterations"
    if report.epochs is not None:
        length += f" ({report.epochs:g} epochs)"
    say(f"{c.name}: {c.summary}; {length} each")
    if earlier is None:
        return
    partial = out / f"{stem(c.name, complete=False)}.json"
    differs = resume_mismatch(earlier, report)
    if differs:
        print(f"notice: {partial} is of other settings ({'; '.join(differs)}): every variant is "
              f"trained, and it is replaced", file=sys.stderr)  # fmt: skip
    else:
        say(f"resuming {partial}: its trained variants are kept")


def run(args, argv) -> int:
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
        command = "python scripts/compare.py " + shlex.join(argv)
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
        earlier = read_earlier(out, name)
        report = run_comparison(
            name, load, be, dataset=dataset, iters=args.iters, quick=args.quick, seed=args.seed,
            on_outcome=functools.partial(_print_outcome, debug=args.debug), runner=runner,
            resume=earlier, on_start=functools.partial(_announce, earlier, out),
        )  # fmt: skip
        report.command = command
        paths = write_report(report, out)
        say(f"wrote {out}/{{{', '.join(p.name for p in paths)}}}")
        if report.complete:
            continue
        kept = ""
        if (out / f"{name}.json").exists():
            kept = (
                f" ({name}.md, .json and .png, of an earlier complete run, are left as they were)"
            )
        what = "interrupted" if report.interrupted is not None else "error"
        print(f"{what}: {name}: {unfinished(report)}{kept}", file=sys.stderr)
        if report.interrupted is not None:
            return 128 + report.interrupted
        failed += sum(o.failed for o in report.outcomes)
    return 1 if failed else 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_command(build_parser(), lambda args: run(args, argv), argv)


if __name__ == "__main__":
    sys.exit(main())
