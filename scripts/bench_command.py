#!/usr/bin/env python
"""Whole commands as users run them: the default `python scripts/train.py` against the same run in
PyTorch written for speed (torch_mnist.py), the slides' code (slides_mnist.py), and the same
arithmetic in lean NumPy with nothing around it (numpy_mnist.py: xpnet's numbers bit for bit).

Each command is a fresh process timed from start to exit (interpreter start-up, imports, loading
and verifying MNIST, the 10,000 steps, the 18 evaluations, writing the outputs and the picture);
the commands are interleaved, each round in an order rotated by one (a command run right after the
slides' code finds the OS's file cache emptied of its files and loads slower: 0.92 s against
0.44 s for xpnet's MNIST here), and each is run --repeat times; the table gives medians, the
spread and the ratios, with the load average before and after.

As a user's machine runs them: with Python's bytecode cache (a PYTHONDONTWRITEBYTECODE set here is
not passed on: it would make every start compile the modules of a package installed from source,
xpnet's ~60, about 0.1 s, but not those of an installed wheel such as torch's), after --warmup
untimed rounds of every command (default 1), which fill that cache and the OS's file cache alike.

    python scripts/bench_command.py --data-dir DIR [--repeat 5] [--iters 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def commands(data_dir: str, out: Path, iters: int, torch_threads: int | None) -> dict:
    """name -> argv of each whole command (outputs under `out`)."""
    py = sys.executable
    threads = ["--threads", str(torch_threads)] if torch_threads else []
    cmds = {
        "xpnet train.py": [py, str(HERE / "train.py"), "--dataset", "mnist", "--data-dir", data_dir,
                           "--iters", str(iters), "--no-progress", "--out", str(out / "xpnet")],
        "torch lean": [py, str(HERE / "torch_mnist.py"), "--data-dir", data_dir, "--iters",
                       str(iters), "--out", str(out / "torch"), *threads],
        "slides' code": [py, str(HERE / "slides_mnist.py"), "--data-dir", data_dir, "--iters",
                         str(iters)],
        "numpy lean": [py, str(HERE / "numpy_mnist.py"), "--data-dir", data_dir, "--iters",
                        str(iters), "--out", str(out / "numpy")],
    }  # fmt: skip
    try:
        import torch  # noqa: F401
    except ImportError:
        del cmds["torch lean"]
    return cmds


def last_test_acc(stdout: str) -> float | None:
    """The last test accuracy a command printed ("test acc: 0.9704" or "test accuracy 0.9704")."""
    found = re.findall(r"test acc(?:uracy)?:? ([0-9.]+[0-9])", stdout)
    return float(found[-1]) if found else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True, help="the folder with MNIST's four files")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    p.add_argument("--iters", type=int, default=10_000)
    p.add_argument("--only", nargs="+", default=None, help="run only these commands (by name)")
    p.add_argument("--torch-threads", type=int, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    times: dict[str, list[float]] = {}
    accs: dict[str, float | None] = {}
    load_before = None
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(-args.warmup, args.repeat):
            if r == 0:
                load_before = os.getloadavg()[0]
            cmds = list(commands(args.data_dir, Path(tmp) / str(r), args.iters,
                                 args.torch_threads).items())  # fmt: skip
            turn = r % len(cmds)  # each command first, second and third in turn
            for name, argv in cmds[turn:] + cmds[:turn]:
                if args.only and name not in args.only:
                    continue
                start = time.perf_counter()
                done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
                seconds = time.perf_counter() - start
                if done.returncode != 0:
                    sys.exit(f"{name} failed: {done.stderr.strip().splitlines()[-1:]}")
                if r < 0:
                    print(f"  warm-up: {name:15s} {seconds:6.2f} s (not counted)", flush=True)
                    continue
                times.setdefault(name, []).append(seconds)
                accs[name] = last_test_acc(done.stdout)
                print(f"  run {r + 1}: {name:15s} {seconds:6.2f} s", flush=True)
            shutil.rmtree(Path(tmp) / str(r), ignore_errors=True)
    load_after = os.getloadavg()[0]
    med = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"\nwhole commands, {args.iters} iterations, median of {args.repeat} after {args.warmup} "
          f"warm-up round(s), bytecode cache on, load average {load_before:.2f} before, "
          f"{load_after:.2f} after:\n")  # fmt: skip
    print("| command | median s | runs (s) | test acc | vs torch lean | vs slides' code "
          "| vs numpy lean |\n|---|---:|---|---:|---:|---:|---:|")  # fmt: skip
    for name, m in med.items():
        ratios = [f"{m / med[base]:.2f}×" if base in med else "–"
                  for base in ("torch lean", "slides' code", "numpy lean")]  # fmt: skip
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        acc = f"{accs[name]:.4f}" if accs[name] is not None else "–"
        print(f"| {name} | {m:.2f} | {runs} | {acc} | {' | '.join(ratios)} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"times": times, "test_acc": accs, "load": [
            load_before, load_after], "iters": args.iters, "warmup": args.warmup,
            "bytecode_cache": True}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
