"""The whole command, with the work that need not wait for the steps not waiting (issue 23 item 2):
evaluations on a worker thread while the steps go on, with the same numbers and files; the picture
drawn by a helper process started early; the start-up without modules a run does not use."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_train import blobs, config

from xpnet.training import (
    Callback,
    Evaluation,
    FileQueue,
    Interrupted,
    Trainer,
    load_checkpoint,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def sequential(monkeypatch):
    """Evaluations between the steps, as before the overlap."""
    monkeypatch.setattr(Evaluation, "OVERLAP_MAX_WORK", 0)


class Emitted(Callback):
    """Notes at which step each line was emitted, and checks the checkpoint written with it."""

    order = 90  # after the checkpointer

    def __init__(self):
        self.at, self.weights = [], {}

    def on_interval(self, trainer, record):
        self.weights[record["iteration"]] = {
            k: np.array(v, copy=True) for k, v in trainer.net.params.items()
        }

    def on_record(self, trainer, record):
        self.at.append((record["iteration"], trainer.iteration))
        path = trainer.checkpoint_path
        every = trainer.config.checkpoint_every
        if path is None or record["iteration"] == 0 or (every and record["iteration"] % every):
            return  # no checkpoint at this line
        trainer.callback(FileQueue).wait()  # written on the queue's thread: on disk now
        ckpt = load_checkpoint(path)
        # the checkpoint of the line's step, holding the line as emitted
        assert ckpt.iteration == record["iteration"]
        assert ckpt.extra["history"][-1] == record
        assert ckpt.extra["loss_count"] == 0
        for key, value in self.weights[record["iteration"]].items():
            np.testing.assert_array_equal(ckpt.params[key], value, err_msg=key)


def _lines(path: Path) -> list[dict]:
    """metrics.jsonl without its timings."""
    records = [json.loads(s) for s in (path / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def _checkpoint(path: Path) -> tuple[dict, dict]:
    ckpt = load_checkpoint(path)
    extra = dict(ckpt.extra)
    extra.pop("elapsed")
    extra["history"] = [{k: v for k, v in r.items() if k != "seconds"} for r in extra["history"]]
    return ckpt.params, extra


# -- a. evaluations on the idle core ------------------------------------------------------------


def test_no_overlap_where_no_sum_on_one_thread_gives_the_scores_of_all(monkeypatch):
    """The worker evaluates while the steps hold BLAS at one thread: a run overlaps only where one
    thread, summing as all threads do, gives their bits (here a BLAS whose products on one thread
    always differ a little, whatever the cuts)."""
    from threadpoolctl import threadpool_info

    import xpnet.training.exact as exact

    trainer = Trainer(config(), blobs(), None, verbose=False)
    assert exact.one_thread_cuts(trainer) is not None
    assert trainer.callback(Evaluation).overlapping(trainer)
    real = exact.product

    def product(x, W, *cuts):
        threads = min(info["num_threads"] for info in threadpool_info())
        return real(x, W, *cuts) + (1e-6 if threads == 1 else 0.0)

    monkeypatch.setattr(exact, "product", product)
    assert exact.one_thread_cuts(trainer) is None
    assert not trainer.callback(Evaluation).overlapping(trainer)


def test_the_cuts_are_checked_on_every_chunk_shape_of_the_run(monkeypatch):
    """A BLAS whose one-thread sum differs only on a smaller chunk (the first N samples of
    --eval-samples): the run does not overlap."""
    from threadpoolctl import threadpool_info

    import xpnet.fast.step as step_module
    import xpnet.training.exact as exact

    trainer = Trainer(config(eval_samples=300), blobs(), None, verbose=False)
    assert exact.chunk_shapes(trainer) == [200, 300, 600]
    assert exact.one_thread_cuts(trainer) is not None
    real = step_module.product

    def product(x, W, *cuts):  # one thread's scores differ on 300 rows only
        out = real(x, W, *cuts)
        one = min(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas") == 1
        return out + 1e-6 if one and x.shape[0] == 300 and W.shape[1] == 4 else out

    monkeypatch.setattr(step_module, "product", product)
    monkeypatch.setattr(exact, "product", product)
    assert exact.one_thread_cuts(trainer) is None


def test_one_blas_thread_gives_the_mnist_scores_of_all_or_the_run_does_not_overlap():
    """On MNIST's shapes (784 inputs): one thread's plain product, the one summed in equal parts
    of k, one per thread (OpenBLAS 0.3.31 on one 2-core machine: halves), or the one in the row
    blocks of the threads' shares (on another: quarters) must give all threads' bits; the run
    overlaps exactly when one of them does, and its predictions on one thread are the bits."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from xpnet.fast.step import product
    from xpnet.training.exact import blas_threads, candidates, one_thread_cuts

    rng = np.random.default_rng(0)
    x = rng.random((1000, 784), dtype=np.float32)
    w = (rng.standard_normal((784, 50)) * 0.01).astype(np.float32)
    threads = blas_threads()
    with threadpoolctl.threadpool_limits(None, user_api="blas"):
        everywhere = x @ w
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        one = [product(x, w, *c) for c in candidates(784, threads)]
    exact = any(bool((o == everywhere).all()) for o in one)
    data = blobs(n_train=1000, n_test=200, features=784)
    trainer = Trainer(config(), data, None, verbose=False)
    assert trainer.callback(Evaluation).overlapping(trainer) == exact
    cuts = one_thread_cuts(trainer)
    if cuts is None:
        pytest.skip(f"no sum on one thread gives this BLAS's bits on {threads} threads")
    scores = trainer.fused.predict(data.x_train)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        np.testing.assert_array_equal(trainer.fused.cut(cuts).predict(data.x_train), scores)
        np.testing.assert_array_equal(trainer.fused.frozen(cuts).predict(data.x_train), scores)


@pytest.mark.parametrize("options", [{}, {"eval_samples": 300, "checkpoint_every": 20}])
def test_overlapped_evaluations_give_the_same_lines_checkpoints_and_model(
    tmp_path, monkeypatch, options
):
    emitted = Emitted()
    trainer = Trainer(config(**options), blobs(), tmp_path / "a", verbose=False,
                      callbacks=[emitted])  # fmt: skip
    assert trainer.callback(Evaluation).overlapping(trainer)
    overlapped = trainer.run()
    # every line but the last was emitted after later steps had run, in order
    assert [i for i, _ in emitted.at] == [0, 30, 60, 90]
    assert all(step > line for line, step in emitted.at[:-1]) and emitted.at[-1] == (90, 90)

    monkeypatch.setattr(Evaluation, "OVERLAP_MAX_WORK", 0)
    plain = Trainer(config(**options), blobs(), tmp_path / "b", verbose=False)
    assert not plain.callback(Evaluation).overlapping(plain)
    assert {**plain.run(), "seconds": 0} == {**overlapped, "seconds": 0}
    assert _lines(tmp_path / "a") == _lines(tmp_path / "b")
    if "eval_samples" in options:
        assert _lines(tmp_path / "a")[1]["evaluated_on"] == 300
    for name in ("checkpoint.npz", "model.npz"):
        (a, extra_a), (b, extra_b) = (
            _checkpoint(tmp_path / "a" / name),
            _checkpoint(tmp_path / "b" / name),
        )
        assert extra_a == extra_b and a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_a_signal_while_a_line_is_evaluated_keeps_the_line_and_resumes_the_same(
    tmp_path, monkeypatch
):
    real = Evaluation.count_correct
    signalled, lines = [], []

    class Mark(Callback):
        def on_interval(self, trainer, record):  # the line before has been emitted by now
            lines.append(record["iteration"])

    def count(trainer, predict, x, t, chunk, stoppable=True):
        if lines[-1:] == [30] and not signalled and not stoppable:  # on the worker
            deadline = time.monotonic() + 30
            while trainer.iteration < 33 and time.monotonic() < deadline:
                time.sleep(0.001)  # the steps go on meanwhile
            signalled.append(trainer.iteration)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)  # the main thread stops at its next step, then waits for this
        return real(trainer, predict, x, t, chunk, stoppable)

    monkeypatch.setattr(Evaluation, "count_correct", staticmethod(count))
    trainer = Trainer(config(), blobs(), tmp_path, verbose=False, callbacks=[Mark()])
    with pytest.raises(Interrupted, match=r"SIGTERM at iteration \d+ of 90; checkpoint saved"):
        trainer.run()
    ckpt = load_checkpoint(tmp_path / "checkpoint.npz")
    assert signalled[0] > 30, "the steps went on while line 30 was evaluated"
    # the line being evaluated when the signal came is kept (on a loaded machine the main thread
    # may reach line 60 before the worker sends the signal: then that one is the last)
    written = [r["iteration"] for r in _lines(tmp_path)]
    assert written in ([0, 30], [0, 30, 60]) and ckpt.iteration >= written[-1]
    assert [r["iteration"] for r in ckpt.extra["history"]] == written
    monkeypatch.undo()
    resumed = Trainer.resume(tmp_path / "checkpoint.npz", blobs(), verbose=False)
    full = Trainer(config(), blobs(), None, verbose=False)
    assert resumed.run() == {**full.run(), "seconds": resumed.history[-1]["seconds"]}


@pytest.mark.parametrize("at", [60, 90], ids=["a-line", "the-final-line"])
def test_a_line_dropped_by_a_signal_is_written_when_the_run_resumes(tmp_path, monkeypatch, at):
    """A signal during a line's evaluation drops that line and saves the checkpoint of its step;
    the resumed run writes that line first, so the run's lines and losses are those of a run
    never stopped (the loss of the next line is not averaged over two intervals)."""
    real = Evaluation.count_correct

    def count(trainer, predict, x, t, chunk, stoppable=True):
        if trainer.iteration == at and not trainer.history[-1]["iteration"] == at:
            trainer.stop_signal = signal.SIGTERM  # as the handler sets it, mid-evaluation
        return real(trainer, predict, x, t, chunk, stoppable)

    monkeypatch.setattr(Evaluation, "OVERLAP_MAX_WORK", 0)  # the evaluation between the steps
    monkeypatch.setattr(Evaluation, "count_correct", staticmethod(count))
    trainer = Trainer(config(), blobs(), tmp_path, verbose=False)
    with pytest.raises(Interrupted, match=rf"SIGTERM at iteration {at} of 90; checkpoint saved"):
        trainer.run()
    written = [r["iteration"] for r in _lines(tmp_path)]
    assert (
        written == [0, 30, 60][: at // 30]
        and load_checkpoint(tmp_path / "checkpoint.npz").iteration == at
    )
    monkeypatch.undo()
    resumed = Trainer.resume(tmp_path / "checkpoint.npz", blobs(), verbose=False)
    resumed.run()
    full = Trainer(config(), blobs(), None, verbose=False)
    full.run()

    def lines(history):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in history]

    assert lines(resumed.history) == lines(full.history)
    assert [r["iteration"] for r in _lines(tmp_path)] == [0, 30, 60, 90]


def test_a_divergence_names_the_checkpoint_of_the_line_before(tmp_path):
    class PoisonAt(Callback):
        def on_step_end(self, trainer, loss):
            if trainer.iteration == 45:
                trainer.net.params["W1"][0, 0] = np.inf

    trainer = Trainer(config(), blobs(), tmp_path, verbose=False, callbacks=[PoisonAt()])
    with pytest.raises(Exception, match=r"checkpoint is .*checkpoint.npz \(iteration 30\)"):
        trainer.run()
    assert load_checkpoint(tmp_path / "checkpoint.npz").iteration == 30


def _mnist_default(out: Path, iters: int) -> list[str]:
    from xpnet.apps.train import main

    return main(["--dataset", "mnist", "--iters", str(iters), "--no-progress", "--no-plot",
                 "--out", str(out)])  # fmt: skip


def test_the_default_run_on_mnist_prints_and_writes_the_same_overlapped(
    tmp_path, monkeypatch, capsys
):
    from conftest import mnist_dir

    if mnist_dir() is None:
        pytest.skip("XPNET_DATA_DIR does not hold MNIST")
    started, real_start = [], Evaluation.on_fit_start

    def on_fit_start(self, trainer):
        real_start(self, trainer)
        started.append(self.cuts)

    monkeypatch.setattr(Evaluation, "on_fit_start", on_fit_start)
    assert _mnist_default(tmp_path / "a", 1200) == 0
    overlapped = capsys.readouterr().out
    if started != [None]:  # where no sum on one thread gives all threads' bits, both are plain
        assert len(started) == 1 and len(started[0]) == 2, started  # cuts for W1 and W2
    monkeypatch.setattr(Evaluation, "OVERLAP_MAX_WORK", 0)
    assert _mnist_default(tmp_path / "b", 1200) == 0
    plain = capsys.readouterr().out

    def numbers(out: str) -> list[str]:
        return [line for line in out.splitlines() if line.startswith(("iter", "final"))]

    assert len(numbers(plain)) == 3 and numbers(overlapped) == numbers(plain)
    assert _lines(tmp_path / "a") == _lines(tmp_path / "b")
    a, b = _checkpoint(tmp_path / "a" / "model.npz"), _checkpoint(tmp_path / "b" / "model.npz")
    assert a[1] == b[1]


def test_the_default_run_is_the_same_arithmetic_as_lean_numpy(tmp_path):
    """scripts/numpy_mnist.py (bench_command's lean NumPy command: the slides' step in plain NumPy
    calls, nothing of xpnet) and `xpnet train` write the same lines and weights, bit for bit: all
    of xpnet's machinery (the fused step, the sampler, the evaluator beside the steps, the loss
    meter) changes no number of the arithmetic it runs."""
    from conftest import mnist_dir

    data = mnist_dir()
    if data is None:
        pytest.skip("XPNET_DATA_DIR does not hold MNIST")
    lean = subprocess.run([sys.executable, str(ROOT / "scripts" / "numpy_mnist.py"), "--data-dir",
                           str(data), "--iters", "1200", "--out", str(tmp_path / "lean")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert lean.returncode == 0, lean.stderr
    assert _mnist_default(tmp_path / "xpnet", 1200) == 0
    lines = _lines(tmp_path / "xpnet")
    assert [r["iteration"] for r in lines] == [0, 600, 1200]
    assert [{k: r[k] for k in ("iteration", "loss", "train_acc", "test_acc")} for r in lines] == [
        json.loads(s) for s in (tmp_path / "lean" / "metrics.jsonl").read_text().splitlines()
    ]
    xpnet_params = load_checkpoint(tmp_path / "xpnet" / "model.npz").params
    with np.load(tmp_path / "lean" / "model.npz") as lean_params:
        assert sorted(lean_params.files) == sorted(xpnet_params)
        for key in lean_params.files:
            a, b = np.asarray(xpnet_params[key]), lean_params[key]
            assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
            assert np.array_equal(a.view(np.int32), b.view(np.int32)), key


# -- b. the picture drawn by a helper process started with the run --------------------------------


def test_curves_png_is_complete_when_the_command_returns_and_drawn_as_in_process(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    from xpnet.apps.train import main
    from xpnet.training.curves import plot_run

    out = tmp_path / "run"
    assert main(["--dataset", "digits", "--iters", "30", "--no-progress", "--out", str(out)]) == 0
    png = (out / "curves.png").read_bytes()  # there the moment main returns
    history = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    network = json.loads((out / "config.json").read_text())["network"]
    title = f"digits: {network}, sgd lr 0.1"  # as the command titles it
    plot_run(history, tmp_path / "here.png", title)
    assert png == (tmp_path / "here.png").read_bytes()


def test_the_painter_draws_only_when_asked_and_reports_a_failure(tmp_path):
    pytest.importorskip("matplotlib")
    from xpnet.errors import XpnetError
    from xpnet.training.curves import Painter

    unused = Painter()
    unused.close()  # a failed run: the helper goes, nothing is drawn
    assert unused.process is None and not list(tmp_path.iterdir())
    (tmp_path / "c.png").mkdir()
    with pytest.raises(XpnetError, match=r"could not draw .*c.png: .*it is a folder"):
        Painter().draw([{"iteration": 0, "loss": 1, "train_acc": 0, "test_acc": 0}],
                       tmp_path / "c.png")  # fmt: skip


# -- d. start-up: nothing imported that the run does not use ----------------------------------------


def test_a_run_without_bar_or_plot_imports_no_tqdm_network_or_matplotlib(tmp_path):
    from conftest import mnist_dir

    if mnist_dir() is None:  # (scikit-learn's digits import urllib themselves)
        pytest.skip("XPNET_DATA_DIR does not hold MNIST")
    code = (
        "import sys; from xpnet.apps.train import main; "
        f"main(['--dataset', 'mnist', '--iters', '5', '--no-progress', '--no-plot', '--out', "
        f"{str(tmp_path / 'run')!r}]); "
        "print(sorted(m for m in ('tqdm', 'urllib.request', 'http.client', 'ssl', 'matplotlib', "
        "'torch', 'dask', 'tensorboardX', 'mpi4py') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


@pytest.mark.parametrize("overlap", [True, False], ids=["overlapped", "between-the-steps"])
def test_the_first_lines_loss_is_computed_as_the_steps_compute_theirs(monkeypatch, overlap):
    """The loss at iteration 0 comes from the layers before any step. An overlapped run holds
    BLAS at one thread for the whole run; a run that is not overlapped must compute that loss on
    the steps' thread count too, or its bits would depend on whether the run overlaps."""
    from threadpoolctl import threadpool_info

    if not overlap:
        monkeypatch.setattr(Evaluation, "OVERLAP_MAX_WORK", 0)
    trainer = Trainer(config(), blobs(), None, verbose=False)
    assert (
        trainer.steps_on_one_thread()
        and trainer.callback(Evaluation).overlapping(trainer) is overlap
    )
    seen, real = [], trainer.net.loss

    def loss(*args, **kwargs):
        seen.append(min(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"))
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer.net, "loss", loss)
    trainer.run()
    assert seen == [1]
