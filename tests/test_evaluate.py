"""xpnet.nn.precision's rounding, and scripts/evaluate.py: a saved model as saved and in 16 bits."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet.errors import ConfigError
from xpnet.nn.precision import round_to
from xpnet.training.evaluation import evaluate
from xpnet.training.trainer import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]


def hard_values() -> np.ndarray:
    """Random float32 over the whole exponent range, and the edge cases of both formats."""
    rng = np.random.default_rng(0)
    mantissa = rng.standard_normal(200_000).astype(np.float32)
    scale = (np.float32(2.0) ** rng.integers(-149, 128, 200_000)).astype(np.float32)
    with np.errstate(over="ignore"):
        random = mantissa * scale
    edges = [np.inf, -np.inf, np.nan, 0.0, -0.0, 65504.0, 65520.0, 65519.99, 6e-8, 3e-8, 1e-45,
             3.3895314e38, 3.4028235e38, -3.4028235e38, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-11,
             1 + 3 * 2**-11, 2**-14, 2**-24, 2**-25, 1.5 * 2**-24]  # fmt: skip
    return np.concatenate([random, np.array(edges, np.float32)])


def same(a, b) -> bool:
    return bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


#: (x, x rounded to float16), worked out by hand: 11 significant bits, ties to the even
#: neighbour, subnormals spaced 2⁻²⁴ below 2⁻¹⁴, 65504 the largest finite and 65520 its tie
FLOAT16_BY_HAND = [
    (1 + 2**-11, 1.0),  # a tie between 1 and 1 + 2⁻¹⁰: to 1, the even one
    (1 + 3 * 2**-11, 1 + 2**-9),  # a tie between 1 + 2⁻¹⁰ (odd) and 1 + 2⁻⁹ (even)
    (1 + 2**-11 + 2**-20, 1 + 2**-10),  # just past the tie: up
    (-(1 + 3 * 2**-11), -(1 + 2**-9)),
    (2**-25, 0.0),  # a subnormal tie between 0 and 2⁻²⁴: to 0
    (-(2**-25), -0.0),
    (3 * 2**-25, 2**-23),  # between 2⁻²⁴ (odd) and 2·2⁻²⁴ (even)
    (5 * 2**-25, 2**-23),  # between 2·2⁻²⁴ (even) and 3·2⁻²⁴ (odd)
    (2**-25 + 2**-35, 2**-24),  # just past the tie: up to the smallest subnormal
    (2**-14 - 2**-25, 2**-14),  # a tie between the largest subnormal (odd) and 2⁻¹⁴
    (65504.0, 65504.0),
    (65519.99, 65504.0),  # below the tie: the largest finite
    (65520.0, np.inf),  # the tie between 65504 (odd) and 65536: overflows to inf
    (-65520.0, -np.inf),
    (1e5, np.inf),
    (np.inf, np.inf),
]


def test_round_to_float16_by_hand():
    x = np.array([v for v, _ in FLOAT16_BY_HAND], np.float32)
    expected = np.array([r for _, r in FLOAT16_BY_HAND], np.float32)
    r = round_to(x, "float16")
    assert r.dtype == np.float32 and r.shape == x.shape
    for value, got, want in zip(x, r, expected, strict=True):
        assert got == want and np.signbit(got) == np.signbit(want), (float(value), got, want)
    assert np.isnan(round_to(np.array([np.nan], np.float32), "float16")[0])
    # float64 is rounded once, not through float32 (which would make this a tie, rounded down)
    assert round_to(np.array([1 + 2**-11 + 2**-40]), "float16")[0] == 1 + 2**-10


def test_round_to_float16_keeps_11_significant_bits_within_half_a_unit():
    x = hard_values()
    r = round_to(x, "float16")
    normal = np.isfinite(r) & (np.abs(r) >= 2.0**-14)
    assert not np.any(r[normal].view(np.uint32) & 0x1FFF), "float16 keeps 10 of 23 stored bits"
    fits = normal & (np.abs(x) <= 65504)
    assert np.all(np.abs(r[fits] - x[fits]) <= np.abs(x[fits]) * 2.0**-11)


def test_round_to_bfloat16_keeps_the_top_16_bits_rounded_to_nearest_even():
    x = hard_values()
    r = round_to(x, "bfloat16")
    assert r.dtype == np.float32
    finite = np.isfinite(r)
    assert not np.any(r[finite].view(np.uint32) & 0xFFFF), "the low 16 bits must be zero"
    # within half a unit of bfloat16's last place (2^-8 relative) of every finite input
    normal = finite & (np.abs(x) >= 2.0**-126)
    assert np.all(np.abs(r[normal] - x[normal]) <= np.abs(x[normal]) * 2.0**-8)
    pick = {
        float(v): float(r[np.flatnonzero(x == np.float32(v))[0]])
        for v in (1 + 2**-8, 1 + 3 * 2**-8)
    }
    assert pick[1 + 2**-8] == 1.0, "a tie goes to the even neighbour, 1"
    assert pick[1 + 3 * 2**-8] == 1 + 2**-6, "a tie goes to the even neighbour, 1 + 2^-6"
    assert same(r[~np.isfinite(x)], x[~np.isfinite(x)])
    assert r[np.flatnonzero(x == np.float32(3.4028235e38))][0] == np.inf


@pytest.mark.torch
def test_round_to_matches_torch_casts():
    torch = pytest.importorskip("torch")
    x = hard_values()
    for fmt, dtype in (("float16", torch.float16), ("bfloat16", torch.bfloat16)):
        expected = torch.from_numpy(x).to(dtype).to(torch.float32).numpy()
        assert same(round_to(x, fmt), expected), fmt


def test_round_to_keeps_every_nan_a_nan():
    """A NaN whose payload fills the mantissa would carry into the sign bit (-0.0) or inf."""
    bits = np.array([0x7FFFFFFF, 0xFFFFFFFF, 0x7F800001, 0x7FFF8000], dtype=np.uint32)
    for fmt in ("bfloat16", "float16"):
        assert np.all(np.isnan(round_to(bits.view(np.float32), fmt))), fmt


def test_round_to_keeps_float64_and_refuses_what_it_cannot_round():
    x = np.array([1 / 3, 1e300, -2.5], dtype=np.float64)
    r = round_to(x, "bfloat16")
    assert r.dtype == np.float64
    assert r[0] == np.float64(np.float32(0.333984375)) and r[1] == np.inf and r[2] == -2.5
    assert round_to(x, "float16")[0] == np.float64(np.float16(1 / 3))
    with pytest.raises(
        ConfigError, match="unknown precision 'int8'; choose one of: float16, bfloat16"
    ):
        round_to(x, "int8")
    with pytest.raises(TypeError, match="floating array"):
        round_to(np.arange(3), "float16")


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """A small MLP trained briefly on the offline digits: low margins, so rounding matters."""
    pytest.importorskip("sklearn", reason="the offline digits dataset needs scikit-learn")
    out = tmp_path_factory.mktemp("run")
    config = TrainConfig(dataset="digits", hidden=[16], iters=300, batch_size=50, seed=3,
                         log_every=300)  # fmt: skip
    Trainer(config, xpnet.load_dataset("digits"), out, verbose=False, progress=False).run()
    return out / "model.npz"


def _by_hand(params: dict, x: np.ndarray, fmt: str | None) -> np.ndarray:
    """The 2-layer net's predictions in float32 NumPy, weights and inputs rounded by `fmt`."""
    r = (lambda a: a) if fmt is None else (lambda a: round_to(a, fmt))
    h = np.maximum(r(x) @ r(params["W1"]) + r(params["b1"]), 0)
    return np.argmax(h @ r(params["W2"]) + r(params["b2"]), axis=1)


def test_evaluate_rounds_weights_and_images_on_every_backend(digits_model, backend):
    ev = evaluate(digits_model, device=backend)
    test = xpnet.load_dataset("digits")
    params = xpnet.training.checkpoint.load_checkpoint(digits_model).params
    x, t = test.x_test.reshape(len(test.x_test), -1), test.t_test
    saved = _by_hand(params, x, None)
    assert [r.precision for r in ev.results] == ["float32 (as saved)", "float16", "bfloat16"]
    assert ev.dataset == "digits" and ev.dtype == "float32" and backend.name in ev.backend
    for r, fmt in zip(ev.results, (None, "float16", "bfloat16"), strict=True):
        pred = _by_hand(params, x, fmt)
        assert r.n_test == len(t)
        assert r.errors == int(np.count_nonzero(pred != t)), fmt
        assert r.accuracy == (len(t) - r.errors) / len(t)
        assert r.changed == int(np.count_nonzero(pred != saved)), fmt
    assert sum(r.changed for r in ev.results) > 0, "this model's margins are small: some flip"
    assert ev.results[0].accuracy == xpnet.training.checkpoint.load_model(digits_model).accuracy(
        xpnet.resolve("cpu").asarray(x, "float32"), xpnet.resolve("cpu").asarray(t)
    )


def _script(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "evaluate.py"), *map(str, args)],
        capture_output=True, text=True, timeout=300, check=False, cwd=cwd,
    )  # fmt: skip


def test_evaluate_command(digits_model, tmp_path):
    out = tmp_path / "ev.json"
    result = _script(digits_model.parent, "--precision", "bfloat16", "--json", out)
    assert result.returncode == 0, result.stderr
    assert (
        "| weights and test images | test accuracy | errors | predictions changed |"
        in result.stdout
    )
    assert "| float32 (as saved) |" in result.stdout and "| bfloat16 |" in result.stdout
    assert "| float16 |" not in result.stdout
    saved = json.loads(out.read_text())
    assert [r["precision"] for r in saved["results"]] == ["float32 (as saved)", "bfloat16"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--precision", "int8"], "invalid choice: 'int8'"),
        (["nowhere/model.npz"], "checkpoint nowhere/model.npz does not exist"),
        (
            ["--json", "nowhere/ev.json"],
            "--json nowhere/ev.json: the folder nowhere does not exist",
        ),
    ],
)
def test_evaluate_command_errors_are_one_line(args, message, digits_model, tmp_path):
    if args[0].startswith("--"):
        args = [digits_model, *args]
    result = _script(*args, cwd=tmp_path)
    assert result.returncode in (1, 2)
    assert message in result.stderr and "Traceback" not in result.stderr


def test_evaluate_rounds_batchnorm_statistics_too(tmp_path, monkeypatch):
    pytest.importorskip("sklearn", reason="the offline digits dataset needs scikit-learn")
    from xpnet.training import evaluation as module

    config = TrainConfig(dataset="digits", hidden=[16], batchnorm=True, iters=60, batch_size=50,
                         seed=1, log_every=60)  # fmt: skip
    data = xpnet.load_dataset("digits")
    Trainer(config, data, tmp_path, verbose=False, progress=False).run()
    restored = []
    real = module.restore_params
    monkeypatch.setattr(module, "restore_params", lambda net, c: restored.append(c) or real(net, c))
    ev = evaluate(tmp_path, formats=("bfloat16",))
    ckpt = xpnet.training.checkpoint.load_checkpoint(tmp_path / "model.npz")
    assert ckpt.buffers, "a batch-norm network saves its running statistics"
    assert len(restored) == 2
    for key, value in ckpt.buffers.items():
        np.testing.assert_array_equal(restored[0].buffers[key], value)
        np.testing.assert_array_equal(restored[1].buffers[key], round_to(value, "bfloat16"))
        assert not np.array_equal(value, round_to(value, "bfloat16")), key
    net = xpnet.load_model(tmp_path / "model.npz")
    be = net.backend
    net.set_params(
        {k: be.asarray(round_to(v, "bfloat16")) for k, v in {**ckpt.params, **ckpt.buffers}.items()}
    )
    x = be.asarray(round_to(data.x_test.reshape(len(data.x_test), -1), "bfloat16"))
    t = be.asarray(data.t_test)
    assert ev.results[1].accuracy == net.accuracy(x, t)
    assert ev.results[0].accuracy == xpnet.load_model(tmp_path / "model.npz").accuracy(
        be.asarray(data.x_test.reshape(len(data.x_test), -1)), t
    )


# -- the library's parts: a test set that fits the model, predictions in the model's chunks -------


@pytest.fixture(scope="module")
def digits_cnn(tmp_path_factory):
    """A SimpleConvNet trained a few steps on the 8x8 digits: it takes (1, 8, 8) images only."""
    pytest.importorskip("sklearn", reason="the offline digits dataset needs scikit-learn")
    out = tmp_path_factory.mktemp("cnn")
    config = TrainConfig(dataset="digits", model="simple-cnn", hidden=[10], iters=4,
                         batch_size=50, seed=0, log_every=4)  # fmt: skip
    Trainer(config, xpnet.load_dataset("digits"), out, verbose=False, progress=False).run()
    return out / "model.npz"


@pytest.mark.parametrize(
    "which, takes",
    [("digits_cnn", "images of shape (1, 8, 8)"), ("digits_model", "64 inputs")],
)
def test_a_test_set_of_another_image_size_is_refused_naming_both(which, takes, request, tmp_path):
    """Before any loading (an empty --data-dir: MNIST is not even looked for) and after."""
    path = request.getfixturevalue(which)
    kind = "simple-cnn" if which == "digits_cnn" else "mlp"
    message = (
        f"this {kind} model takes {takes}, but the mnist test images are 1x28x28 (784 values); "
        f"pass --dataset digits (the dataset it was trained on)"
    )
    empty = tmp_path / "no-data"
    empty.mkdir()
    with pytest.raises(xpnet.errors.DataError) as info:
        evaluate(path, dataset="mnist", data_dir=empty)
    assert str(info.value) == message
    assert list(empty.iterdir()) == []
    # a test set whose size only loading tells (the check after loading), e.g. another folder's
    from xpnet.training import evaluation

    ckpt = xpnet.training.checkpoint.load_checkpoint(path)
    with pytest.raises(xpnet.errors.DataError, match=r"test images are 3x32x32 \(3072 values\)"):
        evaluation.check_fits(ckpt, (3, 32, 32), "cifar10")
    evaluation.check_fits(ckpt, (1, 8, 8), "digits")  # its own: no error
    if kind == "mlp":
        evaluation.check_fits(ckpt, (64,), "digits")  # an MLP takes them flat, too


def test_the_command_names_the_dataset_not_an_internal_chunk(digits_model, tmp_path):
    result = _script(digits_model, "--dataset", "mnist", "--data-dir", tmp_path, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("error: this mlp model takes 64 inputs, but the mnist test")
    assert "2000" not in result.stderr and "Affine1" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_a_format_named_twice_is_one_row(digits_model, capsys):
    from xpnet.apps import evaluate as app

    ev = evaluate(digits_model, formats=("float16", "float16", "bfloat16", "float16"))
    assert [r.precision for r in ev.results] == ["float32 (as saved)", "float16", "bfloat16"]
    assert app.main([str(digits_model), "--precision", "float16", "float16"]) == 0
    out = capsys.readouterr().out
    assert out.count("| float16 |") == 1 and "| bfloat16 |" not in out


def test_predictions_come_in_the_networks_evaluation_chunks(digits_cnn, backend):
    from conftest import assert_on

    from xpnet.training.evaluation import predict_labels

    net = xpnet.training.checkpoint.load_model(digits_cnn, backend.device, backend.name)
    x = xpnet.load_dataset("digits", flatten=False).x_test[:20]
    seen = []
    real = net.predict

    def spy(xb, train=False):
        seen.append(tuple(xb.shape))
        scores = real(xb, train=train)
        assert_on(scores, backend, "float32", (xb.shape[0], 10))
        return scores

    net.predict = spy
    net.eval_batch_size = 7  # e.g. DeepConvNet's 250: its patch matrices bound the memory
    labels, probs = predict_labels(net, x)
    assert seen == [(7, 1, 8, 8), (7, 1, 8, 8), (6, 1, 8, 8)]
    assert labels.shape == probs.shape == (20,) and labels.dtype == np.int64
    expected = backend.xp.argmax(real(backend.asarray(x, "float32"), train=False), axis=1)
    np.testing.assert_array_equal(labels, xpnet.backend.to_numpy(expected))
    seen.clear()
    predict_labels(net, x, batch_size=15)  # a caller's own size wins
    assert seen == [(15, 1, 8, 8), (5, 1, 8, 8)]


def test_the_commands_run_as_modules():
    for name in ("evaluate", "visualize"):
        done = subprocess.run(
            [sys.executable, "-m", f"xpnet.apps.{name}", "--help"],
            capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"usage: {name}.py"), done.stdout


def test_the_runs_data_folder_is_used_for_the_runs_dataset_only(digits_model, monkeypatch):
    """A run's --data-dir holds its dataset: another dataset is not looked for (or downloaded)
    there, e.g. Fashion-MNIST into a shared MNIST folder."""
    import xpnet.data
    from xpnet.data import datasets
    from xpnet.training import evaluation

    ckpt = xpnet.training.checkpoint.load_checkpoint(digits_model)
    ckpt.model = {**ckpt.model, "input_size": 784}
    ckpt.config = {**ckpt.config, "dataset": "mnist", "data_dir": "/shared/mnist"}
    ckpt.extra = {}
    asked = []

    def fake_load(name, data_dir=None, **kwargs):
        asked.append((name, data_dir))
        x = np.zeros((3, 1, 28, 28), np.float32)
        return datasets.Dataset(name, x, np.zeros(3, np.int64), x, np.zeros(3, np.int64), 10, "")

    monkeypatch.setattr(xpnet.data, "load_dataset", fake_load)  # what evaluation calls
    evaluation.load_test_set(ckpt)
    evaluation.load_test_set(ckpt, "fashion-mnist")
    evaluation.load_test_set(ckpt, "fashion-mnist", "/mine")
    assert asked == [
        ("mnist", "/shared/mnist"),
        ("fashion-mnist", None),
        ("fashion-mnist", "/mine"),
    ]


def test_json_never_overwrites_the_model(digits_model, tmp_path):
    before = digits_model.read_bytes()
    for target in (digits_model, digits_model.parent / "." / "model.npz"):
        result = _script(digits_model.parent, "--json", target, cwd=tmp_path)
        assert result.returncode == 2
        assert "is the model itself; name another file" in result.stderr
    assert digits_model.read_bytes() == before
