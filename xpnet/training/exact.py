"""Evaluations on one BLAS thread that give the bits of BLAS on all threads (the overlap's
evaluator, xpnet.training.callbacks.Evaluation).

The steps of a small network run BLAS on one thread, so the second core is free to evaluate the
last line while the next steps run; but a line must print the numbers an evaluation with all
threads prints, and a BLAS sums differently on more threads. Two ways were seen, both with
OpenBLAS 0.3.31 on two threads (`xpnet.fast.step.product` reproduces each on one thread):

- on one 2-core machine it summed MNIST's 784 inputs in two halves and added them, so one
  thread's plain product differed in 79% of the scores: `Cuts(k=(392,))`;
- on another (its Haswell kernels on an AMD EPYC) it split the rows into two shares and each
  share into two halves (`thread_rows`), and blocks that start elsewhere are summed by other
  kernel paths, so one thread's plain product differed in 10%: `Cuts(rows=2)`.

Neither is documented, so the run tries these on its own weights, rows and chunk shapes, and
overlaps only when one of them reproduces every score.
"""

from __future__ import annotations

from ..fast.step import Cuts, product


def blas_threads(controller=None) -> int:
    """How many threads NumPy's BLAS uses now (1 when threadpoolctl finds none)."""
    if controller is None:
        from threadpoolctl import ThreadpoolController

        controller = ThreadpoolController()
    counts = [info["num_threads"] for info in controller.select(user_api="blas").info()]
    return max(counts, default=1)


def chunk_shapes(trainer) -> list[int]:
    """The row counts of the chunks this run's evaluations predict on."""
    d, chunk, shapes = trainer.data, trainer.net.eval_batch_size, set()
    for n in (d.x_train.shape[0], d.x_test.shape[0]):
        for rows in {n, min(n, trainer.config.eval_samples or n)}:
            shapes |= {min(rows, chunk), rows % chunk} - {0}
    return sorted(shapes)


def equal_cuts(k: int, threads: int) -> tuple[int, ...]:
    """The positions that split a sum of `k` terms into `threads` equal ranges."""
    return tuple(k * i // threads for i in range(1, threads)) if k >= threads > 1 else ()


def candidates(k: int, threads: int) -> list[Cuts]:
    """The sums one thread tries, in order, for a product over `k` terms that `threads` threads
    compute: the plain one, one in equal ranges of k (one per thread), one in the row blocks
    of the threads' shares."""
    if threads < 2:
        return [Cuts()]
    return list(dict.fromkeys([Cuts(), Cuts(k=equal_cuts(k, threads)), Cuts(rows=threads)]))


def one_thread_cuts(trainer) -> list[Cuts] | None:
    """Per Affine of `trainer.fused`, the `Cuts` with which one BLAS thread predicts the bits
    that all threads predict on every chunk shape of this run, or None when none is found.

    Layer by layer on the largest chunk, the product as all threads compute it is matched by one
    of `candidates` (the activations between are elementwise: the same bits on any thread); the
    cuts found are then checked on the other chunk shapes, through the whole prediction.
    """
    import numpy as np  # (asked on NumPy only)
    from threadpoolctl import ThreadpoolController

    # one controller: each threadpool_limits() would look for the libraries again (milliseconds)
    blas = ThreadpoolController().select(user_api="blas")

    step, d = trainer.fused, trainer.data
    shapes = chunk_shapes(trainer)
    x = d.x_train if d.x_train.shape[0] >= max(shapes) else d.x_test
    xp, threads, cuts = trainer.be.xp, blas_threads(blas), []
    h = xp.reshape(x[: max(shapes), ...], (max(shapes), -1))
    # weights that overflow are the first line's to report (the guard), not a warning here
    with np.errstate(all="ignore"):
        for i, affine in enumerate(step.affines):
            target = h @ affine.W
            with blas.limit(limits=1):
                found = next((c for c in candidates(int(affine.W.shape[0]), threads)
                              if bool(xp.all(product(h, affine.W, *c) == target))), None)  # fmt: skip
            if found is None:
                return None
            cuts.append(found)
            if i < len(step.activations):
                h = step.kernels.bias_act(target, affine.b, step.activations[i])
        # the largest chunk is the one matched above, product by product; the others, whole
        others = shapes[:-1]
        everywhere = {rows: step.predict(x[:rows, ...]) for rows in others}
        with blas.limit(limits=1):
            one = step.cut(cuts)
            if all(bool(xp.all(one.predict(x[:r, ...]) == everywhere[r])) for r in others):
                return cuts
    return None
