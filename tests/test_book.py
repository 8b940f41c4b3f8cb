"""xpnet.book: scripts written the way the book's are (tests/book_scripts, one or two per chapter
3-8) run on xpnet.book and print what hand-written float64 references (tests/book_reference.py)
compute from the same random draws.

The scripts read MNIST through xpnet.book.dataset.mnist; here its loader is given a small stand-in
of MNIST's shapes (300 training and 100 test images of noisy class templates), so every test runs
offline in seconds. tests/test_book_weights.py has the real MNIST and the book's trained weights.
"""

# ruff: noqa: NPY002 (the book's code draws from NumPy's global generator)

from __future__ import annotations

import pickle
import re
import runpy
from pathlib import Path
from types import SimpleNamespace

import book_reference as ref
import numpy as np
import pytest

from xpnet.book.dataset import mnist as book_mnist

SCRIPTS = Path(__file__).parent / "book_scripts"
NUMBER = re.compile(r"-?\d+\.?\d*(?:e[-+]?\d+)?")


def stand_in_mnist(n_train=300, n_test=100, seed=7):
    """uint8 images of MNIST's shape: ten random templates plus noise, labelled by template."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, (10, 784))

    def part(n):
        t = rng.integers(0, 10, n)
        x = 0.6 * templates[t] + rng.integers(0, 100, (n, 784))
        return np.clip(x, 0, 255).astype(np.uint8), t.astype(np.int64)

    (x_train, t_train), (x_test, t_test) = part(n_train), part(n_test)
    return SimpleNamespace(x_train=x_train, t_train=t_train, x_test=x_test, t_test=t_test)


@pytest.fixture
def data(monkeypatch):
    """The stand-in, as xpnet.book's load_mnist sees it (and as the references read it)."""
    d = stand_in_mnist()
    monkeypatch.setattr(book_mnist, "_load_dataset", lambda *a, **k: d)
    monkeypatch.delenv("XPNET_DEVICE", raising=False)
    monkeypatch.delenv("XPNET_BACKEND", raising=False)
    monkeypatch.delenv("XPNET_DTYPE", raising=False)
    return d


def run(script, tmp_path, monkeypatch, capsys, seed=0) -> list[str]:
    """The lines `script` prints, run as __main__ in tmp_path after np.random.seed(seed)."""
    monkeypatch.chdir(tmp_path)
    np.random.seed(seed)
    runpy.run_path(str(SCRIPTS / script), run_name="__main__")
    return capsys.readouterr().out.splitlines()


def assert_lines(got: list[str], expected: list[str], rel=1e-9) -> None:
    """Same lines, their numbers equal to `rel` (relative; 1e-12 absolute for zeros)."""
    assert len(got) == len(expected), "\n".join(got)
    for g, e in zip(got, expected, strict=True):
        assert NUMBER.sub("#", g) == NUMBER.sub("#", e), (g, e)
        a, b = [float(v) for v in NUMBER.findall(g)], [float(v) for v in NUMBER.findall(e)]
        assert a == pytest.approx(b, rel=rel, abs=1e-12), (g, e)


def one_hot(t):
    return np.eye(10)[t]


def test_ch03_forward_pass_of_pickled_weights(data, tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(3)
    w = {"W1": rng.normal(0, 0.1, (784, 20)), "b1": rng.normal(0, 0.1, 20),
         "W2": rng.normal(0, 0.5, (20, 15)), "b2": rng.normal(0, 0.1, 15),
         "W3": rng.normal(0, 0.5, (15, 10)), "b3": rng.normal(0, 0.1, 10)}  # fmt: skip
    with open(tmp_path / "weights.pkl", "wb") as f:
        pickle.dump(w, f)
    got = run("ch03_forward.py", tmp_path, monkeypatch, capsys)

    x = ref.normalized(data.x_test)
    net = ref.Net([ref.affine(w["W1"], w["b1"]), ref.act("sigmoid"),
                   ref.affine(w["W2"], w["b2"]), ref.act("sigmoid"),
                   ref.affine(w["W3"], w["b3"])])  # fmt: skip
    y = ref.softmax(net.scores(x))
    accuracy = float((y.argmax(axis=1) == data.t_test).sum()) / len(x)
    assert_lines(got, [f"Accuracy:{accuracy}",
                       "first probabilities: " + " ".join(str(v) for v in y[0])])  # fmt: skip


def test_ch04_numerical_gradient_and_training(data, tmp_path, monkeypatch, capsys):
    got = run("ch04_train.py", tmp_path, monkeypatch, capsys)

    np.random.seed(0)
    x_train, t_train = ref.normalized(data.x_train), one_hot(data.t_train)
    x_test, t_test = ref.normalized(data.x_test), one_hot(data.t_test)
    W = np.random.randn(4, 3)
    x = x_train[0, 300:304]

    def f():
        return ref.loss_and_grad(np.dot(x, W)[None, :], np.array([2]))[0]

    dW = np.zeros_like(W)
    for idx in np.ndindex(W.shape):
        old = W[idx]
        W[idx] = old + 1e-4
        plus = f()
        W[idx] = old - 1e-4
        dW[idx] = (plus - f()) / 2e-4
        W[idx] = old
    expected = ["dW: " + " ".join(str(v) for v in dW.flatten())]

    W1 = 0.01 * np.random.randn(784, 20)
    W2 = 0.01 * np.random.randn(20, 10)
    net = ref.Net([ref.affine(W1, np.zeros(20)), ref.act("sigmoid"),
                   ref.affine(W2, np.zeros(10))])  # fmt: skip
    for i in range(31):
        mask = np.random.choice(300, 50)
        grads = net.gradient(x_train[mask], t_train[mask])
        for key in ("W1", "b1", "W2", "b2"):
            net.set(key, net.get(key) - 0.5 * grads[key])
        loss = net.loss(x_train[mask], t_train[mask])
        if i % 10 == 0:
            expected.append(f"loss:{loss}")
        if i % 6 == 0:
            expected.append(f"train acc, test acc | {net.accuracy(x_train, t_train)}, "
                            f"{net.accuracy(x_test, t_test)}")  # fmt: skip
    assert_lines(got, expected, rel=1e-8)


def test_ch05_gradient_check_and_training(data, tmp_path, monkeypatch, capsys):
    got = run("ch05_backprop.py", tmp_path, monkeypatch, capsys)
    diffs = [line for line in got if " diff:" in line]
    assert [line.split()[0] for line in diffs] == ["W1", "b1", "W2", "b2"]
    # backprop against central differences (h = 1e-4): truncation and rounding error only
    assert all(float(NUMBER.findall(line)[1]) < 1e-6 for line in diffs), diffs

    np.random.seed(0)
    x_train, t_train = ref.normalized(data.x_train), one_hot(data.t_train)
    x_test, t_test = ref.normalized(data.x_test), one_hot(data.t_test)
    small = ref.Net([ref.affine(0.01 * np.random.randn(784, 5), np.zeros(5)), ref.act("relu"),
                     ref.affine(0.01 * np.random.randn(5, 10), np.zeros(10))])  # fmt: skip
    grads = small.gradient(x_train[:3], t_train[:3])
    sums = [float(NUMBER.findall(line)[-1]) for line in diffs]
    expected_sums = [grads[k].sum() for k in ("W1", "b1", "W2", "b2")]
    assert sums == pytest.approx(expected_sums, rel=1e-9, abs=1e-15)

    net = ref.Net([ref.affine(0.01 * np.random.randn(784, 30), np.zeros(30)), ref.act("relu"),
                   ref.affine(0.01 * np.random.randn(30, 10), np.zeros(10))])  # fmt: skip
    expected = []
    for i in range(16):
        mask = np.random.choice(300, 60)
        grads = net.gradient(x_train[mask], t_train[mask])
        for key in ("W1", "b1", "W2", "b2"):
            net.set(key, net.get(key) - 0.1 * grads[key])
        loss = net.loss(x_train[mask], t_train[mask])
        if i % 5 == 0:
            expected.append(
                f"{net.accuracy(x_train, t_train)} {net.accuracy(x_test, t_test)} {loss}"
            )
    assert_lines(got[4:], expected)


def _mlp(sizes, std, activation="relu", bn=False, dropout=0.0):
    """The book's MultiLayerNet(Extend) in reference layers, drawing its weights as the book."""
    layers = []
    for i in range(1, len(sizes)):
        scale = {"relu": np.sqrt(2.0 / sizes[i - 1]), "xavier": np.sqrt(1.0 / sizes[i - 1])}.get(
            std, std
        )
        layers.append(
            ref.affine(scale * np.random.randn(sizes[i - 1], sizes[i]), np.zeros(sizes[i]))
        )
        if i < len(sizes) - 1:
            layers += [ref.batchnorm(sizes[i])] if bn else []
            layers.append(ref.act(activation))
            layers += [ref.dropout(dropout)] if dropout else []
    return layers


def test_ch06_optimizers_and_weight_decay(data, tmp_path, monkeypatch, capsys):
    got = run("ch06_optimizers.py", tmp_path, monkeypatch, capsys)

    np.random.seed(0)
    x_train, x_test = ref.normalized(data.x_train), ref.normalized(data.x_test)
    kinds = {"SGD": ("sgd", 0.01), "Momentum": ("momentum", 0.01), "Nesterov": ("nesterov", 0.01),
             "AdaGrad": ("adagrad", 0.01), "RMSprop": ("rmsprop", 0.01), "Adam": ("adam", 0.001)}  # fmt: skip
    nets = {key: ref.Net(_mlp([784, 20, 20, 10], "relu")) for key in kinds}
    nets["decay"] = ref.Net(_mlp([784, 20, 20, 10], "xavier", "sigmoid"), weight_decay=0.1)
    opts = {key: ref.Optimizer(kind, lr) for key, (kind, lr) in kinds.items()}
    opts["decay"] = ref.Optimizer("sgd", 0.1)
    expected = []
    for i in range(12):
        mask = np.random.choice(300, 40)
        for key in opts:
            opts[key].step(nets[key], nets[key].gradient(x_train[mask], data.t_train[mask]))
        if i % 4 == 3:
            expected += [
                f"{key}:{nets[key].loss(x_train[mask], data.t_train[mask])}" for key in opts
            ]
    expected += [f"{key} test acc:{nets[key].accuracy(x_test, data.t_test)}" for key in opts]
    for key, kind, lr in (("SGD", "sgd", 0.95), ("Adam", "adam", 0.3)):
        point = ref.Net([{"kind": "affine", "W": np.array(-7.0), "b": np.array(2.0)}])
        opt = ref.Optimizer(kind, lr)
        for _ in range(5):
            x, y = point.get("W1"), point.get("b1")
            opt.step(point, {"W1": x / 10.0, "b1": 2.0 * y})
        expected.append(f"{key} at:{float(point.get('W1'))} {float(point.get('b1'))}")
    assert_lines(got, expected)


def test_ch06_batchnorm_dropout_trainer(data, tmp_path, monkeypatch, capsys):
    got = run("ch06_trainer.py", tmp_path, monkeypatch, capsys)

    np.random.seed(0)
    x_train, t_train = ref.normalized(data.x_train)[:200], data.t_train[:200]
    x_test, t_test = ref.normalized(data.x_test), data.t_test
    net = ref.Net(_mlp([784, 30, 30, 10], "relu", bn=True, dropout=0.2), weight_decay=0.01)
    opt = ref.Optimizer("momentum", 0.05)
    expected, train_acc, test_acc = [], [], []
    for i in range(12):  # 3 epochs of 200 / 50 steps
        mask = np.random.choice(200, 50)
        opt.step(net, net.gradient(x_train[mask], t_train[mask]))
        expected.append(f"train loss:{net.loss(x_train[mask], t_train[mask])}")
        if i % 4 == 0:
            train_acc.append(net.accuracy(x_train[:60], t_train[:60]))
            test_acc.append(net.accuracy(x_test[:60], t_test[:60]))
            expected.append(f"=== epoch:{i // 4 + 1}, train acc:{train_acc[-1]}, "
                            f"test acc:{test_acc[-1]} ===")  # fmt: skip
    expected += ["=============== Final Test Accuracy ===============",
                 f"test acc:{net.accuracy(x_test, t_test)}",
                 f"accuracies: {[np.float64(a) for a in train_acc]} "
                 f"{[np.float64(a) for a in test_acc]}"]  # fmt: skip
    assert_lines(got, expected)


def _convnet(filters, size, hidden, std=0.01):
    """The book's SimpleConvNet on 28×28 images in reference layers."""
    pooled = filters * ((28 - size + 1) // 2) ** 2
    W1 = std * np.random.randn(filters, 1, size, size)
    W2 = std * np.random.randn(pooled, hidden)
    W3 = std * np.random.randn(hidden, 10)
    return ref.Net([ref.conv(W1, np.zeros(filters)), ref.act("relu"), ref.pool(),
                    ref.affine(W2, np.zeros(hidden)), ref.act("relu"),
                    ref.affine(W3, np.zeros(10))])  # fmt: skip


def _book_accuracy(net, x, t, batch_size):
    """The book's CNN accuracy: whole batches only, divided by all of N."""
    whole = int(x.shape[0] / batch_size) * batch_size
    return (net.scores(x[:whole]).argmax(axis=1) == t[:whole]).sum() / x.shape[0]


def test_ch07_simple_convnet_trainer_and_save(data, tmp_path, monkeypatch, capsys):
    got = run("ch07_convnet.py", tmp_path, monkeypatch, capsys)

    np.random.seed(0)
    images = ref.normalized(data.x_train).reshape(-1, 1, 28, 28)
    x_train, t_train = images[:120], data.t_train[:120]
    x_test = ref.normalized(data.x_test).reshape(-1, 1, 28, 28)
    t_test = data.t_test
    net = _convnet(4, 5, 12)
    opt = ref.Optimizer("adam", 0.01)
    expected = []
    for i in range(6):  # 2 epochs of 120 / 40 steps
        mask = np.random.choice(120, 40)
        opt.step(net, net.gradient(x_train[mask], t_train[mask]))
        expected.append(f"train loss:{net.loss(x_train[mask], t_train[mask])}")
        if i % 3 == 0:
            expected.append(f"=== epoch:{i // 3 + 1}, train acc:"
                            f"{_book_accuracy(net, x_train[:100], t_train[:100], 100)}, test acc:"
                            f"{_book_accuracy(net, x_test, t_test, 100)} ===")  # fmt: skip
    expected += ["=============== Final Test Accuracy ===============",
                 f"test acc:{_book_accuracy(net, x_test, t_test, 100)}",
                 f"accuracy in batches of 15: {_book_accuracy(net, x_test, t_test, 15)}",
                 "Saved Network Parameters!"]  # fmt: skip
    assert_lines(got, expected)

    # the file is the book's format: a plain dict of float64 arrays, W1, b1, ... in order
    with open(tmp_path / "params.pkl", "rb") as f:
        saved = pickle.load(f)
    assert list(saved) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    for key, value in saved.items():
        assert type(value) is np.ndarray and value.dtype == np.float64
        np.testing.assert_allclose(value, net.get(key), rtol=1e-9, atol=1e-15)


def test_ch08_deep_convnet_dropout_save_and_load(data, tmp_path, monkeypatch, capsys):
    got = run("ch08_deepnet.py", tmp_path, monkeypatch, capsys)

    np.random.seed(0)
    x_train = ref.normalized(data.x_train).reshape(-1, 1, 28, 28)
    x_test = ref.normalized(data.x_test).reshape(-1, 1, 28, 28)
    fan_in = np.array([9, 144, 144, 288, 288, 576, 1024, 50])
    scales = np.sqrt(2.0 / fan_in)
    channels = [1, 16, 16, 32, 32, 64, 64]
    layers = []
    for i in range(6):
        W = scales[i] * np.random.randn(channels[i + 1], channels[i], 3, 3)
        layers += [ref.conv(W, np.zeros(channels[i + 1]), 1, 2 if i == 3 else 1), ref.act("relu")]
        layers += [ref.pool()] if i % 2 else []
    W7 = scales[6] * np.random.randn(1024, 50)
    W8 = scales[7] * np.random.randn(50, 10)
    layers += [ref.affine(W7, np.zeros(50)), ref.act("relu"), ref.dropout(0.5),
               ref.affine(W8, np.zeros(10)), ref.dropout(0.5)]  # fmt: skip
    net = ref.Net(layers)
    opt = ref.Optimizer("adam", 0.001)
    expected = []
    for _ in range(2):
        mask = np.random.choice(300, 6)
        opt.step(net, net.gradient(x_train[mask], data.t_train[mask]))
        expected.append(f"train loss:{net.loss(x_train[mask], data.t_train[mask], train=True)}")
    accuracy = _book_accuracy(net, x_test[:10], data.t_test[:10], 5)
    scores = net.scores(x_test[:2])
    expected += [f"test acc:{accuracy}", "scores: " + " ".join(str(v) for v in scores.flatten()),
                 f"reloaded test acc:{accuracy}"]  # fmt: skip
    assert_lines(got, expected, rel=1e-8)


def test_trainer_keeps_the_books_float_epoch_length(data, capsys):
    """150 samples in batches of 100: iter_per_epoch is 1.5, so the epoch lines come where
    current_iter % 1.5 == 0 (iterations 0 and 3 of 6), as in the book's Trainer."""
    from xpnet.book.common.multi_layer_net import MultiLayerNet
    from xpnet.book.common.trainer import Trainer

    np.random.seed(0)
    x = ref.normalized(data.x_train)[:150]
    net = MultiLayerNet(784, [5], 10)
    trainer = Trainer(net, x, data.t_train[:150], x[:10], data.t_train[:10], epochs=4,
                      mini_batch_size=100, optimizer="sgd", evaluate_sample_num_per_epoch=10)  # fmt: skip
    trainer.train()
    lines = capsys.readouterr().out.splitlines()
    assert trainer.iter_per_epoch == 1.5 and trainer.max_iter == 6
    assert len(trainer.train_loss_list) == 6 and len(trainer.train_acc_list) == 2
    epochs = [line.split(",")[0] for line in lines if line.startswith("=== epoch")]
    assert epochs == ["=== epoch:1", "=== epoch:2"]
    assert [i for i, line in enumerate(lines) if line.startswith("=== epoch")] == [1, 5]


def test_common_functions_gradient_and_util_as_the_books():
    from xpnet.book.common import functions as F
    from xpnet.book.common.gradient import numerical_gradient, numerical_gradient_2d
    from xpnet.book.common.util import conv_output_size, shuffle_dataset, smooth_curve

    x = np.array([-2.0, 0.0, 0.5, 3.0])
    s = 1.0 / (1.0 + np.exp(-x))
    assert F.step_function(x).tolist() == [0, 0, 1, 1] and F.step_function(x).dtype == np.int64
    np.testing.assert_allclose(F.sigmoid(x), s, rtol=1e-15)
    np.testing.assert_allclose(F.sigmoid_grad(x), (1 - s) * s, rtol=1e-14)
    assert F.relu(x).tolist() == [0.0, 0.0, 0.5, 3.0]
    assert F.relu_grad(x).tolist() == [0.0, 1.0, 1.0, 1.0]  # the book's: 1 where x >= 0
    assert F.identity_function(x) is x
    assert F.sum_squared_error(np.array([0.1, 0.7]), np.array([0.0, 1.0])) == pytest.approx(0.05)
    y = np.array([[0.1, 0.6, 0.3], [0.8, 0.1, 0.1]])
    expected = -(np.log(0.6 + 1e-7) + np.log(0.1 + 1e-7)) / 2
    assert F.cross_entropy_error(y, np.array([1, 2])) == pytest.approx(expected, rel=1e-14)
    assert F.cross_entropy_error(y[0], np.array([0, 1, 0])) == pytest.approx(-np.log(0.6 + 1e-7))
    np.testing.assert_allclose(F.softmax(np.log(y)), y, rtol=1e-14)
    assert F.sigmoid(0.0) == 0.5  # a Python number, as the book's scripts pass

    X = np.array([[1.0, -2.0], [0.5, 3.0]])
    np.testing.assert_allclose(numerical_gradient_2d(lambda v: np.sum(v**2), X), 2 * X, rtol=1e-9)
    np.testing.assert_allclose(numerical_gradient(lambda v: np.sum(v**3), X[0]), 3 * X[0] ** 2,
                               rtol=1e-7)  # fmt: skip

    assert conv_output_size(28, 5) == 24.0 and conv_output_size(7, 2, stride=2, pad=1) == 4.5
    np.random.seed(2)
    order = np.random.permutation(5)
    np.random.seed(2)
    xs, ts = shuffle_dataset(np.arange(10).reshape(5, 2), np.arange(5))
    assert ts.tolist() == order.tolist() and xs[:, 0].tolist() == (2 * order).tolist()
    losses = [np.float64(v) for v in np.linspace(2.0, 0.5, 30)]
    w = np.kaiser(11, 2)
    mirrored = np.r_[losses[10:0:-1], losses, losses[-1:-11:-1]]
    expected = np.convolve(w / w.sum(), mirrored, mode="valid")[5:-5]
    np.testing.assert_allclose(smooth_curve(losses), expected, rtol=1e-15)


@pytest.mark.torch
def test_a_script_on_torch_prints_the_numpy_numbers(data, tmp_path, monkeypatch, capsys):
    """XPNET_BACKEND=torch (a GPU's stand-in here): MNIST and the networks on torch, the Trainer
    gathering its minibatches there; the script prints NumPy's numbers."""
    pytest.importorskip("torch")
    from xpnet.book import device as book_device

    expected = run("ch06_trainer.py", tmp_path, monkeypatch, capsys)
    monkeypatch.setenv("XPNET_BACKEND", "torch")
    book_device._resolve.cache_clear()
    try:
        got = run("ch06_trainer.py", tmp_path, monkeypatch, capsys)
    finally:
        book_device._resolve.cache_clear()
    assert_lines(got, expected)


def test_trainer_and_networks_on_a_strict_namespace_and_another_device(data, monkeypatch, capsys):
    """array_api_strict on its fake "device1": every array the book's code makes is made on the
    data's device (a missing device= fails here), and the numbers are NumPy's."""
    pytest.importorskip("array_api_strict")
    from xpnet.book import device as book_device
    from xpnet.book.ch07.simple_convnet import SimpleConvNet
    from xpnet.book.common.multi_layer_net_extend import MultiLayerNetExtend
    from xpnet.book.common.trainer import Trainer
    from xpnet.book.dataset.mnist import load_mnist

    def train(cls, **kw):
        np.random.seed(1)
        (x, t), (xt, tt) = load_mnist(flatten=cls is not SimpleConvNet)
        net = cls(**kw)
        trainer = Trainer(net, x[:100, ...], t[:100, ...], xt[:50, ...], tt[:50, ...], epochs=2,
                          mini_batch_size=25, optimizer="adam", evaluate_sample_num_per_epoch=50)  # fmt: skip
        trainer.train()
        return capsys.readouterr().out.splitlines(), net

    nets = [
        (MultiLayerNetExtend, {"input_size": 784, "hidden_size_list": [12, 12], "output_size": 10,
                               "use_dropout": True, "use_batchnorm": True}),
        (SimpleConvNet, {"conv_param": {"filter_num": 3, "filter_size": 5, "pad": 0, "stride": 1},
                         "hidden_size": 8}),
    ]  # fmt: skip
    for cls, kw in nets:
        expected, _ = train(cls, **kw)
        monkeypatch.setenv("XPNET_BACKEND", "array_api_strict")
        monkeypatch.setenv("XPNET_DEVICE", "device1")
        book_device._resolve.cache_clear()
        try:
            got, net = train(cls, **kw)
        finally:
            book_device._resolve.cache_clear()
            monkeypatch.delenv("XPNET_BACKEND")
            monkeypatch.delenv("XPNET_DEVICE")
        assert str(net.params["W1"].device) == "array_api_strict.Device('device1')"
        assert_lines(got, expected)
