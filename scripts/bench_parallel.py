#!/usr/bin/env python
"""Data-parallel training against one process: `mpiexec -n N python scripts/train.py` with one
BLAS thread per process against `python scripts/train.py` with N BLAS threads, on MNIST.

Each run is a whole command in a fresh process (start-up, loading MNIST, the epochs with their
evaluations, writing the outputs); the two commands alternate, each --repeat times, and the table
gives medians of the wall time and of the run's own seconds per epoch (metrics.jsonl: training
and the evaluations of the full sets, both shared among the processes), the final test accuracy
and the load average (`uptime`) before and after every run. Measure on a quiet machine.

    python scripts/bench_parallel.py --data-dir DIR [--models deep-cnn simple-cnn] [--epochs 1]
                                     [--repeat 2] [--processes 2] [--json docs/bench-parallel.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def mpiexec() -> str:
    beside = Path(sys.executable).with_name("mpiexec")  # the mpich wheel's
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found is None:
        sys.exit("no mpiexec: pip install -e '.[mpi]'")
    return found


def runners(n: int) -> dict:
    """name -> (argv prefix, BLAS threads per process)."""
    py = sys.executable
    return {
        f"1 process × {n} threads": ([py], n),
        f"mpiexec -n {n} × 1 thread": ([mpiexec(), "-n", str(n), py], 1),
    }


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_once(prefix, threads, model, args, out: Path) -> dict:
    env = {**os.environ, **{v: str(threads) for v in THREAD_VARIABLES}}
    argv = [*prefix, str(HERE / "train.py"), "--model", model, "--dataset", "mnist",
            "--data-dir", args.data_dir, "--epochs", str(args.epochs), "--seed", str(args.seed),
            "--no-plot", "--no-progress", "--out", str(out)]  # fmt: skip
    before = load()
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    return {"wall_s": round(wall, 2), "epoch_s": round(last["seconds"] / args.epochs, 2),
            "test_acc": last["test_acc"], "load_before": before, "load_after": load()}  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True, help="the folder with MNIST's four files")
    p.add_argument("--models", nargs="+", default=["deep-cnn", "simple-cnn"])
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()
    print(f"uptime load average at the start: {load()}  ({os.cpu_count()} CPUs)", flush=True)
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            for r in range(args.repeat):
                for name, (prefix, threads) in runners(args.processes).items():
                    out = Path(tmp) / f"{model}-{r}-{threads}"
                    got = run_once(prefix, threads, model, args, out)
                    results.setdefault(model, {}).setdefault(name, []).append(got)
                    print(f"  {model} run {r + 1}: {name:24s} {got['wall_s']:8.1f} s wall, "
                          f"{got['epoch_s']:8.1f} s/epoch, test acc {got['test_acc']:.4f}, load "
                          f"{got['load_before']} -> {got['load_after']}", flush=True)  # fmt: skip
    print(f"\nmedians over {args.repeat} runs, {args.epochs:g} epoch(s) each, seed {args.seed}:")
    summary = {}
    for model, by_runner in results.items():
        rows = {name: {k: statistics.median(run[k] for run in runs)
                       for k in ("wall_s", "epoch_s", "test_acc")}
                for name, runs in by_runner.items()}  # fmt: skip
        one, many = list(rows.values())
        speedup = one["epoch_s"] / many["epoch_s"]
        summary[model] = {"median": rows, "speedup_per_epoch": round(speedup, 3),
                          "speedup_wall": round(one["wall_s"] / many["wall_s"], 3)}  # fmt: skip
        for name, row in rows.items():
            print(f"  {model:10s} {name:24s} {row['wall_s']:8.1f} s wall {row['epoch_s']:8.1f} "
                  f"s/epoch  test acc {row['test_acc']:.4f}")  # fmt: skip
        print(f"  {model:10s} speed-up per epoch {speedup:.2f}×, whole command "
              f"{summary[model]['speedup_wall']:.2f}×")  # fmt: skip
    print(f"uptime load average at the end: {load()}")
    if args.json:
        doc = {"command": " ".join(sys.argv), "cpus": os.cpu_count(), "runs": results,
               "summary": summary}  # fmt: skip
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
