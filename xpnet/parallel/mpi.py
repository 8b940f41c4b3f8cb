"""The processes of a data-parallel run (the book's §8.3), started by `mpiexec` and joined by MPI.

`mpiexec -n N python scripts/train.py ...` starts N copies of the command; each finds the others
here. Without a launcher nothing in this module runs and mpi4py is never imported (`launched`
reads only the environment the launchers set). `MPIComm` is the communicator the Trainer is given
(xpnet.training.comm's members, each collective); `guard` makes every failure end the whole job:
an error all processes meet alike (a usage error, a divergence, a signal) exits each as one
process would, with rank 0 saying it, and an error in one process alone stops all of them
(MPI_Abort) with a line naming the rank, never a hang. The gradients themselves are averaged by
xpnet.parallel.allreduce.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback

import numpy as np

from ..errors import ConfigError, XpnetError
from ..fast.threads import set_threads

#: the launchers' environment: MPICH/Intel MPI (Hydra, srun --mpi=pmi2), Open MPI, MVAPICH
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
#: PMIx (srun --mpi=pmix, Open MPI 5) names the rank only: MPI itself is asked for the size
RANK_ONLY_VARIABLES = ("PMIX_RANK",)
#: seconds a failing process waits for the others to fail alike before it stops the job
AGREE_SECONDS = 5.0
#: BLAS thread variables a user may set; when one is set, the launch leaves the threads alone
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def launched(environ=None) -> bool:
    """True when a launcher started this process as one of several (read from the environment
    only: nothing is imported)."""
    env = os.environ if environ is None else environ
    for name in SIZE_VARIABLES:
        if name in env:
            return env[name].strip().isdigit() and int(env[name]) > 1
    return any(name in env for name in RANK_ONLY_VARIABLES)


def start() -> MPIComm | None:
    """Join the other processes of this launch: an MPIComm, or None when the launch has only
    this one. A one-line error when mpi4py (or an MPI library) is missing."""
    try:
        from mpi4py import MPI
    except ImportError:
        raise XpnetError(
            "this process was started by mpiexec, but mpi4py is not installed: "
            "pip install 'xpnet[mpi]' (mpi4py and the mpich wheel), or run without mpiexec"
        ) from None
    except RuntimeError as exc:  # mpi4py without an MPI library it can load
        raise XpnetError(
            f"mpi4py cannot load an MPI library ({exc}): pip install 'xpnet[mpi]' (the mpich "
            f"wheel), or run without mpiexec"
        ) from None
    if MPI.COMM_WORLD.Get_size() == 1:
        return None
    return MPIComm(MPI.COMM_WORLD)


class RootFailed(SystemExit):
    """Rank 0 failed in a step the others waited for; it says why, the others exit alike."""


class MPIComm:
    """The processes of the launch, as the Trainer sees them (xpnet.training.comm's members).

    Every method is collective: all processes call it at the same point of the run. Training's
    collectives run on a duplicate of COMM_WORLD, and `guard`'s on another, so a process that
    failed can ask whether the others failed too while they still wait in a training reduction.
    """

    def __init__(self, world):
        from mpi4py import MPI

        self.MPI = MPI
        self.world = world
        self.comm = world.Dup()
        self._errors = world.Dup()
        self.rank, self.size = world.Get_rank(), world.Get_size()
        local = world.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        local.Free()
        self.host = MPI.Get_processor_name()
        #: (pid, host) of every rank: the launcher names a dead process by its pid
        self.processes = self.comm.allgather((os.getpid(), self.host))
        self.threads: int | None = None  # BLAS threads per process, once `limit_threads` ran

    # -- xpnet.training.comm's members --------------------------------------------------------

    def sum(self, values: list) -> list:
        """Each of `values` (host numbers) added up over all processes (integers stay exact)."""
        exact = all(isinstance(v, int | np.integer) for v in values)
        buffer = np.array(values, np.int64 if exact else np.float64)
        self.comm.Allreduce(self.MPI.IN_PLACE, buffer)
        return buffer.tolist()

    def any(self, flag: bool) -> bool:
        """True when `flag` is true in any process."""
        return bool(self.sum([int(bool(flag))])[0])

    def describe(self) -> str:
        return f"{self.size} processes (MPI)"

    # -- more collectives ---------------------------------------------------------------------

    def bcast(self, value, root: int = 0):
        """Rank `root`'s `value` (a small Python object) in every process."""
        return self.comm.bcast(value, root=root)

    def allgather(self, value) -> list:
        """Every process's `value`, by rank."""
        return self.comm.allgather(value)

    def allreduce(self, host: np.ndarray) -> None:
        """Sum a contiguous host buffer over all processes, in place (one MPI allreduce)."""
        self.comm.Allreduce(self.MPI.IN_PLACE, host)

    def Bcast(self, host: np.ndarray, root: int = 0) -> None:
        """Rank `root`'s contents of a host buffer in every process, in place."""
        self.comm.Bcast(host, root=root)

    def on_root(self, work, status):
        """`work()` run by rank 0 alone (make the run folder, download the data), its result
        sent to all. When it fails, rank 0 raises the error and the others exit with the status
        `status(error)` rank 0 exits with (rank 0 says what went wrong)."""
        if self.rank == 0:
            try:
                value = work()
            except BaseException as error:
                self.bcast(("failed", status(error)))
                raise
            return self.bcast(("ok", value))[1]
        outcome, value = self.bcast(None)
        if outcome == "failed":
            raise RootFailed(value)
        return value

    # -- the edge -----------------------------------------------------------------------------

    def check_batch(self, batch: int, resuming: bool = False) -> None:
        """Refuse a global batch the processes cannot share evenly, saying what fits."""
        n = self.size
        if not batch % n:
            return
        if resuming:
            advice = f"a resumed run keeps its batch: resume with a number of processes that divides {batch}"
        else:
            fits = [b for b in (batch - batch % n, batch - batch % n + n) if b > 0]
            advice = f"give a --batch-size that {n} divides, e.g. {' or '.join(map(str, fits))}"
        raise ConfigError(
            f"the global batch of {batch} samples cannot be split evenly over {n} processes; {advice}"
        )

    def header(self, batch: int, how: str) -> list[str]:
        """The lines that say how the run is spread (printed by rank 0)."""
        threads = (
            f"{self.threads} BLAS thread{'s' if self.threads > 1 else ''} per process"
            if self.threads
            else "BLAS threads as OMP_NUM_THREADS & co. say"
        )
        return [
            f"data-parallel: {self.describe()}, global batch {batch} = {self.size} × "
            f"{batch // self.size}; gradients: {how}; {threads}",
            f"processes: {self.process_table()}",
        ]

    def limit_threads(self, backend_name: str) -> int:
        """BLAS (and torch) threads per process: the cores of this node shared among its ranks,
        unless the user set OMP_NUM_THREADS & co. Returns the number (0: left to the user).

        xpnet's own worker threads (the convolutional fast step's) follow the same number, or the
        BLAS variable the user set, unless XPNET_THREADS says otherwise: two ranks each splitting
        their step over every core would run four threads on two cores.
        """
        if any(name in os.environ for name in THREAD_VARIABLES):
            self.threads = 0
            given = [os.environ[name].strip() for name in THREAD_VARIABLES if name in os.environ]
            if "XPNET_THREADS" not in os.environ and given[0].isdigit() and int(given[0]) > 0:
                set_threads(int(given[0]))
            return 0
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
        self.threads = max(1, cores // self.local_size)
        if "XPNET_THREADS" not in os.environ:
            set_threads(self.threads)
        with contextlib.suppress(ImportError):
            from threadpoolctl import threadpool_limits

            threadpool_limits(self.threads)  # process-wide, for the whole run
        if backend_name == "torch":
            import torch

            torch.set_num_threads(self.threads)
        return self.threads

    def rank_device(self, device: str | None, backend: str | None) -> str | None:
        """The device of this rank: a GPU given as "cuda" or "auto" becomes cuda:(local rank % GPUs
        on this node); a device with an index, or the CPU, stays as given."""
        kind = device or "auto"
        if kind not in ("auto", "cuda"):
            return device
        count = 0
        if backend in (None, "cupy"):
            from ..backend import gpu_available

            if gpu_available("cupy"):
                import cupy

                count = cupy.cuda.runtime.getDeviceCount()
        if backend == "torch":
            import torch

            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return f"cuda:{self.local_rank % count}" if count else device

    def process_table(self) -> str:
        """'pids 0:1234 1:1235 on vm': which process is which rank (the launcher names pids)."""
        hosts: dict[str, list[str]] = {}
        for rank, (pid, host) in enumerate(self.processes):
            hosts.setdefault(host, []).append(f"{rank}:{pid}")
        return "; ".join(f"pids {' '.join(ranks)} on {host}" for host, ranks in hosts.items())

    # -- failures -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def guard(self, debug: bool = False):
        """Run a command in every process: ranks other than 0 print nothing, and a failure in one
        process ends the job (see the module's docstring)."""
        stderr = sys.stderr
        if self.rank:  # rank 0 speaks for all; a lone failure below still prints
            devnull = open(os.devnull, "w")  # open until the process ends
            sys.stdout = sys.stderr = devnull
        try:
            yield self
        except BaseException as error:
            if self._all_failed():
                raise  # each exits as one process would; rank 0's message is the one shown
            self._abort(error, stderr, debug)

    def _all_failed(self) -> bool:
        """Whether every process reached a failure within AGREE_SECONDS (a barrier on the
        guard's own communicator: the others may still wait in a training reduction)."""
        request = self._errors.Ibarrier()
        deadline = time.monotonic() + AGREE_SECONDS
        while time.monotonic() < deadline:
            if request.Test():
                return True
            time.sleep(0.01)
        return False

    def _abort(self, error: BaseException, stderr, debug: bool) -> None:
        """This process failed alone: say so, naming the rank, and stop every process."""
        pid, host = self.processes[self.rank]
        if isinstance(error, XpnetError | OSError | MemoryError | KeyboardInterrupt) and not debug:
            what = str(error) or type(error).__name__
        else:
            what = "".join(traceback.format_exception(error)).rstrip()
        if isinstance(error, SystemExit):
            what = f"exit status {error.code}"
        code = 2 if isinstance(error, ConfigError) else 1
        print(
            f"error: rank {self.rank} of {self.size} (pid {pid} on {host}) failed alone: {what}; "
            f"stopping all {self.size} processes",
            file=stderr,
            flush=True,
        )
        self.world.Abort(code)
