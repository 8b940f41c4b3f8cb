"""Worker threads for the NumPy kernels: one step's work split over the cores, by rows.

NumPy runs each elementwise operation on one core, and releases the GIL inside its loops (and
BLAS inside its products), so the same operations run on disjoint rows of an array by several
threads use several cores. A split never changes a number: every element is computed by the same
operations as without it (an elementwise operation by rows; a matrix product by rows or columns
of its result, each still one dot product over the whole inner dimension, as BLAS computes it).

While a step runs on these workers, BLAS runs on one thread (``Workers.single_blas``): its own
threads would compete with these for the same cores, and OpenBLAS rounds some products
differently on two threads than on one (512×577 times 577×64, say), while a product split here
by rows gives the one-thread numbers.

A product is split only by rows of its result, at multiples of `row_quantum` rows: OpenBLAS
lays its kernel's tiles from the first row of each call, and on some CPUs a row's sums round
differently in another tile (its Haswell kernels on an AMD EPYC, float32: a split at row 13
changed some entries, one at a multiple of 12 none). Split by columns, no position kept every
entry there, so no product is split by columns.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

from ..errors import ConfigError

#: more threads than this split a batch of 100 into slivers that cost more to hand out than to run
MAX_THREADS = 8
#: the least work (multiply-adds) a matrix product is split into. OpenBLAS computes products of
#: up to a few million multiply-adds with other kernels (its "small matrix" and "direct" ones),
#: which round differently from its blocked kernel; pieces this large take the blocked kernel,
#: as the whole product does, and the split gives the whole product's numbers
MIN_PIECE = 8_000_000
#: the row counts `row_quantum` tries, in order: each a multiple of a BLAS kernel's usual tile
QUANTA = (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96)


@functools.cache
def row_quantum(dtype) -> int | None:
    """The least q of QUANTA at whose multiples a matrix product of `dtype` splits by rows into
    pieces whose products are the whole product's rows, bit for bit (BLAS on one thread, pieces
    of at least MIN_PIECE multiply-adds, as the workers split); None when none is (then no
    product of `dtype` is split). Probed once per dtype, a few milliseconds."""
    import numpy as np

    rng = np.random.default_rng(0)
    rows, k, n = 960, 512, 64  # halves of 15.7 million multiply-adds: the blocked kernel's
    x = rng.standard_normal((rows, k)).astype(dtype)
    w = rng.standard_normal((k, n)).astype(dtype)
    with Workers(1).single_blas():
        whole = x @ w
        for q in QUANTA:
            # odd multiples of q near the middle: not multiples of 2q, which pass more often
            m = (rows // 2 // q) | 1
            cuts = [q * m, q * (m + 2)]
            if all(np.array_equal(x[:c] @ w, whole[:c]) and np.array_equal(x[c:] @ w, whole[c:])
                   for c in cuts):  # fmt: skip
                return q
    return None


def default_threads() -> int:
    """XPNET_THREADS when set, else the cores this process may run on (at most MAX_THREADS)."""
    value = os.environ.get("XPNET_THREADS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(f"XPNET_THREADS must be a positive integer, got {value!r}")
        return int(value)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_THREADS))


class Workers:
    """`n` threads (the caller's and n − 1 in a pool that lives as long as this object).

    ``run(fn, parts)`` calls fn(part) for every part at once, the first in the caller's thread,
    and returns when all are done (an exception in any is raised in the caller).
    """

    def __init__(self, n: int):
        self.n = max(1, int(n))
        self._pool = None
        self._pid = None
        self._blas = None
        self._lock = threading.Lock()

    def parts(
        self, total: int, product: int | None = None, dtype=None, unit: int = 1
    ) -> list[tuple[int, int]]:
        """`total` items as up to n contiguous (start, stop) ranges of nearly equal size.

        `product`: the multiply-adds of a matrix product of `dtype` whose result has `unit` rows
        per item; then every range holds at least MIN_PIECE of them (one range for a small
        product) and starts at a multiple of `row_quantum(dtype)` rows (one range where there
        is none).
        """
        if total <= 0:
            return [(0, 0)]
        k, step = max(min(self.n, total), 1), 1
        if product is not None:
            k = max(min(k, product // MIN_PIECE), 1)
            q = row_quantum(dtype) if k > 1 else 1
            if q is None:
                k = 1
            else:  # ranges of whole steps of items, each step a multiple of q rows
                step = q // math.gcd(q, unit)
        steps = -(-total // step)
        k = min(k, steps)
        bounds = [min(steps * i // k * step, total) for i in range(k + 1)]
        return [(bounds[i], bounds[i + 1]) for i in range(k) if bounds[i] < bounds[i + 1]]

    def run(self, fn, parts) -> list:
        """[fn(part) for part in parts], the parts at the same time (the first in this thread)."""
        parts = list(parts)
        if len(parts) <= 1 or self.n == 1:
            return [fn(p) for p in parts]
        pool = self._executor()
        futures = [pool.submit(fn, p) for p in parts[1:]]
        try:
            first = fn(parts[0])
        finally:
            wait(futures)  # never leave a thread writing into arrays the caller gets back
        return [first, *(f.result() for f in futures)]

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            # a forked child inherits the pool object but not its threads: it makes its own
            if self._pool is None or self._pid != os.getpid():
                self._pool = ThreadPoolExecutor(self.n - 1, thread_name_prefix="xpnet")
                self._pid = os.getpid()
            return self._pool

    def single_blas(self):
        """A context in which BLAS uses one thread."""
        if self._blas is None:
            try:
                from threadpoolctl import ThreadpoolController
            except ImportError:  # a dependency, but the step is correct without it
                return contextlib.nullcontext()
            self._blas = ThreadpoolController()  # scans the loaded libraries once (a few ms)
        return self._blas.limit(limits=1, user_api="blas")


_WORKERS: Workers | None = None


def workers() -> Workers:
    """The process's workers (default_threads() of them), made on first use."""
    global _WORKERS
    if _WORKERS is None:
        _WORKERS = Workers(default_threads())
    return _WORKERS


def set_threads(n: int | None) -> Workers:
    """Use `n` threads from now on (None: the default); returns the new workers."""
    global _WORKERS
    if _WORKERS is not None and _WORKERS._pool is not None:
        _WORKERS._pool.shutdown(wait=False)
    _WORKERS = Workers(default_threads() if n is None else n)
    return _WORKERS
