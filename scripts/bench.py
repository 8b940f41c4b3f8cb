#!/usr/bin/env python
"""Benchmark: the slides' experiment on every available runner, one invocation, the same data.

Runners: the slides' NumPy code as written; xpnet on NumPy, torch (CPU, CUDA) and CuPy; and
PyTorch twice on each torch device: written for speed ("torch lean", torch_lean.py: functional ops,
autograd.grad, multi-tensor SGD / fused Adam) and as tutorials write it ("torch nn+optim"). Each
runner trains the same network from the same initial weights (the slides' code draws its own) with
the same minibatch order, evaluating train and test accuracy on the full sets before the first
update, once per epoch as the slides do ("slides" configuration) and at the end ("large"; the
CNN configurations time the steps alone). The CNN configurations add the book reader's loop on
xpnet ("xpnet reader's loop": ``net.gradient`` then ``optimizer.update`` after
``xpnet.fast.install(net, optimizer)``); "deep-cnn" (the book's DeepConvNet, run only when asked for)
has no book code here. The table gives µs per iteration (evaluations included), samples per second,
final test accuracy and the time as a ratio to the fastest PyTorch runner on the same device
(PyTorch at its best) and to the slides' code.

    python scripts/bench.py                 # both configurations, full length
    python scripts/bench.py --quick         # a few seconds (CI)

Every run is a fresh Python process (see run_isolated); only the training loop is timed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

try:  # importing NumPy & co. takes a moment: Ctrl-C then is no error either
    import bench_cnn
    import numpy as np

    import xpnet
    from xpnet.apps.common import positive_int, seed_int
    from xpnet.backend import gpu_available, resolve, synchronize
    from xpnet.data import Dataset, DataUnavailable, load_dataset
    from xpnet.errors import ConfigError, XpnetError
    from xpnet.fileio import atomic_write_text, check_writable
    from xpnet.nn.mlp import MultiLayerNet
    from xpnet.progress import safe_print
    from xpnet.training.trainer import TrainConfig, Trainer
except KeyboardInterrupt:
    print("\ninterrupted while starting; nothing was written", file=sys.stderr)
    sys.exit(130)


@dataclass
class Config:
    name: str
    hidden: list[int]
    batch_size: int
    lr: float
    iters: dict  # device kind ("cpu", "cuda") -> iterations
    eval_each_epoch: bool
    model: str = "mlp"  # "simple-cnn": the book's SimpleConvNet, Adam, steps timed (bench_cnn.py)


CONFIGS = {
    "slides": Config("slides", [50], 100, 0.1, {"cpu": 10_000, "cuda": 10_000}, True),
    "large": Config("large", [1000, 1000], 1000, 0.1, {"cpu": 50, "cuda": 2_000}, False),
    "simple-cnn": Config(
        "simple-cnn", [100], 100, 0.001, {"cpu": 200, "cuda": 2_000}, False, "simple-cnn"
    ),
    # not run unless asked for (--configs deep-cnn): the book's DeepConvNet, steps timed
    "deep-cnn": Config("deep-cnn", [50], 100, 0.001, {"cpu": 20, "cuda": 500}, False, "deep-cnn"),
}
DEFAULT_CONFIGS = ["slides", "large", "simple-cnn"]
QUICK_ITERS = {"slides": 120, "large": 2, "simple-cnn": 5, "deep-cnn": 2}


def synthetic_mnist(n_train=60_000, n_test=10_000, seed=0) -> Dataset:
    """Data of MNIST's shape and range whose labels a linear teacher assigns (learnable)."""
    rng = np.random.default_rng(seed)
    teacher = rng.standard_normal((784, 10)).astype(np.float32)

    def sample(n):
        x = rng.random((n, 784), dtype=np.float32)
        return x, np.argmax((x - 0.5) @ teacher, axis=1).astype(np.int64)

    (x_train, t_train), (x_test, t_test) = sample(n_train), sample(n_test)
    return Dataset("synthetic", x_train, t_train, x_test, t_test, 10, "synthetic (MNIST's shape)",
                   image_shape=(1, 28, 28))  # fmt: skip


# -- runners ------------------------------------------------------------------------------------


def _train_config(cfg: Config, iters: int, seed: int) -> TrainConfig:
    return TrainConfig(
        hidden=list(cfg.hidden), lr=cfg.lr, batch_size=cfg.batch_size, iters=iters, seed=seed,
        log_every=None if cfg.eval_each_epoch else iters,
    )  # fmt: skip


def run_xpnet(data, cfg: Config, iters: int, seed: int, device: str, backend: str) -> dict:
    """xpnet's own training loop (Trainer), timed from the first update to the final accuracy."""
    if cfg.model != "mlp":
        return bench_cnn.run_xpnet(data, cfg, iters, seed, device, backend)
    be = resolve(device, backend)
    trainer = Trainer(
        _train_config(cfg, iters, seed), data, None, verbose=False, progress=False, backend=be
    )
    synchronize(trainer.data.x_train)
    start = time.perf_counter()
    record = trainer.run()
    return {"seconds": time.perf_counter() - start, "test_acc": record["test_acc"]}


def _schedule(cfg: Config, iters: int, steps: int, log_line):
    """The Trainer's log lines as a callback after each step: one before the first update (the
    caller's), every epoch (or only at the end), and the final one (the caller's)."""
    log_every = steps if cfg.eval_each_epoch else iters

    def after_step(i, loss):
        log_line(loss)
        if (i + 1) % log_every == 0 and i + 1 < iters:
            log_line(None)

    return after_step


def run_torch_lean(data, cfg: Config, iters: int, seed: int, device: str) -> dict:
    """PyTorch written for speed (torch_lean.py): raw tensors, functional ops, autograd.grad,
    multi-tensor SGD or fused Adam; xpnet's initial weights and minibatches."""
    import functools

    import torch
    import torch_lean as tl

    dev = torch.device(device)
    evaluate = None
    if cfg.model == "mlp":
        init = MultiLayerNet(data.x_train.shape[1], cfg.hidden, 10, weight_init=0.01, seed=seed)
        forward, shape = tl.mlp_forward, (-1, data.x_train.shape[1])
    else:
        init = bench_cnn.network(cfg, data.image_shape, seed)
        forward, shape = tl.cnn_forward, (-1, *data.image_shape)
        if cfg.model == "deep-cnn":
            forward = tl.deep_cnn_forward
            evaluate = functools.partial(tl.deep_cnn_forward, train=False)
    evaluate = evaluate or forward
    keys = [k for i in range(1, len(init.params) // 2 + 1) for k in (f"W{i}", f"b{i}")]
    params = tl.tensors([np.asarray(init.params[k]) for k in keys], dev)
    opt = tl.SGD(params, cfg.lr) if cfg.model == "mlp" else tl.Adam(params, cfg.lr)
    x = torch.from_numpy(data.x_train.reshape(shape)).to(dev)
    t = torch.from_numpy(data.t_train.astype(np.int64)).to(dev)
    xt = torch.from_numpy(data.x_test.reshape(shape)).to(dev)
    tt = torch.from_numpy(data.t_test.astype(np.int64)).to(dev)
    losses = []

    def log_line(loss):  # the Trainer's: the losses read once, two accuracies
        if loss is not None:
            losses.append(loss.detach())
            return None
        if losses:
            float(torch.stack(losses).mean())
            losses.clear()
        chunk = 10_000 if cfg.model == "mlp" else 1000
        return (tl.count_correct(evaluate, params, x, t, chunk) / len(x),
                tl.count_correct(evaluate, params, xt, tt, chunk) / len(xt))  # fmt: skip

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    if cfg.model == "mlp":
        log_line(None)
        after = _schedule(cfg, iters, x.shape[0] // cfg.batch_size, log_line)
        tl.train(forward, params, opt, x, t, seed, iters, cfg.batch_size, after)
        _, test_acc = log_line(None)
        return {"seconds": time.perf_counter() - start, "test_acc": test_acc}
    tl.train(forward, params, opt, x, t, seed, iters, cfg.batch_size)  # the CNN: steps timed alone
    sync()
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "test_acc": tl.count_correct(evaluate, params, xt, tt, 1000) / len(xt),
    }


def run_torch_nn(data, cfg: Config, iters: int, seed: int, device: str) -> dict:
    """PyTorch as tutorials write it: torch.nn.Sequential, F.cross_entropy, torch.optim.SGD,
    .backward(), eager, same data order (the reference before torch_lean; kept to show the gap)."""
    if cfg.model != "mlp":
        return bench_cnn.run_torch(data, cfg, iters, seed, device)
    import torch

    dev = torch.device(device)
    init = MultiLayerNet(data.x_train.shape[1], cfg.hidden, 10, weight_init=0.01, seed=seed)
    layers = []
    for i in range(1, len(cfg.hidden) + 2):
        linear = torch.nn.Linear(*init.params[f"W{i}"].shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(init.params[f"W{i}"].T.copy()))
            linear.bias.zero_()
        layers += [linear, torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1]).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    x_train = torch.from_numpy(data.x_train).to(dev)
    t_train = torch.from_numpy(data.t_train.astype(np.int64)).to(dev)
    x_test = torch.from_numpy(data.x_test).to(dev)
    t_test = torch.from_numpy(data.t_test.astype(np.int64)).to(dev)
    losses = []

    @torch.no_grad()
    def accuracy(x, t):
        correct = sum(
            (model(x[i : i + 10_000]).argmax(1) == t[i : i + 10_000]).sum()
            for i in range(0, len(x), 10_000)
        )
        return int(correct) / len(x)

    def log_line(loss):
        if loss is not None:
            losses.append(loss.detach())
            return None
        if losses:
            float(torch.stack(losses).mean())
            losses.clear()
        return accuracy(x_train, t_train), accuracy(x_test, t_test)

    if dev.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    log_line(None)
    after = _schedule(cfg, iters, x_train.shape[0] // cfg.batch_size, log_line)
    bench_cnn.torch_train(model, opt, x_train, t_train, seed, iters, cfg.batch_size, after)
    _, test_acc = log_line(None)
    return {"seconds": time.perf_counter() - start, "test_acc": test_acc}


def run_slides(data, cfg: Config, iters: int, seed: int) -> dict:
    """The slides' code as written (float64 weights, np.random.choice batches, loss computed twice);
    for a CNN configuration, the book's ch07 code as written."""
    if cfg.model != "mlp":
        return bench_cnn.run_book(data, cfg, iters, seed)
    import slides_reference

    start = time.perf_counter()
    test_acc, _ = slides_reference.train(
        data.x_train,
        data.t_train,
        data.x_test,
        data.t_test,
        iters,
        cfg.batch_size,
        cfg.lr,
        cfg.hidden[0],
        seed,
    )
    return {"seconds": time.perf_counter() - start, "test_acc": float(test_acc)}


#: runner id -> (label, device kind, function(data, cfg, iters, seed))
RUNNERS = {
    "slides": ("slides' NumPy code", "cpu", run_slides),
    "xpnet-numpy": ("xpnet numpy", "cpu", lambda *a: run_xpnet(*a, "cpu", "numpy")),
    # the CNN configurations only: net.gradient + optimizer.update after xpnet.fast.install
    "xpnet-reader": ("xpnet reader's loop", "cpu", bench_cnn.run_reader),
    "xpnet-torch-cpu": ("xpnet torch", "cpu", lambda *a: run_xpnet(*a, "cpu", "torch")),
    "torch-cpu": ("torch lean", "cpu", lambda *a: run_torch_lean(*a, "cpu")),
    "torch-nn-cpu": ("torch nn+optim", "cpu", lambda *a: run_torch_nn(*a, "cpu")),
    "xpnet-cupy": ("xpnet cupy", "cuda", lambda *a: run_xpnet(*a, "cuda", "cupy")),
    "xpnet-torch-cuda": ("xpnet torch", "cuda", lambda *a: run_xpnet(*a, "cuda", "torch")),
    "torch-cuda": ("torch lean", "cuda", lambda *a: run_torch_lean(*a, "cuda")),
    "torch-nn-cuda": ("torch nn+optim", "cuda", lambda *a: run_torch_nn(*a, "cuda")),
}


def available_runners(include_slides: bool = True) -> list[str]:
    """The ids of the runners this machine can run."""
    have_torch = _importable("torch")
    ids = ["slides"] if include_slides else []
    ids += ["xpnet-numpy", "xpnet-reader"]
    if have_torch:
        ids += ["xpnet-torch-cpu", "torch-cpu", "torch-nn-cpu"]
    if gpu_available("cupy"):
        ids.append("xpnet-cupy")
    if have_torch and gpu_available("torch"):
        ids += ["xpnet-torch-cuda", "torch-cuda", "torch-nn-cuda"]
    return ids


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# -- driver -------------------------------------------------------------------------------------


def worker(runner: str, cfg: Config, iters: int, seed: int, data, torch_threads=None) -> dict:
    """One timed run (after an untimed warm-up on the GPU, where kernels compile on first use)."""
    _, kind, fn = RUNNERS[runner]
    result = {}
    if torch_threads and "torch" in runner:
        import torch

        torch.set_num_threads(torch_threads)
    if kind == "cuda":
        result["cold_seconds"] = fn(data, cfg, min(iters, 20), seed)["seconds"]
    result.update(fn(data, cfg, iters, seed))
    return result


def run_isolated(runner: str, cfg: Config, iters: int, args) -> dict:
    """Run one runner in a fresh Python process.

    NumPy's OpenBLAS and PyTorch's OpenMP each keep a pool of threads that spin for a while after
    their work; in one process they fight over the cores and slow each other down by up to 4x on a
    2-core machine, so every run gets a process of its own (and loads the same data).
    """
    command = [sys.executable, __file__, "--worker", runner, "--configs", cfg.name, "--iters", str(iters),
               "--seed", str(args.seed)] + (["--quick"] if args.quick else []) + (
               ["--torch-threads", str(args.torch_threads)] if args.torch_threads else []) + (
               ["--data-dir", args.data_dir] if args.data_dir else [])  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        raise BenchError(f"runner {runner} failed: {lines[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class BenchError(XpnetError):
    """A runner failed in its own process."""


def check_runners(runners: list[str]) -> None:
    """Refuse, before any timing, a runner this machine cannot run (with what it needs)."""
    have = set(available_runners())
    for runner in runners:
        if runner in have:
            continue
        kind = RUNNERS[runner][1]
        if "torch" in runner and not _importable("torch"):
            need = "PyTorch, which is not installed (pip install torch)"
        elif kind == "cuda":
            need = "a CUDA GPU with " + ("PyTorch" if "torch" in runner else "CuPy") + ", not found"
        else:
            need = "something this machine lacks"
        raise ConfigError(f"--runners {runner}: needs {need}")


def measure(cfg: Config, iters_by_device: dict, runners: list[str], args, log) -> list[dict]:
    """Every runner `args.repeat` times, interleaved (so a slow spell of the machine hits all)."""
    # the slides' code has one hidden layer: it runs the slides' configuration (and its CNN
    # counterpart, the book's code, SimpleConvNet's); the reader's loop is a CNN runner, and
    # deep-cnn has no book code or nn+optim runner here
    runners = [r for r in runners if r != "slides" or cfg.name == "slides" or cfg.model != "mlp"]
    runners = [r for r in runners if r != "xpnet-reader" or cfg.model != "mlp"]
    if cfg.model == "deep-cnn":
        runners = [r for r in runners if r != "slides" and not r.startswith("torch-nn")]
    runs: dict[str, list[dict]] = {r: [] for r in runners}
    for _ in range(args.repeat):
        for runner in runners:
            runs[runner].append(
                run_isolated(runner, cfg, iters_by_device[RUNNERS[runner][1]], args)
            )
    rows = []
    for runner in runners:
        label, kind, _ = RUNNERS[runner]
        if runner == "slides" and cfg.model != "mlp":
            label = "book's NumPy code"
        iters = iters_by_device[kind]
        seconds = statistics.median(r["seconds"] for r in runs[runner])
        row = {
            "config": cfg.name, "runner": label, "device": kind, "iters": iters,
            "seconds": seconds, "us_per_iter": 1e6 * seconds / iters,
            "samples_per_s": iters * cfg.batch_size / seconds, "test_acc": runs[runner][0]["test_acc"],
            "all_seconds": [r["seconds"] for r in runs[runner]],
        }  # fmt: skip
        if "cold_seconds" in runs[runner][0]:
            row["cold_seconds"] = runs[runner][0]["cold_seconds"]
        rows.append(row)
        spread = ", ".join(f"{t:.2f}" for t in row["all_seconds"])
        log(
            f"  {cfg.name:6s} {label:20s} {kind:4s} {seconds:8.2f} s ({spread})  test acc {row['test_acc']:.4f}"
        )
    for row in rows:
        # against the fastest PyTorch runner on the same device: PyTorch at its best
        ref = [
            r["seconds"]
            for r in rows
            if r["runner"].startswith("torch") and r["device"] == row["device"]
        ]
        row["vs_torch"] = row["seconds"] / min(ref) if ref else None
        slides = [r for r in rows if r["runner"] in ("slides' NumPy code", "book's NumPy code")]
        row["vs_slides"] = row["seconds"] / slides[0]["seconds"] if slides else None
    return rows


def markdown(rows: list[dict], meta: dict) -> str:
    def ratio(v):
        return "–" if v is None else f"{v:.2f}×"

    lines = [
        f"Device: {meta['device']}; {meta['data']}; seed {meta['seed']}; median of {meta['repeat']}; "
        f"load average {meta['load']:.2f} at the start; torch threads "
        f"{meta['torch_threads'] or 'default'}.",
        "",
        "| config | runner | device | iterations | µs / iter | samples / s | test acc | vs fastest torch | vs slides' code |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['runner']} | {r['device']} | {r['iters']} | {r['us_per_iter']:.0f} | "
            f"{r['samples_per_s']:,.0f} | {r['test_acc']:.4f} | {ratio(r['vs_torch'])} | {ratio(r['vs_slides'])} |"
        )
    cold = [r for r in rows if "cold_seconds" in r]
    if cold:
        lines += ["", "First run on the GPU (kernel compilation, 20 iterations): " + ", ".join(
            f"{r['runner']} {r['cold_seconds']:.1f} s" for r in cold)]  # fmt: skip
    return "\n".join(lines)


def describe_machine() -> str:
    parts = [platform.processor() or platform.machine(), f"{os.cpu_count()} CPU cores"]
    if gpu_available("cupy"):
        import cupy

        parts.append(cupy.cuda.runtime.getDeviceProperties(0)["name"].decode())
    elif gpu_available("torch"):
        import torch

        parts.append(torch.cuda.get_device_name(0))
    else:
        parts.append("no GPU")
    return ", ".join(parts)


def load_data(data_dir, quick: bool):
    """MNIST (from --data-dir, $XPNET_DATA_DIR or the cache), else synthetic."""
    named = data_dir
    if not data_dir and not os.environ.get("XPNET_DATA_DIR"):
        # XPNET_MNIST_DIR: the tests' former name for XPNET_DATA_DIR, still honoured here
        data_dir = os.environ.get("XPNET_MNIST_DIR")
    n_train, n_test = (6000, 2000) if quick else (60_000, 10_000)
    try:
        data = load_dataset("mnist", data_dir, download=False, progress=False)
        source = f"MNIST from {data.source}"
    except DataUnavailable:
        if named:  # a folder the user named must hold MNIST: never benchmark something else
            raise
        data, source = synthetic_mnist(n_train, n_test), "synthetic data of MNIST's shape"
        source += " (no MNIST files found)"
    if quick:
        data = dataclasses.replace(
            data, x_train=data.x_train[:n_train], t_train=data.t_train[:n_train],
            x_test=data.x_test[:n_test], t_test=data.t_test[:n_test],
        )  # fmt: skip
        source += f" (quick: {n_train}/{n_test} samples)"
    return data, source


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick", action="store_true", help="a few hundred iterations on a subset (for CI)"
    )
    p.add_argument("--configs", nargs="+", choices=tuple(CONFIGS), default=DEFAULT_CONFIGS,
                   help=f"default: {' '.join(DEFAULT_CONFIGS)} (deep-cnn when asked for)")  # fmt: skip
    p.add_argument(
        "--iters",
        type=positive_int,
        default=None,
        help="override the iteration count of every runner",
    )
    p.add_argument(
        "--repeat",
        type=positive_int,
        default=1,
        help="runs per runner, interleaved; the median is reported",
    )
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder with the MNIST files (else $XPNET_DATA_DIR, the cache)",
    )
    p.add_argument(
        "--no-slides", action="store_true", help="skip the slides' code (the slowest runner)"
    )
    p.add_argument(
        "--runners", nargs="+", choices=tuple(RUNNERS), default=None, help="only these runners"
    )
    p.add_argument("--torch-threads", type=positive_int, default=None, metavar="N",
                   help="torch.set_num_threads(N) in every PyTorch runner (xpnet's torch backend "
                   "too); default: PyTorch's own (one per core)")  # fmt: skip
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    p.add_argument("--worker", choices=tuple(RUNNERS), default=None, help=argparse.SUPPRESS)
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    args = p.parse_args(argv)
    try:
        return _main(args)
    except KeyboardInterrupt:
        print("\ninterrupted; nothing more was written", file=sys.stderr)
        return 130
    except ConfigError as exc:
        if args.debug:
            raise
        p.print_usage(sys.stderr)
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2
    except (XpnetError, OSError) as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except MemoryError:
        if args.debug:
            raise
        print("error: out of memory; try --quick or fewer iterations", file=sys.stderr)
        return 1


def _main(args) -> int:
    if args.worker:  # one run, in this process: print its result as a JSON line
        cfg = CONFIGS[args.configs[0]]
        data, _ = load_data(args.data_dir, args.quick)
        print(json.dumps(worker(args.worker, cfg, args.iters, args.seed, data, args.torch_threads)))
        return 0

    if args.json:
        check_writable(Path(args.json), "--json")
    if args.runners:
        check_runners(args.runners)
    t_load = time.perf_counter()
    data, source = load_data(args.data_dir, args.quick)
    load_seconds = time.perf_counter() - t_load
    del data
    meta = {"device": describe_machine(), "data": source, "seed": args.seed, "repeat": args.repeat,
            "load_seconds": load_seconds, "xpnet": xpnet.__version__, "numpy": np.__version__,
            "torch_threads": args.torch_threads, "load": os.getloadavg()[0]}  # fmt: skip
    say(f"{meta['device']}; {source} (loaded in {load_seconds:.2f} s); load {meta['load']:.2f}")

    runners = args.runners or available_runners(include_slides=not args.no_slides)
    rows = []
    for name in args.configs:
        cfg = CONFIGS[name]
        iters = dict(cfg.iters)
        if args.quick:
            iters = {k: QUICK_ITERS[name] for k in iters}
        if args.iters is not None:
            iters = {k: args.iters for k in iters}
        rows += measure(cfg, iters, runners, args, say)
    say("")
    say(markdown(rows, meta))
    if args.json:  # atomically: an interrupted write leaves the previous file, never half of one
        atomic_write_text(args.json, json.dumps({"meta": meta, "rows": rows}, indent=1))
    return 0


def say(line: str) -> None:
    """Print to stdout; a closed pipe (bench.py | head) stops the printing, not the benchmark."""
    safe_print(line)


if __name__ == "__main__":
    sys.exit(main())
