#!/usr/bin/env python
"""Where a training step's time goes: each part of one step of bench.py's configurations, timed alone.

For each configuration (slides, large, simple-cnn) it builds the Trainer's network, optimizer and
a batch, then times, each on its own: the whole step (gather, forward + backward, update), the
gather, the fused forward + backward where the backend has one, the layers' forward + backward,
each layer's forward and backward, each stage of a convolutional network's fused step (ConvStep)
inside whole fused passes, the optimizer's update, and every fused-kernel call that one
step makes (recorded from a real step, replayed on copies of its arguments).

Two times per part, in µs: **host** is how long Python takes to issue it (on a GPU: the launch
overhead; the work runs asynchronously), **device** how long the device takes from its start to
its end (CuPy: CUDA events by `cupyx.profiler.benchmark`; elsewhere the wall time up to a
synchronize). A step whose host time exceeds its device time is launch-bound: the GPU waits for
Python, and fewer launches, not faster kernels, make it faster.

    python scripts/profile_step.py --device cuda --configs slides large --json profile.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

try:  # importing NumPy & co. takes a moment: Ctrl-C then is no error either
    import numpy as np
    from array_api_compat import is_cupy_namespace
    from bench import CONFIGS, describe_machine, synthetic_mnist

    from xpnet.apps.common import positive_int, run_command, say
    from xpnet.backend import namespace_of, resolve, synchronize
    from xpnet.fileio import atomic_write_text, check_writable
    from xpnet.training.trainer import TrainConfig, Trainer
except KeyboardInterrupt:
    print("\ninterrupted while starting; nothing was written", file=sys.stderr)
    sys.exit(130)


class Recorder:
    """Stands in for a kernels object and records each call (name, arguments) it forwards."""

    def __init__(self, kernels):
        self._kernels = kernels
        self.calls: list[tuple[str, tuple]] = []

    def __getattr__(self, name):
        attr = getattr(self._kernels, name)
        if not callable(attr):
            return attr

        def call(*args):
            self.calls.append((name, args))
            return attr(*args)

        return call


def make_timer(xp, sync_on, repeat: int, warmup: int):
    """A function timing `fn()` → (host µs, device µs), medians over `repeat` calls."""
    if is_cupy_namespace(xp):
        from cupyx.profiler import benchmark

        def time_cupy(fn):
            r = benchmark(fn, n_repeat=repeat, n_warmup=warmup)
            return 1e6 * float(np.median(r.cpu_times)), 1e6 * float(np.median(r.gpu_times[0]))

        return time_cupy

    def time_sync(fn):
        for _ in range(warmup):
            fn()
        synchronize(sync_on)
        host, wall = [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            t1 = time.perf_counter()
            synchronize(sync_on)
            t2 = time.perf_counter()
            host.append(t1 - t0)
            wall.append(t2 - t0)
        return 1e6 * statistics.median(host), 1e6 * statistics.median(wall)

    return time_sync


def _shapes(args) -> str:
    dims = ["×".join(map(str, a.shape)) for a in args if hasattr(a, "shape") and a.ndim]
    words = [a for a in args if isinstance(a, str)]
    return ", ".join(dims + words)


def _copy(a):
    """A copy of an array argument (a kernel replayed in place must not touch the net's own
    arrays), anything else as it is."""
    if hasattr(a, "shape") and hasattr(a, "dtype"):
        return namespace_of(a).asarray(a, copy=True)
    return a


def _replay(calls) -> list[tuple[str, int, str, tuple]]:
    """(label, calls per step, kernel name, copied arguments) for each distinct recorded call."""
    seen: dict[str, list] = {}
    for name, args in calls:
        label = f"kernel {name} ({_shapes(args)})"
        if label in seen:
            seen[label][1] += 1
        else:
            seen[label] = [name, 1, tuple(_copy(a) for a in args)]
    return [(label, n, name, copies) for label, (name, n, copies) in seen.items()]


def _timed(run, samples: list, x):
    """`run` wrapped to append its wall time, synchronized with `x`'s device, to `samples`."""

    def timed(*args, **kwargs):
        synchronize(x)
        start = time.perf_counter()
        out = run(*args, **kwargs)
        synchronize(x)
        samples.append(time.perf_counter() - start)
        return out

    return timed


def time_in_step(net, x, t, repeat: int, warmup: int) -> dict[str, float]:
    """Median µs of each layer's forward and backward inside whole forward + backward passes of
    the layers (a synchronize before and after each, so on a GPU each layer's own time)."""
    times: dict[str, list] = {}
    for name, layer in net.layers.items():
        for method in ("forward", "backward"):
            run = getattr(layer, method)
            samples = times.setdefault(f"{name}.{method}", [])

            timed = _timed(run, samples, x)
            setattr(layer, method, timed)  # an instance attribute: the class's method stays
    try:
        for _ in range(warmup + repeat):
            net.forward_backward(x, t, check=False)
    finally:
        for layer in net.layers.values():
            del layer.forward, layer.backward
    return {key: 1e6 * statistics.median(v[warmup:]) for key, v in times.items()}


def time_stages(step, x, t, repeat: int, warmup: int) -> dict[str, float]:
    """Median µs of each stage's forward and backward of a ConvStep inside whole fused passes
    (the loss stage's forward and backward together)."""
    times: dict[str, list] = {}
    stages = [
        (f"stage {i + 1} {type(s).__name__.strip('_')}", s) for i, s in enumerate(step.stages)
    ]
    stages.append((f"stage {len(stages) + 1} loss", step.loss))
    for label, stage in stages:
        for method in ("forward", "backward", "forward_backward"):
            if not hasattr(stage, method):
                continue
            run = getattr(stage, method)
            samples = times.setdefault(f"{label}.{method}", [])

            timed = _timed(run, samples, x)
            setattr(stage, method, timed)
    try:
        for _ in range(warmup + repeat):
            step.forward_backward(x, t)
    finally:
        for _, stage in stages:
            for method in ("forward", "backward", "forward_backward"):
                stage.__dict__.pop(method, None)
    return {key: 1e6 * statistics.median(v[warmup:]) for key, v in times.items()}


def profile(config_name: str, device: str, backend: str | None, repeat: int, warmup: int):
    """Rows {part, calls, host_us, device_us} for one step of `config_name`."""
    cfg = CONFIGS[config_name]
    be = resolve(device, backend)
    data = synthetic_mnist(n_train=max(2 * cfg.batch_size, 1000), n_test=100)
    tc = TrainConfig(
        model=cfg.model, hidden=list(cfg.hidden), lr=cfg.lr, batch_size=cfg.batch_size,
        iters=1, log_every=1,
    )  # fmt: skip
    trainer = Trainer(tc, data, None, verbose=False, progress=False, backend=be)
    # as the Trainer runs its steps (NumPy: one BLAS thread for small networks)
    with trainer.blas_threads():
        return _profile(trainer, cfg, be, repeat, warmup)


def _profile(trainer, cfg, be, repeat: int, warmup: int) -> list[dict]:
    net, opt, fused = trainer.net, trainer.optimizer, trainer.fused
    xp = be.xp
    d = trainer.data
    idx = be.asarray(np.arange(cfg.batch_size))
    x, t = xp.take(d.x_train, idx, axis=0), xp.take(d.t_train, idx, axis=0)
    timer = make_timer(xp, x, repeat, warmup)
    rows = []

    def add(part, fn, calls=1):
        host, dev = timer(fn)
        rows.append({"part": part, "calls": calls, "host_us": host, "device_us": dev})

    def forward_backward():
        if fused is not None:
            return fused.forward_backward(x, t)
        return net.forward_backward(x, t, check=False)

    def step():
        forward_backward()
        opt.update(net.params, net.grads)

    add("whole step: forward + backward + update", step)
    add("gather the batch (two takes)", lambda: (xp.take(d.x_train, idx, axis=0),
                                                xp.take(d.t_train, idx, axis=0)))  # fmt: skip
    if fused is not None:
        add("forward + backward, fused", forward_backward)
    add("forward + backward, layers", lambda: net.forward_backward(x, t, check=False))
    add("optimizer update", lambda: opt.update(net.params, net.grads))

    # each layer alone, on the inputs and output gradients of a real pass (the first layer
    # skips its input gradient, as in Network.forward_backward)
    inputs = {}
    h = x
    for name, layer in net.layers.items():
        inputs[name] = h
        h = layer.forward(h, True)
    net.last_layer.forward(h, t)
    douts = {}
    dout = net.last_layer.backward(1.0)
    names = list(net.layers)
    for name in reversed(names):
        douts[name] = dout
        dout = net.layers[name].backward(dout, input_grad=name != names[0])
    in_step = time_in_step(net, x, t, repeat, warmup)
    for name, layer in net.layers.items():
        add(f"{name}.forward", lambda lay=layer, i=inputs[name]: lay.forward(i, True))
        rows[-1]["in_step_us"] = in_step[f"{name}.forward"]
        add(
            f"{name}.backward",
            lambda lay=layer, g=douts[name], first=name == names[0]: lay.backward(
                g, input_grad=not first
            ),
        )
        rows[-1]["in_step_us"] = in_step[f"{name}.backward"]
    add(f"{type(net.last_layer).__name__} forward + backward",
        lambda: (net.last_layer.forward(h, t), net.last_layer.backward(1.0)))  # fmt: skip

    if hasattr(fused, "stages"):  # a ConvStep: each stage's time inside whole fused passes
        for name, us in time_stages(fused, x, t, repeat, warmup).items():
            rows.append({"part": name, "calls": 1, "host_us": us, "device_us": us,
                         "in_step_us": us})  # fmt: skip

    # every fused-kernel call of one step, replayed alone
    holders = [h for h in [fused, *getattr(fused, "stages", ())] if hasattr(h, "kernels")]
    kernels = holders[0].kernels if holders else None
    if kernels is None and opt.kernels is not None:
        from xpnet.fast import kernels_for

        kernels = kernels_for(xp, be.device)
    if kernels is not None:
        recorder = Recorder(kernels)
        saved = ([h.kernels for h in holders], opt.kernels)
        for h in holders:
            h.kernels = recorder
        from xpnet.fast import fixed_kernels

        opt.kernels = fixed_kernels(recorder)
        try:
            step()
        finally:
            for h, k in zip(holders, saved[0], strict=True):
                h.kernels = k
            opt.kernels = saved[1]
        for label, n, name, copies in _replay(recorder.calls):
            fn = getattr(kernels, name)
            add(label, lambda f=fn, c=copies: f(*c), n)
    return rows


def table(config_name: str, rows: list[dict]) -> str:
    lines = [
        f"### {config_name}",
        "",
        "| part | calls/step | host µs | device µs | in a step µs |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        in_step = f"{r['in_step_us']:.1f}" if "in_step_us" in r else ""
        lines.append(
            f"| {r['part']} | {r['calls']} | {r['host_us']:.1f} | {r['device_us']:.1f} | {in_step} |"
        )
    kernels = [r for r in rows if r["part"].startswith("kernel ")]
    if kernels:
        host = sum(r["calls"] * r["host_us"] for r in kernels)
        dev = sum(r["calls"] * r["device_us"] for r in kernels)
        lines.append(f"| fused kernels, summed over a step | "
                     f"{sum(r['calls'] for r in kernels)} | {host:.1f} | {dev:.1f} | |")  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--backend", default=None, help="numpy, cupy, torch (default: the device's)")
    p.add_argument("--configs", nargs="+", default=["slides", "large", "simple-cnn"],
                   choices=list(CONFIGS))  # fmt: skip
    p.add_argument("--repeat", type=positive_int, default=100, help="timed calls per part")
    p.add_argument("--warmup", type=positive_int, default=10, help="untimed calls first")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return run_command(p, _main, argv)


def _main(args) -> int:
    if args.json is not None:
        check_writable(args.json, "--json")
    results = {}
    for name in args.configs:
        rows = profile(name, args.device, args.backend, args.repeat, args.warmup)
        results[name] = rows
        say(table(name, rows) + "\n")
    be = resolve(args.device, args.backend)
    meta = {"machine": describe_machine(), "backend": str(be), "repeat": args.repeat}
    say(f"{meta['machine']}; {meta['backend']}; medians of {args.repeat} calls")
    if args.json is not None:
        atomic_write_text(args.json, json.dumps({"meta": meta, "configs": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
