"""Networks, the book's CNNs' structure, the fused step's side effects, the perceptron gates and
the 3-layer net, against numbers and layouts worked out by hand.

A TwoLayerNet with weights set by hand: its scores, loss, L2 penalty and gradients written
out; the names of parameters, buffers and layers; counting correct answers in chunks; what a
fused training step leaves behind (the loss in ``net.last_layer.loss``, the gradients in the
layers) and which networks it refuses to fuse; each constructor option checked by its name.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from array_api_compat import array_namespace
from conftest import HAS_STRICT, assert_on

import xpnet
from xpnet.backend import to_numpy
from xpnet.errors import BackendError, ConfigError, ShapeError
from xpnet.fast import plan


def close(actual, expected, rtol=1e-12, atol=1e-12):
    np.testing.assert_allclose(to_numpy(actual), expected, rtol=rtol, atol=atol)


# W1 (2, 2), b1, W2 (2, 2), b2: x = [1, 2] gives hidden [1·1 + 2·(−1), 1·2 + 2·1] + b1 = [−1, 4] + [0.5, 0]
HAND = {
    "W1": [[1.0, 2.0], [-1.0, 1.0]],
    "b1": [0.5, 0.0],
    "W2": [[1.0, -1.0], [0.5, 0.25]],
    "b2": [0.0, 1.0],
}


def hand_net(backend, **kw):
    net = xpnet.MultiLayerNet(2, [2], 2, device=backend, dtype="float64", **kw)
    net.set_params({k: backend.asarray(v, "float64") for k, v in HAND.items()})
    return net


def test_a_two_layer_net_by_hand(backend):
    """x = [[1, 2], [0, 0]], labels [0, 1]: every number of the forward and backward pass."""
    net = hand_net(backend)
    x = backend.asarray([[1.0, 2.0], [0.0, 0.0]], "float64")
    t = backend.asarray([0, 1], "int64")
    # row 0: a1 = [-1 + 0.5, 4] → ReLU [0, 4] → scores [2, 2]; row 1: a1 = [0.5, 0] → [0.5, 0.5]
    scores = net.predict(x)
    assert_on(scores, backend, "float64", (2, 2))
    close(scores, [[2.0, 2.0], [0.5, 0.5]])
    one = net.predict(backend.asarray([1.0, 2.0], "float64"))  # one sample: no batch axis
    assert_on(one, backend, "float64", (2,))
    close(one, [2.0, 2.0])
    # both rows' softmax is [1/2, 1/2]: loss log 2
    loss = net.loss(x, t)
    assert_on(loss, backend, "float64", ())
    assert float(loss) == pytest.approx(math.log(2), rel=1e-14)
    grads = net.gradient(x, t)
    assert list(grads) == ["W1", "b1", "W2", "b2"]
    dz = np.array([[-0.5, 0.5], [0.5, -0.5]]) / 2  # (softmax − t) / N
    h = np.array([[0.0, 4.0], [0.5, 0.0]])
    close(grads["W2"], h.T @ dz)
    close(grads["b2"], dz.sum(axis=0))
    dh = dz @ np.array(HAND["W2"]).T * (np.array([[-0.5, 4.0], [0.5, 0.0]]) > 0)
    close(grads["W1"], np.array([[1.0, 2.0], [0.0, 0.0]]).T @ dh)
    close(grads["b1"], dh.sum(axis=0))
    assert net.accuracy(x, t) == 0.5  # ties: argmax takes class 0, right for row 0 only


def test_weight_decay_by_hand(backend):
    """L = mean loss + ½·λ·Σ‖W‖² over the weights (not the biases); dW gains λ·W."""
    net = hand_net(backend, weight_decay=0.1)
    x = backend.asarray([[1.0, 2.0], [0.0, 0.0]], "float64")
    t = backend.asarray([0, 1], "int64")
    squares = (1 + 4 + 1 + 1) + (1 + 1 + 0.25 + 0.0625)
    assert float(net.decay_loss()) == pytest.approx(0.5 * 0.1 * squares, rel=1e-14)
    assert float(net.loss(x, t)) == pytest.approx(math.log(2) + 0.05 * squares, rel=1e-14)
    plain = hand_net(backend).gradient(x, t)
    grads = net.gradient(x, t)
    for key in ("W1", "W2"):
        close(grads[key], to_numpy(plain[key]) + 0.1 * np.array(HAND[key]))
    for key in ("b1", "b2"):
        close(grads[key], to_numpy(plain[key]))
    assert hand_net(backend).decay_loss() == 0.0


def test_names_of_parameters_buffers_and_layers(backend):
    net = xpnet.MultiLayerNet(3, [4, 5], 2, batchnorm=True, dropout_ratio=0.5, device=backend)
    assert list(net.layers) == [
        "Affine1", "BatchNormalization1", "ReLU1", "Dropout1",
        "Affine2", "BatchNormalization2", "ReLU2", "Dropout2", "Affine3",
    ]  # fmt: skip
    assert list(net.params) == ["W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2", "beta2", "W3", "b3"]  # fmt: skip
    assert list(net.buffers) == [
        "BatchNormalization1.running_mean", "BatchNormalization1.running_var",
        "BatchNormalization2.running_mean", "BatchNormalization2.running_var",
    ]  # fmt: skip
    assert net.layers["Dropout1"].seed == 0 and net.layers["Dropout2"].seed == 1
    assert xpnet.MultiLayerNet(3, [4], 2, dropout_ratio=0.5, seed=7).layers["Dropout1"].seed == 7000
    assert xpnet.MultiLayerNet(3, [4], 2, dropout_ratio=0.5, seed=None).layers["Dropout1"].seed >= 0
    assert net.layers["BatchNormalization1"].name == "BatchNormalization1"
    assert repr(xpnet.TwoLayerNet(3, 4, 2)) == (
        "TwoLayerNet(Affine1(W=(3, 4), b=(4,)) -> ReLU1() -> Affine2(W=(4, 2), b=(2,)) -> SoftmaxWithLoss)"
    )
    assert net.dtype == backend.dtype("float32") and net.backend == backend


def test_set_params_takes_buffers_too(backend):
    net = xpnet.MultiLayerNet(3, [2], 2, batchnorm=True, device=backend, dtype="float64")
    before = net.buffers
    given = {
        k: backend.asarray(np.full(tuple(v.shape), 0.5), "float64") for k, v in net.params.items()
    }
    given["BatchNormalization1.running_var"] = backend.asarray([4.0, 9.0], "float64")
    net.set_params(given)
    close(net.buffers["BatchNormalization1.running_var"], [4.0, 9.0])
    assert (
        net.buffers["BatchNormalization1.running_var"] is before["BatchNormalization1.running_var"]
    )
    with pytest.raises(ShapeError, match="parameter names differ"):
        net.set_params({**given, "Affine1.x": given["W1"]})
    message = "BatchNormalization1.running_var has shape (2,), got (3,)"
    with pytest.raises(ShapeError, match=re.escape(message)):
        net.set_params({**given, "BatchNormalization1.running_var": backend.asarray([1.0] * 3, "float64")})  # fmt: skip


def test_count_correct_in_chunks_by_hand(backend):
    """Scores = x itself (identity weights): the top class of each row is known."""
    net = xpnet.Network(
        [
            xpnet.Affine(
                backend.asarray(np.eye(3), "float64"), backend.asarray(np.zeros(3), "float64")
            )
        ]
    )
    x = backend.asarray([[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]], "float64")
    t = backend.asarray([2, 1, 1, 0, 0], "int64")  # rows 0, 2, 4 right
    for batch_size in (None, 1, 2, 3, 5, 100):
        correct = net.count_correct(x, t, batch_size)
        assert int(correct) == 3
        assert net.accuracy(x, t, batch_size) == 0.6
    assert_on(net.count_correct(x, t), backend, "int64", ())
    assert net.accuracy(x, xpnet.one_hot(t, 3, dtype=backend.dtype("float64")), 2) == 0.6
    assert int(net.count_correct(x[0, ...], t[0])) == 1  # one sample and one label
    assert xpnet.Network.eval_batch_size == 10_000


def test_evaluation_draws_no_dropout_mask_and_keeps_the_running_statistics(backend):
    """accuracy and count_correct run the layers in evaluation mode."""
    net = xpnet.MultiLayerNet(3, [8], 2, batchnorm=True, dropout_ratio=0.5, device=backend)
    x = backend.asarray(np.linspace(-1, 1, 12).reshape(4, 3), "float32")
    t = backend.asarray([0, 1, 1, 0], "int64")
    states, buffers = net.layer_states, {k: to_numpy(v).copy() for k, v in net.buffers.items()}
    expected = int(np.sum(np.argmax(to_numpy(net.predict(x)), axis=1) == to_numpy(t)))
    assert int(net.count_correct(x, t, batch_size=3)) == expected
    assert net.accuracy(x, t) == expected / 4
    assert net.layer_states == states
    for key, value in net.buffers.items():
        np.testing.assert_array_equal(to_numpy(value), buffers[key], err_msg=key)


def test_the_two_layer_net_draws_its_weights_from_its_seed():
    """std 0.01 by default, from a NumPy generator seeded with `seed` (0 by default)."""
    for seed in (0, 3):
        net = xpnet.TwoLayerNet(4, 3, 2, seed=seed, dtype="float64")
        rng = np.random.default_rng(seed)
        np.testing.assert_array_equal(net.params["W1"], rng.standard_normal((4, 3)) * 0.01)
        np.testing.assert_array_equal(net.params["W2"], rng.standard_normal((3, 2)) * 0.01)
        if seed == 0:
            np.testing.assert_array_equal(
                xpnet.TwoLayerNet(4, 3, 2, dtype="float64").params["W1"], net.params["W1"]
            )


def test_inputs_are_checked_and_cast(backend):
    net = hand_net(backend)
    x_int = backend.asarray([[1, 2]], "int64")
    close(net.predict(x_int), [[2.0, 2.0]])
    assert_on(net.predict(x_int), backend, "float64", (1, 2))
    with pytest.raises(ShapeError, match=re.escape("the batch is empty: give at least one sample")):
        net.predict(backend.asarray(np.zeros((0, 2)), "float64"))
    with pytest.raises(ShapeError, match=re.escape("an input of shape () has fewer axes than one sample (1)")):  # fmt: skip
        net.predict(backend.asarray(1.0, "float64"))
    conv = xpnet.SimpleConvNet((1, 4, 4), {"filter_num": 1, "filter_size": 3}, 2, 2, device=backend)
    with pytest.raises(ShapeError, match=re.escape("an input of shape (4, 4) has fewer axes than one sample (3)")):  # fmt: skip
        conv.predict(backend.asarray(np.zeros((4, 4)), "float32"))
    assert_on(
        conv.predict(backend.asarray(np.zeros((1, 4, 4)), "float32")), backend, "float32", (2,)
    )


def test_a_network_needs_layers_with_parameters_and_a_valid_decay():
    W, b = np.ones((2, 2)), np.zeros(2)
    with pytest.raises(ConfigError, match="a network needs at least one layer"):
        xpnet.Network([])
    with pytest.raises(ConfigError, match="a network needs at least one layer with parameters"):
        xpnet.Network([xpnet.ReLU()])
    with pytest.raises(ConfigError, match=re.escape("weight decay must be >= 0, got -0.5")):
        xpnet.Network([xpnet.Affine(W, b)], weight_decay=-0.5)
    with pytest.raises(ConfigError, match=re.escape("weight decay must be >= 0, got nan")):
        xpnet.Network([xpnet.Affine(W, b)], weight_decay=math.nan)
    assert xpnet.Network([xpnet.Affine(W, b)], weight_decay=0.0).weight_decay == 0.0
    message = "a network needs a floating dtype (float32 or float64), got int64"
    with pytest.raises(ConfigError, match=re.escape(message)):
        xpnet.Network([xpnet.Affine(np.ones((2, 2), dtype=np.int64), np.zeros(2, dtype=np.int64))])
    for kwargs, text in [
        ({"dtype": "float16"}, "unknown dtype 'float16'"),
        ({"weight_decay": -1}, "weight decay must be >= 0, got -1"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(text)):
            xpnet.MultiLayerNet(2, [2], 2, **kwargs)
    assert xpnet.MultiLayerNet(2, [2], 2, weight_decay=0).weight_decay == 0
    with pytest.raises(ConfigError, match=re.escape("layer sizes must be positive integers, got [2, 2.5, 2]")):  # fmt: skip
        xpnet.MultiLayerNet(2, [2.5], 2)


@pytest.mark.skipif(not HAS_STRICT, reason="array_api_strict is not installed")
@pytest.mark.parametrize("device", ["cpu", "device1"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("build", ["mlp", "two-layer", "simple-cnn", "deep-cnn", "three-layer"])
def test_constructors_put_the_weights_where_they_are_asked(build, dtype, device):
    """device, backend and dtype all reach every weight and buffer (array_api_strict, which a
    device name alone would not choose, on its default device and its second one)."""
    import array_api_strict as strict

    where = {"device": device, "backend": "array_api_strict", "dtype": dtype}
    if build == "mlp":
        arrays = xpnet.MultiLayerNet(4, [3], 2, batchnorm=True, **where)
    elif build == "two-layer":
        arrays = xpnet.TwoLayerNet(4, 3, 2, **where)
    elif build == "simple-cnn":
        arrays = xpnet.SimpleConvNet((1, 6, 6), {"filter_num": 2, "filter_size": 3}, 4, 2, **where)
    elif build == "deep-cnn":
        arrays = xpnet.DeepConvNet((1, 8, 8), hidden_size=4, output_size=2, batchnorm=True, **where)
    if build == "three-layer":
        arrays = xpnet.init_network(**where)
    else:
        arrays = {**arrays.params, **arrays.buffers}
    expected = strict.Device("device1") if device == "device1" else strict.Device("CPU_DEVICE")
    for key, param in arrays.items():
        assert array_namespace(param) is strict, key
        assert param.device == expected, key
        assert param.dtype == getattr(strict, dtype), key


def test_one_sample_and_its_label_in_every_form(backend):
    """A sample without batch axis takes a label without one: a class, a one-hot row, or
    either with a batch axis of one."""
    net = hand_net(backend)
    x = backend.asarray([1.0, 2.0], "float64")  # scores [2, 2]: loss log 2 for either class
    for t in (
        backend.asarray(1, "int64"),
        backend.asarray([1], "int64"),
        backend.asarray([0.0, 1.0], "float64"),
        backend.asarray([[0.0, 1.0]], "float64"),
    ):
        assert float(net.loss(x, t)) == pytest.approx(math.log(2), rel=1e-14)
        assert float(net.forward_backward(x, t)) == pytest.approx(math.log(2), rel=1e-14)
        close(net.grads["b2"], [0.5, -0.5])
        assert int(net.count_correct(x, t)) == 0  # the tie goes to class 0


def test_the_first_layer_is_asked_for_no_input_gradient(backend):
    asked = []

    class Recording(xpnet.Affine):
        def backward(self, dout, input_grad=True):
            asked.append(input_grad)
            return super().backward(dout, input_grad)

    W = backend.asarray(np.eye(2), "float64")
    b = backend.asarray(np.zeros(2), "float64")
    net = xpnet.Network([Recording(W, b), xpnet.ReLU(), Recording(W, b)])
    net.forward_backward(backend.asarray([[1.0, 2.0]], "float64"), backend.asarray([0], "int64"))
    assert asked == [True, False]
    assert net.weight_decay == 0.0


def test_a_layer_needs_only_the_interface(backend):
    """Any object with forward, backward and param_names is a layer (no buffer_names needed)."""

    class Scale:
        param_names = ("s",)
        decay_names = ()

        def __init__(self, s):
            self.s, self.ds, self.x = s, None, None

        def forward(self, x, train=True):
            self.x = x
            return x * self.s

        def backward(self, dout, input_grad=True):
            self.ds = backend.xp.sum(dout * self.x, axis=0)
            return dout * self.s

    net = xpnet.Network([Scale(backend.asarray([2.0, 1.0], "float64"))])
    assert list(net.layers) == ["Scale1"] and net.buffers == {}
    x = backend.asarray([[0.0, 0.0]], "float64")
    loss = net.forward_backward(x, backend.asarray([0], "int64"))
    assert float(loss) == pytest.approx(math.log(2), rel=1e-14)
    close(net.grads["s1"], [0.0, 0.0])


def test_multilayer_net_options_reach_its_layers(backend):
    net = xpnet.MultiLayerNet(1, [1], 1, batchnorm=True, dropout_ratio=0.3, device=backend)
    assert net.sizes == [1, 1, 1]
    assert net.layers["Dropout1"].dropout_ratio == 0.3
    for key in ("gamma1", "beta1"):
        assert_on(net.params[key], backend, "float32", (1,))
    close(net.params["gamma1"], [1.0])
    close(net.params["beta1"], [0.0])
    assert net.config["dropout_ratio"] == 0.3 and net.config["batchnorm"] is True


@pytest.mark.skipif(not HAS_STRICT, reason="array_api_strict is not installed")
def test_labels_from_another_backend_or_device_are_refused_by_name():
    net = xpnet.TwoLayerNet(2, 2, 2, device="device1", backend="array_api_strict")
    x = net.backend.asarray([[1.0, 2.0]], "float32")
    message = "the labels is a numpy.ndarray but the network's weights are "
    with pytest.raises(BackendError, match=re.escape(message)):
        net.loss(x, np.array([0]))
    cpu = xpnet.resolve("cpu", "array_api_strict")
    with pytest.raises(BackendError, match=re.escape("the labels is on device")):
        net.loss(x, cpu.asarray([0], "int64"))


# -- the book's CNNs ----------------------------------------------------------------------------


def test_simple_convnet_structure_and_defaults():
    net = xpnet.SimpleConvNet((1, 6, 6), {"filter_num": 2, "filter_size": 3}, 4, 3)
    assert [type(layer).__name__ for layer in net.layers.values()] == [
        "Convolution", "ReLU", "Pooling", "Affine", "ReLU", "Affine",
    ]  # fmt: skip
    pool = net.layers["Pooling1"]
    assert (pool.pool_h, pool.pool_w, pool.stride, pool.pad) == (2, 2, 2, 0)
    assert tuple(net.params["W1"].shape) == (2, 1, 3, 3)
    assert tuple(net.params["W2"].shape) == (2 * 2 * 2, 4)  # a 4×4 map pooled to 2×2, two filters
    assert type(net.last_layer) is xpnet.SoftmaxWithLoss
    assert net.weight_decay == 0.0
    default = xpnet.SimpleConvNet()
    assert default.config == {
        "model": "simple-cnn",
        "input_dim": [1, 28, 28],
        "conv_param": {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1},
        "hidden_size": 100,
        "output_size": 10,
        "weight_init_std": 0.01,
        "weight_decay": 0.0,
    }
    # seed 0, std 0.01: the first weights drawn by a NumPy generator seeded with 0
    expected = (np.random.default_rng(0).standard_normal((30, 1, 5, 5)) * 0.01).astype(np.float32)
    np.testing.assert_allclose(default.params["W1"], expected, rtol=1e-6)
    assert default.sample_ndim == 3 and default.eval_batch_size == 1000


@pytest.mark.parametrize(
    "init, std1, std2",
    [
        ("he", math.sqrt(2 / (2 * 3 * 3)), math.sqrt(2 / 4)),
        ("glorot", math.sqrt(2 / (2 * 3 * 3 + 4)), math.sqrt(2 / (4 + 5))),
        (0.5, 0.5, 0.5),
    ],
)
def test_simple_convnet_initial_scales(init, std1, std2):
    """fan-in of a convolution is C·FH·FW; Glorot also counts the filters (fan-out)."""
    net = xpnet.SimpleConvNet(
        (2, 5, 5), {"filter_num": 4, "filter_size": 3}, 5, 3, weight_init_std=init, seed=3, dtype="float64"
    )  # fmt: skip
    rng = np.random.default_rng(3)
    np.testing.assert_allclose(
        net.params["W1"], rng.standard_normal((4, 2, 3, 3)) * std1, rtol=1e-12
    )
    np.testing.assert_allclose(
        net.params["W2"], rng.standard_normal((4 * 1 * 1, 5)) * std2, rtol=1e-12
    )
    assert net.config["weight_init_std"] == init


def test_simple_convnet_needs_room_for_its_pooling():
    xpnet.SimpleConvNet((1, 4, 4), {"filter_num": 1, "filter_size": 3})  # a 2×2 map: fits
    for dims in ((1, 3, 4), (1, 4, 3)):
        with pytest.raises(ConfigError, match=re.escape("leaves no room for 2x2 pooling")):
            xpnet.SimpleConvNet(dims, {"filter_num": 1, "filter_size": 3})
    net = xpnet.SimpleConvNet((1, 4, 4), {"filter_num": 1, "filter_size": 3}, weight_decay=0.5)
    assert net.weight_decay == 0.5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"hidden_size": 0}, "hidden_size must be a positive integer, got 0"),
        ({"hidden_size": True}, "hidden_size must be a positive integer, got True"),
        ({"hidden_size": 2.0}, "hidden_size must be a positive integer, got 2.0"),
        ({"output_size": -1}, "output_size must be a positive integer, got -1"),
        ({"input_dim": (1, 0, 28)}, "each of input_dim must be a positive integer, got 0"),
        ({"input_dim": (1, 28)}, "input_dim must be (channels, height, width), got (1, 28)"),
        ({"input_dim": 28}, "input_dim must be (channels, height, width), got 28"),
        (
            {"conv_param": {"filters": 3}},
            "unknown conv_param keys ['filters']; use filter_num, filter_size, pad, stride",
        ),
        ({"conv_param": {"stride": 0}}, "conv_param stride must be a positive integer, got 0"),
        ({"conv_param": {"filter_num": 0}}, "conv_param filter_num must be a positive integer"),
        ({"conv_param": {"pad": -1}}, "conv_param pad must be an integer >= 0, got -1"),
        ({"conv_param": {"pad": 1.0}}, "conv_param pad must be an integer >= 0, got 1.0"),
        ({"weight_decay": -1.0}, "weight decay must be >= 0, got -1.0"),
    ],
)
def test_simple_convnet_checks_each_option_by_name(kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        xpnet.SimpleConvNet(**kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"hidden_size": 0}, "hidden_size must be a positive integer, got 0"),
        ({"output_size": 0}, "output_size must be a positive integer, got 0"),
        ({"batchnorm": 1}, "batchnorm must be True or False, got 1"),
        ({"weight_decay": -1.0}, "weight decay must be >= 0, got -1.0"),
        ({"conv_param_6": {"pad": -1}}, "conv_param pad must be an integer >= 0, got -1"),
        ({"input_dim": (1, 2, 16)}, "input_dim (1, 2, 16) is too small"),
        ({"input_dim": (1, 16, 2)}, "input_dim (1, 16, 2) is too small"),
        (
            {"input_dim": (1, 2, 2)},
            "input_dim (1, 2, 2) is too small for DeepConvNet's convolutions and poolings",
        ),
    ],
)
def test_deep_convnet_checks_each_option_by_name(kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        xpnet.DeepConvNet(**kwargs)


def test_deep_convnet_structure():
    net = xpnet.DeepConvNet(
        (1, 8, 8), hidden_size=6, output_size=3, batchnorm=True, weight_decay=0.5
    )
    kinds = [type(layer).__name__ for layer in net.layers.values()]
    block = ["Convolution", "BatchNormalization", "ReLU"]
    pool = ["Pooling"]
    assert kinds == (block * 2 + pool) * 3 + ["Affine", "BatchNormalization", "ReLU", "Dropout", "Affine"]  # fmt: skip
    shapes = [tuple(net.params[f"W{i}"].shape) for i in range(1, 9)]
    # 8×8 → 8 → 8 → pool 4 → 4 → 6 (pad 2) → pool 3 → 3 → 3 → pool 1
    assert shapes == [(16, 1, 3, 3), (16, 16, 3, 3), (32, 16, 3, 3), (32, 32, 3, 3),
                      (64, 32, 3, 3), (64, 64, 3, 3), (64, 6), (6, 3)]  # fmt: skip
    assert net.layers["Convolution4"].pad == 2
    assert all(p.stride == 2 for n, p in net.layers.items() if n.startswith("Pooling"))
    assert net.layers["Dropout1"].dropout_ratio == 0.5 and net.layers["Dropout1"].seed == 0
    assert net.weight_decay == 0.5
    assert net.config["conv_param_4"] == {"filter_num": 32, "filter_size": 3, "pad": 2, "stride": 1}
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(net.params["W1"], (rng.standard_normal((16, 1, 3, 3)) * math.sqrt(2 / 9)).astype(np.float32), rtol=1e-6)  # fmt: skip
    seeded = xpnet.DeepConvNet((1, 8, 8), hidden_size=6, output_size=3, seed=4, dtype="float64")
    assert seeded.layers["Dropout1"].seed == 4
    rng = np.random.default_rng(4)
    for i, shape in enumerate(shapes, 1):  # He: √(2/fan-in) throughout
        fan_in = shape[1] * 9 if len(shape) == 4 else shape[0]
        expected = rng.standard_normal(shape) * math.sqrt(2 / fan_in)
        np.testing.assert_allclose(seeded.params[f"W{i}"], expected, rtol=1e-12, err_msg=f"W{i}")
    plain = xpnet.DeepConvNet((1, 8, 8), hidden_size=6, output_size=3)
    assert "BatchNormalization1" not in plain.layers and plain.weight_decay == 0.0
    assert plain.sample_ndim == 3 and plain.eval_batch_size == 250


# -- the fused step -----------------------------------------------------------------------------


def test_a_fused_step_leaves_the_loss_and_the_gradients_in_the_network(backend):
    net = hand_net(backend, weight_decay=0.1)
    x = backend.asarray([[1.0, 2.0], [0.0, 0.0]], "float64")
    t = backend.asarray([0, 1], "int64")
    expected = hand_net(backend, weight_decay=0.1)
    expected_loss = expected.forward_backward(x, t)
    step = plan(net)
    if step is None:
        pytest.skip(f"{backend.name} has no fused kernels")
    net.last_layer.loss = None
    loss = step.forward_backward(x, t)
    assert float(loss) == pytest.approx(float(expected_loss), rel=1e-14)
    assert net.last_layer.loss is loss, "the fused step sets the loss layer's loss, as forward does"
    for key, grad in net.grads.items():
        close(grad, to_numpy(expected.grads[key]))
    close(step.predict(x), [[2.0, 2.0], [0.5, 0.5]])


class RecordingStep:
    """A stand-in fast step: records what it is given, answers numbers the layers never give."""

    classes = 2

    def __init__(self, backend):
        self.backend, self.calls = backend, []

    def forward_backward(self, x, t):
        self.calls.append(("forward_backward", to_numpy(x).tolist(), to_numpy(t).tolist()))
        return self.backend.asarray(7.0, "float64")

    def predict(self, x):
        self.calls.append(("predict", to_numpy(x).tolist()))
        return self.backend.asarray([[0.0, 9.0]] * x.shape[0], "float64")


def test_an_installed_fast_step_runs_after_the_checks_and_only_where_asked(backend):
    """Network.fast_step: training passes and evaluations go to it (inputs checked, cast and
    batched first), a training forward and ``layers=True`` go to the layers."""
    net, plain = hand_net(backend), hand_net(backend)
    step = net.fast_step = RecordingStep(backend)
    x = backend.asarray([[1.0, 2.0], [0.0, 0.0]], "float32")  # cast to float64 before the step
    t = backend.asarray([0, 1], "int64")
    assert float(net.forward_backward(x, t)) == 7.0
    assert step.calls == [("forward_backward", [[1.0, 2.0], [0.0, 0.0]], [0, 1])]
    step.calls.clear()
    one = net.gradient(backend.asarray([1.0, 2.0], "float64"), 1)  # one sample, a Python label
    assert step.calls == [("forward_backward", [[1.0, 2.0]], [1])] and list(one) == list(HAND)
    with pytest.raises(ShapeError):
        net.forward_backward(x, backend.asarray([0, 1, 1], "int64"))  # checked before the step
    step.calls.clear()
    assert float(net.forward_backward(x, t, check=False)) == 7.0  # unchecked: as given
    assert step.calls[0][0] == "forward_backward"
    step.calls.clear()
    close(net.predict(x), [[0.0, 9.0], [0.0, 9.0]])
    close(net.predict(backend.asarray([1.0, 2.0], "float64")), [0.0, 9.0])
    assert net.accuracy(x, t) == 0.5  # the step's scores say class 1 for both rows
    assert [c[0] for c in step.calls] == ["predict"] * 3
    step.calls.clear()
    close(net.predict(x, train=True), [[2.0, 2.0], [0.5, 0.5]])  # a training forward: layers
    loss = net.forward_backward(x, t, layers=True)
    assert float(loss) == pytest.approx(float(plain.forward_backward(x, t)), rel=1e-14)
    for key, grad in net.grads.items():
        close(grad, to_numpy(plain.grads[key]))
    assert step.calls == []


def test_only_a_softmax_loss_stack_is_fused(rng):
    W, b = rng.standard_normal((3, 3)), np.zeros(3)

    class OtherLoss(xpnet.SoftmaxWithLoss):
        """A loss layer the fused kernels do not compute."""

    odd = [xpnet.Affine(W, b), xpnet.ReLU(), xpnet.Affine(W, b)]
    assert plan(xpnet.Network(odd)) is not None
    assert plan(xpnet.Network(odd, loss_layer=OtherLoss())) is None
    assert plan(xpnet.Network([xpnet.Affine(W, b), xpnet.ReLU()])) is None


# -- chapters 2 and 3 ---------------------------------------------------------------------------


def test_perceptron_on_its_boundary_and_on_mixed_inputs(backend):
    # w·x + b exactly 0 is not > 0: output 0
    assert xpnet.perceptron(1, 1, 0.5, 0.5, -1.0) == 0
    assert xpnet.perceptron(1.0, 2.0, 0.5, 0.25, -1.0) == 0
    ones = backend.asarray([1.0, 1.0], "float64")
    out = xpnet.perceptron(ones, ones, 0.5, 0.5, backend.asarray([-1.0, -0.5], "float64"))
    assert_on(out, backend, "int64", (2,))
    np.testing.assert_array_equal(to_numpy(out), [0, 1])
    # a number and an array: elementwise, on the array's backend
    mixed = xpnet.AND(1, backend.asarray([0, 1], "int64"))
    assert_on(mixed, backend, "int64", (2,))
    np.testing.assert_array_equal(to_numpy(mixed), [0, 1])
    np.testing.assert_array_equal(to_numpy(xpnet.OR(backend.asarray([0, 1], "int64"), 0)), [0, 1])
    # float64 inputs stay float64: 0.1·1 − 0.1 is 0 there, not float32's 1.5e-9
    assert (
        to_numpy(xpnet.perceptron(backend.asarray([0.1], "float64"), 0.0, 1.0, 1.0, -0.1))[0] == 0
    )
    # integer inputs compute in float32: 0.1 + 0.2 − 0.3 is 0 there (float64 says 5.6e-17)
    ints = backend.asarray([1], "int64")
    assert to_numpy(xpnet.perceptron(ints, ints, 0.1, 0.2, -0.3))[0] == 0


def test_the_slides_gate_weights_on_fractional_inputs():
    """w·x + b with the slides' weights, where another weight would cross 0."""
    assert xpnet.OR(0.3, 0.0) == 0 and xpnet.OR(0.0, 0.3) == 0  # 0.15 − 0.2 < 0
    assert xpnet.OR(0.5, 0.0) == 1 and xpnet.OR(0.0, 0.5) == 1  # 0.25 − 0.2 > 0
    assert xpnet.AND(0.7, 0.6) == 0 and xpnet.AND(0.8, 0.7) == 1  # 0.65, 0.75 vs 0.7
    assert xpnet.NAND(0.7, 0.6) == 1 and xpnet.NAND(0.8, 0.7) == 0


def test_three_layer_network_by_hand(backend):
    """Identity weights make each layer σ(x + b): three nested sigmoids, written out."""
    weights = {
        "W1": [[1.0, 0.0], [0.0, 1.0]], "b1": [0.0, 1.0],
        "W2": [[1.0, 0.0], [0.0, 1.0]], "b2": [1.0, 0.0],
        "W3": [[2.0, 0.0], [0.0, 1.0]], "b3": [0.0, -1.0],
    }  # fmt: skip
    net = xpnet.init_network(backend, weights=weights)
    for key, value in net.items():
        assert_on(value, backend, "float64", np.array(weights[key]).shape)

    def s(v):
        return 1 / (1 + math.exp(-v))

    x = backend.asarray([0.5, -1.0], "float64")
    y = xpnet.forward(net, x)
    assert_on(y, backend, "float64", (2,))
    close(y, [s(2 * s(s(0.5) + 1)), s(s(s(0.0)) - 1)])
    close(xpnet.forward(net, x, xpnet.identity), [2 * s(s(0.5) + 1), s(s(0.0)) - 1])
    assert_on(xpnet.init_network(backend, dtype="float32")["W1"], backend, "float32", (2, 3))
    close(xpnet.init_network(backend)["b3"], [0.1, 0.3])


# -- initializers and gradient checks -----------------------------------------------------------


def test_initializer_names_and_numbers():
    assert xpnet.INITIALIZERS["he"](8, 3) == math.sqrt(2 / 8)
    assert xpnet.INITIALIZERS["xavier"](8, 3) == math.sqrt(1 / 8)
    assert xpnet.INITIALIZERS["lecun"](8, 3) == math.sqrt(1 / 8)
    assert xpnet.INITIALIZERS["glorot"](8, 3) == math.sqrt(2 / 11)
    net = xpnet.MultiLayerNet(4, [3], 2, weight_init=" He ", dtype="float64", seed=5)
    rng = np.random.default_rng(5)
    np.testing.assert_allclose(
        net.params["W1"], rng.standard_normal((4, 3)) * math.sqrt(2 / 4), rtol=1e-12
    )
    np.testing.assert_allclose(
        net.params["W2"], rng.standard_normal((3, 2)) * math.sqrt(2 / 3), rtol=1e-12
    )
    for value, text in [
        (
            "fast",
            "unknown initializer 'fast'; give a std such as 0.01 or one of: xavier, lecun, glorot, he",
        ),
        ("0", "initial weight std must be a positive number, got 0.0"),
        (math.inf, "initial weight std must be a positive number, got inf"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(text)):
            xpnet.MultiLayerNet(4, [3], 2, weight_init=value)
    assert xpnet.MultiLayerNet(4, [3], 2, weight_init="0.5", seed=0).config["weight_init"] == "0.5"


def test_numerical_gradient_and_relative_error_by_hand(backend):
    x = backend.asarray([[1.0, -2.0], [0.5, 3.0]], "float64")
    xp = backend.xp
    grad = xpnet.numerical_gradient(lambda v: xp.sum(v * v * v), x)  # d/dx x³ = 3x²
    assert_on(grad, backend, "float64", (2, 2))
    close(grad, [[3.0, 12.0], [0.75, 27.0]], rtol=1e-8)
    close(x, [[1.0, -2.0], [0.5, 3.0]], rtol=0, atol=0)  # restored exactly
    close(xpnet.numerical_gradient(lambda v: xp.sum(v * v), x, h=1e-3), [[2.0, -4.0], [1.0, 6.0]], rtol=1e-9)  # fmt: skip
    assert xpnet.max_relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.5])) == 0.5 / 2.5
    assert xpnet.max_relative_error(np.array([-4.0, 0.0]), np.array([-4.0, 1.0])) == 1 / 4
    assert xpnet.max_relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert xpnet.max_relative_error(np.zeros(0), np.zeros(0)) == 0.0
    message = "numerical_gradient perturbs x by h = 1e-06, which an array of dtype"
    with pytest.raises(ConfigError, match=re.escape(message)):
        xpnet.numerical_gradient(lambda v: v, backend.asarray([1, 2], "int64"))


def test_the_array_api_code_that_numpy_never_runs_by_hand():
    """The hand-worked cases above on array_api_strict's second device, whatever
    XPNET_TEST_BACKENDS selects, so a NumPy-only run also checks the device of every array the
    networks make."""
    pytest.importorskip("array_api_strict")
    generic = xpnet.resolve("device1", "array_api_strict")
    for test in (
        test_a_two_layer_net_by_hand,
        test_weight_decay_by_hand,
        test_names_of_parameters_buffers_and_layers,
        test_set_params_takes_buffers_too,
        test_count_correct_in_chunks_by_hand,
        test_evaluation_draws_no_dropout_mask_and_keeps_the_running_statistics,
        test_one_sample_and_its_label_in_every_form,
        test_inputs_are_checked_and_cast,
        test_multilayer_net_options_reach_its_layers,
        test_perceptron_on_its_boundary_and_on_mixed_inputs,
        test_three_layer_network_by_hand,
        test_numerical_gradient_and_relative_error_by_hand,
    ):
        test(generic)
