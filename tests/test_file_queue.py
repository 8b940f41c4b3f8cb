"""The run's files are written on a thread of their own (FileQueue): the steps never wait for the
disk, the files come in order and whole, a failed write is an error of the run, and a signal's
checkpoint is on disk when the run says it is saved."""

import json
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_train import blobs, config

import xpnet.training.trainer as trainer_module
import xpnet.training.writers as writers
from xpnet.errors import TrainingDiverged
from xpnet.fileio import WriteError
from xpnet.training import Callback, FileQueue, Interrupted, Trainer, load_checkpoint


class At(Callback):
    """Calls `action(trainer)` once, after the update that makes `iteration`."""

    def __init__(self, iteration, action):
        self.iteration, self.action = iteration, action

    def on_step_end(self, trainer, loss):
        if trainer.iteration == self.iteration:
            self.action(trainer)


def test_the_steps_go_on_while_the_files_are_written(tmp_path, monkeypatch):
    # a disk that holds a line's metrics.jsonl (config.json with the first) until the step before
    # the next line: written in the loop, it would wait here until the timeout and fail the run
    step, moved = [0], threading.Condition()
    real = writers.atomic_write_text

    def held(path, text):
        config = Path(path).name == "config.json"  # written with the first line
        line = 0 if config else json.loads(text.splitlines()[-1])["iteration"]
        with moved:
            assert moved.wait_for(lambda: step[0] >= min(line + 29, 90), 5), (path, line)
        return real(path, text)

    class Steps(Callback):
        def on_step_end(self, trainer, loss):
            with moved:
                step[0] = trainer.iteration
                moved.notify_all()

    monkeypatch.setattr(writers, "atomic_write_text", held)
    trainer = Trainer(config(iters=90, log_every=30), blobs(), tmp_path, verbose=False,
                      callbacks=[Steps()])  # fmt: skip
    trainer.run()
    # when run returns, every file is written, in order: the last writes are the last lines
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == trainer.history and [r["iteration"] for r in lines] == [0, 30, 60, 90]
    assert json.loads((tmp_path / "config.json").read_text())["iterations"] == 90
    ckpt = load_checkpoint(tmp_path / "checkpoint.npz")
    model = load_checkpoint(tmp_path / "model.npz")
    assert ckpt.iteration == model.iteration == 90 and ckpt.extra["history"] == trainer.history
    for key, value in trainer.net.params.items():
        np.testing.assert_array_equal(ckpt.params[key], value, err_msg=key)
    assert trainer.last_checkpoint == (tmp_path / "model.npz", 90)
    assert not any(t.name.startswith("xpnet-files") for t in threading.enumerate())


def test_a_checkpoint_written_later_holds_its_own_step(tmp_path, monkeypatch):
    # the disk holds the checkpoint of step 20 until step 40: it must not see steps 21..40
    disk, written = threading.Event(), []
    real = trainer_module.write_checkpoint

    def held(path, arrays, meta):
        assert disk.wait(5), "the steps waited for a checkpoint"
        written.append((meta["iteration"], {k: np.array(v) for k, v in arrays.items()}))
        return real(path, arrays, meta)

    monkeypatch.setattr(trainer_module, "write_checkpoint", held)
    at_20 = {}

    def keep(trainer):
        at_20.update({k: np.array(v) for k, v in trainer.net.params.items()})

    trainer = Trainer(config(iters=40, log_every=40, checkpoint_every=20), blobs(), tmp_path,
                      verbose=False, callbacks=[At(20, keep), At(40, lambda t: disk.set())])  # fmt: skip
    trainer.run()
    assert [i for i, _ in written] == [20, 40, 40]  # step 20's, the final checkpoint, the model
    for key, value in at_20.items():
        np.testing.assert_array_equal(written[0][1][f"params/{key}"], value, err_msg=key)
        assert not np.array_equal(value, trainer.net.params[key])


def test_a_write_that_fails_fails_the_run_and_the_earlier_files_stay(tmp_path, monkeypatch):
    real = writers.atomic_write_text
    calls = []

    def full(path, text):
        calls.append(Path(path).name)
        if calls.count("metrics.jsonl") == 2:
            raise WriteError(f"cannot write {path}: No space left on device")
        return real(path, text)

    monkeypatch.setattr(writers, "atomic_write_text", full)
    trainer = Trainer(config(iters=90, log_every=30), blobs(), tmp_path, verbose=False)
    with pytest.raises(WriteError, match="No space left on device"):
        trainer.run()
    # raised at the next line's write or at the end; each file is whole: a prefix of the lines
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines and lines == trainer.history[: len(lines)]
    assert "metrics.jsonl" in calls[calls.index("metrics.jsonl") + 1 :]  # the failed one
    assert not any(t.name.startswith("xpnet-files") for t in threading.enumerate())


def test_a_signal_reports_a_checkpoint_that_is_on_disk(tmp_path, monkeypatch):
    found = []

    class Reported(Interrupted):  # made when the run says "checkpoint saved": is it on disk?
        def __init__(self, message, signum):
            super().__init__(message, signum)
            found.append(load_checkpoint(tmp_path / "checkpoint.npz").iteration)

    monkeypatch.setattr(trainer_module, "Interrupted", Reported)

    def stop(trainer):
        trainer.stop_signal = signal.SIGINT

    trainer = Trainer(config(iters=90, log_every=30), blobs(), tmp_path, verbose=False,
                      callbacks=[At(45, stop)])  # fmt: skip
    with pytest.raises(Interrupted, match="checkpoint saved to"):
        trainer.run()
    assert found == [45]


def test_divergence_names_the_checkpoint_being_written(tmp_path, monkeypatch):
    # the line at 30 is checkpointed on the queue's thread; the run diverges right after it
    def blow_up(trainer):
        for value in trainer.net.params.values():
            value[...] = np.inf

    trainer = Trainer(config(iters=90, log_every=30), blobs(), tmp_path, verbose=False,
                      callbacks=[At(31, blow_up)])  # fmt: skip
    files = trainer.callback(FileQueue)
    real_submit = files.submit
    gate = threading.Event()

    def slow(write, *args):
        real_submit(lambda: (gate.wait(0.3), write(*args))[1])

    monkeypatch.setattr(files, "submit", slow)
    with pytest.raises(
        TrainingDiverged, match=r"last finite checkpoint is .*checkpoint.npz \(iteration 30\)"
    ):
        trainer.run()


def test_a_checkpoint_saved_now_is_not_overwritten_by_an_earlier_one_still_queued(tmp_path):
    # step 20's checkpoint is queued on a slow disk; a callback saves step 25's at once
    real = trainer_module.write_checkpoint
    found = []

    def slow(path, arrays, meta):
        if meta["iteration"] == 20:
            time.sleep(0.3)
        return real(path, arrays, meta)

    def save_now(trainer):
        trainer.save(trainer.checkpoint_path)
        time.sleep(0.5)  # long enough for a queued write to land after it
        found.append(load_checkpoint(trainer.checkpoint_path).iteration)

    trainer = Trainer(config(iters=40, log_every=40, checkpoint_every=20), blobs(), tmp_path,
                      verbose=False, callbacks=[At(25, save_now)])  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer_module, "write_checkpoint", slow)
        trainer.run()
    assert found == [25]


def test_when_a_line_is_emitted_the_line_before_is_on_disk(tmp_path, monkeypatch):
    # a slow disk (0.2 s a checkpoint) and intervals of a few milliseconds: the writes overlap
    # one interval's steps, no more, so a killed run loses no more than before the queue
    real = trainer_module.write_checkpoint
    on_disk = []

    def slow(path, arrays, meta):
        time.sleep(0.2)
        return real(path, arrays, meta)

    class Look(Callback):
        order = 90  # after the writers, before the queue's end

        def on_record(self, trainer, record):
            if record["iteration"] >= 20:
                on_disk.append(
                    (record["iteration"], load_checkpoint(trainer.checkpoint_path).iteration)
                )

    monkeypatch.setattr(trainer_module, "write_checkpoint", slow)
    trainer = Trainer(config(iters=40, log_every=10), blobs(), tmp_path, verbose=False,
                      callbacks=[Look()])  # fmt: skip
    trainer.run()
    assert on_disk == [(20, 10), (30, 20), (40, 30)]
