"""The `train` command: `python scripts/train.py` (or `xpnet-train`).

Defaults are the slides' experiment: a 784-50-10 ReLU net, weights N(0, 0.01²), SGD with lr 0.1,
batch 100, 10,000 iterations on MNIST. Errors a user can cause print one line (exit 2 for usage
errors, 1 for runtime failures, 130/143 after Ctrl-C/SIGTERM with a checkpoint); --debug shows
the traceback.

A run's folder is its own: --out must be new or empty (or the run being resumed, or --overwrite),
and a run marks it in use while it writes. A failing run removes the folders it made while they are
still empty. When standard output goes away (`| head`) or fills (`> /dev/full`), the run stops
printing, says so once on stderr, and goes on training and saving: its files are the record.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

from ..backend import resolve
from ..errors import ConfigError, XpnetError
from ..training.checkpoint import load_checkpoint
from ..training.config import TrainConfig, resumed_config
from ..training.curves import Painter, have_matplotlib
from ..training.runs import RunFolder, same_folder
from ..training.trainer import Trainer
from .common import (
    exit_status,
    run_command,
    say,
)
from .train_options import OUTPUT_FILES, build_parser, config_from_args


def _load_data(config: TrainConfig, progress):
    from ..data import load_dataset

    return load_dataset(config.dataset, config.data_dir, progress=progress)


def _resume_path(text: str) -> Path:
    """--resume names a checkpoint file, or a run folder holding checkpoint.npz."""
    path = Path(text)
    if path.is_dir():
        if (path / "checkpoint.npz").is_file():
            return path / "checkpoint.npz"
        raise ConfigError(
            f"--resume {text}: the folder holds no checkpoint.npz; name a run's checkpoint"
        )
    return path


def run(args) -> int:
    from ..parallel.mpi import launched

    if not launched():  # one process: MPI is never imported
        return _run(args, None)
    from ..parallel.mpi import start

    comm = start()
    if comm is None:  # mpiexec -n 1
        return _run(args, None)
    with comm.guard(debug=args.debug):
        return _run(args, comm)


def _run(args, comm) -> int:
    """The command in one process (comm None) or in each process of a data-parallel run."""
    given = config_from_args(args)
    progress = False if args.no_progress or (comm is not None and comm.rank) else None
    ckpt = None
    resume = _resume_path(args.resume) if args.resume else None
    if resume is not None:
        ckpt = load_checkpoint(resume)
        config = resumed_config(ckpt, given)  # the library's resume rules, for every caller
    else:
        config = TrainConfig(**given)
    config.validate()
    if comm is not None:  # --batch-size is the global batch, shared evenly
        comm.check_batch(config.batch_size, resuming=resume is not None)
    if args.tensorboard:  # fail before any work, naming the extra to install
        try:
            import tensorboardX  # noqa: F401
        except ImportError:
            raise XpnetError(
                "--tensorboard needs tensorboardX: pip install 'xpnet[tensorboard]'"
            ) from None

    t_start = time.perf_counter()
    if comm is None:
        be = resolve(config.device, config.backend)
    else:  # each process on a GPU of its own where there are enough
        be = resolve(comm.rank_device(config.device, config.backend), config.backend)
        comm.limit_threads(be.name)
    # made (or checked) before the data is loaded, so a bad --out costs no time
    out = Path(args.out) if args.out else (resume.parent if resume is not None else None)
    resuming_here = resume is not None and out is not None and same_folder(out, resume.parent)
    with contextlib.ExitStack() as stack:
        painter = None
        if not args.no_plot and comm is None and have_matplotlib():
            # matplotlib's import (0.4 s) and a first drawing, on the other core while we train
            painter = Painter()
            stack.callback(painter.close)

        def prepare():
            folder = stack.enter_context(RunFolder(out, reuse=resuming_here,
                                                   overwrite=args.overwrite, outputs=OUTPUT_FILES))  # fmt: skip
            dataset = _load_data(config, progress)
            if dataset.notice:
                print(f"notice: {dataset.notice}", file=sys.stderr)
            return folder, dataset, out if out is not None else folder.new("runs", dataset.name)

        if comm is None:
            folder, dataset, out = prepare()
        else:
            folder, dataset, out = _prepare_on_root(comm, prepare, config)
        parallel = []
        if comm is not None:
            from ..parallel.allreduce import DataParallel

            parallel = [DataParallel(comm)]
        trainer = Trainer(config, dataset, out, progress=progress, backend=be,
                          tensorboard=args.tensorboard, comm=comm, callbacks=parallel)  # fmt: skip
        if ckpt is not None:
            trainer.load_state_dict(ckpt)
        if trainer.finished:
            last = trainer.history[-1]
            say(
                f"the run in {out} is already finished at iteration {trainer.iteration} "
                f"(test accuracy {last['test_acc']:.4f}); nothing was trained or written. "
                f"To train further, resume with a larger --iters or --epochs"
            )
            return 0
        how = parallel[0].plan(trainer) if parallel else None  # every process takes part
        _header(trainer, be, resume, out)
        for line in comm.header(config.batch_size, how) if comm is not None else ():
            say(line)
        if folder is not None:
            folder.commit()  # the run starts: what --overwrite replaces is gone now
        return _train(trainer, args, out, resume, t_start, painter)


def _prepare_on_root(comm, prepare, config):
    """Rank 0 makes the run folder and loads (or downloads) the data first; the others learn the
    folder from it and then load the data themselves, or exit as it does when it fails."""
    held = []

    def first() -> str:
        held[:] = prepare()
        return str(held[2])

    out = Path(comm.on_root(first, exit_status))
    if comm.rank == 0:
        return held
    return None, _load_data(config, False), out


def _header(trainer, be, resume, out) -> None:
    config, dataset = trainer.config, trainer.dataset
    n_train, n_test = dataset.x_train.shape[0], dataset.x_test.shape[0]
    path = "fused kernels" if trainer.fused is not None else "the layers"
    say(f"backend: {be.name} on {be.device}, dtype {config.dtype}; steps through {path}")
    say(f"dataset: {dataset.name} from {dataset.source} ({n_train} train / {n_test} test samples)")
    say(
        f"model:   {config.describe_net(dataset.x_train[0].size, dataset.num_classes)}; "
        f"{config.optimizer} lr {config.lr}, batch {config.batch_size}, {trainer.total_iters} iterations "
        f"({trainer.total_iters / trainer.steps_per_epoch:.1f} epochs), seed {config.seed}"
    )
    if resume is not None:
        say(f"resuming from {resume} at iteration {trainer.iteration}")
    say(f"output:  {out}")


def _train(trainer, args, out: Path, resume, t_start: float, painter=None) -> int:
    plotted, plot = False, not args.no_plot and trainer.comm.rank == 0
    try:
        record = trainer.run()
    except BaseException:
        # the curves so far help explain a failure, but a failing plot must not hide the first error
        if plot and trainer.history:
            with contextlib.suppress(Exception):
                _plot(trainer, out, painter)
        raise
    if plot and trainer.history:
        plotted = _plot(trainer, out, painter)
    wall = time.perf_counter() - t_start
    timing = (
        f"{wall:.1f} s in all ({record['seconds']:.1f} s training)"
        if resume is None
        else f"{wall:.1f} s in this session; {record['seconds']:.1f} s of training in all sessions"
    )
    # the dataset named here too: a fallback to the digits must not scroll away unseen
    data = trainer.dataset.name + (
        " (the fallback, see the notice above)" if trainer.dataset.notice else ""
    )
    say(
        f"done: {data} test accuracy {record['test_acc']:.4f}, train accuracy "
        f"{record['train_acc']:.4f} after {trainer.total_iters} iterations; {timing}"
    )
    files = ["config.json", "metrics.jsonl", "model.npz", "checkpoint.npz"]
    files += ["curves.png"] if plotted else []
    if args.tensorboard:
        files.append("events.out.tfevents.*")
    say(f"wrote {out}/{{{', '.join(files)}}}")
    return 0


def _plot(trainer, out: Path, painter=None) -> bool:
    """curves.png, written when this returns (by `painter`, the helper process, if given)."""
    from ..training.curves import plot_run

    if not have_matplotlib():
        print(
            "notice: matplotlib is not installed, so curves.png was not drawn (pip install matplotlib)",
            file=sys.stderr,
        )
        return False
    c = trainer.config
    title = f"{trainer.dataset.name}: {c.describe_net(trainer.data.x_train.shape[1], trainer.data.num_classes)}, {c.optimizer} lr {c.lr}"
    if painter is not None:
        painter.draw(trainer.history, out / "curves.png", title)
    else:
        plot_run(trainer.history, out / "curves.png", title)
    return True


def main(argv=None, prog: str = "train.py") -> int:
    return run_command(build_parser(prog), run, argv)


if __name__ == "__main__":
    sys.exit(main())
