"""Data-parallel training: every process computes the gradient of its share of the global
minibatch, and the gradients are averaged before every update (the book's §8.3; ChainerMN's and
PyTorch DDP's scheme).

`DataParallel` is the Trainer callback that does it: after each backward pass all gradients are
packed into one flat buffer and summed by ONE allreduce (not one per parameter), then scaled by
1/N and written back into the layers, so the optimizer's update is the same in every process and
the weights stay identical. The buffer's tail carries the processes' stop flags (a signal
received by any of them), so they stop at the same step with no extra message per step.

Where the sum is taken (`plan`): NumPy and torch on the CPU, MPI on the host buffer itself (torch
shares its memory); CuPy on distinct GPUs, NCCL on the device (the stop flags then travel on the
host through a non-blocking MPI allreduce, agreed one step later, so no step reads the device);
anything else (several ranks on one GPU, torch on a GPU, array_api_strict), the buffer staged
through the host and summed by MPI.

What differs from one process with the whole batch: batch normalization normalizes each process's
share with its own statistics (as DDP without SyncBatchNorm); the running averages are averaged
over the processes before every evaluation and checkpoint, so all evaluate and save one model.
Dropout draws different masks in every process: rank r's layers are seeded from (seed, r), rank 0
keeps the seed itself, and a checkpoint holds the seed and the number of masks drawn, from which
every rank's stream continues.
"""

from __future__ import annotations

import signal
import zlib

import numpy as np
from array_api_compat import (
    array_namespace,
    is_cupy_namespace,
    is_numpy_namespace,
    is_torch_namespace,
)

from ..backend import asarray, dtype_name, to_numpy
from ..errors import XpnetError
from ..training.callbacks import Callback

#: the stop flags after the gradients in the buffer: processes that received SIGINT, SIGTERM
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def rank_seed(seed: int, rank: int) -> int:
    """Rank `rank`'s dropout seed from the layer's own: rank 0 keeps it, the others draw a
    63-bit seed from (seed, rank)."""
    if rank == 0:
        return seed
    words = np.random.SeedSequence([seed, rank]).generate_state(2, np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


class HostReducer:
    """The gradients packed into one host buffer (NumPy's own memory, or shared with torch on the
    CPU), summed by one MPI allreduce, with the stop flags in its tail."""

    def __init__(self, comm, grads: list, what: str):
        self.comm = comm
        self.shapes = [tuple(g.shape) for g in grads]
        self.sizes = [int(np.prod(s, dtype=np.int64)) for s in self.shapes]
        self.n = sum(self.sizes)
        self.dtype = np.dtype(dtype_name(array_namespace(grads[0]), grads[0].dtype))
        self.host = np.zeros(self.n + len(STOP_SIGNALS), self.dtype)
        self.scale = self.dtype.type(1.0 / comm.size)
        self.what = what

    def average(self, xp, grads: list, flags) -> list:
        """Replace every gradient by its mean over the processes; return the summed flags."""
        host, n = self.host, self.n
        if is_numpy_namespace(xp):
            np.concatenate([np.reshape(g, -1) for g in grads], out=host[:n])
        elif is_torch_namespace(xp) and grads[0].device.type == "cpu":
            import torch

            torch.cat([g.reshape(-1) for g in grads], out=torch.from_numpy(host[:n]))
        else:
            host[:n] = to_numpy(xp.concat([xp.reshape(g, (-1,)) for g in grads]))
        host[n:] = flags
        self.comm.allreduce(host)
        stop = [int(f) for f in host[n:]]
        np.multiply(host[:n], self.scale, out=host[:n])
        self._unpack(xp, grads)
        return stop

    def _unpack(self, xp, grads: list) -> None:
        host = self.host[: self.n]
        if is_numpy_namespace(xp):
            flat = host
        elif is_torch_namespace(xp) and grads[0].device.type == "cpu":
            import torch

            flat = torch.from_numpy(host)
        else:
            flat = asarray(host, xp, grads[0].device)
        start = 0
        for g, shape, size in zip(grads, self.shapes, self.sizes, strict=True):
            g[...] = xp.reshape(flat[start : start + size], shape)
            start += size

    def finish(self) -> None:
        """Nothing is left in flight."""


class NcclReducer:
    """The gradients packed into one device buffer and summed by NCCL between GPUs (one per
    process); the stop flags go through a non-blocking MPI allreduce on the host and are agreed
    one step later, so no step waits for the device."""

    what = "one NCCL allreduce per step between the GPUs (stop flags by MPI, one step later)"

    def __init__(self, comm, grads: list):
        import cupy
        from cupy.cuda import nccl

        self.comm, self.cupy = comm, cupy
        self.shapes = [tuple(g.shape) for g in grads]
        self.sizes = [int(np.prod(s, dtype=np.int64)) for s in self.shapes]
        self.n = sum(self.sizes)
        self.flat = cupy.empty(self.n, grads[0].dtype)
        self.nccl_type = {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64}[
            str(grads[0].dtype)
        ]
        self.sum_op = nccl.NCCL_SUM
        uid = comm.bcast(nccl.get_unique_id() if comm.rank == 0 else None)
        self.nccl = nccl.NcclCommunicator(comm.size, uid, comm.rank)
        self.scale = 1.0 / comm.size
        self.sent = np.zeros(len(STOP_SIGNALS), np.int64)
        self.agreed = np.zeros(len(STOP_SIGNALS), np.int64)
        self.request = None

    def average(self, xp, grads: list, flags) -> list | None:
        cupy, flat = self.cupy, self.flat
        cupy.concatenate([g.reshape(-1) for g in grads], out=flat)
        stream = cupy.cuda.get_current_stream()
        self.nccl.allReduce(flat.data.ptr, flat.data.ptr, self.n, self.nccl_type, self.sum_op,
                            stream.ptr)  # fmt: skip
        flat *= self.scale
        start = 0
        for g, shape, size in zip(grads, self.shapes, self.sizes, strict=True):
            g[...] = flat[start : start + size].reshape(shape)
            start += size
        stop = None
        if self.request is not None:  # the previous step's flags: long arrived
            self.request.Wait()
            stop = [int(f) for f in self.agreed]
        self.sent[:] = flags
        self.request = self.comm.comm.Iallreduce(self.sent, self.agreed)
        return stop

    def finish(self) -> None:
        if self.request is not None:
            self.request.Wait()
            self.request = None


def plan(comm, net):
    """The reducer for `net`'s gradients: NCCL when every process has a GPU of its own (CuPy),
    else a host buffer summed by MPI."""
    be, grads = net.backend, list(net.params.values())
    if is_cupy_namespace(be.xp):
        gpus = comm.allgather((comm.host, be.device.pci_bus_id))
        if len(set(gpus)) == comm.size:
            try:
                return NcclReducer(comm, grads)
            except (ImportError, AttributeError, RuntimeError) as exc:  # CuPy built without NCCL
                reason = f"NCCL unavailable ({type(exc).__name__}: {exc})"
        else:
            reason = "several processes share a GPU"
        return HostReducer(comm, grads, f"one MPI allreduce per step, staged through the host "
                                        f"({reason})")  # fmt: skip
    if is_numpy_namespace(be.xp):
        return HostReducer(comm, grads, "one MPI allreduce per step of the host buffer")
    if is_torch_namespace(be.xp) and be.device.type == "cpu":
        return HostReducer(comm, grads, "one MPI allreduce per step of a host buffer torch shares")
    return HostReducer(comm, grads, "one MPI allreduce per step, staged through the host")


class DataParallel(Callback):
    """Averages the gradients over the processes after every backward pass (one allreduce), stops
    every process at the same step on a signal, starts them from the same weights (checked once),
    seeds dropout per rank and averages batch normalization's running statistics before every
    evaluation and checkpoint. Give it to the Trainer with the same communicator:
    `Trainer(config, data, out, comm=comm, callbacks=[DataParallel(comm)])`."""

    order = 1  # before any other hook reads the gradients, and before the evaluation

    def __init__(self, comm):
        self.comm = comm
        self.reducer = None
        self._dropout: dict[str, tuple[int, int]] = {}  # layer -> (its seed, this rank's seed)
        self._synced_at: int | None = None  # iteration at which the buffers were last averaged

    def plan(self, trainer) -> str:
        """Choose how the gradients are summed (collective); returns what was chosen."""
        if self.reducer is None:
            self.reducer = plan(self.comm, trainer.net)
        return self.reducer.what

    def on_fit_start(self, trainer) -> None:
        self._check_same_start(trainer)
        self._seed_dropout(trainer)
        self.plan(trainer)
        self._synced_at = trainer.iteration  # checked identical just now

    def on_after_backward(self, trainer) -> None:
        pending = trainer.pending_signal
        flags = [int(pending == s) for s in STOP_SIGNALS]
        if self.reducer is None:  # `Trainer.advance` called outside `run`
            self.on_fit_start(trainer)
        stop = self.reducer.average(trainer.be.xp, list(trainer.net.grads.values()), flags)
        self._synced_at = None  # the step's forward pass moved every process's running stats
        if stop is not None and any(stop) and trainer.stop_signal is None:
            # the same signal in every process, whichever received it
            trainer.stop_signal = next(s for s, n in zip(STOP_SIGNALS, stop, strict=True) if n)

    def on_interval(self, trainer, record: dict) -> None:
        self._sync_buffers(trainer)

    def on_save(self, trainer) -> None:
        self._sync_buffers(trainer)

    def on_fit_end(self, trainer, reason: str) -> None:
        if self.reducer is not None and reason != "error":
            self.reducer.finish()

    def state_dict(self) -> dict:
        return {
            "data_parallel": {
                "processes": self.comm.size,
                "dropout": "rank r draws from rank_seed(seed, r); rank 0 from the layer's seed",
                "batchnorm": "running statistics averaged over the processes",
            }
        }

    # -- the parts ----------------------------------------------------------------------------

    def _sync_buffers(self, trainer) -> None:
        """Average batch normalization's running statistics over the processes (once per step)."""
        buffers = list(trainer.net.buffers.values())
        if not buffers or self._synced_at == trainer.iteration:
            return
        host = np.concatenate([np.reshape(to_numpy(b), -1) for b in buffers]).astype(np.float64)
        self.comm.allreduce(host)
        host /= self.comm.size
        be, start = trainer.be, 0
        for b in buffers:
            size = int(np.prod(b.shape, dtype=np.int64))
            part = np.reshape(host[start : start + size], tuple(b.shape))
            b[...] = be.asarray(part, dtype_name(be.xp, b.dtype))
            start += size
        self._synced_at = trainer.iteration

    def _seed_dropout(self, trainer) -> None:
        rank = self.comm.rank
        for name, layer in trainer.net.layers.items():
            state = layer.get_state() if hasattr(layer, "get_state") else {}
            if "seed" not in state:
                continue
            base, mine = self._dropout.get(name, (None, None))
            if state["seed"] != mine:  # a new layer, or restored from a checkpoint: rank 0's seed
                base = int(state["seed"])
                mine = rank_seed(base, rank)
                self._dropout[name] = (base, mine)
            layer.set_state({**state, "seed": mine})

    def _check_same_start(self, trainer) -> None:
        """Refuse to train unless every process holds the same data and the same weights."""
        d = trainer.dataset
        data = (d.name, np.shape(d.x_train), np.shape(d.x_test),
                zlib.crc32(np.ascontiguousarray(d.x_train)),
                zlib.crc32(np.ascontiguousarray(d.t_train)))  # fmt: skip
        state = [*trainer.net.params.values(), *trainer.net.buffers.values()]
        mine = np.concatenate([np.ascontiguousarray(to_numpy(v)).view(np.uint8).ravel()
                               for v in state])  # fmt: skip
        seen = self.comm.allgather((data, mine.size, trainer.iteration))
        odd = [r for r, s in enumerate(seen) if s != seen[0]]
        if not odd:
            root = mine.copy()
            self.comm.Bcast(root)
            odd = [r for r, same in enumerate(self.comm.allgather(np.array_equal(root, mine)))
                   if not same]  # fmt: skip
        if odd:
            raise XpnetError(
                f"the processes do not start alike: rank(s) {', '.join(map(str, odd))} hold other "
                f"data, weights or iteration than rank 0; every process must read the same data "
                f"and the same checkpoint (on a cluster: the same files on every node)"
            )
