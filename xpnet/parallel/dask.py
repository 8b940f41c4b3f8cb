"""Where independent tasks run: in this process, on a local Dask cluster, or on an existing one.

Shared by the hyperparameter search and the comparisons (xpnet.experiments): each gives a `Runner`
its tasks and receives (key, result) pairs as they finish.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import os
import socket
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator

from ..errors import ConfigError, XpnetError

#: environment of every worker process we start: one BLAS thread each, so N workers use N cores
SINGLE_THREAD_ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


#: how often the scheduler reschedules a task whose worker died before it gives up on it
ALLOWED_FAILURES = 3

#: seconds a scheduler given by its address has to answer before we give up on it
CONNECT_TIMEOUT = 20.0

#: tasks submitted ahead, at least: more only when the cluster has more threads than half of it
MIN_IN_FLIGHT = 64


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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
    """A task was lost by the cluster, not failed by itself: its worker died too often while
    running it (out of memory, walltime, preemption), or the cluster cancelled it."""


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

    def run(self, fn: Callable, tasks: Iterable[tuple[str, tuple]]) -> Iterator[tuple[str, object]]:
        """Yield (key, result) as each task finishes; a lost task yields (key, TaskFailed).

        An exception the task raises is raised here. `tasks` is consumed as the work goes on.
        """
        for key, args in tasks:
            yield key, fn(*args)

    def close(self) -> None:
        pass


class DaskRunner(Runner):
    """Runs tasks on a Dask cluster: a new LocalCluster of `workers` processes, or `scheduler`'s.

    A scheduler that does not answer as one within `timeout` seconds is an XpnetError naming it.
    """

    def __init__(
        self, workers: int | None = None, scheduler: str | None = None, timeout: float | None = None
    ):
        distributed = _distributed()
        import dask

        self.cluster = None
        if scheduler:
            timeout = CONNECT_TIMEOUT if timeout is None else timeout
            _ask_scheduler(distributed, scheduler, timeout)
            try:
                self.client = distributed.Client(scheduler, timeout=f"{timeout}s")
            except (OSError, TimeoutError) as exc:
                raise XpnetError(
                    f"cannot reach the Dask scheduler at {scheduler}: {exc}; start one with "
                    f"`dask scheduler` (and workers with `dask worker {scheduler}`) or check the address"
                ) from None
            self.where = f"on the Dask cluster at {scheduler}"
            if not self.client.scheduler_info().get("workers"):
                warnings.warn(
                    f"the Dask cluster at {scheduler} has no workers yet: the tasks wait for "
                    f"them (start some with `dask worker {scheduler}`)",
                    stacklevel=3,
                )
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
                    # no dashboard, but the scheduler's HTTP routes still listen: on a free port,
                    # not 8787 (taken by any other Dask cluster here: a warning, then another port)
                    scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
                )  # fmt: skip
            self.client = distributed.Client(self.cluster)
            # Ctrl-C in a terminal reaches our worker processes too: the search handles it here
            self.client.register_plugin(_ignore_ctrl_c(distributed), name="xpnet-ignore-ctrl-c")
            self.where = f"on a local Dask cluster of {workers} worker processes"

    def _room(self, in_flight: int) -> int:
        """How many more tasks to submit: enough to keep every worker thread busy, not all of
        them (a search of many trials would otherwise sit in memory as futures)."""
        threads = sum(self.client.nthreads().values())
        return max(MIN_IN_FLIGHT, 2 * threads) - in_flight

    def run(self, fn, tasks):
        distributed = _distributed()
        tasks = iter(tasks)
        futures: dict = {}
        pending = distributed.as_completed()

        def submit(n: int) -> None:
            for key, args in itertools.islice(tasks, max(n, 0)):
                # keys name tasks in Dask's logs; pure=False: a re-run is a new task, not a cached one
                future = self.client.submit(
                    fn, *args, key=f"{key}-{os.urandom(4).hex()}", pure=False
                )
                futures[future] = key
                pending.add(future)

        submit(self._room(0))
        try:
            for future in pending:
                key = futures.pop(future)
                try:
                    result = future.result()
                except distributed.KilledWorker as exc:
                    result = TaskFailed(
                        f"{key}: its worker died while running it, {ALLOWED_FAILURES + 1} "
                        f"time(s) (out of memory? killed?): {exc}"
                    )
                except concurrent.futures.CancelledError:
                    result = TaskFailed(f"{key}: the cluster cancelled it (was it restarted?)")
                yield key, result
                submit(self._room(len(futures)))
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        if self.cluster is not None:
            # workers slow to exit are killed, as they should be: no warning about it after a run
            nanny = logging.getLogger("distributed.nanny")
            level = nanny.level
            nanny.setLevel(logging.ERROR)
            try:
                with contextlib.suppress(Exception):
                    self.cluster.close()
            finally:
                nanny.setLevel(level)


def check_runner_options(workers: int | None = None, scheduler: str | None = None) -> None:
    """Refuse, as a ConfigError, runner options no runner can start with (nothing is contacted).

    --workers: at most the cores this process may use (two always), as every worker runs one
    single-threaded task. --scheduler: an address Dask can parse, with a host and a port.
    """
    if workers is not None and scheduler:
        raise ConfigError("give either --workers (a local cluster) or --scheduler, not both")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    cores = usable_cores()
    most = max(cores, 2)  # two always: the examples' local cluster runs anywhere
    if workers is not None and workers > most:
        raise ConfigError(
            f"--workers {workers} is too many for the {cores} cores this machine gives us: each "
            f"worker runs one single-threaded task, so more workers only share the cores (and "
            f"the memory); use --workers {most} or fewer, or --scheduler to run on a cluster"
        )
    if scheduler:
        _distributed()
        from distributed.comm.addressing import get_address_host_port, parse_address

        usage = f"--scheduler {scheduler} is no Dask scheduler address (tcp://HOST:PORT)"
        try:
            if parse_address(scheduler)[0] == "inproc":  # a scheduler in this process
                return
            host, port = get_address_host_port(scheduler)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{usage}: {exc}") from None
        if not host or not 0 < port < 65536:
            raise ConfigError(f"{usage}: it needs a host, and a port in 1-65535")


def _ask_scheduler(distributed, address: str, timeout: float) -> None:
    """Ask `address` who it is, within `timeout` seconds: a Dask scheduler must answer as one.

    distributed.Client waits without end for a server that accepts and stays silent, and reads
    an HTTP reply as a frame exabytes long (MemoryError); asking first turns both into one line.
    """
    from distributed.comm.addressing import get_address_host_port, parse_address

    scheme = parse_address(address)[0]
    if scheme == "inproc":
        return
    advice = (
        f"start one with `dask scheduler` (and workers with `dask worker {address}`), "
        f"or check the address"
    )
    if scheme == "tcp":  # refused or unknown at once, where Dask would retry until the timeout
        try:
            socket.create_connection(get_address_host_port(address), timeout=timeout).close()
        except TimeoutError:
            pass  # a firewall that drops packets: Dask's own attempt says the same below
        except OSError as exc:
            raise XpnetError(f"no Dask scheduler at {address}: {reason(exc)}; {advice}") from None

    async def identity():
        comm = await distributed.comm.connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity"})
            return await comm.read()
        finally:
            comm.abort()

    # in a thread of its own: the caller may be running an event loop (a notebook)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            answer = pool.submit(asyncio.run, asyncio.wait_for(identity(), timeout)).result()
        except (asyncio.TimeoutError, TimeoutError):  # the same class from Python 3.11 on
            why = f"nothing answered within {timeout:g} s"
        except OSError as exc:  # unreachable, after retrying until the timeout
            why = str(exc) or type(exc).__name__
        except Exception:  # HTTP, or any other protocol: unreadable frames
            why = "something else answers there (not Dask's protocol)"
        else:
            kind = answer.get("type") if isinstance(answer, dict) else None
            if kind == "Scheduler":
                return
            why = (
                f"a Dask {kind} answers there, not a scheduler"
                if isinstance(kind, str)
                else "something else answers there (not a Dask scheduler)"
            )
    raise XpnetError(f"no Dask scheduler at {address}: {why}; {advice}")


def reason(exc: OSError) -> str:
    """An OSError as a few words: "connection refused", "name or service not known"."""
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


def open_runner(
    workers: int | None = None, scheduler: str | None = None, *, timeout: float | None = None
) -> Runner:
    """In this process (neither given), on a new LocalCluster of `workers`, or on `scheduler`
    (which has `timeout` seconds to answer, default CONNECT_TIMEOUT). Bad options: ConfigError
    (see check_runner_options); a scheduler that does not answer as one: XpnetError."""
    check_runner_options(workers, scheduler)
    if workers is None and not scheduler:
        return Runner()
    return DaskRunner(workers, scheduler, timeout)


def worker_name() -> str:
    """The Dask worker running this code, or "local" outside Dask."""
    distributed = sys.modules.get("distributed")  # None too where it was blocked
    if distributed is not None:
        try:
            return distributed.get_worker().address
        except ValueError:  # not inside a worker
            pass
    return "local"
