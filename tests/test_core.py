"""One source of truth (the layers own parameters and gradients) and a public API that checks its
input: each test here failed on the design it replaced (flat buffers, unchecked labels...)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import HAS_TORCH, assert_on

import xpnet
from xpnet import TwoLayerNet
from xpnet.backend import gpu_available, to_numpy
from xpnet.data import Dataset
from xpnet.errors import ConfigError, LabelError, ShapeError
from xpnet.fast import plan
from xpnet.training.trainer import TrainConfig, Trainer


def batch(backend, rng, n=8, features=6, classes=3, dtype="float32"):
    x = backend.asarray(rng.standard_normal((n, features)), dtype)
    t = backend.asarray(rng.integers(0, classes, n))
    return x, t


def manual_backward(net, x, t):
    """Chapter 5 by hand: the loss, then each layer's backward in reverse."""
    net.loss(x, t)
    dout = net.last_layer.backward(1.0)
    for layer in reversed(list(net.layers.values())):
        dout = layer.backward(dout)


@pytest.mark.parametrize("path", ["layers", "fused"])
def test_a_backward_pass_by_hand_never_detaches_the_gradients(path, backend, rng):
    """After a manual backward, the next gradient and update still act on the layers' arrays."""
    net = TwoLayerNet(6, 5, 3, weight_init_std=0.5, device=backend, seed=0)
    twin = TwoLayerNet(6, 5, 3, weight_init_std=0.5, device=backend, seed=0)
    x, t = batch(backend, rng)
    manual_backward(net, x, t)
    x2, t2 = batch(backend, rng)
    step = plan(net) if path == "fused" else None
    if path == "fused" and step is None:
        pytest.skip("no fused kernels on this backend")
    (step.forward_backward if step else net.forward_backward)(x2, t2)
    expected = twin.gradient(x2, t2)
    for key, grad in net.grads.items():
        assert grad is getattr(net.layers[f"Affine{key[1:]}"], "d" + key[0])
        np.testing.assert_allclose(to_numpy(grad), to_numpy(expected[key]), rtol=2e-5, atol=1e-7)
    before = {k: to_numpy(v).copy() for k, v in net.params.items()}
    xpnet.SGD(lr=0.1).update(net.params, net.grads)
    for key, param in net.params.items():
        moved = before[key] - 0.1 * to_numpy(expected[key])
        np.testing.assert_allclose(to_numpy(param), moved, rtol=2e-5, atol=1e-7)


def test_the_books_update_idiom_and_optimizer_update_act_on_the_same_arrays(backend, rng):
    net = TwoLayerNet(6, 5, 3, weight_init_std=0.5, device=backend, seed=0)
    x, t = batch(backend, rng)
    layer_W = net.layers["Affine1"].W
    grad = net.gradient(x, t)
    for key in ("W1", "b1", "W2", "b2"):
        net.params[key] -= 0.1 * grad[key]
    assert net.layers["Affine1"].W is layer_W
    np.testing.assert_array_equal(to_numpy(net.params["W1"]), to_numpy(layer_W))


def digits_like(rng, n=240, classes=4, features=16):
    centers = rng.standard_normal((classes, features)) * 2
    t = rng.integers(0, classes, n)
    x = (centers[t] + rng.standard_normal((n, features))).astype(np.float32)
    half = n // 2
    return Dataset("blobs", x[:half], t[:half], x[half:], t[half:], classes, "synthetic")


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_same_run_through_fused_kernels_and_through_the_layers(optimizer, backend, rng):
    """--no-fused reaches the pure layers; both paths train to the same numbers."""
    data = digits_like(rng)
    results = {}
    for fused in (True, False):
        config = TrainConfig(
            device=backend, hidden=[12, 8], optimizer=optimizer, batch_size=20, iters=60,
            dtype="float64", seed=3, fused=fused,
        )  # fmt: skip
        trainer = Trainer(config, data, verbose=False, progress=False, backend=backend)
        has_kernels = plan(trainer.net) is not None
        assert (trainer.fused is not None) == (fused and has_kernels)
        if not has_kernels:
            pytest.skip(f"{backend.name} has no fused kernels: both runs would be the layers'")
        record = trainer.run()
        results[fused] = (record, {k: to_numpy(v) for k, v in trainer.net.params.items()})
    (fast, fast_params), (ref, ref_params) = results[True], results[False]
    assert fast["test_acc"] == ref["test_acc"]
    assert fast["loss"] == pytest.approx(ref["loss"], rel=1e-10)
    for key, value in ref_params.items():
        np.testing.assert_allclose(fast_params[key], value, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("bad", [[0, 3, 1], [0, -1, 1], [0, 7, 2]])
@pytest.mark.parametrize("call", ["loss", "gradient", "accuracy", "forward_backward"])
def test_labels_out_of_range_are_refused_by_every_public_call(call, bad, backend, rng):
    net = TwoLayerNet(6, 5, 3, device=backend)
    x = backend.asarray(rng.standard_normal((3, 6)), "float32")
    t = backend.asarray(np.array(bad))
    with pytest.raises(LabelError, match=r"class labels must lie in 0\.\.2 for 3 classes"):
        getattr(net, call)(x, t)


def test_float_class_labels_are_refused(backend, rng):
    net = TwoLayerNet(6, 5, 3, device=backend)
    x = backend.asarray(rng.standard_normal((3, 6)), "float32")
    with pytest.raises(LabelError, match="must be integers"):
        net.gradient(x, backend.asarray(np.array([0.0, 1.0, 2.0]), "float32"))


@pytest.mark.parametrize("dtype", ["int32", "int64", "bool", "float16"])
def test_networks_need_a_floating_dtype(dtype):
    with pytest.raises(ConfigError, match="dtype"):
        TwoLayerNet(4, 3, 2, dtype=dtype)


def test_a_network_of_integer_layers_is_refused():
    from xpnet import Affine, Network

    with pytest.raises(ConfigError, match="floating dtype"):
        Network([Affine(np.ones((2, 2), dtype=np.int64), np.zeros(2, dtype=np.int64))])


@pytest.mark.parametrize("call", ["predict", "loss", "gradient", "accuracy"])
def test_an_empty_batch_is_a_clear_error(call, backend):
    net = TwoLayerNet(6, 5, 3, device=backend)
    x = backend.zeros((0, 6))
    t = backend.asarray(np.zeros(0, dtype=np.int64))
    with pytest.raises(ShapeError, match="the batch is empty"):
        net.predict(x) if call == "predict" else getattr(net, call)(x, t)


def test_one_sample_is_a_batch_of_one_as_in_the_book(backend, rng):
    net = TwoLayerNet(6, 5, 3, weight_init_std=0.5, device=backend, seed=1)
    xs = backend.asarray(rng.standard_normal((4, 6)), "float32")
    ts = backend.asarray(np.array([0, 2, 1, 1]))
    one = xs[1, ...]
    scores = net.predict(one)
    assert_on(scores, backend, "float32", (3,))
    np.testing.assert_allclose(to_numpy(scores), to_numpy(net.predict(xs))[1], rtol=1e-6)
    loss = net.loss(one, ts[1], train=False)
    assert_on(loss, backend, "float32", ())
    onehot = xpnet.one_hot(ts, 3)[1, ...]
    assert float(net.loss(one, onehot, train=False)) == pytest.approx(float(loss), rel=1e-6)
    with pytest.raises(ShapeError, match=r"expects 6 input features per sample, got an input of shape \(1, 7\)"):  # fmt: skip
        net.predict(backend.asarray(rng.standard_normal(7), "float32"))


def test_numerical_gradient_refuses_integer_arrays():
    x = np.array([1, 2])
    with pytest.raises(ConfigError, match="float64"):
        xpnet.numerical_gradient(lambda v: np.sum(v**2), x)
    grad = xpnet.numerical_gradient(lambda v: np.sum(v**2), x.astype(np.float64))
    np.testing.assert_allclose(grad, [2.0, 4.0], rtol=1e-6)


def test_load_model_keeps_the_saved_dtype(tmp_path):
    net = TwoLayerNet(6, 5, 3, dtype="float64", seed=4)
    xpnet.save_checkpoint(tmp_path / "m.npz", net)
    loaded = xpnet.load_model(tmp_path / "m.npz")
    assert loaded.dtype == np.float64
    np.testing.assert_array_equal(loaded.params["W1"], net.params["W1"])
    assert xpnet.load_model(tmp_path / "m.npz", dtype="float32").dtype == np.float32


def read_only(*arrays):
    for a in arrays:
        a.flags.writeable = False
    return arrays


def test_user_arrays_are_never_written(rng, tmp_path):
    """Read-only NumPy inputs through every public function, layer and training step."""
    x, W, b = read_only(rng.standard_normal((5, 4)), rng.standard_normal((4, 3)), np.zeros(3))
    (t,) = read_only(rng.integers(0, 3, 5))
    (onehot,) = read_only(np.eye(3)[t])
    for f in (xpnet.sigmoid, xpnet.relu, xpnet.tanh, xpnet.step_function, xpnet.softmax,
              xpnet.log_softmax, xpnet.identity):  # fmt: skip
        f(x)
    xpnet.cross_entropy_error(xpnet.softmax(x[:, :3]), t)
    xpnet.cross_entropy_error(xpnet.softmax(x[:, :3]), onehot)
    xpnet.one_hot(t, 3)
    xpnet.AND(x[:, 0], x[:, 1])
    xpnet.forward(xpnet.init_network(), x[0, :2])
    for layer in (xpnet.Affine(W, b), xpnet.ReLU(), xpnet.Sigmoid(), xpnet.Tanh()):
        y = layer.forward(x[:, :3] if not isinstance(layer, xpnet.Affine) else x)
        layer.backward(np.ones_like(y))
    loss_layer = xpnet.SoftmaxWithLoss()
    loss_layer.forward(x[:, :3], t)
    loss_layer.backward()
    net = xpnet.Network([xpnet.Affine(W, b), xpnet.ReLU(), xpnet.Affine(np.eye(3), b)])
    for call in ("loss", "gradient", "accuracy", "forward_backward"):
        getattr(net, call)(x, t)
    net.predict(x)
    for name in xpnet.OPTIMIZERS:
        xpnet.make_optimizer(name).update(net.params, net.grads)
    data = Dataset("ro", *read_only(np.repeat(x, 8, 0).astype(np.float32)), *read_only(np.repeat(t, 8)),
                   *read_only(x.astype(np.float32)), t, 3, "read-only arrays")  # fmt: skip
    Trainer(TrainConfig(hidden=[4], batch_size=5, iters=10), data, tmp_path, verbose=False).run()
    assert not any(a.flags.writeable for a in (x, W, b, t, onehot))


# -- GPU paths: these run where a GPU is, and skip (with the reason) elsewhere --------------


SYNC_CHECK = """
import sys
import numpy as np
import torch
from xpnet.data import Dataset
from xpnet.training.trainer import TrainConfig, Trainer

optimizer, device = sys.argv[1:]
rng = np.random.default_rng(0)
x = rng.standard_normal((400, 20)).astype(np.float32)
t = rng.integers(0, 5, 400)
data = Dataset("blobs", x, t, x[:100], t[:100], 5, "synthetic")
config = TrainConfig(device=device, backend="torch", hidden=[16], optimizer=optimizer,
                     batch_size=20, iters=40, log_every=20)
trainer = Trainer(config, data, verbose=False, progress=False)
assert trainer.fused is not None
trainer.advance(5)  # first steps: kernels, caches, optimizer state
if device == "cuda":
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any host-GPU synchronization now raises
trainer.advance(19)  # steps 5..18 cross no epoch boundary (20 per epoch)
print("no synchronization in", trainer.iteration - 5, "steps")
"""


@pytest.mark.gpu
@pytest.mark.torch
@pytest.mark.skipif(not (HAS_TORCH and gpu_available("torch")), reason="needs torch with CUDA")
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_torch_training_steps_never_synchronize_with_the_host(optimizer):
    """The Trainer's steps (gather, fused step, update) under torch's sync debug mode "error".

    In a subprocess: the debug mode is process-wide state that must not leak into other tests.
    """
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", SYNC_CHECK, optimizer, "cuda"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "no synchronization in 14 steps" in done.stdout
