"""The training loop: learning, metrics, checkpoints, resume, divergence, no host sync per step."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import assert_on

from xpnet.backend import to_numpy
from xpnet.errors import CheckpointError, ConfigError, DataError, TrainingDiverged
from xpnet.nn.mlp import TwoLayerNet
from xpnet.training import Sampler, TrainConfig, Trainer, epoch_order
from xpnet.training.checkpoint import load_checkpoint, load_model, save_checkpoint
from xpnet.training.evaluation import accuracy_of


def blobs(n_train=600, n_test=200, features=12, classes=4, seed=0):
    """Separable Gaussian blobs: a dataset any working trainer learns to >90% quickly."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, features)) * 2.0

    def sample(n):
        t = rng.integers(0, classes, n)
        return (centers[t] + rng.standard_normal((n, features))).astype(np.float32), t

    (x_train, t_train), (x_test, t_test) = sample(n_train), sample(n_test)
    return SimpleNamespace(
        name="blobs", source="synthetic", notice=None, num_classes=classes,
        x_train=x_train, t_train=t_train, x_test=x_test, t_test=t_test,
    )  # fmt: skip


def config(**kw):
    base = dict(hidden=[16], init="he", lr=0.1, batch_size=20, iters=90, log_every=30, seed=1)
    return TrainConfig(**{**base, **kw})


def test_trainer_learns_and_writes_metrics_on_every_backend(backend, tmp_path):
    trainer = Trainer(config(), blobs(), tmp_path, progress=False, backend=backend, verbose=False)
    record = trainer.run()
    assert record["final"] and record["iteration"] == 90
    assert record["test_acc"] > 0.9
    for param in trainer.net.params.values():
        assert_on(param, backend, "float32")
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in lines] == [0, 30, 60, 90]
    assert lines[-1] == record
    assert lines[0]["loss"] > lines[-1]["loss"]
    assert all(
        np.isfinite([r["loss"], r["train_acc"], r["test_acc"], r["seconds"]]).all() for r in lines
    )
    assert (tmp_path / "model.npz").exists() and (tmp_path / "checkpoint.npz").exists()


def test_model_trained_on_one_backend_evaluates_the_same_on_another(backend, tmp_path):
    data = blobs()
    Trainer(config(), data, tmp_path, progress=False, backend=backend).run()
    history = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert accuracy_of(tmp_path / "model.npz", data, "cpu") == history[-1]["test_acc"]
    net = load_model(tmp_path / "model.npz", backend)
    assert_on(net.params["W1"], backend, "float32")


def test_epoch_order_and_steps(tmp_path):
    trainer = Trainer(config(epochs=1.5, batch_size=64), blobs(), None, progress=False)
    assert trainer.steps_per_epoch == 9  # 600 // 64: the partial batch is dropped
    assert trainer.total_iters == 14
    order = to_numpy(trainer.sampler.order(0))
    assert sorted(order.tolist()) == list(range(600))
    again = Trainer(config(epochs=1.5, batch_size=64), blobs(), None, progress=False)
    np.testing.assert_array_equal(to_numpy(again.sampler.order(0)), order)
    assert not np.array_equal(to_numpy(trainer.sampler.order(1)), order)


@pytest.mark.parametrize("shard", [(0, 1), (1, 2)])
def test_a_minibatch_is_its_rows_of_the_epochs_order(backend, shard):
    """Batch j of epoch e is rows order_e[j·B : (j+1)·B] (a process's share of them), features
    and labels alike, across an epoch's end, on every backend."""
    data = blobs()
    trainer = Trainer(config(batch_size=64), data, None, progress=False, backend=backend)
    sampler = Sampler(trainer.data, 64, 1, trainer.be, shard)
    rank, size = shard
    per = 64 // size
    for i in (0, 1, 8, 9, 10, 17, 18):  # 9 steps an epoch (600 // 64)
        epoch, j = divmod(i, 9)
        rows = epoch_order(1, epoch, 600)[j * 64 + rank * per : j * 64 + (rank + 1) * per]
        x, t = sampler.batch(i)
        assert_on(x, backend, "float32", (per, 12))
        assert_on(t, backend, None, (per,))
        np.testing.assert_array_equal(to_numpy(x), data.x_train[rows])
        np.testing.assert_array_equal(to_numpy(t), data.t_train[rows])


def test_training_steps_never_read_device_values(tmp_path, monkeypatch):
    """No host synchronisation inside the loop: any read of a device value would raise."""
    xs = pytest.importorskip("array_api_strict")
    from xpnet.backend import resolve

    trainer = Trainer(
        config(), blobs(), None, progress=False, backend=resolve("device1", "array_api_strict")
    )

    def forbidden(*args, **kwargs):
        raise AssertionError("a device value was read inside the training loop")

    Array = type(trainer.net.params["W1"])
    for name in (
        "__float__",
        "__int__",
        "__bool__",
        "__index__",
        "__array__",
        "__dlpack__",
        "to_device",
    ):
        monkeypatch.setattr(Array, name, forbidden, raising=False)
    copies = []
    real_asarray = xs.asarray
    monkeypatch.setattr(xs, "asarray", lambda *a, **k: copies.append(1) or real_asarray(*a, **k))
    from xpnet.training import LossMeter

    # 45 steps of 30 per epoch: two epochs, so exactly two host->device copies (the permutations)
    trainer.advance(45)
    assert trainer.iteration == 45 and len(trainer.callback(LossMeter).losses) == 45
    assert len(copies) == 2


def test_resume_gives_bit_identical_weights(backend, tmp_path):
    data = blobs()
    full = Trainer(
        config(optimizer="adam", lr=0.01), data, tmp_path / "full", progress=False, backend=backend
    )
    full.run()

    part = Trainer(
        config(optimizer="adam", lr=0.01, iters=90),
        data,
        tmp_path / "part",
        progress=False,
        backend=backend,
    )
    part.total_iters = 47  # stop mid-interval, as an interruption would
    part.run()
    save = tmp_path / "part" / "checkpoint.npz"
    ckpt = load_checkpoint(save)
    assert ckpt.iteration == 47
    assert ckpt.extra["random_state"] == {
        "seed": 1, "epoch_order": "numpy.random.default_rng([seed, epoch]).permutation(n_train)",
        "epoch": 1, "step_in_epoch": 17,
    }  # fmt: skip
    resumed = Trainer.resume(save, data, progress=False, backend=backend)
    assert resumed.iteration == 47
    resumed.run()
    for key, value in full.net.params.items():
        np.testing.assert_array_equal(
            to_numpy(resumed.net.params[key]), to_numpy(value), err_msg=key
        )
    assert [r["iteration"] for r in resumed.history] == [0, 30, 47, 60, 90]


def test_nan_loss_stops_with_advice_and_keeps_last_finite_checkpoint(tmp_path):
    class Poison:
        """SGD that turns the weights into NaN after 40 updates."""

        def __init__(self, inner):
            self.inner, self.lr = inner, inner.lr

        def update(self, params, grads):
            self.inner.update(params, grads)
            if self.inner.steps == 40:
                params["W1"] *= float("nan")

        def state_dict(self):
            return self.inner.state_dict()

    trainer = Trainer(config(), blobs(), tmp_path, progress=False)
    trainer.optimizer = Poison(trainer.optimizer)
    with pytest.raises(
        TrainingDiverged,
        match=r"between iterations 30 and 60 .*iteration 30\)\. Start a new run with a smaller learning rate, e\.g\. --lr 0\.01",
    ):
        trainer.run()
    ckpt = load_checkpoint(tmp_path / "checkpoint.npz")
    assert ckpt.iteration == 30
    assert all(np.isfinite(v).all() for v in ckpt.params.values())
    assert not (tmp_path / "model.npz").exists()


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"batch_size": 601}, ConfigError, "batch size 601 is larger than the training set"),
        ({"lr": 0.0}, ConfigError, "learning rate must be positive"),
        ({"iters": 0}, ConfigError, "iteration count must be positive"),
        ({"hidden": [0]}, ConfigError, "hidden sizes must be positive"),
        ({"optimizer": "adamm"}, ConfigError, "unknown optimizer 'adamm'"),
        ({"init": "kaiming"}, ConfigError, "unknown initializer"),
    ],
)
def test_bad_configuration(kwargs, error, message):
    with pytest.raises(error, match=message):
        Trainer(config(**kwargs), blobs(), None, progress=False)


def test_bad_labels_are_caught_once_at_load():
    data = blobs()
    data.t_train = data.t_train.copy()
    data.t_train[3] = 7
    with pytest.raises(
        DataError,
        match=r"^training data: class labels must lie in 0\.\.3 for 4 classes, got values from 0 to 7$",
    ):
        Trainer(config(), data, None, progress=False)
    data.t_train = data.t_train.astype(np.float32)
    with pytest.raises(DataError, match="data: class labels must be integers"):
        Trainer(config(), data, None, progress=False)


def test_checkpoint_into_a_different_architecture_is_a_clear_error(tmp_path):
    save_checkpoint(tmp_path / "c.npz", TwoLayerNet(12, 16, 4))
    trainer = Trainer(config(hidden=[20]), blobs(), None, progress=False)
    with pytest.raises(
        CheckpointError, match="holds a 12-16-4 network, which does not fit this 12-20-4 network"
    ):
        trainer.load_state_dict(load_checkpoint(tmp_path / "c.npz"))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "missing"])
def test_damaged_checkpoint_files(damage, tmp_path):
    path = tmp_path / "c.npz"
    save_checkpoint(path, TwoLayerNet(12, 16, 4))
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(data[:100] + bytes(200) + data[300:])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()
    with pytest.raises(CheckpointError, match=r"c\.npz"):
        load_checkpoint(path)


def test_checkpoint_round_trip_keeps_everything(tmp_path):
    net = TwoLayerNet(12, 16, 4, seed=3)
    from xpnet.nn.optimizers import make_optimizer

    opt = make_optimizer("adam", lr=0.01)
    x = np.random.default_rng(0).standard_normal((8, 12)).astype(np.float32)
    t = np.arange(8) % 4
    for _ in range(3):
        net.forward_backward(x, t)
        opt.update(net.params, net.grads)
    save_checkpoint(
        tmp_path / "c.npz",
        net,
        opt,
        iteration=3,
        config={"lr": 0.01},
        extra={"history": [{"a": 1}]},
    )
    ckpt = load_checkpoint(tmp_path / "c.npz")
    assert (
        ckpt.iteration == 3 and ckpt.config == {"lr": 0.01} and ckpt.extra["history"] == [{"a": 1}]
    )
    for key, value in net.params.items():
        np.testing.assert_array_equal(ckpt.params[key], value)
    from xpnet.backend import resolve

    state = ckpt.optimizer_state(resolve("cpu"))
    original = opt.state_dict()
    assert state["steps"] == original["steps"]
    for slot, arrays in original["state"].items():
        for key, value in arrays.items():
            np.testing.assert_array_equal(state["state"][slot][key], value)
    assert not list(tmp_path.glob(".*tmp*")), "no temporary files are left behind"


def test_default_learning_rate_follows_the_optimizer():
    assert TrainConfig().lr == 0.1  # the slides'
    assert TrainConfig(optimizer="adam").lr == 0.001
    assert TrainConfig(optimizer="momentum").lr == 0.01
    assert TrainConfig(optimizer="adam", lr=0.05).lr == 0.05


def test_log_interval_stays_sensible_for_huge_runs(monkeypatch, tmp_path):
    """`--epochs 1e9` must not mean hours without a log line or a checkpoint."""
    import xpnet.training.trainer as train_module

    huge = Trainer(config(log_every=None, epochs=1e9), blobs(), None, verbose=False)
    assert huge.total_iters == 30 * 10**9
    assert huge.log_every == train_module.MAX_LOG_INTERVAL
    # a short run keeps one line per epoch (every few on small datasets), as before
    assert Trainer(config(log_every=None, iters=90), blobs(), None).log_every == 30

    monkeypatch.setattr(train_module, "MAX_LOG_INTERVAL", 40)
    trainer = Trainer(config(log_every=None, epochs=1e9), blobs(), tmp_path, verbose=False)
    assert trainer.log_every == 40
    monkeypatch.setattr(trainer, "total_iters", 100)
    trainer.run()
    assert [r["iteration"] for r in trainer.history] == [0, 40, 80, 100]


def test_checkpoint_at_least_every_few_minutes(monkeypatch, tmp_path):
    import xpnet.training.writers as writers

    monkeypatch.setattr(writers, "CHECKPOINT_SECONDS", 0.0)
    monkeypatch.setattr(writers, "CHECK_CLOCK_EVERY", 25)
    trainer = Trainer(config(log_every=1000, iters=100), blobs(), tmp_path, verbose=False)
    saved = []
    real_save = writers.Checkpointer.save

    def spy(self, trainer, path=None, wait=True):
        saved.append(trainer.iteration)
        return real_save(self, trainer, path, wait)

    monkeypatch.setattr(writers.Checkpointer, "save", spy)
    trainer.run()
    # every chunk past the time limit writes one, then the final checkpoint and model
    assert saved == [25, 50, 75, 100, 100]
    assert [r["iteration"] for r in trainer.history] == [0, 100]  # the log lines do not move


def test_resumed_finished_run_returns_its_record_and_writes_nothing(tmp_path):
    trainer = Trainer(config(iters=30), blobs(), tmp_path, verbose=False)
    record = trainer.run()
    before = (tmp_path / "metrics.jsonl").read_bytes()
    again = Trainer.resume(tmp_path / "checkpoint.npz", blobs(), verbose=False)
    assert again.finished and again.run() == record
    assert (tmp_path / "metrics.jsonl").read_bytes() == before
    more = Trainer.resume(
        tmp_path / "checkpoint.npz", blobs(), overrides={"iters": 60}, verbose=False
    )
    more.run()
    assert [r["iteration"] for r in more.history if r.get("final")] == [60]


def test_initial_overflow_blames_the_init_not_the_learning_rate(tmp_path):
    with pytest.raises(
        TrainingDiverged, match=r"before the first update.*init 1e\+300.*smaller --init"
    ):
        Trainer(config(init=1e300), blobs(), tmp_path, verbose=False).run()


# -- the progress bar (tqdm) ----------------------------------------------------------------------


def test_progress_draws_only_where_asked_and_writes_above_the_bar():
    import io

    from xpnet.progress import Progress

    log, out = io.StringIO(), io.StringIO()
    with Progress(50, "train", stream=log) as bar:  # not a terminal: no bar, lines only
        bar.update(10)
        bar.write("iter 10", stream=out)
    assert log.getvalue() == "" and out.getvalue() == "iter 10\n"

    term = io.StringIO()
    with Progress(50, "train", stream=term, enabled=True) as bar:
        bar.set(20)
        bar.update(30)
        bar.write("final 50", stream=term)
    drawn = term.getvalue()
    assert "train" in drawn and "50/50" in drawn and "100%" in drawn and "final 50\n" in drawn
    assert bar.n == 50 and bar.total == 50


def test_progress_counts_downloaded_bytes():
    import io

    from xpnet.progress import Progress

    term = io.StringIO()
    with Progress(3 * 2**20, "mnist.gz", unit="B", stream=term, enabled=True) as bar:
        for _ in range(3):
            bar.update(2**20)
    assert "3.00M/3.00M" in term.getvalue() and "B" in term.getvalue()


def test_safe_print_stops_on_a_broken_stream(capsys):
    from xpnet.progress import safe_print

    class Broken:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

    broken = Broken()
    assert safe_print("one", broken) is False
    assert safe_print("two", broken) is False  # muted: no second warning
    err = capsys.readouterr().err
    assert err.count("stopped printing to standard output (the reader went away)") == 1


def test_initial_overflow_of_the_weight_decay_blames_the_weight_decay(tmp_path):
    with pytest.raises(
        TrainingDiverged,
        match=r"before the first update.*weight decay 1e\+308.*smaller --weight-decay",
    ):
        Trainer(config(weight_decay=1e308), blobs(), tmp_path, verbose=False).run()


def test_training_on_uint8_codes_gives_the_same_bits_as_on_floats(backend):
    """On NumPy the Trainer gathers uint8 codes and normalizes each batch: the same weights."""
    import dataclasses

    from xpnet.data import load_dataset

    pytest.importorskip("sklearn")
    data = load_dataset("digits")
    assert data.scale == 16
    floats = dataclasses.replace(data, scale=None)
    params = []
    for d in (data, floats):
        config = TrainConfig(iters=60, batch_size=50, seed=3, hidden=[20], device=backend)
        trainer = Trainer(config, d, verbose=False, progress=False, backend=backend)
        # NumPy only: elsewhere the extra cast costs more than the smaller gather saves
        assert (trainer.data.codes_train is not None) == (d is data and backend.name == "numpy")
        if trainer.data.codes_train is not None:
            assert_on(trainer.data.codes_train, backend, "uint8", (1497, 64))
        trainer.run()
        params.append({k: to_numpy(v).copy() for k, v in trainer.net.params.items()})
    for key, value in params[1].items():
        np.testing.assert_array_equal(params[0][key], value)


def test_features_changed_after_loading_are_trained_on_as_they_are():
    """The codes are derived from x_train, so a changed x_train is never replaced by stale codes."""
    from xpnet.data import load_dataset
    from xpnet.training.placement import uint8_codes

    pytest.importorskip("sklearn")
    data = load_dataset("digits")
    codes = uint8_codes(data.x_train, data.scale)
    np.testing.assert_array_equal(codes * np.float32(1 / 16), data.x_train)
    data.x_train[0, 0] += 0.001  # e.g. an augmentation after loading
    assert uint8_codes(data.x_train, data.scale) is None
    trainer = Trainer(TrainConfig(iters=2, batch_size=50, hidden=[8]), data, verbose=False)
    assert trainer.data.codes_train is None
