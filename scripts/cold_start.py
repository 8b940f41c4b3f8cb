#!/usr/bin/env python
"""Time xpnet's first use of a backend: import, device, the fused kernels this run uses
(compile + self-check), the first training steps. Run it with an empty CUPY_CACHE_DIR for a
truly cold start.

    CUPY_CACHE_DIR=$(mktemp -d) python scripts/cold_start.py --device cuda
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--backend", default=None)
    args = p.parse_args(argv)
    marks = [("start", time.perf_counter())]

    def mark(what):
        marks.append((what, time.perf_counter()))

    import numpy as np

    import xpnet
    from xpnet.backend import synchronize
    from xpnet.fast import optimizer_kernel, plan

    mark("import xpnet")
    be = xpnet.resolve(args.device, args.backend)
    x = be.asarray(np.random.default_rng(0).random((100, 784)), "float32")
    t = be.asarray(np.random.default_rng(0).integers(0, 10, 100))
    synchronize(x)
    mark(f"resolve {be}, first arrays")
    net = xpnet.TwoLayerNet(784, 50, 10, device=be)
    step = plan(net)
    mark("network, step kernels for relu (compile + self-check)")
    opt = xpnet.SGD(lr=0.1)
    opt.kernels = optimizer_kernel  # as the Trainer hands them
    (step or net).forward_backward(x, t)
    opt.update(net.params, net.grads)
    synchronize(x)
    mark("first step, SGD kernel (compile + self-check)")
    for _ in range(3):
        (step or net).forward_backward(x, t)
        opt.update(net.params, net.grads)
    synchronize(x)
    mark("3 more training steps")
    width = max(len(w) for w, _ in marks)
    for (what, t1), (_, t0) in zip(marks[1:], marks[:-1], strict=True):
        print(f"{what:{width}s} {t1 - t0:7.3f} s")
    print(f"{'total':{width}s} {marks[-1][1] - marks[0][1]:7.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
