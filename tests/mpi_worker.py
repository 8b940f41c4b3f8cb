"""Run under `mpiexec` by tests/test_mpi.py (never collected by pytest itself).

`python tests/mpi_worker.py equal OUT`: trains every (case, backend) of RUNS with the library's
data-parallel API; rank 0 leaves the weights in OUT/<case>-<backend>.npz.
`python tests/mpi_worker.py resume OUT`: an MLP with batch normalization and dropout, 30 steps at
once and 20 + 10 through a checkpoint; rank 0 leaves both in OUT/{once,resumed}.npz.
`python tests/mpi_worker.py lone-error`: rank 1 alone fails at iteration 3.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: the networks of the equality test: no batch normalization, no dropout (those differ by design);
#: SGD, whose step is proportional to the gradient (Adam would hide a sum taken for a mean)
CASES = {
    "mlp": dict(model="mlp", hidden=[30], init="he", lr=0.1),
    "simple-cnn": dict(model="simple-cnn", hidden=[20], optimizer="sgd", lr=0.1),
}
COMMON = dict(dataset="digits", batch_size=100, iters=8, log_every=4, seed=3)
#: (case, backend) pairs: NumPy's and torch's own host buffers, and array_api_strict for the
#: gradients staged through the host (the path of torch and CuPy on GPUs)
RUNS = [(c, b) for b in ("numpy", "torch") for c in CASES] + [("mlp", "array_api_strict")]


def available(backend: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(backend) is not None


def config(case: str):
    from xpnet.training import TrainConfig

    return TrainConfig(**COMMON, **CASES[case])


def train(case: str, backend: str, comm=None, callbacks=()):
    """One run of `case` on `backend` (CPU), data-parallel when `comm` is given."""
    from xpnet.backend import resolve
    from xpnet.data.datasets import load_dataset
    from xpnet.training import Trainer

    kwargs = {} if comm is None else {"comm": comm, "callbacks": list(callbacks)}
    trainer = Trainer(config(case), load_dataset("digits"), None, verbose=False, progress=False,
                      backend=resolve("cpu", backend), **kwargs)  # fmt: skip
    trainer.run()
    return trainer


def main(mode: str, out: str | None = None) -> int:
    import numpy as np

    from xpnet.backend import to_numpy
    from xpnet.parallel.allreduce import DataParallel
    from xpnet.parallel.mpi import start
    from xpnet.training import Callback

    comm = start()
    with comm.guard():
        if mode == "equal":
            for case, backend in RUNS:
                if not available(backend):
                    continue
                trainer = train(case, backend, comm, [DataParallel(comm)])
                if comm.rank == 0:
                    params = {k: to_numpy(v) for k, v in trainer.net.params.items()}
                    np.savez(Path(out) / f"{case}-{backend}.npz", **params)
        elif mode == "resume":
            from xpnet.data.datasets import load_dataset
            from xpnet.training import TrainConfig, Trainer

            cfg = dict(dataset="digits", hidden=[20, 20], batchnorm=True, dropout=0.2,
                       optimizer="adam", batch_size=100, log_every=10, seed=5)  # fmt: skip
            kept = {}
            for name, iters in (("once", 30), ("first", 20)):
                folder = Path(out) / name
                trainer = Trainer(TrainConfig(**cfg, iters=iters), load_dataset("digits"), folder,
                                  verbose=False, progress=False, comm=comm,
                                  callbacks=[DataParallel(comm)])  # fmt: skip
                trainer.run()
                kept[name] = trainer
            comm.allgather(None)  # rank 0 has written the checkpoint the others read
            kept["resumed"] = Trainer.resume(Path(out) / "first" / "checkpoint.npz",
                                             load_dataset("digits"), overrides={"iters": 30},
                                             verbose=False, progress=False, comm=comm,
                                             callbacks=[DataParallel(comm)])  # fmt: skip
            kept["resumed"].run()
            buffers = comm.allgather({k: to_numpy(v) for k, v in kept["once"].net.buffers.items()})
            if comm.rank == 0:
                np.savez(Path(out) / "once-rank1-buffers.npz", **buffers[1])
                for name in ("once", "resumed"):
                    net = kept[name].net
                    state = {**net.params, **net.buffers}
                    np.savez(
                        Path(out) / f"{name}.npz", **{k: to_numpy(v) for k, v in state.items()}
                    )
        elif mode == "lone-error":

            class FailOnRank1(Callback):
                def on_step_end(self, trainer, loss):
                    if trainer.iteration == 3 and comm.rank == 1:
                        raise RuntimeError("an error in one process only")

            train("mlp", "numpy", comm, [DataParallel(comm), FailOnRank1()])
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
