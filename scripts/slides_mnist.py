#!/usr/bin/env python
"""The slides' experiment as the slides run it: their NumPy code (slides_reference.py) on MNIST,
printing the per-epoch line. The whole-command baseline of bench_command.py.

    python scripts/slides_mnist.py --data-dir DIR [--iters 10000] [--seed 0]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mnist_files
import slides_reference


def main() -> int:
    p = mnist_files.parser(__doc__, out=False)
    args = p.parse_args()
    d = mnist_files.load(args.data_dir)
    test_acc, _ = slides_reference.train(d["x_train"], d["t_train"], d["x_test"], d["t_test"],
                                         iters_num=args.iters, seed=args.seed, log=print)  # fmt: skip
    print(f"done: test accuracy {test_acc:.4f}")
    return 0


if __name__ == "__main__":
    mnist_files.run(main)
