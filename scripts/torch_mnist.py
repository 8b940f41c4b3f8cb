#!/usr/bin/env python
"""`python scripts/train.py`'s default run written in PyTorch for speed: the whole-command
reference of bench_command.py.

The same work as xpnet's command: MNIST from its IDX files, a 784-50-10 ReLU net with weights
N(0, 0.01²) and zero biases, SGD lr 0.1 on batches of 100 in xpnet's epoch order, 10,000 updates,
the mean loss and train and test accuracy before the first update and every epoch (the slides'
line), metrics.jsonl, the weights (model.pt) and the curves (curves.png) in --out. PyTorch at its
best in eager mode (torch_lean.py: functional ops, autograd.grad, multi-tensor SGD); no xpnet import.

    python scripts/torch_mnist.py --data-dir DIR --out DIR [--threads N]
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mnist_files
import numpy as np
import torch
import torch_lean as tl


def main() -> int:
    p = mnist_files.parser(__doc__)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = p.parse_args()
    t0 = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    d = mnist_files.load(args.data_dir)
    out = Path(args.out)  # made once the data are read: a wrong --data-dir leaves no folder
    out.mkdir(parents=True, exist_ok=True)
    x, t = torch.from_numpy(d["x_train"]), torch.from_numpy(d["t_train"])
    xt, tt = torch.from_numpy(d["x_test"]), torch.from_numpy(d["t_test"])
    rng = np.random.default_rng(args.seed)
    init = [rng.standard_normal((784, 50)) * 0.01, np.zeros(50),
            rng.standard_normal((50, 10)) * 0.01, np.zeros(10)]  # fmt: skip
    params = tl.tensors(init, "cpu")
    opt = tl.SGD(params, 0.1)
    steps, iters = len(x) // 100, args.iters
    history, losses = [], []

    def log(i: int) -> None:
        if losses:
            loss = float(torch.stack(losses).mean())
            losses.clear()
        else:  # before the first update: the first batch's loss
            with torch.no_grad():
                idx = torch.from_numpy(tl.epoch_order(args.seed, 0, len(x))[:100])
                loss = float(torch.nn.functional.cross_entropy(
                    tl.mlp_forward(params, x[idx]), t[idx]))  # fmt: skip
        train = tl.count_correct(tl.mlp_forward, params, x, t) / len(x)
        test = tl.count_correct(tl.mlp_forward, params, xt, tt) / len(xt)
        history.append({"iteration": i, "loss": loss, "train_acc": train, "test_acc": test})
        label = "final" if i == iters else "iter"
        print(
            f"{label} {i:5d} / {iters} | loss {loss:.4f} | train acc: {train:.4f} test acc: {test:.4f}"
        )
        mnist_files.write_metrics(history, out / "metrics.jsonl")

    def after_step(i, loss):
        losses.append(loss.detach())
        if (i + 1) % steps == 0 and i + 1 < iters:
            log(i + 1)

    log(0)
    tl.train(tl.mlp_forward, params, opt, x, t, args.seed, iters, 100, after_step)
    log(iters)
    names = ["W1", "b1", "W2", "b2"]
    torch.save({k: p.detach() for k, p in zip(names, params, strict=True)}, out / "model.pt")
    mnist_files.plot(history, out / "curves.png")
    print(f"done: test accuracy {history[-1]['test_acc']:.4f}; {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    mnist_files.run(main)
