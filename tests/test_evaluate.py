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
from xpnet.training.evaluate import evaluate
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


def test_round_to_float16_is_a_round_trip_through_half():
    x = hard_values()
    r = round_to(x, "float16")
    assert r.dtype == np.float32 and r.shape == x.shape
    with np.errstate(over="ignore"):
        assert same(r, x.astype(np.float16).astype(np.float32))
    assert r[np.flatnonzero(x == 65520.0)][0] == np.inf  # halfway past the largest: rounds up
    assert r[np.flatnonzero(x == np.float32(65519.99))][0] == 65504.0


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
    from xpnet.training import evaluate as module

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
