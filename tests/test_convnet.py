"""SimpleConvNet and DeepConvNet: shapes and names, gradients of tiny instances, the same initial
weights on every backend, training that lowers the loss, and one epoch on the real MNIST."""

import os
import time

import numpy as np
import pytest
from conftest import assert_on, mnist_dir

import xpnet
from xpnet import DeepConvNet, SimpleConvNet, max_relative_error
from xpnet.backend import to_numpy
from xpnet.errors import ConfigError

TINY_SIMPLE = {
    "input_dim": (2, 7, 6),
    "conv_param": {"filter_num": 3, "filter_size": 3, "pad": 1, "stride": 1},
    "hidden_size": 5,
    "output_size": 4,
    "weight_init_std": 0.5,
}
TINY_CONV = {"filter_num": 2, "filter_size": 3, "pad": 1, "stride": 1}
TINY_DEEP = {
    "input_dim": (1, 8, 8),
    **{f"conv_param_{i}": TINY_CONV for i in (1, 2, 3, 5, 6)},
    "conv_param_4": {**TINY_CONV, "pad": 2},
    "hidden_size": 4,
    "output_size": 3,
}


def batch(backend, rng, input_dim, n, classes, dtype="float64"):
    x = backend.asarray(rng.standard_normal((n, *input_dim)), dtype)
    t = backend.asarray(rng.integers(0, classes, n))
    return x, t


def check_network_gradients(net, x, t, rng, samples: int = 4):
    """Backprop against central differences at a few random entries of every parameter.

    Biases and batch-norm shifts start at zero, which puts ReLUs exactly on their kink: they are
    moved to random values first.
    """
    be = net.backend
    for key, param in net.params.items():
        if key.startswith(("b", "gamma")):
            value = rng.standard_normal(tuple(param.shape)) * 0.1
            param[...] = be.asarray(value + (1.0 if key.startswith("gamma") else 0.0), "float64")
    net.forward_backward(x, t)
    grads = {key: to_numpy(g).copy() for key, g in net.grads.items()}
    for key, param in net.params.items():
        assert grads[key].shape == tuple(param.shape)
        flat_indices = rng.choice(grads[key].size, min(samples, grads[key].size), replace=False)
        numerical = []
        for flat in flat_indices:
            index = np.unravel_index(flat, grads[key].shape)
            old = float(param[index])
            values = []
            for value in (old + 1e-6, old - 1e-6):
                param[index] = value
                values.append(float(net.loss(x, t, train=True)))
            param[index] = old
            numerical.append((values[0] - values[1]) / 2e-6)
        ours = grads[key].reshape(-1)[flat_indices]
        # scale by the whole gradient's size, as max_relative_error does
        # (biases before a batch norm have a zero gradient: the absolute term covers rounding)
        scale = np.abs(grads[key]).max()
        assert np.abs(ours - np.array(numerical)).max() < 1e-5 * scale + 1e-8, key


def test_simple_convnet_has_the_books_layers_and_names(backend):
    net = SimpleConvNet(device=backend.device, backend=backend.name)
    assert list(net.layers) == [
        "Convolution1", "ReLU1", "Pooling1", "Affine1", "ReLU2", "Affine2",
    ]  # fmt: skip
    shapes = {k: tuple(v.shape) for k, v in net.params.items()}
    assert shapes == {
        "W1": (30, 1, 5, 5), "b1": (30,), "W2": (4320, 100), "b2": (100,),
        "W3": (100, 10), "b3": (10,),
    }  # fmt: skip
    for param in net.params.values():
        assert_on(param, backend, "float32")
    x = backend.asarray(np.zeros((3, 1, 28, 28)), "float32")
    assert_on(net.predict(x), backend, "float32", (3, 10))
    assert net.config["model"] == "simple-cnn"


def test_deep_convnet_has_the_books_architecture(backend):
    net = DeepConvNet(device=backend.device, backend=backend.name)
    kinds = [type(layer).__name__ for layer in net.layers.values()]
    assert kinds.count("Convolution") == 6 and kinds.count("Pooling") == 3
    assert kinds[-4:] == ["Affine", "ReLU", "Dropout", "Affine"]  # no dropout on the scores
    filters = [net.params[f"W{i}"].shape[0] for i in range(1, 7)]
    assert filters == [16, 16, 32, 32, 64, 64]
    assert tuple(net.params["W7"].shape) == (64 * 4 * 4, 50)
    # He initialization: std √(2 / fan-in)
    w3 = to_numpy(net.params["W3"])
    assert np.std(w3) == pytest.approx(np.sqrt(2 / (16 * 9)), rel=0.05)
    x = backend.asarray(np.zeros((2, 1, 28, 28)), "float32")
    assert_on(net.predict(x), backend, "float32", (2, 10))
    bn = DeepConvNet(batchnorm=True, device=backend.device, backend=backend.name)
    assert [k for k in bn.params if k.startswith("gamma")] == [f"gamma{i}" for i in range(1, 8)]
    assert bn.config["model"] == "deep-cnn" and bn.config["batchnorm"] is True


def test_simple_convnet_gradients(backend, rng):
    net = SimpleConvNet(**TINY_SIMPLE, dtype="float64", device=backend.device, backend=backend.name)
    x, t = batch(backend, rng, (2, 7, 6), 3, 4)
    check_network_gradients(net, x, t, rng)
    for key, grad in net.grads.items():
        assert_on(grad, backend, "float64", net.params[key].shape)


@pytest.mark.parametrize("batchnorm", [False, True], ids=["plain", "batchnorm"])
def test_deep_convnet_gradients(batchnorm, backend, rng):
    # dropout 0: the numerical gradient needs the same function on every call
    net = DeepConvNet(
        **TINY_DEEP, dropout_ratio=0.0, batchnorm=batchnorm, dtype="float64",
        device=backend.device, backend=backend.name,
    )  # fmt: skip
    x, t = batch(backend, rng, (1, 8, 8), 4, 3)
    check_network_gradients(net, x, t, rng, samples=3)


def test_gradient_check_of_a_whole_parameter(rng):
    """One full central-difference gradient (every entry) on NumPy, for the conv filters."""
    net = SimpleConvNet(**TINY_SIMPLE, dtype="float64")
    x = rng.standard_normal((3, 2, 7, 6))
    t = rng.integers(0, 4, 3)
    net.forward_backward(x, t)
    W1 = net.params["W1"]
    numerical = xpnet.numerical_gradient(lambda _: net.loss(x, t), W1)
    assert max_relative_error(net.grads["W1"], numerical) < 1e-6


@pytest.mark.parametrize("cls", [SimpleConvNet, DeepConvNet])
def test_same_initial_weights_on_every_backend(cls, backend):
    reference = cls(seed=3)
    net = cls(seed=3, device=backend.device, backend=backend.name)
    assert list(net.params) == list(reference.params)
    for key, param in net.params.items():
        assert_on(param, backend, "float32", reference.params[key].shape)
        assert np.array_equal(to_numpy(param), reference.params[key]), key
    other = cls(seed=4)
    assert not np.array_equal(other.params["W1"], reference.params["W1"])


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (SimpleConvNet, {**TINY_SIMPLE, "weight_init_std": 0.1}),
        (DeepConvNet, {**TINY_DEEP, "batchnorm": True}),
    ],
    ids=["simple", "deep-bn"],
)
def test_adam_lowers_the_loss_on_tiny_data(cls, kwargs, backend, rng):
    net = cls(**kwargs, device=backend.device, backend=backend.name)
    c, h, w = kwargs["input_dim"]
    x, t = batch(backend, rng, (c, h, w), 12, kwargs["output_size"], "float32")
    optimizer = xpnet.Adam(lr=0.03)
    first = float(net.loss(x, t, train=False))
    for _ in range(20):
        loss = net.forward_backward(x, t)
        assert_on(loss, backend, "float32", ())
        optimizer.update(net.params, net.grads)
    assert float(net.loss(x, t, train=False)) < 0.7 * first


def test_deep_convnet_dropout_only_in_training(rng):
    net = DeepConvNet(**TINY_DEEP, dropout_ratio=0.5, seed=1)
    x = rng.standard_normal((6, 1, 8, 8)).astype(np.float32)
    assert np.array_equal(net.predict(x), net.predict(x))
    assert not np.array_equal(net.predict(x, train=True), net.predict(x, train=True))


@pytest.mark.parametrize("cls", [SimpleConvNet, DeepConvNet])
def test_config_rebuilds_the_same_network(cls):
    net = cls(seed=5, **({"batchnorm": True} if cls is DeepConvNet else {"weight_init_std": "he"}))
    config = {k: v for k, v in net.config.items() if k != "model"}
    again = cls(**config, seed=5)
    for key, param in net.params.items():
        assert np.array_equal(param, again.params[key])


def test_constructors_check_their_arguments():
    with pytest.raises(ConfigError, match="initializer"):
        SimpleConvNet(weight_init_std="big")
    with pytest.raises(ConfigError, match="input_dim"):
        SimpleConvNet(input_dim=(28, 28))
    with pytest.raises(ConfigError, match="unknown conv_param keys"):
        SimpleConvNet(conv_param={"filters": 3})
    with pytest.raises(ConfigError, match="no room"):
        SimpleConvNet(input_dim=(1, 4, 4))
    with pytest.raises(ConfigError, match="too small"):
        DeepConvNet(input_dim=(1, 2, 2))
    with pytest.raises(ConfigError, match="dropout ratio"):
        DeepConvNet(dropout_ratio=1.0)


@pytest.mark.slow
@pytest.mark.mnist
@pytest.mark.skipif(mnist_dir() is None, reason="set XPNET_DATA_DIR to a folder with MNIST")
def test_simple_convnet_one_epoch_on_mnist():
    """One epoch, Adam lr 0.001, batch 100 (the book's settings), He init: >= 97.5% test accuracy.

    With the book's init (std 0.01) one epoch reaches 96.2% (seed 0), as does torch's identical
    network from the same initial weights (96.1%): the small weights slow the first hundred steps.
    """
    (x_train, t_train), (x_test, t_test) = xpnet.load_mnist(
        flatten=False, data_dir=str(mnist_dir())
    )
    x_train = x_train.reshape(-1, 1, 28, 28)
    x_test = x_test.reshape(-1, 1, 28, 28)
    net = SimpleConvNet(weight_init_std="he")
    optimizer = xpnet.Adam(lr=0.001)
    order = np.random.default_rng(0).permutation(x_train.shape[0])
    start = time.perf_counter()
    for i in range(0, x_train.shape[0], 100):
        idx = order[i : i + 100]
        net.forward_backward(x_train[idx], t_train[idx])
        optimizer.update(net.params, net.grads)
    seconds = time.perf_counter() - start
    accuracy = net.accuracy(x_test, t_test, batch_size=1000)
    print(
        f"SimpleConvNet, 1 epoch of MNIST: test accuracy {accuracy:.4f}, {seconds:.1f} s "
        f"training ({seconds / 600 * 1e3:.1f} ms/step), load {os.getloadavg()[0]:.1f}"
    )
    assert accuracy >= 0.975


# -- the CNNs through the Trainer, checkpoints and load_model ------------------------------------


def _digits():
    pytest.importorskip("sklearn")
    from xpnet.data import load_dataset

    return load_dataset("digits")


def test_trainer_trains_simple_cnn_on_images_on_every_backend(backend, tmp_path):
    from xpnet.training.trainer import TrainConfig, Trainer

    config = TrainConfig(model="simple-cnn", init="he", iters=40, batch_size=50, seed=1)
    trainer = Trainer(config, _digits(), tmp_path, verbose=False, progress=False, backend=backend)
    assert_on(trainer.data.x_train, backend, "float32", (1497, 1, 8, 8))
    # NumPy runs the convolutional fast path (tests/test_fast_conv.py), the others the layers
    assert (trainer.fused is not None) == (backend.name == "numpy")
    assert type(trainer.optimizer).__name__ == "Adam"
    record = trainer.run()
    assert record["test_acc"] > 0.5
    assert trainer.history[-1]["loss"] < trainer.history[0]["loss"]
    net = xpnet.load_model(tmp_path / "model.npz", backend)
    assert type(net).__name__ == "SimpleConvNet"
    assert_on(net.params["W1"], backend, "float32", (30, 1, 5, 5))


def test_resumed_simple_cnn_run_is_bit_identical(tmp_path):
    from xpnet.training.trainer import TrainConfig, Trainer

    data = _digits()
    config = TrainConfig(model="simple-cnn", init="he", iters=30, batch_size=50, seed=2)
    whole = Trainer(config, data, tmp_path / "a", verbose=False, progress=False)
    whole.run()
    half = Trainer(TrainConfig(**{**config.__dict__, "iters": 14}), data, tmp_path / "b",
                   verbose=False, progress=False)  # fmt: skip
    half.run()
    resumed = Trainer.resume(tmp_path / "b" / "checkpoint.npz", data, overrides={"iters": 30},
                             verbose=False, progress=False)  # fmt: skip
    resumed.run()
    for key, value in whole.net.params.items():
        np.testing.assert_array_equal(to_numpy(resumed.net.params[key]), to_numpy(value))


def test_batch_norm_running_statistics_are_saved_and_restored(tmp_path):
    from xpnet.training.trainer import TrainConfig, Trainer

    config = TrainConfig(model="deep-cnn", batchnorm=True, iters=6, batch_size=50, device="cpu")
    trainer = Trainer(config, _digits(), tmp_path, verbose=False, progress=False)
    trainer.run()
    buffers = trainer.net.buffers
    assert "BatchNormalization1.running_mean" in buffers
    assert float(np.abs(to_numpy(buffers["BatchNormalization1.running_mean"])).max()) > 0
    loaded = xpnet.load_model(tmp_path / "model.npz")
    for key, value in buffers.items():
        np.testing.assert_array_equal(to_numpy(loaded.buffers[key]), to_numpy(value))
    x = trainer.data.x_test[:20]
    np.testing.assert_array_equal(to_numpy(loaded.predict(x)), to_numpy(trainer.net.predict(x)))


def test_resumed_deep_cnn_with_dropout_is_bit_identical(tmp_path):
    """Dropout's random state (seed, masks drawn) is saved, so a resumed run draws the same masks."""
    from xpnet.training.trainer import TrainConfig, Trainer

    data = _digits()
    config = TrainConfig(model="deep-cnn", iters=8, batch_size=50, seed=5)
    whole = Trainer(config, data, tmp_path / "a", verbose=False, progress=False)
    whole.run()
    half = Trainer(TrainConfig(**{**config.__dict__, "iters": 3}), data, tmp_path / "b",
                   verbose=False, progress=False)  # fmt: skip
    half.run()
    assert half.net.layer_states == {"Dropout1": {"seed": 5, "calls": 3}}  # the net's seed
    resumed = Trainer.resume(tmp_path / "b" / "checkpoint.npz", data, overrides={"iters": 8},
                             verbose=False, progress=False)  # fmt: skip
    resumed.run()
    for key, value in whole.net.params.items():
        np.testing.assert_array_equal(to_numpy(resumed.net.params[key]), to_numpy(value))


def test_numpy_integers_are_integers_and_the_config_stays_json():
    import json

    n = np.int64
    simple = SimpleConvNet(
        input_dim=(n(1), n(8), n(8)),
        conv_param={"filter_num": n(4), "filter_size": n(3), "pad": n(1), "stride": n(1)},
        hidden_size=n(5), output_size=np.int32(3), weight_init_std=np.float32(0.01),
    )  # fmt: skip
    deep = DeepConvNet(input_dim=(n(1), n(16), n(16)), hidden_size=n(6), output_size=n(3),
                       conv_param_1={"filter_num": n(4), "pad": n(1)})  # fmt: skip
    for net in (simple, deep):
        assert json.loads(json.dumps(net.config)) == net.config  # Python ints, saved as such
    assert simple.config["conv_param"] == {"filter_num": 4, "filter_size": 3, "pad": 1, "stride": 1}
    assert simple.config["weight_init_std"] == float(np.float32(0.01))
    with pytest.raises(ConfigError, match="conv_param pad must be an integer >= 0"):
        SimpleConvNet(input_dim=(1, 8, 8), conv_param={"pad": 1.0})
    with pytest.raises(ConfigError, match="hidden_size must be a positive integer"):
        SimpleConvNet(input_dim=(1, 8, 8), hidden_size=True)
