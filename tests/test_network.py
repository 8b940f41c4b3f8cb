"""TwoLayerNet and MultiLayerNet: gradients, backends, a training step, and the errors users hit."""

import numpy as np
import pytest
from conftest import HAS_TORCH, assert_on

import xpnet
from xpnet import MultiLayerNet, TwoLayerNet, max_relative_error, numerical_gradient
from xpnet.backend import to_numpy
from xpnet.errors import BackendError, ConfigError, LabelError, ShapeError
from xpnet.fast import plan


def small_batch(backend, rng, n=6, features=8, classes=4, dtype="float64"):
    x = backend.asarray(rng.standard_normal((n, features)), dtype)
    t = backend.asarray(rng.integers(0, classes, n))
    return x, t


def gradients(net, x, t, path):
    """The gradients by the layers (the book's `gradient`) or by the fused step."""
    if path == "layers":
        return net.gradient(x, t)
    step = plan(net)
    if step is None:
        pytest.skip(f"{net.backend.name} has no fused kernels")
    step.forward_backward(x, t)
    return net.grads


@pytest.mark.parametrize("path", ["layers", "fused"])
@pytest.mark.parametrize("labels", ["int", "onehot"])
def test_two_layer_net_gradient_matches_numerical(labels, path, backend, rng):
    net = TwoLayerNet(8, 5, 4, weight_init_std=1.0, device=backend, dtype="float64", seed=3)
    x, t = small_batch(backend, rng)
    if labels == "onehot":
        t = xpnet.one_hot(t, 4, dtype=backend.dtype("float64"))
    grads = gradients(net, x, t, path)
    assert set(grads) == {"W1", "b1", "W2", "b2"}
    for key, param in net.params.items():
        assert_on(grads[key], backend, "float64", param.shape)
        numeric = numerical_gradient(lambda _: net.loss(x, t, train=False), param)
        assert max_relative_error(grads[key], numeric) < 1e-6, key


@pytest.mark.parametrize("path", ["layers", "fused"])
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_multilayer_net_with_weight_decay_gradient_matches_numerical(
    activation, path, backend, rng
):
    net = MultiLayerNet(
        8, [6, 5, 4], 3, activation, weight_init="he", weight_decay=0.1,
        device=backend, dtype="float64", seed=1,
    )  # fmt: skip
    # nonzero biases: with zero biases a sample whose first hidden layer is all dead puts the next
    # pre-activation exactly on ReLU's kink, where a central difference is meaningless
    net.set_params(
        {
            k: backend.asarray(rng.standard_normal(v.shape), "float64") if k.startswith("b") else v
            for k, v in net.params.items()
        }
    )
    x, t = small_batch(backend, rng, classes=3)
    grads = gradients(net, x, t, path)
    assert [k for k in grads] == ["W1", "b1", "W2", "b2", "W3", "b3", "W4", "b4"]
    for key, param in net.params.items():
        numeric = numerical_gradient(lambda _: net.loss(x, t, train=False), param)
        assert max_relative_error(grads[key], numeric) < 1e-6, key


def test_same_seed_gives_same_initial_weights_on_every_backend(backend):
    reference = TwoLayerNet(784, 50, 10, seed=7)
    net = TwoLayerNet(784, 50, 10, device=backend, seed=7)
    for key, param in net.params.items():
        assert_on(param, backend, "float32", reference.params[key].shape)
        np.testing.assert_array_equal(to_numpy(param), reference.params[key])
    assert float(np.std(reference.params["W1"])) == pytest.approx(0.01, rel=0.02)
    assert not np.any(reference.params["b1"])


def test_training_step_stays_on_backend_and_learns(backend, rng):
    """Forward, backward and SGD on the backend's own arrays, no conversion to NumPy inside."""
    net = TwoLayerNet(8, 16, 4, device=backend, seed=0, weight_init_std=0.5)
    centers = rng.standard_normal((4, 8)) * 3
    labels = rng.integers(0, 4, 64)
    x = backend.asarray(centers[labels] + rng.standard_normal((64, 8)) * 0.3, "float32")
    t = backend.asarray(labels)
    opt = xpnet.SGD(lr=0.5)
    params_before = net.params
    first = net.forward_backward(x, t)
    for _ in range(50):
        loss = net.forward_backward(x, t)
        opt.update(net.params, net.grads)
    assert_on(loss, backend, "float32", ())
    for key, param in net.params.items():
        assert param is params_before[key], "SGD must update the layer's own arrays in place"
        assert_on(param, backend, "float32")
    assert float(loss) < 0.2 * float(first)
    assert net.accuracy(x, t) > 0.95
    assert_on(net.predict(x), backend, "float32", (64, 4))
    assert_on(net.count_correct(x, t), backend, "int64", ())


def test_accuracy_with_one_hot_labels_and_chunks(backend, rng):
    net = TwoLayerNet(8, 5, 4, device=backend, seed=0)
    x, t = small_batch(backend, rng, n=25, dtype="float32")
    onehot = xpnet.one_hot(t, 4)
    scores = to_numpy(net.predict(x))
    expected = float(np.mean(scores.argmax(1) == to_numpy(t)))
    assert net.accuracy(x, t) == expected
    assert net.accuracy(x, onehot, batch_size=7) == expected


def test_accuracy_runs_one_forward_per_chunk_and_checks_labels_first(backend, rng):
    net = TwoLayerNet(8, 5, 4, device=backend, seed=0)
    x, t = small_batch(backend, rng, n=25, dtype="float32")
    first = net.layers["Affine1"]
    calls = []
    forward = first.forward
    first.forward = lambda xb, train=False: calls.append(xb.shape[0]) or forward(xb, train)
    net.accuracy(x, t, batch_size=10)
    assert calls == [10, 10, 5]
    calls.clear()
    bad = backend.asarray(np.full(25, 4))
    with pytest.raises(LabelError, match=r"must lie in 0\.\.3 for 4 classes"):
        net.accuracy(x, bad, batch_size=10)
    assert calls == [10], "the labels are refused after the first chunk, before any is compared"


def test_accuracy_of_one_sample_with_one_label(backend, rng):
    """One sample (no batch axis) with its label as a 0-d array, a Python int or shape (1,)."""
    net = TwoLayerNet(8, 5, 4, device=backend, seed=0)
    x, _ = small_batch(backend, rng, n=1, dtype="float32")
    sample = x[0, ...]
    top = int(np.argmax(to_numpy(net.predict(sample))))
    wrong = (top + 1) % 4
    for label, expected in ((top, 1.0), (wrong, 0.0)):
        assert net.accuracy(sample, label) == expected
        assert net.accuracy(sample, backend.asarray(np.array(label))) == expected
        assert net.accuracy(sample, backend.asarray(np.array([label]))) == expected
        assert int(net.count_correct(sample, label)) == int(expected)


def test_softmax_with_loss_refuses_labels_of_another_library(rng):
    torch = pytest.importorskip("torch")
    layer = xpnet.SoftmaxWithLoss()
    scores = rng.standard_normal((4, 3)).astype(np.float32)
    for labels in (torch.eye(3)[[0, 1, 2, 0]], torch.tensor([0, 1, 2, 0])):
        with pytest.raises(
            BackendError, match=r"the labels are a torch\.Tensor but the scores are"
        ):
            layer.forward(scores, labels)


def test_input_dtype_is_cast_to_the_network_dtype(backend, rng):
    net = TwoLayerNet(8, 5, 4, device=backend)
    x, _ = small_batch(backend, rng, dtype="float64")
    assert_on(net.predict(x), backend, "float32", (6, 4))


def test_wrong_feature_count_names_the_layer(backend, rng):
    net = TwoLayerNet(8, 5, 4, device=backend)
    x, t = small_batch(backend, rng, features=9)
    with pytest.raises(
        ShapeError,
        match=r"Affine1 expects 8 input features per sample, got an input of shape \(6, 9\)",
    ):
        net.loss(x, t)


def test_labels_that_do_not_fit_the_scores(backend, rng):
    net = TwoLayerNet(8, 5, 4, device=backend)
    x, _ = small_batch(backend, rng)
    with pytest.raises(ShapeError, match="labels of shape"):
        net.loss(x, backend.asarray(np.zeros((6, 3)), "float32"))
    with pytest.raises(LabelError, match="class labels must be integers, got dtype"):
        net.loss(x, backend.asarray(np.zeros(6), "float32"))


def test_mixing_backends_is_a_clear_error(backend, rng):
    if backend.name == "numpy":
        net = TwoLayerNet(8, 5, 4, device="cpu", backend="array_api_strict")
        x = rng.standard_normal((2, 8))
    else:
        net = TwoLayerNet(8, 5, 4, device=backend)
        x = rng.standard_normal((2, 8))
    with pytest.raises(BackendError, match="move the input"):
        net.predict(x)


def test_mixing_devices_is_a_clear_error(rng):
    pytest.importorskip("array_api_strict")
    net = TwoLayerNet(8, 5, 4, device="device1", backend="array_api_strict")
    x = xpnet.resolve("cpu", "array_api_strict").asarray(rng.standard_normal((2, 8)), "float32")
    with pytest.raises(BackendError, match="on device"):
        net.predict(x)


def test_set_params_copies_in_place_and_checks_names_and_shapes(backend):
    net = TwoLayerNet(8, 5, 4, device=backend)
    before = net.params
    new = {k: backend.asarray(np.full(tuple(v.shape), 0.5), "float32") for k, v in before.items()}
    net.set_params(new)
    for key, param in net.params.items():
        assert param is before[key], "set_params keeps the arrays (views, optimizer references)"
        np.testing.assert_array_equal(to_numpy(param), 0.5)
    assert net.layers["Affine1"].W is before["W1"]
    with pytest.raises(ShapeError, match=r"W1 has shape \(8, 5\)"):
        net.set_params({**new, "W1": backend.zeros((8, 6))})
    with pytest.raises(ShapeError, match="parameter names differ"):
        net.set_params({"W1": new["W1"]})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"activation": "relux"}, "unknown activation 'relux'; choose one of: relu, sigmoid, tanh"),
        ({"weight_init": "kaiming"}, "unknown initializer 'kaiming'"),
        ({"weight_init": -1.0}, "must be a positive number"),
        ({"weight_decay": -0.1}, "weight decay must be >= 0"),
    ],
)
def test_bad_network_options(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        MultiLayerNet(8, [5], 4, **kwargs)


def test_bad_layer_sizes():
    with pytest.raises(ConfigError, match="positive integers"):
        TwoLayerNet(784, 0, 10)


def test_initializer_scales():
    for init, expected in (
        ("he", np.sqrt(2 / 400)),
        ("xavier", np.sqrt(1 / 400)),
        ("glorot", np.sqrt(2 / 700)),
        ("0.05", 0.05),
    ):
        net = MultiLayerNet(400, [300], 10, weight_init=init, seed=0)
        assert float(np.std(net.params["W1"])) == pytest.approx(expected, rel=0.02), init


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_two_layer_net_gradient_matches_torch_autograd(rng):
    import torch

    net = TwoLayerNet(784, 50, 10, weight_init_std=0.1, dtype="float64", seed=0)
    x = rng.random((100, 784))
    t = rng.integers(0, 10, 100)
    grads = net.gradient(x, t)
    loss = net.last_layer.loss

    p = {k: torch.tensor(v, requires_grad=True) for k, v in net.params.items()}
    h = torch.relu(torch.tensor(x) @ p["W1"] + p["b1"])
    lt = torch.nn.functional.cross_entropy(h @ p["W2"] + p["b2"], torch.tensor(t))
    lt.backward()
    assert float(loss) == pytest.approx(lt.item(), rel=1e-13)
    for key in p:
        np.testing.assert_allclose(grads[key], p[key].grad.numpy(), rtol=1e-10, atol=1e-14)


def test_a_network_of_given_layers_copies_them_and_never_writes_them(rng):
    from xpnet import Affine, Network, ReLU

    W1, b1 = rng.standard_normal((4, 3)), np.zeros(3)
    W2, b2 = rng.standard_normal((3, 2)), np.zeros(2)
    given = [a.copy() for a in (W1, b1, W2, b2)]
    net = Network([Affine(W1, b1), ReLU(), Affine(W2, b2)])
    assert net.params["W1"] is not W1
    np.testing.assert_array_equal(net.params["W1"], W1)
    x, t = rng.standard_normal((5, 4)), rng.integers(0, 2, 5)
    net.forward_backward(x, t)
    xpnet.SGD(lr=0.5).update(net.params, net.grads)
    for a, b in zip((W1, b1, W2, b2), given, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("batchnorm, dropout", [(True, 0.0), (False, 0.4), (True, 0.3)])
def test_multilayer_net_with_batchnorm_and_dropout_gradient_matches_numerical(
    batchnorm, dropout, backend, rng
):
    """Chapter 6's MultiLayerNetExtend; the numerical loss replays the same dropout masks."""
    net = MultiLayerNet(
        7, [6, 5], 3, "relu", "he", 0.01, batchnorm, dropout, device=backend, dtype="float64",
        seed=2,
    )  # fmt: skip
    # nonzero biases: a sample whose units are all dropped would sit on ReLU's kink
    net.set_params(
        {
            k: backend.asarray(rng.standard_normal(v.shape), "float64") if k[0] == "b" else v
            for k, v in net.params.items()
        }
    )
    x, t = small_batch(backend, rng, n=10, features=7, classes=3)
    state = net.layer_states
    grads = net.gradient(x, t)
    if dropout:
        assert all(s["calls"] == 1 for s in net.layer_states.values())

    def loss(_):
        net.set_layer_states(state)  # the masks of the gradient's forward pass
        return net.loss(x, t, train=True)

    for key, param in net.params.items():
        assert_on(grads[key], backend, "float64", param.shape)
        numeric = numerical_gradient(loss, param)
        if batchnorm and key in ("b1", "b2"):  # batch norm subtracts the mean: exactly zero
            assert np.abs(to_numpy(grads[key])).max() < 1e-12
            assert np.abs(to_numpy(numeric)).max() < 1e-8
            continue
        assert max_relative_error(grads[key], numeric) < 1e-6, key
    assert ("gamma1" in grads) == batchnorm
    rebuilt = MultiLayerNet(**{k: v for k, v in net.config.items() if k != "model"}, seed=2)
    assert [type(layer).__name__ for layer in rebuilt.layers.values()] == [
        type(layer).__name__ for layer in net.layers.values()
    ]


def test_numpy_integer_layer_sizes_are_integers(backend):
    import json

    net = MultiLayerNet(np.int64(4), [np.int32(3), np.uint8(5)], np.int64(2), device=backend)
    assert net.sizes == [4, 3, 5, 2] and all(type(n) is int for n in net.sizes)
    assert json.loads(json.dumps(net.config)) == net.config
    assert_on(net.predict(backend.asarray(np.zeros((1, 4)), "float32")), backend, "float32", (1, 2))
    for bad in ([3.0], [True], ["3"]):
        with pytest.raises(ConfigError, match="layer sizes must be positive integers"):
            MultiLayerNet(4, bad, 2, device=backend)
