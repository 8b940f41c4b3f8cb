"""The convolutional fast path (xpnet.fast.ConvStep) gives the layers' numbers, bit for bit.

The layers are run with BLAS on one thread, as the step runs its products: OpenBLAS rounds some
products differently on two threads (see xpnet.fast.threads). Every comparison is exact: the step
computes each number with the same operations as the layers (ReLU after pooling commutes exactly;
the products split over threads keep each entry one dot product, in pieces large enough that
OpenBLAS computes them with the same kernel as the whole, starting at whole tiles of rows:
threads.row_quantum).
"""

import numpy as np
import pytest
from conftest import assert_on
from threadpoolctl import threadpool_info, threadpool_limits

import xpnet
import xpnet.fast
from xpnet import DeepConvNet, SimpleConvNet
from xpnet.errors import ConfigError, LabelError
from xpnet.fast import ConvStep, plan, set_threads
from xpnet.fast import threads as threads_module
from xpnet.nn.network import Network

# the split products give the whole products' bits on OpenBLAS (MIN_PIECE); another BLAS may
# round a piece differently, and is held to float rounding instead
OPENBLAS = any(i.get("internal_api") == "openblas" for i in threadpool_info())


def same(a, b, what=""):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, what
    if OPENBLAS:
        assert np.array_equal(a, b), f"{what}: differs by {np.abs(a - b).max()}"
    else:
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=what)


@pytest.fixture(params=[1, 2, 3], ids=lambda n: f"{n}-threads")
def threads(request):
    workers = set_threads(request.param)
    yield workers
    set_threads(None)


def images(rng, n, shape, dtype="float32"):
    """Images with constant regions (so convolutions give equal values, and pooling windows ties)."""
    x = rng.random((n, *shape)).astype(dtype)
    x[:, :, : shape[1] // 3] = 0.0
    x[: n // 2, :, :, : shape[2] // 4] = 0.5
    return x


def layers_reference(net, x, t):
    """(loss, grads, scores) of the layers, with BLAS on one thread; the random state of dropout
    restored afterwards, so that the step draws the same masks."""
    states = net.layer_states
    with threadpool_limits(1, user_api="blas"):
        loss = net.forward_backward(x, t, layers=True)
        grads = {k: g.copy() for k, g in net.grads.items()}
        scores = net.predict(x)
    net.set_layer_states(states)
    return loss, grads, scores


def assert_step_matches_the_layers(net, step, x, t):
    loss_ref, grads_ref, scores_ref = layers_reference(net, x, t)
    loss = step.forward_backward(x, t)
    same(loss, loss_ref, "loss")
    for key, grad in net.grads.items():  # the arrays the step left in the layers
        same(grad, grads_ref[key], key)
    same(step.predict(x), scores_ref, "scores")


def simple_nets():
    """SimpleConvNet as the book has it, and with odd sizes, padding, stride, float64, decay."""
    odd = {"filter_num": 7, "filter_size": 3, "pad": 1, "stride": 2}
    return [
        (SimpleConvNet(weight_init_std="he", seed=1), (1, 28, 28), 37),
        (SimpleConvNet((3, 11, 13), odd, 9, 5, "he", 0.1, dtype="float64", seed=2), (3, 11, 13), 6),
        (SimpleConvNet((2, 9, 9), {"filter_size": 2}, 8, 4, "he", seed=3), (2, 9, 9), 300),
    ]


@pytest.mark.parametrize("case", range(3))
def test_simple_convnet_step_is_the_layers_step(case, threads, rng):
    net, shape, n = simple_nets()[case]
    for key, value in net.params.items():  # biases > 0: constant regions tie at the maximum
        if key.startswith("b"):
            value += 0.05
    step = plan(net)
    assert type(step) is ConvStep
    dtype = net.params["W1"].dtype
    for size in (n, n // 2 + 1, n):  # a new batch size, then the first again (kept buffers)
        x = images(rng, size, shape, dtype)
        t = rng.integers(0, net.params[f"b{len(net.params) // 2}"].shape[0], size)
        assert_step_matches_the_layers(net, step, x, t)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_deep_convnet_step_is_the_layers_step(dtype, threads, rng):
    net = DeepConvNet(seed=4, dtype=dtype, weight_decay=0.01)
    step = plan(net)
    assert type(step) is ConvStep
    kinds = [type(s).__name__ for s in step.stages]
    assert kinds == ["ConvBlock"] * 6 + ["_Dense", "_Layer"]  # the Dropout runs as itself
    assert [s.pool for s in step.stages[:6]] == [False, True] * 3
    for size in (16, 5):
        x, t = images(rng, size, (1, 28, 28), dtype), rng.integers(0, 10, size)
        assert_step_matches_the_layers(net, step, x, t)


def test_the_step_splits_the_work_where_it_is_large(rng):
    set_threads(2)
    try:
        net = SimpleConvNet(seed=5)
        step = plan(net)
        step.forward_backward(images(rng, 100, (1, 28, 28)), rng.integers(0, 10, 100))
        assert step.stages[0]._saved["parts"] == [(0, 50), (50, 100)]
        step.forward_backward(images(rng, 4, (1, 28, 28)), rng.integers(0, 10, 4))
        assert step.stages[0]._saved["parts"] == [(0, 4)], "a small product stays whole"
    finally:
        set_threads(None)


def test_one_hot_labels_and_weight_decay(rng):
    net = SimpleConvNet((1, 12, 12), hidden_size=6, output_size=3, weight_decay=0.2, seed=6)
    step = plan(net)
    x = images(rng, 5, (1, 12, 12))
    t = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 5)]
    assert_step_matches_the_layers(net, step, x, t)


def test_plan_on_every_backend(backend):
    """NumPy has the convolution block; elsewhere the layers run (no fast path to compare)."""
    net = SimpleConvNet((1, 10, 10), hidden_size=5, device=backend)
    step = plan(net)
    if backend.name == "numpy":
        assert type(step) is ConvStep
    else:
        assert step is None


def test_plan_refuses_networks_without_a_convolution_block(rng):
    W, b = rng.standard_normal((4, 4)).astype(np.float32), np.zeros(4, np.float32)
    assert plan(DeepConvNet(batchnorm=True)) is None  # conv → batch norm → ReLU
    assert ConvStep.plan(Network([xpnet.Affine(W, b), xpnet.ReLU(), xpnet.Affine(W, b)]),
                         xpnet.fast.kernels_for(np)) is None  # fmt: skip


def test_the_book_readers_loop_with_plan(rng):
    """net.gradient then optimizer.update, as the book writes it, gives the same weights."""
    x, t = images(rng, 60, (1, 28, 28)), rng.integers(0, 10, 60)
    plain, fast = SimpleConvNet(seed=7), SimpleConvNet(seed=7)
    opt_plain, opt_fast = xpnet.Adam(lr=0.01), xpnet.Adam(lr=0.01)
    step = xpnet.fast.install(fast, opt_fast)
    assert fast.fast_step is step and opt_fast.kernels is xpnet.fast.optimizer_kernel
    with threadpool_limits(1, user_api="blas"):
        for _ in range(3):
            opt_plain.update(plain.params, plain.gradient(x, t))
    for _ in range(3):
        opt_fast.update(fast.params, fast.gradient(x, t))
    for key in plain.params:
        same(fast.params[key], plain.params[key], key)
    assert fast.accuracy(x, t) == plain.accuracy(x, t)
    same(fast.predict(x[0]), plain.predict(x[0]), "one sample's scores")
    assert_on(fast.predict(x[0]), xpnet.resolve("cpu"), "float32", (10,))
    with pytest.raises(LabelError, match=r"0\.\.9"):
        fast.gradient(x, t + 1)  # labels are checked before the step runs
    xpnet.fast.uninstall(fast, opt_fast)
    assert fast.fast_step is None and opt_fast.kernels is None


def test_plan_returns_none_and_keeps_the_layers_without_kernels(monkeypatch):
    monkeypatch.setenv("XPNET_FUSED", "0")
    net, opt = SimpleConvNet((1, 10, 10)), xpnet.Adam()
    assert xpnet.fast.install(net, opt) is None
    assert net.fast_step is None and opt.kernels is None


def test_the_trainer_takes_the_conv_step_and_writes_the_same_run(tmp_path):
    pytest.importorskip("sklearn")
    from xpnet.data import load_dataset
    from xpnet.training.trainer import TrainConfig, Trainer

    data = load_dataset("digits")
    runs = {}
    for fused in (True, False):
        config = TrainConfig(model="simple-cnn", iters=30, batch_size=50, log_every=10, fused=fused)
        trainer = Trainer(config, data, tmp_path / str(fused), verbose=False, progress=False)
        assert (type(trainer.fused) is ConvStep) == fused
        trainer.run()
        runs[fused] = trainer
    for a, b in zip(runs[True].history, runs[False].history, strict=True):
        assert {k: v for k, v in a.items() if k != "seconds"} == {
            k: v for k, v in b.items() if k != "seconds"
        }
    for key, value in runs[True].net.params.items():
        assert np.array_equal(value, runs[False].net.params[key]), key


# -- the worker threads and the split Adam -------------------------------------------------------


def test_workers_split_rows_and_wait_for_every_part(monkeypatch):
    w = threads_module.Workers(3)
    assert w.parts(10) == [(0, 3), (3, 6), (6, 10)]
    assert w.parts(2) == [(0, 1), (1, 2)]
    assert w.parts(0) == [(0, 0)]  # one empty range: the work runs once, on nothing
    piece = threads_module.MIN_PIECE
    monkeypatch.setattr(threads_module, "row_quantum", lambda dtype: 1)
    assert w.parts(10, product=piece * 2, dtype=np.float32) == [(0, 5), (5, 10)]
    assert w.parts(10, product=5, dtype=np.float32) == [(0, 10)]
    # a product split at whole tiles of rows: 12 rows (OpenBLAS's float32 kernels on one CPU)
    monkeypatch.setattr(threads_module, "row_quantum", lambda dtype: 12)
    assert w.parts(26, product=piece * 3, dtype=np.float32) == [(0, 12), (12, 24), (24, 26)]
    assert w.parts(100, product=piece * 2, dtype=np.float32, unit=784) == [(0, 51), (51, 100)]
    assert w.parts(100, product=piece * 2, dtype=np.float32, unit=576) == [(0, 50), (50, 100)]
    assert w.parts(10, product=piece * 2, dtype=np.float32) == [(0, 10)]  # under one tile
    monkeypatch.setattr(threads_module, "row_quantum", lambda dtype: None)  # no split keeps bits
    assert w.parts(100, product=piece * 3, dtype=np.float32) == [(0, 100)]
    monkeypatch.undo()
    seen = []
    assert w.run(lambda p: seen.append(p) or p[0], w.parts(9)) == [0, 3, 6]
    assert sorted(seen) == w.parts(9)

    def fail(part):
        if part[0] == 3:
            raise RuntimeError("part 3")
        return part

    with pytest.raises(RuntimeError, match="part 3"):
        w.run(fail, w.parts(9))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_product_split_at_the_row_quantum_has_the_whole_products_bits(dtype):
    """row_quantum, probed on one shape, holds on others: pieces of a product split by rows at
    odd multiples of it (not multiples of a larger tile) are the whole product's rows."""
    q = threads_module.row_quantum(np.dtype(dtype))
    if q is None:
        pytest.skip(f"no split by rows gives this BLAS's {dtype} bits: products are not split")
    rng = np.random.default_rng(5)
    x, w = (
        rng.standard_normal((1200, 700)).astype(dtype),
        rng.standard_normal((700, 40)).astype(dtype),
    )
    with threadpool_limits(1, user_api="blas"):
        whole = x @ w
        for cut in (q * ((600 // q) | 1), q * ((400 // q) | 1)):
            same(x[:cut] @ w, whole[:cut], f"rows before {cut}")
            same(x[cut:] @ w, whole[cut:], f"rows from {cut}")


def test_xpnet_threads_sets_the_number_of_threads(monkeypatch):
    monkeypatch.setenv("XPNET_THREADS", "3")
    assert threads_module.default_threads() == 3
    monkeypatch.setenv("XPNET_THREADS", "zero")
    with pytest.raises(ConfigError, match="XPNET_THREADS must be a positive integer"):
        threads_module.default_threads()


@pytest.mark.parametrize("options", [{}, {"weight_decay": 0.1}])
def test_adam_split_over_threads_is_the_plain_rule(options, threads, rng):
    fast, plain = xpnet.AdamW(0.01, **options), xpnet.AdamW(0.01, **options)
    fast.kernels = xpnet.fast.optimizer_kernel
    shape = (431, 257)  # above SPLIT_UPDATE: split into the workers' ranges
    start = rng.standard_normal(shape).astype(np.float32)
    p_fast, p_plain = {"W": start.copy()}, {"W": start.copy()}
    for _ in range(3):
        g = {"W": rng.standard_normal(shape).astype(np.float32)}
        fast.update(p_fast, g)
        plain.update(p_plain, g)
    assert np.array_equal(p_fast["W"], p_plain["W"])
    for slot in ("exp_avg", "exp_avg_sq"):
        assert np.array_equal(fast.state[slot]["W"], plain.state[slot]["W"])
