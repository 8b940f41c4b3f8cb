"""scripts/visualize.py: the activation picture on every backend, and a saved model's pictures."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_on

import xpnet
from xpnet.apps import visualize as app
from xpnet.backend import to_numpy
from xpnet.experiments import visualize
from xpnet.nn.layers import Affine, Layer
from xpnet.nn.network import Network
from xpnet.training import evaluation
from xpnet.training.checkpoint import load_checkpoint, load_model
from xpnet.training.trainer import TrainConfig, Trainer

pytest.importorskip("matplotlib", reason="the pictures are drawn with matplotlib")

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FUNCTIONS = {
    "step_function": xpnet.step_function,
    "sigmoid": xpnet.sigmoid,
    "relu": xpnet.relu,
    "tanh": xpnet.tanh,
}


def assert_png(path: Path, min_bytes: int = 10_000) -> None:
    data = Path(path).read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > min_bytes


def slides_x(backend, dtype="float32"):
    """The slides' grid np.arange(-5.0, 5.0, 0.1) on the backend."""
    return backend.asarray(np.arange(-5.0, 5.0, 0.1), dtype)


# -- activations --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_activations_are_computed_on_the_backend_by_xpnet(backend, dtype):
    arrays = visualize.compute_activations(backend, dtype)
    assert set(arrays) == {"x", *FUNCTIONS, "d_sigmoid", "d_relu", "d_tanh"}
    for value in arrays.values():
        assert_on(value, backend, dtype, (100,))
    x = slides_x(backend, dtype)
    np.testing.assert_array_equal(to_numpy(arrays["x"]), to_numpy(x))
    for name, fn in FUNCTIONS.items():
        np.testing.assert_array_equal(to_numpy(arrays[name]), to_numpy(fn(x)))


def test_derivatives_match_central_differences(backend):
    """The layers' backward(ones) is the slope of the function, checked in float64 on the host."""
    arrays = visualize.compute_activations(backend, "float64")
    x = to_numpy(arrays["x"])
    h = 1e-6
    for name in ("sigmoid", "tanh", "relu"):
        fn = FUNCTIONS[name]
        numeric = (fn(x + h) - fn(x - h)) / (2 * h)
        got = to_numpy(arrays["d_" + name])
        smooth = np.abs(x) > 1e-3  # relu has no slope at 0 (the grid passes within 2e-15 of it)
        np.testing.assert_allclose(got[smooth], numeric[smooth], atol=1e-7)
    assert to_numpy(arrays["d_sigmoid"]).max() == pytest.approx(0.25, abs=1e-3)
    assert to_numpy(arrays["d_relu"]).max() == 1.0


def test_activation_picture_and_its_arrays(backend, tmp_path):
    done = visualize.draw_activations(tmp_path, backend.device, backend.name)
    assert done["png"] == tmp_path / "activations.png"
    assert_png(done["png"], 50_000)
    assert done["curves"].backend == backend.name
    assert done["curves"].device == str(backend.device)
    x = slides_x(backend)
    with np.load(done["npz"]) as saved:
        assert set(saved.files) == set(done["curves"].arrays)
        np.testing.assert_array_equal(saved["x"], np.arange(-5.0, 5.0, 0.1).astype(np.float32))
        for name, fn in FUNCTIONS.items():
            np.testing.assert_array_equal(saved[name], to_numpy(fn(x)))
            np.testing.assert_array_equal(done["curves"].arrays[name], saved[name])
        for name, cls in (("sigmoid", xpnet.Sigmoid), ("relu", xpnet.ReLU), ("tanh", xpnet.Tanh)):
            layer = cls()
            layer.forward(x)
            expected = to_numpy(layer.backward(backend.xp.ones_like(x)))
            np.testing.assert_array_equal(saved["d_" + name], expected)
        assert "d_step_function" not in saved.files  # it has no layer, and the picture says so


def test_activations_command(tmp_path, capsys):
    argv = ["activations", "--out", str(tmp_path), "--backend", "numpy", "--device", "cpu"]
    assert app.main(argv) == 0
    assert "computed on numpy (cpu, float32)" in capsys.readouterr().out
    assert_png(tmp_path / "activations.png", 50_000)
    assert (tmp_path / "activations.npz").is_file()


# -- a saved model ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A tiny MLP trained on the offline digits through the Trainer; (model path, initial W1, record)."""
    pytest.importorskip("sklearn", reason="the offline digits dataset needs scikit-learn")
    out = tmp_path_factory.mktemp("run")
    config = TrainConfig(
        dataset="digits", device="cpu", backend="numpy", hidden=[12], iters=60, batch_size=50,
        seed=7, init="he", optimizer="adam", lr=0.01,
    )  # fmt: skip
    trainer = Trainer(config, xpnet.load_dataset("digits"), out, verbose=False, progress=False)
    initial_w1 = to_numpy(trainer.net.params["W1"]).copy()
    record = trainer.run()
    assert 0.5 < record["test_acc"] < 1.0  # trained, with mistakes left to draw
    return out / "model.npz", initial_w1, record


def test_model_pictures(backend, digits_run, tmp_path):
    path, initial_w1, record = digits_run
    pics = visualize.draw_model(path, tmp_path, device=backend.device, backend=backend.name)
    for key in ("filters", "misclassified"):
        assert pics.files[key] == tmp_path / f"{key}.png"
        assert_png(pics.files[key])

    # the weights: after = the checkpoint's W1, before = the Trainer's initial W1 (seed 7)
    trained_w1 = load_checkpoint(path).params["W1"]
    assert pics.filters_after.shape == (12, 1, 8, 8)
    np.testing.assert_array_equal(pics.filters_after, trained_w1.T.reshape(12, 1, 8, 8))
    np.testing.assert_array_equal(pics.filters_before, initial_w1.T.reshape(12, 1, 8, 8))
    assert not np.array_equal(pics.filters_before, pics.filters_after)

    # the mistakes are exactly what the model predicts on this backend
    test = xpnet.load_dataset("digits")
    net = load_model(path, backend.device, backend.name)
    scores = net.predict(backend.asarray(test.x_test, "float32"), train=False)
    assert_on(scores, backend, "float32", (test.x_test.shape[0], 10))
    pred = to_numpy(backend.xp.argmax(scores, axis=1))
    wrong = np.flatnonzero(pred != test.t_test)
    m = pics.misclassified
    assert m.n_test == 300 and len(wrong) > 0
    np.testing.assert_array_equal(m.indices, wrong)
    np.testing.assert_array_equal(m.true, test.t_test[wrong])
    np.testing.assert_array_equal(m.pred, pred[wrong])
    assert np.all((m.confidence > 0.1) & (m.confidence <= 1.0))
    assert pics.accuracy == pytest.approx(record["test_acc"], abs=1.5 / 300)
    if backend.name == "numpy":
        assert pics.accuracy == record["test_acc"]

    with np.load(tmp_path / "filters.npz") as saved:
        np.testing.assert_array_equal(saved["before"], pics.filters_before)
        np.testing.assert_array_equal(saved["after"], pics.filters_after)
    with np.load(tmp_path / "misclassified.npz") as saved:
        for key in ("indices", "true", "pred", "confidence"):
            np.testing.assert_array_equal(saved[key], getattr(m, key))


def test_initial_network_is_the_runs_first_state(digits_run):
    """Rebuilt from the checkpoint's description and seed: the Trainer's weights before step 1."""
    path, _, _ = digits_run
    ckpt = load_checkpoint(path)
    fresh = Trainer(
        TrainConfig(**ckpt.config), xpnet.load_dataset("digits"), verbose=False, progress=False
    ).net
    rebuilt = visualize.initial_network(ckpt, xpnet.resolve("cpu"))
    assert rebuilt.params.keys() == fresh.params.keys()
    for key, value in fresh.params.items():
        np.testing.assert_array_equal(to_numpy(rebuilt.params[key]), to_numpy(value))
    no_seed = load_checkpoint(path)
    no_seed.config, no_seed.extra = {}, {}
    assert visualize.initial_network(no_seed, xpnet.resolve("cpu")) is None


def test_model_command_short_form_and_options(digits_run, tmp_path, capsys):
    path, _, record = digits_run
    # `visualize.py runs/X/model.npz` means the model subcommand
    argv = [str(path), "--out", str(tmp_path), "--prefix", "mlp-", "--max-images", "5"]
    assert app.main(argv) == 0
    out = capsys.readouterr().out
    assert f"accuracy {record['test_acc']:.4f}" in out
    for name in ("mlp-filters.png", "mlp-misclassified.png", "mlp-filters.npz"):
        assert (tmp_path / name).is_file()
    only = tmp_path / "only"
    argv = [
        "model",
        str(path.parent),
        "--out",
        str(only),
        "--no-misclassified",
        "--dataset",
        "digits",
    ]
    assert app.main(argv) == 0
    assert sorted(p.name for p in only.iterdir()) == ["filters.npz", "filters.png"]


def _script(*args, cwd):
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "visualize.py"), *args],
        capture_output=True, text=True, cwd=cwd, timeout=120,
    )  # fmt: skip


def test_user_errors_are_one_line(tmp_path):
    not_a_model = tmp_path / "notes.npz"
    not_a_model.write_text("hello")
    for args, status, words in [
        (["model", str(tmp_path / "missing.npz")], 1, "does not exist"),
        ([str(not_a_model)], 1, "is not a readable xpnet checkpoint"),
        (["paint"], 2, "invalid choice: 'paint'"),
        (["activations", "--out", str(not_a_model)], 2, "is a file, not a folder"),
    ]:
        done = _script(*args, cwd=tmp_path)
        assert done.returncode == status, done.stderr
        assert words in done.stderr
        assert "Traceback" not in done.stderr
        lines = [line for line in done.stderr.splitlines() if not line.startswith("usage:")]
        assert len(lines) == 1, done.stderr


def test_missing_dataset_name_is_a_data_error(digits_run, tmp_path):
    path, _, _ = digits_run
    ckpt = load_checkpoint(path)
    ckpt.config, ckpt.extra = {**ckpt.config, "dataset": None}, {}
    with pytest.raises(xpnet.errors.DataError, match="pass --dataset"):
        evaluation.load_test_set(ckpt)


# -- the CNN branch: a first layer with a 4-D weight (FN, C, FH, FW) ------------------------------


class WholeImageConvolution(Layer):
    """A convolution whose filters cover the whole image (output (N, FN)): enough to feed 4-D input.

    With FH = H and FW = W, the convolution has one output position, the dot product of each
    filter with the image, so forward is one matrix product.
    """

    param_names = ("W", "b")

    def __init__(self, W, b):
        self.W, self.b = W, b

    def forward(self, x, train=True):
        assert x.ndim == 4, "a convolution takes (N, C, H, W) images"
        xp = xpnet.backend.namespace_of(x)
        flat = xp.reshape(x, (x.shape[0], -1))
        return flat @ xp.reshape(self.W, (self.W.shape[0], -1)).mT + self.b


def test_convolution_weights_and_inputs_keep_their_shape(backend, tmp_path):
    rng = np.random.default_rng(0)
    W = backend.asarray(rng.standard_normal((6, 1, 8, 8)), "float32")
    b = backend.zeros((6,))
    W2 = backend.asarray(rng.standard_normal((6, 10)), "float32")
    net = Network([WholeImageConvolution(W, b), Affine(W2, backend.zeros((10,)))])
    x = rng.random((30, 1, 8, 8)).astype(np.float32)
    t = rng.integers(0, 10, 30)

    filters = visualize.filters_as_images(evaluation.first_weight(net), None)
    np.testing.assert_array_equal(filters, to_numpy(W))
    mis = visualize.find_misclassified(net, x, t)
    expected = to_numpy(backend.xp.argmax(net.predict(backend.asarray(x)), axis=1))
    np.testing.assert_array_equal(mis.indices, np.flatnonzero(expected != t))

    assert_png(visualize.plot_filters(filters, tmp_path / "f.png", before=filters * 0.1), 3_000)
    rgb = rng.standard_normal((4, 3, 5, 5))
    assert_png(visualize.plot_filters(rgb, tmp_path / "rgb.png"), 3_000)
    assert_png(visualize.plot_misclassified(x, mis, tmp_path / "m.png"), 3_000)
    none = visualize.Misclassified(*(np.zeros(0, dtype) for dtype in (int, int, int, float)), 30)
    assert_png(visualize.plot_misclassified(x, none, tmp_path / "none.png"), 3_000)


def test_image_shapes():
    assert visualize.guess_image_shape(784, "mnist") == (1, 28, 28)
    assert visualize.guess_image_shape(64, None) == (1, 8, 8)
    assert visualize.guess_image_shape(3072, "cifar10") == (3, 32, 32)
    with pytest.raises(xpnet.errors.DataError, match="--dataset"):
        visualize.guess_image_shape(10, None)
    grid = visualize.tile(np.ones((5, 2, 3)), ncols=3)
    assert grid.shape == (2 * 2 + 1, 3 * 3 + 2)
    assert np.isnan(grid[2]).all() and np.isnan(grid[:, 3]).all()
    assert np.isnan(grid[3:, 7:]).all()  # the sixth cell is empty


# -- the output folder: pictures by name, nothing else touched ------------------------------------


def test_activations_into_a_folder_that_holds_files(tmp_path, capsys):
    """README's `visualize.py activations --out docs/img`: docs/img holds other pictures."""
    out = tmp_path / "img"
    out.mkdir()
    (out / "mlp-filters.png").write_bytes(b"someone else's")
    (out / "activations.png").write_bytes(b"an old activations picture")
    argv = ["activations", "--out", str(out), "--backend", "numpy", "--device", "cpu"]
    assert app.main(argv) == 0, capsys.readouterr().err
    assert_png(out / "activations.png", 50_000)
    assert (out / "mlp-filters.png").read_bytes() == b"someone else's"
    assert sorted(p.name for p in out.iterdir()) == [
        "activations.npz",
        "activations.png",
        "mlp-filters.png",
    ]
    assert app.main(argv) == 0  # and again: its own pictures are replaced
    # a new folder (and its parents) is made
    deep = tmp_path / "a" / "b"
    assert app.main(["activations", "--out", str(deep), "--backend", "numpy"]) == 0
    assert sorted(p.name for p in deep.iterdir()) == ["activations.npz", "activations.png"]


def test_output_folder_errors_name_only_options_visualize_has(digits_run, tmp_path, capsys):
    out = tmp_path / "img"
    (out / "activations.png").mkdir(parents=True)  # a folder where the picture goes
    assert app.main(["activations", "--out", str(out), "--backend", "numpy"]) == 2
    err = capsys.readouterr().err
    assert "holds a folder named activations.png" in err and "--out" in err
    assert "--resume" not in err and "--overwrite" not in err
    assert (out / "activations.png").is_dir()
    # a command that fails leaves no folder it made behind
    new = tmp_path / "new" / "pictures"
    assert app.main(["model", str(tmp_path / "missing.npz"), "--out", str(new)]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_prefix_cannot_leave_the_output_folder(digits_run, tmp_path, capsys):
    path, _, _ = digits_run
    out = tmp_path / "out"
    out.mkdir()
    for prefix in ("../x", "sub/x", "/tmp/x"):
        argv = ["model", str(path), "--out", str(out), "--prefix", prefix, "--no-misclassified"]
        assert app.main(argv) == 2
        err = capsys.readouterr().err
        assert f"--prefix {prefix!r} must be the start of a file name, without a folder" in err
        with pytest.raises(xpnet.errors.ConfigError, match="without a folder"):
            visualize.draw_model(path, out, prefix=prefix, misclassified=False)
    assert list(out.iterdir()) == [] and not list(tmp_path.glob("x*"))
    # a prefix that only looks like a path part is a file name
    assert (
        app.main(["model", str(path), "--out", str(out), "--prefix", "..", "--no-misclassified"])
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["..filters.npz", "..filters.png"]


@pytest.fixture(scope="module")
def digits_cnn_run(tmp_path_factory):
    """A SimpleConvNet trained a few steps on the 8x8 digits: it takes (1, 8, 8) images only."""
    pytest.importorskip("sklearn", reason="the offline digits dataset needs scikit-learn")
    out = tmp_path_factory.mktemp("cnn")
    config = TrainConfig(dataset="digits", model="simple-cnn", hidden=[10], iters=4,
                         batch_size=50, seed=0, log_every=4)  # fmt: skip
    Trainer(config, xpnet.load_dataset("digits"), out, verbose=False, progress=False).run()
    return out / "model.npz"


def test_a_cnn_on_another_image_size_is_refused_before_anything_is_written(
    digits_cnn_run, tmp_path, capsys
):
    empty = tmp_path / "no-data"
    empty.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(xpnet.errors.DataError, match=r"takes images of shape \(1, 8, 8\)"):
        visualize.draw_model(digits_cnn_run, out, dataset="mnist", data_dir=empty)
    with pytest.raises(xpnet.errors.DataError, match="pass --dataset digits"):
        visualize.draw_model(digits_cnn_run, out, dataset="cifar10", misclassified=False)
    assert list(out.iterdir()) == []
    argv = ["model", str(digits_cnn_run), "--out", str(out), "--dataset", "mnist",
            "--data-dir", str(empty)]  # fmt: skip
    assert app.main(argv) == 1
    err = capsys.readouterr().err
    assert err == (
        "error: this simple-cnn model takes images of shape (1, 8, 8), but the mnist test images "
        "are 1x28x28 (784 values); pass --dataset digits (the dataset it was trained on)\n"
    )
    assert list(out.iterdir()) == []
    # on its own dataset: its 30 filters as they are, and its mistakes
    pics = visualize.draw_model(digits_cnn_run, out, max_images=3)
    n = sum(v.size for v in load_checkpoint(digits_cnn_run).params.values())
    assert visualize.describe_model(load_checkpoint(digits_cnn_run)) == (
        f"simple-cnn, {n:,} parameters, 4 iterations"
    )
    assert pics.filters_after.shape == (30, 1, 5, 5) and pics.misclassified.n_test == 300
    assert sorted(p.name for p in out.iterdir()) == [
        "filters.npz", "filters.png", "misclassified.npz", "misclassified.png",
    ]  # fmt: skip
