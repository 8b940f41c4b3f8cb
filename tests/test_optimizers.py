"""Optimizers: torch.optim's rules, in-place updates on every backend, resuming, and user errors."""

import inspect
import re

import numpy as np
import pytest
from conftest import HAS_TORCH, assert_on

from xpnet import MultiLayerNet
from xpnet.backend import to_numpy
from xpnet.errors import CheckpointError, ConfigError
from xpnet.nn.optimizers import OPTIMIZERS, SGD, make_optimizer

SHAPES = {"W1": (4, 3), "b1": (3,), "W2": (3, 2)}

# One case per hyperparameter at a non-default value, plus each class's defaults.
CASES = [
    ("sgd", {}),
    ("sgd", {"lr": 0.1}),
    ("sgd", {"momentum": 0.8}),
    ("sgd", {"momentum": 0.8, "dampening": 0.3}),
    ("sgd", {"momentum": 0.8, "nesterov": True}),
    ("sgd", {"weight_decay": 0.1}),
    ("momentum", {}),
    ("momentum", {"lr": 0.1}),
    ("momentum", {"momentum": 0.8}),
    ("momentum", {"dampening": 0.3}),
    ("momentum", {"nesterov": True}),
    ("momentum", {"weight_decay": 0.1}),
    ("nesterov", {}),
    ("nesterov", {"lr": 0.1}),
    ("nesterov", {"momentum": 0.8}),
    ("nesterov", {"weight_decay": 0.1}),
    ("adagrad", {}),
    ("adagrad", {"lr": 0.1}),
    ("adagrad", {"lr_decay": 0.01}),
    ("adagrad", {"weight_decay": 0.1}),
    ("adagrad", {"initial_accumulator_value": 0.1}),
    ("adagrad", {"eps": 1e-3}),
    ("rmsprop", {}),
    ("rmsprop", {"lr": 0.1}),
    ("rmsprop", {"alpha": 0.9}),
    ("rmsprop", {"eps": 1e-3}),
    ("rmsprop", {"weight_decay": 0.1}),
    ("rmsprop", {"momentum": 0.8}),
    ("rmsprop", {"centered": True}),
    ("rmsprop", {"centered": True, "momentum": 0.8}),
    ("adam", {}),
    ("adam", {"lr": 0.01}),
    ("adam", {"betas": (0.8, 0.9)}),
    ("adam", {"eps": 1e-3}),
    ("adam", {"weight_decay": 0.1}),
    ("adam", {"amsgrad": True}),
    ("adamw", {}),
    ("adamw", {"lr": 0.01}),
    ("adamw", {"betas": (0.8, 0.9)}),
    ("adamw", {"eps": 1e-3}),
    ("adamw", {"weight_decay": 0.1}),
    ("adamw", {"amsgrad": True}),
]

# Every branch of each rule at once.
FULL = {
    "sgd": {"momentum": 0.8, "dampening": 0.3, "weight_decay": 0.1},
    "momentum": {"nesterov": True, "weight_decay": 0.1},
    "nesterov": {"weight_decay": 0.1},
    "adagrad": {"lr_decay": 0.01, "weight_decay": 0.1, "initial_accumulator_value": 0.1},
    "rmsprop": {"momentum": 0.8, "centered": True, "weight_decay": 0.1},
    "adam": {"amsgrad": True, "weight_decay": 0.1},
    "adamw": {"amsgrad": True, "weight_decay": 0.1},
}
CONFIGS = [pytest.param(n, {}, id=f"{n}-defaults") for n in OPTIMIZERS] + [
    pytest.param(n, kw, id=f"{n}-all") for n, kw in FULL.items()
]

# xpnet name -> torch.optim class and the options that make it the same optimizer
TORCH = {
    "sgd": ("SGD", {}),
    "momentum": ("SGD", {"momentum": 0.9}),
    "nesterov": ("SGD", {"momentum": 0.9, "nesterov": True}),
    "adagrad": ("Adagrad", {}),
    "rmsprop": ("RMSprop", {}),
    "adam": ("Adam", {}),
    "adamw": ("AdamW", {}),
}


def case_id(name, kwargs):
    return "-".join([name, *(f"{k}={v}" for k, v in kwargs.items())]) if kwargs else name


def host_params(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}


def host_grads(steps, seed=1, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [
        {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()} for _ in range(steps)
    ]


def on(backend, arrays):
    """Copies on the backend: Backend.asarray shares a NumPy array's memory on the CPU backends,
    so without the copy an update of these would also update the host reference."""
    return {k: backend.asarray(np.array(v, copy=True), "float32") for k, v in arrays.items()}


def host_state(opt):
    """A deep copy of the optimizer's state_dict with NumPy arrays, as a checkpoint keeps it."""
    state = opt.state_dict()
    return {
        "steps": state["steps"],
        "state": {
            slot: {k: to_numpy(a).copy() for k, a in arrays.items()}
            for slot, arrays in state["state"].items()
        },
    }


def test_torch_cases_cover_every_option():
    for name, cls in OPTIMIZERS.items():
        covered = {k for n, kwargs in CASES if n == name for k in kwargs}
        assert covered == set(inspect.signature(cls).parameters), name


def run_against_torch(name, kwargs, steps, lr_change=None):
    """`steps` updates of xpnet's and torch's optimizer from the same float64 weights and grads."""
    import torch

    start = host_params()
    mine = {k: v.copy() for k, v in start.items()}
    theirs = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in start.items()}
    opt = make_optimizer(name, **kwargs)
    cls_name, options = TORCH[name]
    # lr explicit: xpnet's SGD keeps the book's 0.01; every other default must be torch's own
    ref = getattr(torch.optim, cls_name)(
        list(theirs.values()), **{**options, "lr": opt.lr, **kwargs}
    )
    for step, grads in enumerate(host_grads(steps), start=1):
        if lr_change and step == lr_change[0]:
            opt.lr = ref.param_groups[0]["lr"] = lr_change[1]
        opt.update(mine, grads)
        for key, p in theirs.items():
            p.grad = torch.tensor(grads[key])
        ref.step()
        for key, p in theirs.items():
            expected = p.detach().numpy()
            message = f"{key} after step {step}"
            np.testing.assert_allclose(mine[key], expected, rtol=1e-10, atol=1e-14, err_msg=message)
            # the distance moved, a stricter test than the weights themselves
            np.testing.assert_allclose(
                mine[key] - start[key],
                expected - start[key],
                rtol=1e-9,
                atol=1e-13,
                err_msg=message,
            )
    return start, mine


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
@pytest.mark.parametrize(
    "name, kwargs", [pytest.param(n, kw, id=case_id(n, kw)) for n, kw in CASES]
)
def test_matches_torch_optim(name, kwargs):
    start, mine = run_against_torch(name, kwargs, steps=20)
    assert all(np.abs(mine[k] - start[k]).max() > 1e-3 for k in SHAPES), "the weights hardly moved"


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
@pytest.mark.parametrize("name, kwargs", CONFIGS)
def test_learning_rate_changed_between_steps_matches_torch(name, kwargs):
    run_against_torch(name, kwargs, steps=10, lr_change=(6, 0.003))


@pytest.mark.parametrize("name, kwargs", CONFIGS)
def test_updates_in_place_on_every_backend(name, kwargs, backend):
    grads = host_grads(5, dtype=np.float32)
    expected = host_params(dtype=np.float32)
    reference = make_optimizer(name, **kwargs)
    params = on(backend, expected)
    objects = dict(params)
    opt = make_optimizer(name, **kwargs)
    for host in grads:
        device_grads = on(backend, host)
        opt.update(params, device_grads)
        reference.update(expected, host)
        for key, grad in device_grads.items():
            np.testing.assert_array_equal(
                to_numpy(grad), host[key], err_msg="grads must not change"
            )
    for key, shape in SHAPES.items():
        assert params[key] is objects[key], "update must change the parameter arrays in place"
        assert_on(params[key], backend, "float32", shape)
        np.testing.assert_allclose(to_numpy(params[key]), expected[key], rtol=1e-5, atol=1e-6)
    assert not np.allclose(expected["W1"], host_params()["W1"], atol=1e-3)
    assert set(opt.state) == set(opt.slots)
    for arrays in opt.state.values():
        assert set(arrays) == set(SHAPES)
        for key, array in arrays.items():
            assert_on(array, backend, "float32", SHAPES[key])


@pytest.mark.parametrize("name", list(FULL))
def test_numpy_scalar_hyperparameters_keep_float32(name, backend):
    def as_numpy(value):
        if isinstance(value, bool):
            return value
        if isinstance(value, tuple):
            return tuple(np.float32(v) for v in value)
        return np.float32(value)

    kwargs = {k: as_numpy(v) for k, v in FULL[name].items()}
    opt = make_optimizer(name, lr=np.float32(0.01), **kwargs)
    params = on(backend, host_params())
    for host in host_grads(2):
        opt.lr = np.float64(0.02)  # as a scheduler computing with NumPy might
        opt.update(params, on(backend, host))
    assert type(opt.lr) is float
    for key, param in params.items():
        assert_on(param, backend, "float32", SHAPES[key])


@pytest.mark.parametrize("name, kwargs", CONFIGS)
def test_state_dict_round_trip_is_bit_identical(name, kwargs, backend):
    grads = [on(backend, g) for g in host_grads(10)]
    straight = on(backend, host_params())
    opt = make_optimizer(name, **kwargs)
    for g in grads:
        opt.update(straight, g)

    resumed = on(backend, host_params())
    first = make_optimizer(name, **kwargs)
    for g in grads[:5]:
        first.update(resumed, g)
    saved = host_state(first)
    del first
    second = make_optimizer(name, **kwargs)
    second.load_state_dict(saved)
    kept = host_state(second)  # the loaded arrays, before any update
    for g in grads[5:]:
        second.update(resumed, g)

    assert second.steps == 10
    for key in SHAPES:
        np.testing.assert_array_equal(to_numpy(resumed[key]), to_numpy(straight[key]))
    for slot, arrays in second.state.items():
        for key, array in arrays.items():
            assert_on(array, backend, "float32", SHAPES[key])
            np.testing.assert_array_equal(saved["state"][slot][key], kept["state"][slot][key])
            np.testing.assert_array_equal(to_numpy(array), to_numpy(opt.state[slot][key]))


def test_state_dict_holds_step_count_and_slots():
    params = host_params()
    opt = make_optimizer("adam", amsgrad=True)
    assert opt.state_dict() == {"steps": 0, "state": {}}
    opt.update(params, host_grads(1)[0])
    state = opt.state_dict()
    assert state["steps"] == 1
    assert sorted(state["state"]) == ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
    assert all(set(arrays) == set(SHAPES) for arrays in state["state"].values())


def test_plain_sgd_keeps_no_state_and_steps_by_lr_times_grad():
    params = host_params()
    expected = {
        k: v - 0.1 * g for (k, v), g in zip(params.items(), host_grads(1)[0].values(), strict=True)
    }
    opt = SGD(lr=0.1)
    opt.update(params, host_grads(1)[0])
    assert opt.state == {}
    assert opt.state_dict() == {"steps": 1, "state": {}}
    for key in SHAPES:
        np.testing.assert_array_equal(params[key], expected[key])


@pytest.mark.parametrize(
    "saved_by, loaded_by",
    [("adam", "sgd"), ("sgd", "momentum"), ("momentum", "adam"), ("rmsprop", "adagrad")],
)
def test_state_of_another_optimizer_is_refused(saved_by, loaded_by):
    opt = make_optimizer(saved_by)
    opt.update(host_params(), host_grads(1)[0])
    with pytest.raises(CheckpointError, match=r"does not fit .*; resume with the optimizer"):
        make_optimizer(loaded_by).load_state_dict(host_state(opt))


def test_malformed_state_is_refused():
    with pytest.raises(CheckpointError, match="needs a step count 'steps' and state arrays"):
        make_optimizer("adam").load_state_dict({"state": {}})


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
@pytest.mark.parametrize("name, kwargs", CONFIGS)
def test_update_never_reads_a_value_back_from_the_device(name, kwargs):
    """Meta tensors hold no values: any float(), bool() or .item() on one raises."""
    import torch

    params = {k: torch.empty(s, device="meta") for k, s in SHAPES.items()}
    opt = make_optimizer(name, **kwargs)
    for _ in range(2):
        opt.update(params, {k: torch.empty(s, device="meta") for k, s in SHAPES.items()})
    assert all(p.device.type == "meta" and p.dtype == torch.float32 for p in params.values())


def test_make_optimizer_defaults_and_names():
    for name, cls in OPTIMIZERS.items():
        opt = make_optimizer(name)
        assert type(opt) is cls
        assert opt.lr == inspect.signature(cls).parameters["lr"].default
    assert make_optimizer("sgd").lr == 0.01
    assert make_optimizer("adam", lr=None).lr == 0.001
    assert make_optimizer("AdamW", lr=0.5).lr == 0.5
    assert make_optimizer("adamw").weight_decay == 0.01
    assert make_optimizer("momentum").momentum == 0.9
    nesterov = make_optimizer("nesterov", momentum=0.8)
    assert nesterov.nesterov and nesterov.momentum == 0.8
    assert repr(make_optimizer("adam", betas=(0.8, 0.9))) == (
        "Adam(lr=0.001, betas=(0.8, 0.9), eps=1e-08, weight_decay=0.0, amsgrad=False)"
    )


ALL = "sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw"


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("sgdd", {}, f"unknown optimizer 'sgdd'; choose one of: {ALL}"),
        ("sgd", {"lr": 0}, "learning rate must be a positive number, got 0.0"),
        ("adam", {"lr": float("nan")}, "learning rate must be a positive number, got nan"),
        ("sgd", {"lr": "fast"}, "learning rate must be a number, got 'fast'"),
        ("sgd", {"momentum": 1.0}, "momentum must be in [0, 1), got 1.0"),
        ("momentum", {"momentum": -0.1}, "momentum must be in [0, 1), got -0.1"),
        ("sgd", {"momentum": 0.9, "dampening": 1.5}, "dampening must be in [0, 1), got 1.5"),
        (
            "sgd",
            {"nesterov": True},
            "Nesterov momentum needs momentum > 0 and dampening 0, got momentum 0.0 and dampening 0.0",
        ),
        (
            "momentum",
            {"nesterov": True, "dampening": 0.1},
            "Nesterov momentum needs momentum > 0 and dampening 0, got momentum 0.9 and dampening 0.1",
        ),
        ("nesterov", {"momentum": 0}, "Nesterov momentum needs momentum > 0"),
        ("sgd", {"weight_decay": -0.1}, "weight decay must be >= 0, got -0.1"),
        ("adamw", {"weight_decay": float("inf")}, "weight decay must be >= 0, got inf"),
        ("adagrad", {"lr_decay": -1}, "lr decay must be >= 0, got -1.0"),
        (
            "adagrad",
            {"initial_accumulator_value": -1},
            "initial accumulator value must be >= 0, got -1.0",
        ),
        ("adagrad", {"eps": 0}, "eps must be a positive number, got 0.0"),
        ("rmsprop", {"alpha": 1}, "alpha must be in [0, 1), got 1.0"),
        ("rmsprop", {"momentum": 1.2}, "momentum must be in [0, 1), got 1.2"),
        ("rmsprop", {"centered": "yes"}, "centered must be True or False, got 'yes'"),
        ("adam", {"betas": (1.0, 0.999)}, "beta1 must be in [0, 1), got 1.0"),
        ("adam", {"betas": (0.9, -0.5)}, "beta2 must be in [0, 1), got -0.5"),
        ("adam", {"betas": 0.9}, "betas must be a pair (beta1, beta2), got 0.9"),
        ("adamw", {"eps": -1e-8}, "eps must be a positive number, got -1e-08"),
        ("adamw", {"amsgrad": 1}, "amsgrad must be True or False, got 1"),
        (
            "sgd",
            {"betas": (0.9, 0.999)},
            "optimizer 'sgd' has no option 'betas'; its options are: "
            "lr, momentum, dampening, nesterov, weight_decay",
        ),
        ("nesterov", {"nesterov": False}, "optimizer 'nesterov' has no option 'nesterov'"),
    ],
)
def test_bad_optimizer_options(name, kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        make_optimizer(name, **kwargs)
    assert "\n" not in str(info.value)


def test_learning_rate_set_by_a_scheduler_is_checked():
    opt = make_optimizer("adam")
    opt.lr = np.float32(0.5)
    assert type(opt.lr) is float and opt.lr == 0.5
    opt.lr = 0  # the end of a schedule that anneals to zero
    with pytest.raises(ConfigError, match=re.escape("learning rate must be >= 0, got -0.1")):
        opt.lr = -0.1


@pytest.mark.parametrize(
    "name, lr",
    [
        ("sgd", 0.5),
        ("momentum", 0.1),
        ("nesterov", 0.1),
        ("adagrad", 0.1),
        ("rmsprop", 0.01),
        ("adam", 0.02),
        ("adamw", 0.02),
    ],
)
def test_trains_a_small_network(name, lr):
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((4, 8)) * 2
    labels = rng.integers(0, 4, 128)
    x = (centers[labels] + rng.standard_normal((128, 8))).astype(np.float32)
    net = MultiLayerNet(8, [16], 4, seed=0)
    opt = make_optimizer(name, lr=lr)
    first = float(net.loss(x, labels))
    for _ in range(60):
        net.forward_backward(x, labels)
        opt.update(net.params, net.grads)
    assert float(net.loss(x, labels)) < 0.25 * first
    assert net.accuracy(x, labels) > 0.9


def test_plain_sgd_asks_for_its_kernel_once_per_array_type_and_dtype(rng):
    asked = []
    opt = SGD(lr=0.5)
    opt.kernels = lambda use, like: asked.append((use, like.dtype))  # no kernel: the plain rule
    params = {k: rng.standard_normal(3).astype(np.float32) for k in "abcd"}
    grads = {k: np.ones(3, np.float32) for k in "abcd"}
    before = {k: v.copy() for k, v in params.items()}
    opt.update(params, grads)
    assert asked == [("sgd", np.float32)]  # one ask an update, not four
    for k in "abcd":
        np.testing.assert_array_equal(params[k], before[k] - np.float32(0.5))

    class Unhashable:  # an Array API library's dtype need not be hashable: ask for each
        __hash__ = None

    class Array:
        dtype = Unhashable()

        def __init__(self, value):
            self.value = value

        def __rmul__(self, factor):
            return Array(factor * self.value)

        def __isub__(self, other):
            self.value = self.value - other.value
            return self

    asked.clear()
    params = {k: Array(1.0) for k in "ab"}
    opt.update(params, {k: Array(1.0) for k in "ab"})
    assert len(asked) == 2 and [p.value for p in params.values()] == [0.5, 0.5]
