"""The Trainer as a loop of callbacks: options that act or are refused, resume rules in the library,
callbacks' state and order, checkpoints never from non-finite weights, signals during evaluation,
and checkpoints written before the Trainer was split still loading with the same numbers."""

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from test_train import blobs, config

from xpnet.backend import to_numpy
from xpnet.errors import ConfigError, TrainingDiverged
from xpnet.training import (
    Callback,
    Checkpointer,
    Evaluation,
    Interrupted,
    LossMeter,
    TrainConfig,
    Trainer,
    load_checkpoint,
)
from xpnet.training.runs import RunFolder

DATA = Path(__file__).parent / "data"


# -- options a model does not take are refused, never ignored (issue: CNN options that do nothing)


@pytest.mark.parametrize(
    "options, refused",
    [
        ({"model": "simple-cnn", "dropout": 0.5}, "--dropout 0.5 (simple-cnn has no dropout"),
        ({"model": "simple-cnn", "batchnorm": True}, "--batchnorm (simple-cnn has no batch"),
        ({"model": "simple-cnn", "activation": "tanh"}, "--activation tanh (simple-cnn uses ReLU"),
        ({"model": "simple-cnn", "hidden": [30, 20]}, "--hidden 30 20 (simple-cnn has one hidden"),
        (
            {"model": "deep-cnn", "activation": "sigmoid"},
            "--activation sigmoid (deep-cnn uses ReLU",
        ),
        ({"model": "deep-cnn", "init": 0.01}, "--init 0.01 (deep-cnn always starts from He"),
        ({"model": "deep-cnn", "hidden": [50, 50]}, "--hidden 50 50 (deep-cnn has one hidden"),
    ],
)
def test_an_option_the_model_ignores_is_refused_in_the_api(options, refused):
    with pytest.raises(ConfigError, match=rf"^{options['model']} does not take .*{_re(refused)}"):
        TrainConfig(**options).validate()


def _re(text: str) -> str:
    import re

    return re.escape(text)


def test_options_a_cnn_takes_are_recorded_as_they_took_effect():
    deep = TrainConfig(model="deep-cnn")
    assert (deep.init, deep.dropout, deep.hidden) == ("he", 0.5, [50])
    assert "He init, dropout 0.5" in deep.describe_net(784, 10)
    assert "no dropout" in TrainConfig(model="deep-cnn", dropout=0.0).describe_net(784, 10)
    simple = TrainConfig(model="simple-cnn", init="he")
    assert (simple.init, simple.dropout, simple.hidden) == ("he", 0.0, [100])
    assert "init he" in simple.describe_net(784, 10)
    TrainConfig(model="deep-cnn", init="He").validate()  # what it uses anyway: accepted


def test_the_cli_refuses_a_cnn_option_with_one_line(capsys):
    from xpnet.apps.train import main

    assert main(["--model", "simple-cnn", "--dataset", "digits", "--dropout", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("train.py: error: simple-cnn does not take --dropout 0.5")


def test_an_old_checkpoint_recording_ignored_options_resumes_as_it_ran(tmp_path):
    """Before options were checked, simple-cnn runs could record a dropout they never used."""
    from xpnet.training.config import resumed_config

    ckpt = load_checkpoint(DATA / "v1-simple-cnn-digits-checkpoint.npz")
    ckpt.config = {**ckpt.config, "dropout": 0.5, "activation": "tanh", "hidden": [8, 9]}
    config = resumed_config(ckpt, {"iters": 8})
    assert (config.dropout, config.activation, config.hidden, config.iters) == (0.0, "relu", [8], 8)


# -- the resume rules live in the library, for every caller -------------------------------------


def test_load_state_dict_refuses_a_checkpoint_of_another_run(tmp_path):
    data = blobs()
    Trainer(config(iters=30), data, tmp_path, verbose=False).run()
    ckpt = load_checkpoint(tmp_path / "checkpoint.npz")
    for change, message in [
        ({"batch_size": 30}, r"--batch-size 30 \(the run used 20\)"),
        ({"seed": 2}, r"--seed 2 \(the run used 1\)"),
        ({"hidden": [16, 16]}, r"--hidden 16 16 \(the run used 16\)"),
        ({"optimizer": "adam"}, r"--optimizer adam \(the run used sgd\)"),
    ]:
        other = Trainer(config(iters=60, **change), data, None, verbose=False)
        with pytest.raises(ConfigError, match=message):
            other.load_state_dict(ckpt)
    renamed = blobs()
    renamed.name = "other-blobs"
    with pytest.raises(ConfigError, match="was trained on blobs, not other-blobs"):
        Trainer(config(iters=60), renamed, None, verbose=False).load_state_dict(ckpt)
    # how long and where may change
    longer = Trainer(config(iters=60, log_every=10), data, None, verbose=False)
    longer.load_state_dict(ckpt)
    assert longer.iteration == 30


def test_resume_overrides_may_not_change_the_run(tmp_path):
    Trainer(config(iters=30), blobs(), tmp_path, verbose=False).run()
    with pytest.raises(ConfigError, match=r"--lr 0\.5 \(the run used 0\.1\)"):
        Trainer.resume(tmp_path / "checkpoint.npz", blobs(), overrides={"lr": 0.5})
    again = Trainer.resume(tmp_path / "checkpoint.npz", blobs(), overrides={"epochs": 2})
    assert again.total_iters == 60 and again.config.iters == TrainConfig.iters


# -- checkpoints written before the Trainer was split ------------------------------------------


def _flat_house_run(tmp_path):
    """(old checkpoint, old lines, this trainer's checkpoint, its history) of the run that wrote
    tests/data/v1-mlp-digits-* (commit 6d99268, before the Trainer was split:
    `train.py --dataset digits --hidden 8 --iters 30 --optimizer adam --batchnorm --dropout 0.1`)."""
    pytest.importorskip("sklearn")
    from xpnet.data import load_dataset

    old = load_checkpoint(DATA / "v1-mlp-digits-checkpoint.npz")
    old_lines = [
        json.loads(s) for s in (DATA / "v1-mlp-digits-metrics.jsonl").read_text().splitlines()
    ]
    cfg = TrainConfig(dataset="digits", hidden=[8], iters=30, optimizer="adam", batchnorm=True,
                      dropout=0.1)  # fmt: skip
    now = Trainer(cfg, load_dataset("digits"), tmp_path, verbose=False, progress=False)
    now.run()
    return old, old_lines, load_checkpoint(tmp_path / "checkpoint.npz"), now.history


def test_a_checkpoint_of_the_flat_house_loads_and_this_trainer_gives_its_numbers(tmp_path):
    """The same run now gives the old file's weights, buffers, dropout state and log lines to
    float32 rounding on any CPU (bit for bit: the next test), and resumes from the old file."""
    from xpnet.data import load_dataset

    old, old_lines, new, history = _flat_house_run(tmp_path)
    for key, value in {**old.params, **old.buffers}.items():
        # b1, before batch norm, gets a gradient that is 0 up to rounding, which Adam's step
        # g/√v turns into ±lr, and the running mean follows b1: both bit for bit only (below)
        if key in ("b1", "BatchNormalization1.running_mean"):
            continue
        np.testing.assert_allclose(value, {**new.params, **new.buffers}[key], rtol=1e-4,
                                   atol=1e-6, err_msg=key)  # fmt: skip
    assert new.layer_states == old.layer_states  # dropout's generator: no rounding in it
    for a, b in zip(old_lines, history, strict=True):
        assert a.keys() == b.keys() and a["iteration"] == b["iteration"]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)  # in train mode: batch statistics
        for key in ("train_acc", "test_acc"):  # in eval mode, through the running mean: a few of
            assert b[key] == pytest.approx(a[key], abs=0.011), key  # 300 test samples may flip
    resumed = Trainer.resume(DATA / "v1-mlp-digits-checkpoint.npz", load_dataset("digits"),
                             out=tmp_path / "r", overrides={"iters": 45}, verbose=False,
                             progress=False)  # fmt: skip
    assert resumed.iteration == 30 and resumed.history[-1]["iteration"] == 30
    resumed.run()
    assert resumed.history[-1]["iteration"] == 45


def test_this_trainer_gives_the_flat_houses_very_numbers_where_blas_rounds_alike(tmp_path):
    """Bit for bit, weights and every logged number: where this machine's BLAS rounds float32
    products as the one that wrote the file did (the sessions' machines until 2026-12-02; an
    AMD EPYC whose OpenBLAS runs its Haswell kernels rounds some sums differently)."""
    old, old_lines, new, history = _flat_house_run(tmp_path)
    mine = {**new.params, **new.buffers}
    if not all(np.array_equal(v, mine[k]) for k, v in {**old.params, **old.buffers}.items()):
        pytest.skip("this BLAS rounds float32 products unlike the machine that wrote the file: "
                    "equal to rounding (the test above), not bit for bit")  # fmt: skip
    for a, b in zip(old_lines, history, strict=True):
        assert {**a, "seconds": 0} == {**b, "seconds": 0}


def test_a_cnn_checkpoint_of_the_flat_house_resumes(tmp_path):
    pytest.importorskip("sklearn")
    from xpnet.data import load_dataset

    trainer = Trainer.resume(DATA / "v1-simple-cnn-digits-checkpoint.npz", load_dataset("digits"),
                             out=tmp_path, overrides={"iters": 6}, verbose=False)  # fmt: skip
    assert trainer.config.hidden == [8] and trainer.iteration == 4
    assert trainer.run()["iteration"] == 6


# -- callbacks ----------------------------------------------------------------------------------


class Recorder(Callback):
    """Writes down every hook call it gets."""

    def __init__(self, order=50, one_process=False):
        self.order, self.one_process, self.calls = order, one_process, []

    def on_fit_start(self, trainer):
        self.calls.append(("start", trainer.iteration))

    def on_after_backward(self, trainer):
        # the gradients of this step are in the layers, the weights not yet updated
        self.calls.append(("backward", trainer.iteration))

    def on_interval(self, trainer, record):
        self.calls.append(("interval", record["iteration"], "loss" in record))

    def on_record(self, trainer, record):
        self.calls.append(("record", record["iteration"], "test_acc" in record))

    def on_fit_end(self, trainer, reason):
        self.calls.append(("end", reason))

    def state_dict(self):
        return {"recorder_calls": len(self.calls)}


@pytest.fixture
def sequential(monkeypatch):
    """Evaluations between the steps, never on a worker thread (tests/test_whole_command.py has
    the overlapped ones): the order of hooks and saves these tests state."""
    monkeypatch.setattr(Evaluation, "OVERLAP_MAX_WORK", 0)


def test_hooks_come_in_order_and_state_goes_through_the_checkpoint(tmp_path, sequential):
    rec = Recorder(order=25)  # between the divergence guard (20) and the evaluation (30)
    trainer = Trainer(config(iters=4, log_every=2), blobs(), tmp_path, verbose=False,
                      callbacks=[rec])  # fmt: skip
    trainer.run()
    assert rec.calls == [
        ("start", 0), ("interval", 0, True), ("record", 0, True),
        ("backward", 0), ("backward", 1), ("interval", 2, True), ("record", 2, True),
        ("backward", 2), ("backward", 3), ("interval", 4, True), ("record", 4, True),
        ("end", "done"),
    ]  # fmt: skip
    assert load_checkpoint(tmp_path / "checkpoint.npz").extra["recorder_calls"] == 11


def test_writers_run_in_one_process_only():
    class Rank1:
        rank, size = 1, 2

        def sum(self, values):
            return [2 * v for v in values]

    trainer = Trainer(config(batch_size=20), blobs(), "/nonexistent/never-written", verbose=True,
                      comm=Rank1(), callbacks=[Recorder(one_process=True), Recorder()])  # fmt: skip
    kinds = [type(c).__name__ for c in trainer.callbacks]
    assert "MetricsFile" not in kinds and "Console" not in kinds and "RunRecord" not in kinds
    assert kinds.count("Recorder") == 1 and "Evaluation" in kinds
    # every process takes part in each checkpoint at the same step; rank 0 alone writes it
    # (tests/test_mpi.py: test_only_rank_0_writes_but_every_process_saves_at_the_same_steps)
    assert "Checkpointer" in kinds


def test_a_bad_update_just_before_a_log_line_never_becomes_the_checkpoint(tmp_path):
    """The loss of the step before the update is finite; the weights after it are not."""

    class PoisonAt(Callback):
        def on_after_backward(self, trainer):
            if trainer.iteration == 59:  # the last update before the log line at 60
                for grad in trainer.net.grads.values():
                    grad *= float("inf")

    trainer = Trainer(config(), blobs(), tmp_path, verbose=False, callbacks=[PoisonAt()])
    with pytest.raises(
        TrainingDiverged, match=r"weights became inf or NaN between iterations 30 and 60"
    ):
        trainer.run()
    ckpt = load_checkpoint(tmp_path / "checkpoint.npz")
    assert ckpt.iteration == 30
    assert all(np.isfinite(v).all() for v in ckpt.params.values())


def test_a_signal_during_a_long_evaluation_is_acted_on_between_chunks(
    tmp_path, monkeypatch, sequential
):
    chunks = []
    real = Evaluation.count_correct

    def count(trainer, predict, x, t, chunk):
        def slow_predict(xb):
            chunks.append(trainer.iteration)
            if chunks.count(30) == 3:  # mid-evaluation of the training set, at the 2nd line
                os.kill(os.getpid(), signal.SIGTERM)
            return predict(xb)

        return real(trainer, slow_predict, x, t, chunk)

    monkeypatch.setattr(Evaluation, "count_correct", staticmethod(count))
    trainer = Trainer(config(), blobs(), tmp_path, verbose=False)
    trainer.net.eval_batch_size = 100  # 6 + 2 chunks per evaluation
    with pytest.raises(Interrupted, match=r"SIGTERM at iteration 30 of 90; checkpoint saved"):
        trainer.run()
    assert chunks.count(30) == 3, "the evaluation stopped at the chunk after the signal"
    ckpt = load_checkpoint(tmp_path / "checkpoint.npz")
    assert ckpt.iteration == 30 and [r["iteration"] for r in ckpt.extra["history"]] == [0]
    monkeypatch.undo()
    resumed = Trainer.resume(tmp_path / "checkpoint.npz", blobs(), verbose=False)
    full = Trainer(config(), blobs(), None, verbose=False)
    assert resumed.run() == {**full.run(), "seconds": resumed.history[-1]["seconds"]}


def test_no_fused_turns_off_the_optimizer_kernels_too():
    fused = Trainer(config(optimizer="adam"), blobs(), None, verbose=False)
    plain = Trainer(config(optimizer="adam", fused=False), blobs(), None, verbose=False)
    assert fused.optimizer.kernels is not None and fused.fused is not None
    assert plain.optimizer.kernels is None and plain.fused is None


def test_the_loss_meter_carries_an_unfinished_interval_through_a_checkpoint(tmp_path):
    trainer = Trainer(config(checkpoint_every=7), blobs(), tmp_path, verbose=False)
    trainer.total_iters = 35  # stops mid-interval; the checkpoint at 35 holds steps 31..35
    trainer.run()
    extra = load_checkpoint(tmp_path / "checkpoint.npz").extra
    assert extra["loss_count"] == 0  # the final line consumed them
    trainer2 = Trainer(config(checkpoint_every=7), blobs(), tmp_path / "b", verbose=False)
    trainer2.advance(35)
    state = trainer2.callback(LossMeter).state_dict()
    assert state["loss_count"] == 35 and np.isfinite(state["loss_sum"])


def test_checkpoints_come_every_n_steps_and_at_log_lines(tmp_path, monkeypatch, sequential):
    saved = []
    real = Checkpointer.save

    def spy(self, trainer, path=None, wait=True):
        saved.append((trainer.iteration, Path(path or self.path).name))
        return real(self, trainer, path, wait)

    monkeypatch.setattr(Checkpointer, "save", spy)
    Trainer(config(checkpoint_every=25), blobs(), tmp_path, verbose=False).run()
    assert saved == [(25, "checkpoint.npz"), (50, "checkpoint.npz"), (75, "checkpoint.npz"),
                     (90, "checkpoint.npz"), (90, "model.npz")]  # fmt: skip
    saved.clear()
    Trainer(config(), blobs(), tmp_path / "b", verbose=False).run()
    assert saved == [(30, "checkpoint.npz"), (60, "checkpoint.npz"), (90, "checkpoint.npz"),
                     (90, "model.npz")]  # fmt: skip


def test_resume_of_a_run_stopped_mid_interval_gives_the_same_numbers_as_an_unstopped_one(tmp_path):
    full = Trainer(config(), blobs(), None, verbose=False)
    full.run()
    part = Trainer(config(checkpoint_every=7), blobs(), tmp_path, verbose=False)

    class StopAt(Callback):
        def on_step_end(self, trainer, loss):
            if trainer.iteration == 49:
                trainer.stop_signal = signal.SIGINT

    part.callbacks.append(StopAt())
    with pytest.raises(Interrupted):
        part.run()
    resumed = Trainer.resume(tmp_path / "checkpoint.npz", blobs(), verbose=False)
    resumed.run()
    # the loss of the interrupted interval is a float32 partial sum carried over: equal to rounding
    for a, b in zip(resumed.history, full.history, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
        assert {**a, "seconds": 0, "loss": 0} == {**b, "seconds": 0, "loss": 0}
    for key, value in full.net.params.items():
        np.testing.assert_array_equal(to_numpy(resumed.net.params[key]), to_numpy(value))


# -- run folders: --overwrite replaces the old run only once the new one starts ------------------


def test_overwrite_puts_the_old_run_back_when_the_new_one_never_starts(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("metrics.jsonl", "model.npz", "checkpoint.npz", "notes.txt"):
        (out / name).write_text(name)
    outputs = ("metrics.jsonl", "model.npz", "checkpoint.npz", "curves.png")
    with pytest.raises(KeyboardInterrupt), RunFolder(out, overwrite=True, outputs=outputs):
        assert not (out / "model.npz").exists()  # moved aside while the new run loads
        raise KeyboardInterrupt  # Ctrl-C while the data loads
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.npz", "metrics.jsonl", "model.npz", "notes.txt",
    ]  # fmt: skip
    assert (out / "model.npz").read_text() == "model.npz"
    with RunFolder(out, overwrite=True, outputs=outputs) as folder:
        folder.commit()
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_overwrite_with_a_usage_error_keeps_the_old_run(tmp_path, capsys):
    from xpnet.apps.train import main

    pytest.importorskip("sklearn")
    out = tmp_path / "run"
    args = ["--dataset", "digits", "--iters", "5", "--no-plot", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main([*args, "--overwrite", "--batch-size", "5000"]) == 2
    assert "batch size 5000 is larger than the training set" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_the_refusal_advises_resume_only_for_a_run(tmp_path, capsys):
    from xpnet.apps.train import main

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("mine")
    assert main(["--dataset", "digits", "--out", str(notes)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--resume" not in err and "pass --overwrite to replace it" in err


def test_batch_norm_on_batches_of_one_is_refused_before_any_work(tmp_path, capsys):
    from xpnet.apps.train import main

    with pytest.raises(ConfigError, match="needs 2 or more samples"):
        TrainConfig(batchnorm=True, batch_size=1).validate()
    args = ["--dataset", "digits", "--batchnorm", "--batch-size", "1", "--out", str(tmp_path / "r")]
    assert main(args) == 2 and not (tmp_path / "r").exists()
    assert "use --batch-size 2 or more" in capsys.readouterr().err


def test_epochs_beyond_any_run_are_refused():
    with pytest.raises(ConfigError, match="more updates than any run can make"):
        Trainer(config(epochs=1e300), blobs(), None, verbose=False)


# -- slow or surprising runs announced -----------------------------------------------------------


def test_a_long_run_says_how_long_it_will_take_once(monkeypatch, capsys, sequential):
    from xpnet.training.writers import Forecast

    monkeypatch.setattr(Forecast, "MEASURE", 0.0)
    monkeypatch.setattr(Forecast, "ANNOUNCE", 0.0)
    Trainer(config(), blobs(), None, progress=False).run()
    out = capsys.readouterr().out.splitlines()
    forecasts = [line for line in out if line.startswith("forecast: about ")]
    assert len(forecasts) == 1 and " a step, 3 evaluations of " in forecasts[0]
    assert out.index(forecasts[0]) == 1  # after the first line, before the second
    monkeypatch.setattr(Forecast, "ANNOUNCE", 3600.0)  # a short run says nothing
    Trainer(config(), blobs(), None, progress=False).run()
    assert "forecast" not in capsys.readouterr().out


def test_the_forecast_of_a_run_whose_evaluations_overlap_adds_no_evaluation_time(
    monkeypatch, capsys
):
    from xpnet.training.writers import Forecast

    monkeypatch.setattr(Forecast, "MEASURE", 0.0)
    monkeypatch.setattr(Forecast, "ANNOUNCE", 0.0)
    trainer = Trainer(config(), blobs(), None, progress=False)
    assert trainer.callback(Evaluation).overlapping(trainer)
    trainer.run()
    forecasts = [s for s in capsys.readouterr().out.splitlines() if s.startswith("forecast: ")]
    assert len(forecasts) == 1 and forecasts[0].endswith(" a step, evaluations beside the steps)")
    assert trainer.callback(Forecast).eval_seconds == 0.0


def test_eval_samples_measures_the_first_n_until_the_last_line(tmp_path):
    trainer = Trainer(config(eval_samples=50), blobs(), tmp_path, verbose=False)
    trainer.run()
    *lines, last = trainer.history
    assert all(r["evaluated_on"] == 50 for r in lines) and "evaluated_on" not in last
    full = Trainer(config(), blobs(), None, verbose=False)
    full.run()
    assert last["test_acc"] == full.history[-1]["test_acc"]
    # the first 50 of 200 test samples: accuracies in steps of 1/50
    assert all(round(r["test_acc"] * 50, 9).is_integer() for r in lines)


def test_the_done_line_names_the_dataset(tmp_path, capsys):
    from xpnet.apps.train import main

    pytest.importorskip("sklearn")
    assert main(["--dataset", "digits", "--iters", "5", "--no-plot", "--no-progress",
                 "--out", str(tmp_path / "r")]) == 0  # fmt: skip
    assert "done: digits test accuracy " in capsys.readouterr().out


def test_threadpoolctl_finds_numpys_blas():
    """The one-thread steps (trainer.SMALL_STEP) and the exact evaluator act through
    threadpoolctl; one that cannot see NumPy's BLAS would change nothing, silently
    (threadpoolctl 3.5 is the first to find the scipy-openblas of NumPy 2 wheels)."""
    from threadpoolctl import threadpool_info

    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    if "openblas" not in str(blas.get("name", "")):
        pytest.skip(f"NumPy's BLAS is {blas.get('name')}, not OpenBLAS")
    assert [i for i in threadpool_info() if i["user_api"] == "blas"], "threadpoolctl sees no BLAS"
