"""The fast path (xpnet.fast) gives the layers' numbers, in the layers' own arrays."""

import numpy as np
import pytest
from conftest import assert_on

from xpnet.backend import to_numpy
from xpnet.fast import (
    NumpyKernels,
    check,
    kernels_for,
    optimizer_kernel,
    plan,
    registry,
    self_check,
)
from xpnet.nn.mlp import MultiLayerNet, TwoLayerNet
from xpnet.nn.optimizers import make_optimizer

TOL = {"float64": 1e-12, "float32": 3e-5}


def close(a, b, dtype, what=""):
    a, b = to_numpy(a).astype(np.float64), to_numpy(b).astype(np.float64)
    scale = max(np.abs(b).max(initial=0.0), 1e-30)
    assert np.abs(a - b).max(initial=0.0) <= TOL[dtype] * scale, what


def net_for(backend, activation, dtype, weight_decay=0.05):
    return MultiLayerNet(
        12, [9, 7], 5, activation, "he", weight_decay, device=backend, dtype=dtype, seed=2
    )


def plan_or_skip(net):
    step = plan(net)
    if step is None:
        pytest.skip(f"{net.backend.name} has no fused kernels: the layers are its only path")
    return step


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_fused_step_matches_the_layers(activation, dtype, backend, rng):
    net = net_for(backend, activation, dtype)
    step = plan_or_skip(net)
    x = backend.asarray(rng.standard_normal((6, 3, 2, 2)), dtype)  # 4-D input: flattened by both
    t = backend.asarray(rng.integers(0, 5, 6))
    loss_ref = net.forward_backward(x, t)
    ref = {k: to_numpy(g).copy() for k, g in net.grads.items()}
    for _ in range(2):  # the second step must not reuse anything the first one wrote
        loss = step.forward_backward(x, t)
    assert_on(loss, backend, dtype, ())
    close(loss, loss_ref, dtype, "loss")
    for key, grad in net.grads.items():
        assert_on(grad, backend, dtype, ref[key].shape)
        assert grad is getattr(net.layers[f"Affine{key[1:]}"], "d" + key[0])
        close(grad, ref[key], dtype, key)
    close(step.predict(x), net.predict(x), dtype, "scores")


def test_strict_has_no_fused_path_and_trains_through_the_layers(rng):
    pytest.importorskip("array_api_strict")
    net = MultiLayerNet(4, [3], 2, device="device1", backend="array_api_strict")
    assert kernels_for(net.backend.xp) is None
    assert plan(net) is None


def test_plan_refuses_other_stacks(rng):
    from xpnet import Affine, Network, ReLU

    W = rng.standard_normal((3, 3))
    b = np.zeros(3)
    # two activations in a row: not of the form Affine → act → ... → Affine
    assert plan(Network([Affine(W, b), ReLU(), ReLU(), Affine(W, b), ReLU()])) is None
    assert plan(Network([Affine(W, b), ReLU(), Affine(W, b)])) is not None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nan_propagates_through_every_fused_activation(dtype, backend):
    kernels = kernels_or_skip(backend)
    xp = backend.xp
    for act in ("relu", "sigmoid", "tanh"):
        a = backend.asarray(np.array([[np.nan, 1.0, -1.0]]), dtype)
        out = to_numpy(kernels.bias_act(a, backend.zeros((3,), dtype), act))
        assert np.isnan(out[0, 0]), f"{act} turned NaN into {out[0, 0]}"
        assert not np.isnan(out[0, 1:]).any()
    a = backend.asarray(np.array([[np.nan, 1.0], [0.5, 1.0]]), dtype)
    loss, _ = kernels.softmax_xent(a, backend.zeros((2,), dtype), backend.asarray(np.array([0, 1])))
    assert bool(xp.isnan(loss))


def kernels_or_skip(backend):
    kernels = kernels_for(backend.xp, backend.device)
    if kernels is None:
        pytest.skip(f"{backend.name} has no fused kernels: nothing to compare with the layers")
    return kernels


def test_self_check_passes_on_this_backend(backend):
    assert self_check(backend, kernels_or_skip(backend)) is None


def test_self_check_catches_a_wrong_kernel():
    import xpnet

    class Broken(NumpyKernels):
        def softmax_xent(self, a, b, t):
            loss, dz = super().softmax_xent(a, b, t)
            return loss, dz * 2.0

    problem = self_check(xpnet.resolve("cpu"), Broken())
    assert problem is not None and "gradient differs" in problem


def test_xpnet_fused_0_means_no_kernels(monkeypatch, backend):
    kernels_or_skip(backend)  # on a backend without kernels there would be nothing to turn off
    assert plan(net_for(backend, "relu", "float32")) is not None
    monkeypatch.setenv("XPNET_FUSED", "0")
    assert kernels_for(backend.xp) is None
    assert plan(net_for(backend, "relu", "float32")) is None


CASES = [("sgd", {}), ("adam", {}), ("adamw", {}), ("adam", {"weight_decay": 0.1})]


@pytest.mark.parametrize("name, options", CASES, ids=[f"{n}-{len(o)}" for n, o in CASES])
def test_optimizer_kernels_match_the_rules_written_in_optimizers(name, options, backend, rng):
    fast, plain = make_optimizer(name, lr=0.01, **options), make_optimizer(name, lr=0.01, **options)
    launched = []

    def counting(use, like):
        kernel = optimizer_kernel(use, like)
        if kernel is None:
            return None
        return lambda *args: launched.append(use) or kernel(*args)

    fast.kernels = counting
    like = backend.asarray(np.zeros(3), "float64")
    rule = "adam" if name.startswith("adam") else name
    if optimizer_kernel(rule, like) is None:
        pytest.skip(f"{backend.name} has no {rule} kernel: both sides would run the plain rule")
    # coupled weight decay enters g, which the kernel does not compute: it must not be taken
    coupled = name == "adam" and bool(options.get("weight_decay"))
    shapes = {"W1": (4, 3), "b1": (3,)}
    start = {k: rng.standard_normal(s) for k, s in shapes.items()}
    # copies: Backend.asarray shares a NumPy array's memory on the CPU backends, and two
    # optimizers stepping one array would agree whatever the kernel computed
    p_fast = {k: backend.asarray(v.copy(), "float64") for k, v in start.items()}
    p_plain = {k: backend.asarray(v.copy(), "float64") for k, v in start.items()}
    for _ in range(4):
        grads = {k: backend.asarray(rng.standard_normal(s), "float64") for k, s in shapes.items()}
        fast.update(p_fast, grads)
        plain.update(p_plain, grads)
    # the kernel did the fast side's every update; the plain side is the rule in nn.optimizers
    assert launched == ([] if coupled else [rule] * (4 * len(shapes))) and plain.kernels is None
    for key in shapes:
        assert_on(p_fast[key], backend, "float64", shapes[key])
        close(p_fast[key], p_plain[key], "float64", key)
    assert fast.state_dict()["state"].keys() == plain.state_dict()["state"].keys()


def test_kernels_are_memoized_on_this_backend(backend):
    kernels = kernels_or_skip(backend)
    assert kernels_for(backend.xp, backend.device) is kernels
    assert kernels_for(backend.xp) is kernels, "no device named: the namespace's default one"
    assert registry.fused_enabled()


def test_kernels_are_memoized_per_namespace_and_device(monkeypatch):
    """A CuPy module loaded on one GPU cannot be launched on another: one kernels object per
    (namespace, device), built for that device. array_api_strict's two devices stand in for two
    GPUs, with a fake kernels class (strict has none of its own)."""
    pytest.importorskip("array_api_strict")
    import xpnet

    built = []

    class Fake:
        def __init__(self, device=None):
            self.device = device
            built.append(self)

        def sgd(self, p, g, lr):
            raise AssertionError("never launched here")

    monkeypatch.setattr(registry, "_KERNELS", {})
    monkeypatch.setattr(registry, "_factory", lambda xp: Fake)
    cpu, dev1 = xpnet.resolve("cpu", "array_api_strict"), xpnet.resolve("device1")
    on_cpu, on_dev1 = kernels_for(cpu.xp, cpu.device), kernels_for(dev1.xp, dev1.device)
    assert on_cpu is not on_dev1, "device1 got the kernels built for the CPU device"
    assert (on_cpu.device, on_dev1.device) == (cpu.device, dev1.device)
    assert kernels_for(dev1.xp, dev1.device) is on_dev1
    assert kernels_for(cpu.xp, cpu.device) is on_cpu
    assert kernels_for(cpu.xp) is on_cpu, "no device named: the namespace's default one"
    assert len(built) == 2
    # an optimizer's kernel comes from its parameter's own device
    assert optimizer_kernel("sgd", dev1.zeros((3,))).__self__ is on_dev1
    assert optimizer_kernel("sgd", cpu.zeros((3,))).__self__ is on_cpu


def test_compiled_kernels_are_self_checked_once_per_use_without_recursion(monkeypatch, rng):
    """The path CuPy takes (compile, then self_check, which runs the optimizers), on NumPy.

    The first GPU run found the self-check recursing into itself through the optimizers; this
    reproduces that path on the CPU with NumPy kernels marked as compiled. Each (dtype, use) is
    checked once, when first used, so a float32 ReLU run with SGD compiles nothing else.
    """
    import xpnet

    checks = []

    class Compiled(NumpyKernels):
        compiled = True

    real_check = check.self_check

    def counting_check(be, kernels=None, dtype=None, uses=check.CHECKS):
        checks.append((dtype, tuple(uses)))
        return real_check(be, kernels, dtype, uses)

    monkeypatch.setattr(registry, "_KERNELS", {})
    monkeypatch.setattr(registry, "_factory", lambda xp: Compiled)
    monkeypatch.setattr(check, "self_check", counting_check)
    be = xpnet.resolve("cpu")
    kernels = kernels_for(be.xp)
    assert type(kernels) is Compiled and checks == [], "asking for no use checks nothing"

    net = TwoLayerNet(6, 5, 3, device=be)
    x, t = be.asarray(rng.standard_normal((8, 6)), "float32"), be.asarray(rng.integers(0, 3, 8))
    step = plan(net)
    assert step is not None and step.kernels is kernels
    opt = xpnet.SGD(0.1)
    opt.kernels = optimizer_kernel  # as the Trainer hands them
    for _ in range(3):
        step.forward_backward(x, t)
        opt.update(net.params, net.grads)
    assert checks == [("float32", ("relu",)), ("float32", ("sgd",))]
    assert {("float32", "relu"), ("float32", "sgd")} <= kernels.verified
    assert plan(TwoLayerNet(6, 5, 3, device=be)) is not None and len(checks) == 2
    plan(MultiLayerNet(6, [5, 4], 3, "tanh", dtype="float64", device=be))
    assert checks[2:] == [("float64", ("tanh",))]
    # float16 is never checked, so the plain rules run for it, and nothing is disabled
    assert kernels_for(be.xp, None, be.xp.float16, ("sgd",)) is None
    assert kernels_for(be.xp, None, "float32", ("sgd",)) is kernels and len(checks) == 3

    class Broken(Compiled):
        def act_grad(self, dh, h, act):
            return super().act_grad(dh, h, act) * 1.5

    monkeypatch.setattr(registry, "_KERNELS", {})
    monkeypatch.setattr(registry, "_factory", lambda xp: Broken)
    assert kernels_for(be.xp, None, "float32", ("sgd",)) is not None, "its SGD kernel is right"
    with pytest.warns(registry.FusedKernelWarning, match="relu network's W1 gradient differs"):
        assert plan(TwoLayerNet(6, 5, 3, device=be)) is None
    assert kernels_for(be.xp) is None, "a failed check turns the kernels off for the device"


def test_an_optimizer_kernel_is_remembered_until_what_decides_it_changes(monkeypatch):
    """optimizer_kernel is asked for every parameter at every update, so its answer is kept; a
    change of XPNET_FUSED, of the array's dtype, or a failed self-check is still seen at once."""
    import xpnet

    asked = []

    class Compiled(NumpyKernels):
        compiled = True

        def sgd(self, p, g, lr):
            p -= lr * g

    real = registry.kernels_for

    def counting(*args, **kw):
        asked.append(args[2])
        return real(*args, **kw)

    monkeypatch.setattr(registry, "_KERNELS", {})
    monkeypatch.setattr(registry, "_factory", lambda xp: Compiled)
    monkeypatch.setattr(registry, "kernels_for", counting)
    monkeypatch.delenv("XPNET_FUSED", raising=False)
    like = np.zeros(3, np.float32)
    first = optimizer_kernel("sgd", like)
    assert first is not None and first.__func__ is Compiled.sgd
    assert optimizer_kernel("sgd", np.ones(4, np.float32)) == first and len(asked) == 1
    assert optimizer_kernel("sgd", np.zeros(3)) is not None and len(asked) == 2  # float64
    monkeypatch.setenv("XPNET_FUSED", "0")
    assert optimizer_kernel("sgd", like) is None and len(asked) == 3
    monkeypatch.setenv("XPNET_FUSED", "1")
    assert optimizer_kernel("sgd", like) == first

    class BrokenAdam(Compiled):
        def adam(self, p, g, m, v, *args):
            super().adam(p, g, m, v, *args)
            p += 1.0

    first.__self__.__class__ = BrokenAdam  # the same object, whose Adam now fails its check
    with pytest.warns(registry.FusedKernelWarning, match="Adam update differs"):
        assert optimizer_kernel("adam", like) is None
    assert optimizer_kernel("sgd", like) is None, "a failed check turns every kernel off"
    monkeypatch.setattr(registry, "_KERNELS", {})
    assert optimizer_kernel("sgd", like) is not None, "a fresh registry asks again"
    assert xpnet.fast.optimizer_kernel is optimizer_kernel


def test_self_check_covers_exactly_what_it_is_asked_for():
    import xpnet

    class WrongAdam(NumpyKernels):
        def adam(self, p, g, m, v, *args):
            super().adam(p, g, m, v, *args)
            p += 1.0

    be = xpnet.resolve("cpu")
    assert self_check(be, WrongAdam(), "float32", ("relu", "sgd")) is None
    assert "Adam update differs (float64)" in self_check(be, WrongAdam(), "float64", ("adam",))
    with pytest.raises(ValueError, match="not \\['elu'\\]"):
        self_check(be, WrongAdam(), None, ("elu",))


def test_the_cuda_source_is_read_from_its_file_in_the_package():
    from xpnet.fast.kernels_cupy import cuda_source

    source = cuda_source()
    for name in ("softmax_xent_f32", "softmax_xent_f64"):
        assert f'extern "C" __global__ void {name}(' in source


def test_product_sums_the_partial_products_at_the_cuts_in_order(backend, rng):
    """product(x, W, cuts): the sum over k in the ranges the cuts bound, added left to right,
    on every backend (the exact evaluator of xpnet.training.exact uses it on NumPy)."""
    from xpnet.fast.step import product

    x = backend.asarray(rng.standard_normal((6, 9)), "float32")
    W = backend.asarray(rng.standard_normal((9, 4)), "float32")
    xp = backend.xp
    plain = product(x, W)
    assert_on(plain, backend, "float32", (6, 4))
    assert bool(xp.all(plain == x @ W))
    three = product(x, W, (2, 5))
    assert_on(three, backend, "float32", (6, 4))
    expected = (x[:, :2] @ W[:2, :] + x[:, 2:5] @ W[2:5, :]) + x[:, 5:] @ W[5:, :]
    assert bool(xp.all(three == expected))
    np.testing.assert_allclose(to_numpy(three), to_numpy(plain), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "n, threads, bounds",
    [
        (10000, 2, [0, 2500, 5000, 7500, 10000]),  # MNIST's chunk: quarters
        (9999, 2, [0, 2500, 5000, 7500, 9999]),  # the first share takes the odd row
        (2001, 2, [0, 501, 1001, 1501, 2001]),
        (7, 3, [0, 2, 3, 4, 5, 6, 7]),
        (1, 2, [0, 1]),  # a share with no rows has no block
        (0, 2, [0]),
    ],
)
def test_thread_rows_are_the_threads_shares_in_halves(n, threads, bounds):
    """OpenBLAS's threaded level 3 with few output columns: ⌈left / threads left⌉ rows a thread,
    each share in halves of ⌈share / 2⌉ (xpnet.training.exact reproduces its bits from them)."""
    from xpnet.fast.step import thread_rows

    assert thread_rows(n, threads) == bounds


_PRODUCTS: list = []


class _Logged(np.ndarray):
    """A NumPy array that records the shapes of the products it takes part in (in _PRODUCTS)."""

    def __matmul__(self, other):
        _PRODUCTS.append((self.shape, other.shape))
        return np.asarray(self) @ np.asarray(other)


def test_product_in_row_blocks_multiplies_each_block_on_its_own(backend, rng):
    """product(x, W, k, rows): one product per block of thread_rows (each summed at k), stacked
    in order, on every backend; on NumPy, each block's product is one call of its own."""
    from xpnet.fast.step import product

    x = backend.asarray(rng.standard_normal((9, 8)), "float32")
    W = backend.asarray(rng.standard_normal((8, 3)), "float32")
    xp = backend.xp
    got = product(x, W, (), 2)  # blocks [0, 3), [3, 5), [5, 7), [7, 9)
    assert_on(got, backend, "float32", (9, 3))
    expected = xp.concat([x[lo:hi, :] @ W for lo, hi in ((0, 3), (3, 5), (5, 7), (7, 9))], axis=0)
    assert bool(xp.all(got == expected))
    both = product(x, W, (4,), 2)
    assert_on(both, backend, "float32", (9, 3))
    assert bool(xp.all(both[3:5, :] == x[3:5, :4] @ W[:4, :] + x[3:5, 4:] @ W[4:, :]))
    if backend.name == "numpy":
        _PRODUCTS.clear()
        product(np.asarray(x).view(_Logged), np.asarray(W), (), 2)
        assert _PRODUCTS == [((3, 8), (8, 3))] + [((2, 8), (8, 3))] * 3
