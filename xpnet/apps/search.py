"""The search command: random search over the learning rate and weight decay (scripts/search.py)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..experiments.search import SearchConfig, SearchFolder, search, validation_split
from ..parallel.dask import check_runner_options, open_runner
from .common import add_runner_options, positive_int, run_command, say, seed_int


def _range(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def build_parser(prog: str = "search.py") -> argparse.ArgumentParser:
    d = SearchConfig()
    p = argparse.ArgumentParser(
        prog=prog,
        description="Random search over the learning rate and weight decay (the book's chapter 6): "
        "train many small nets with hyperparameters drawn at random, rank them by validation "
        "accuracy, and draw the best learning curves.",
        epilog="Writes trials.jsonl (one line per finished trial), results.md and best-curves.png "
        "into --out; rerunning with the same --out finishes an interrupted search.",
    )
    p.add_argument("--out", metavar="DIR", default="runs/search",
                   help="output folder; finished trials there are kept (default: runs/search)")  # fmt: skip
    p.add_argument("--trials", type=positive_int, default=d.trials, help=f"default: {d.trials}")
    p.add_argument("--epochs", type=positive_int, default=d.epochs, help=f"default: {d.epochs}")
    p.add_argument("--dataset", choices=("mnist", "fashion-mnist", "digits"), default=d.dataset,
                   help=f"default: {d.dataset}")  # fmt: skip
    p.add_argument("--data-dir", metavar="DIR", default=None,
                   help="folder holding the dataset files; default: $XPNET_DATA_DIR, else ~/.cache/xpnet")  # fmt: skip
    p.add_argument("--n-data", type=positive_int, default=d.n_data,
                   help=f"training samples used, validation included (default: {d.n_data})")  # fmt: skip
    p.add_argument("--validation", type=float, default=d.validation,
                   help=f"fraction of them held out for validation (default: {d.validation})")  # fmt: skip
    p.add_argument("--seed", type=seed_int, default=d.seed, help=f"default: {d.seed}")
    p.add_argument("--lr-range", type=_range, nargs=2, default=d.lr_range, metavar=("LOW", "HIGH"),
                   help="learning rate 10^U(LOW, HIGH) (default: -6 -2)")  # fmt: skip
    p.add_argument("--weight-decay-range", type=_range, nargs=2, default=d.weight_decay_range,
                   metavar=("LOW", "HIGH"), help="weight decay 10^U(LOW, HIGH) (default: -8 -4)")  # fmt: skip
    p.add_argument("--hidden", type=positive_int, nargs="+", default=d.hidden, metavar="N",
                   help="hidden layer sizes (default: six of 100, the book's)")  # fmt: skip
    p.add_argument(
        "--batch-size", type=positive_int, default=d.batch_size, help=f"default: {d.batch_size}"
    )
    add_runner_options(p)
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return p


def _print_trial(r: dict) -> None:
    head = f"trial {r['trial']:4d}  lr {r['lr']:.2e}  wd {r['weight_decay']:.2e}"
    if r["status"] == "ok":
        say(f"{head}  val acc {r['val_acc']:.3f}  {r['seconds']:6.1f} s  {r['worker']}")
    else:
        say(f"{head}  failed: {r['error']}")


def run(args, argv) -> int:
    config = SearchConfig(
        trials=args.trials, epochs=args.epochs, dataset=args.dataset, data_dir=args.data_dir,
        n_data=args.n_data, validation=args.validation, seed=args.seed,
        lr_range=tuple(args.lr_range), weight_decay_range=tuple(args.weight_decay_range),
        hidden=list(args.hidden), batch_size=args.batch_size,
    ).validate()  # fmt: skip
    check_runner_options(args.workers, args.scheduler)  # before --out is made
    command = "python scripts/search.py " + shlex.join(argv)
    # the same --out resumes the search; held from here on, so a second search there stops now
    with SearchFolder(Path(args.out), config) as folder:
        if not args.scheduler:
            # the data, before any worker starts (their errors would be tracebacks in their logs);
            # workers of a cluster elsewhere may find it where this machine does not: they check
            validation_split(config.dataset, config.data_dir, config.n_data, config.validation,
                             config.seed, progress=None)  # fmt: skip
        runner = open_runner(args.workers, args.scheduler)
        try:
            previous = sum(k < config.trials for k in folder.done)
            say(f"search: {config.trials} trials ({previous} already in {folder.out}) "
                f"{runner.where}")  # fmt: skip
            result = search(config, folder, runner=runner, on_trial=_print_trial, command=command)
        finally:
            runner.close()
    out = folder.out
    ok = [r for r in result.trials.values() if r["status"] == "ok"]
    best = result.ranked()[0] if ok else None
    say(f"{result.ran} trials in {result.seconds:.1f} s {result.where}; "
        f"{len(result.trials)} of {config.trials} finished")  # fmt: skip
    if best:
        say(f"best: trial {best['trial']}, val acc {best['val_acc']:.3f}, lr {best['lr']:.3e}, "
            f"weight decay {best['weight_decay']:.3e}")  # fmt: skip
    say(f"wrote {out / 'trials.jsonl'}, " + ", ".join(str(p) for p in result.paths))
    kept = f"{len(result.trials)} finished trials are kept in {out / 'trials.jsonl'}"
    if result.interrupted is not None:
        print(f"interrupted: {kept}; continue with: {command}", file=sys.stderr)
        return 128 + result.interrupted
    if result.lost:
        lost = ", ".join(map(str, result.lost))
        print(f"incomplete: trials {lost} were lost with their workers; {kept}; run the lost "
              f"ones with: {command}", file=sys.stderr)  # fmt: skip
        return 1
    return 0


def main(argv=None, prog: str = "search.py") -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_command(build_parser(prog), lambda args: run(args, argv), argv)


if __name__ == "__main__":
    sys.exit(main())
