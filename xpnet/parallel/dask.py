"""Where independent tasks run: in this process, on a local Dask cluster, or on an existing one.

Shared by the hyperparameter search and the comparisons (xpnet.experiments): each gives a `Runner`
its tasks and receives (key, result) pairs as they finish.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator

from ..errors import ConfigError, XpnetError

#: environment of every worker process we start: one BLAS thread each, so N workers use N cores
SINGLE_THREAD_ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


#: how often the scheduler reschedules a task whose worker died before it gives up on it
ALLOWED_FAILURES = 3


def _distributed():
    """The `distributed` module, or a one-line error saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise XpnetError(
            'running on several workers needs Dask: pip install "xpnet[distributed]" '
            '(or pip install "dask[distributed]")'
        ) from None
    return distributed


class TaskFailed(XpnetError):
    """A task could not be completed: its worker died too often, or it raised outside a trial."""


def _ignore_ctrl_c(distributed):
    """A worker plugin that makes (restarted) local workers ignore SIGINT (shipped by value)."""

    class IgnoreCtrlC(distributed.WorkerPlugin):
        def setup(self, worker):
            import signal
            import threading

            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, signal.SIG_IGN)

    return IgnoreCtrlC()


class Runner:
    """Runs independent tasks `fn(*args)` here, in order; `where` names the place for messages."""

    where = "in this process"

    def run(self, fn: Callable, tasks: list[tuple[str, tuple]]) -> Iterator[tuple[str, object]]:
        """Yield (key, result) as each task finishes; a failed task yields (key, TaskFailed)."""
        for key, args in tasks:
            yield key, fn(*args)

    def close(self) -> None:
        pass


class DaskRunner(Runner):
    """Runs tasks on a Dask cluster: a new LocalCluster of `workers` processes, or `scheduler`'s."""

    def __init__(self, workers: int | None = None, scheduler: str | None = None):
        distributed = _distributed()
        import dask

        self.cluster = None
        if scheduler:
            try:
                self.client = distributed.Client(scheduler, timeout="20s")
            except (OSError, TimeoutError) as exc:
                raise XpnetError(
                    f"cannot reach the Dask scheduler at {scheduler}: {exc}; start one with "
                    f"`dask scheduler` (and workers with `dask worker {scheduler}`) or check the address"
                ) from None
            self.where = f"on the Dask cluster at {scheduler}"
        else:
            # processes, not threads: the training loop holds the GIL between BLAS calls
            settings = {
                "distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
                # Dask's default MALLOC_TRIM_THRESHOLD_ turns off glibc's adaptive mmap threshold,
                # so every array over 128 KiB is a fresh mmap: a third more time per trial here
                "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
            }
            with dask.config.set(settings):
                self.cluster = distributed.LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True,
                    dashboard_address=None, host="127.0.0.1", env=dict(SINGLE_THREAD_ENV),
                )  # fmt: skip
            self.client = distributed.Client(self.cluster)
            # Ctrl-C in a terminal reaches our worker processes too: the search handles it here
            self.client.register_plugin(_ignore_ctrl_c(distributed), name="xpnet-ignore-ctrl-c")
            self.where = f"on a local Dask cluster of {workers} worker processes"

    def run(self, fn, tasks):
        distributed = _distributed()
        # keys name the trials in Dask's logs; pure=False: a re-run is a new task, never a cached one
        futures = {
            self.client.submit(fn, *args, key=f"{key}-{os.urandom(4).hex()}", pure=False): key
            for key, args in tasks
        }
        try:
            for future in distributed.as_completed(futures):
                key = futures[future]
                try:
                    result = future.result()
                except distributed.KilledWorker as exc:
                    result = TaskFailed(
                        f"{key}: its worker died {ALLOWED_FAILURES + 1} times while running it "
                        f"(out of memory?): {exc}"
                    )
                yield key, result
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()


def open_runner(workers: int | None = None, scheduler: str | None = None) -> Runner:
    """In this process (neither given), on a new LocalCluster of `workers`, or on `scheduler`."""
    if workers is not None and scheduler:
        raise ConfigError("give either --workers (a local cluster) or --scheduler, not both")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if workers is None and not scheduler:
        return Runner()
    return DaskRunner(workers, scheduler)


def worker_name() -> str:
    """The Dask worker running this code, or "local" outside Dask."""
    if "distributed" in sys.modules:
        try:
            return sys.modules["distributed"].get_worker().address
        except ValueError:  # not inside a worker
            pass
    return "local"


def blas_threads() -> int | None:
    """The BLAS threads this process uses now (threadpoolctl), None without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    pools = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    return max(pools) if pools else None
