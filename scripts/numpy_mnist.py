#!/usr/bin/env python
"""`python scripts/train.py`'s default run written as lean NumPy: a whole-command reference of
bench_command.py.

The same work with as little around it as a NumPy user would write, nothing of xpnet imported:
MNIST from its IDX files (features as uint8 codes times float32(1/255), as xpnet gathers them),
a 784-50-10 ReLU net with weights N(0, 0.01²) and zero biases, SGD lr 0.1 on batches of 100 in
xpnet's epoch order, 10,000 updates, the mean loss and the train and test accuracy before the
first update and every epoch, metrics.jsonl, the weights (model.npz) and the curves (curves.png)
in --out. A step is the slides' arithmetic in as few NumPy calls as its author could write, on
one BLAS thread (faster for these small products); the evaluations run between the steps on every
BLAS thread, as the slides' code runs them. No checks, no checkpoints, no progress.

Its operations are xpnet's fused step's, in the same order, so it prints xpnet's numbers and
writes xpnet's weights bit for bit (tests/test_whole_command.py): beside xpnet's command it
measures what xpnet's machinery costs or saves, not a different computation.

    python scripts/numpy_mnist.py --data-dir DIR --out DIR [--iters 10000]
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mnist_files
import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits


def predict(params, x):
    """Scores of the 784-50-10 ReLU net for the rows of x."""
    W1, b1, W2, b2 = params
    h = x @ W1
    h += b1
    np.maximum(h, 0, out=h)
    return h @ W2 + b2


def accuracy(params, x, t, chunk: int = 10_000) -> float:
    hits = sum(int((predict(params, x[i : i + chunk]).argmax(1) == t[i : i + chunk]).sum())
               for i in range(0, len(x), chunk))  # fmt: skip
    return hits / len(x)


def step(params, x, t, rows, lr):
    """One SGD step on batch (x, t); returns the batch's mean loss (a float32 0-d array)."""
    W1, b1, W2, b2 = params
    n = len(x)
    h = x @ W1
    h += b1
    np.maximum(h, 0, out=h)
    a = h @ W2  # the scores, then softmax − onehot in place
    a += b2
    a -= a.max(axis=1, keepdims=True)
    picked = a[rows, t]
    np.exp(a, out=a)
    s = a.sum(axis=1, keepdims=True)
    loss = np.asarray((np.log(s).sum() - picked.sum()) / n)
    a /= s
    a[rows, t] -= 1.0
    a *= 1.0 / n
    dW2, db2 = h.T @ a, np.add.reduce(a, axis=0)
    dh = a @ W2.T
    np.multiply(dh, h > 0, out=dh)
    dW1, db1 = x.T @ dh, np.add.reduce(dh, axis=0)
    for p, g in zip(params, (dW1, db1, dW2, db2), strict=True):
        p -= lr * g
    return loss


def main() -> int:
    p = mnist_files.parser(__doc__)
    args = p.parse_args()
    t0 = time.perf_counter()
    codes = {k: mnist_files.read_idx(mnist_files.path(args.data_dir, k)) for k in mnist_files.FILES}
    out = Path(args.out)  # made once the data are read: a wrong --data-dir leaves no folder
    out.mkdir(parents=True, exist_ok=True)
    factor = np.float32(1 / 255)
    x = np.multiply(codes["x_train"].reshape(60_000, -1), factor, dtype=np.float32)
    xt = np.multiply(codes["x_test"].reshape(10_000, -1), factor, dtype=np.float32)
    t, tt = codes["t_train"].astype(np.int64), codes["t_test"].astype(np.int64)
    train_codes = codes["x_train"].reshape(60_000, -1)
    rng = np.random.default_rng(args.seed)
    init = (rng.standard_normal((784, 50)) * 0.01, np.zeros(50),
            rng.standard_normal((50, 10)) * 0.01, np.zeros(10))  # fmt: skip
    params = [a.astype(np.float32) for a in init]  # W1, b1, W2, b2
    steps, iters, batch = len(x) // 100, args.iters, 100
    rows = np.arange(batch)
    blas_threads = max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
    history, losses = [], []

    def log(i: int) -> None:
        if losses:
            loss = float(np.stack(losses).sum()) / len(losses)
            losses.clear()
        else:  # before the first update: the first batch's loss
            first = np.random.default_rng([args.seed, 0]).permutation(len(x))[:batch]
            scores = predict(params, x[first])
            scores -= scores.max(axis=1, keepdims=True)
            logp = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
            loss = float(-logp[rows, t[first]].mean())
        train, test = accuracy(params, x, t), accuracy(params, xt, tt)
        history.append({"iteration": i, "loss": loss, "train_acc": train, "test_acc": test})
        label = "final" if i == iters else "iter"
        print(
            f"{label} {i:5d} / {iters} | loss {loss:.4f} | train acc: {train:.4f} test acc: {test:.4f}"
        )
        mnist_files.write_metrics(history, out / "metrics.jsonl")

    log(0)
    order = None
    with threadpool_limits(1, user_api="blas"):
        for i in range(iters):
            epoch, k = divmod(i, steps)
            if order is None or k == 0:
                order = np.random.default_rng([args.seed, epoch]).permutation(len(x))
                labels = t[order]
            idx = order[k * batch : (k + 1) * batch]
            xb = np.multiply(train_codes.take(idx, axis=0), factor, dtype=np.float32)
            losses.append(step(params, xb, labels[k * batch : (k + 1) * batch], rows, 0.1))
            if (i + 1) % steps == 0 and i + 1 < iters:
                with threadpool_limits(blas_threads, user_api="blas"):
                    log(i + 1)
    log(iters)
    np.savez(out / "model.npz", **dict(zip(["W1", "b1", "W2", "b2"], params, strict=True)))
    mnist_files.plot(history, out / "curves.png")
    print(f"done: test accuracy {history[-1]['test_acc']:.4f}; {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    mnist_files.run(main)
