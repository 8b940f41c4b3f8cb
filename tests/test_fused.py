"""The fast path (xpnet.fused, flat parameters, update_flat) gives the reference path's numbers."""

import copy

import numpy as np
import pytest
from conftest import assert_on

from xpnet.backend import to_numpy
from xpnet.fused import FusedStep, Kernels, has_views, kernels_for, self_check
from xpnet.network import MultiLayerNet
from xpnet.optimizers import make_optimizer

TOL = {"float64": 1e-12, "float32": 3e-5}


def close(a, b, dtype, what=""):
    a, b = to_numpy(a).astype(np.float64), to_numpy(b).astype(np.float64)
    scale = max(np.abs(b).max(initial=0.0), 1e-30)
    assert np.abs(a - b).max(initial=0.0) <= TOL[dtype] * scale, what


def nets(backend, activation, dtype, weight_decay=0.05):
    kw = dict(weight_init="he", weight_decay=weight_decay, device=backend, dtype=dtype, seed=2)
    return (
        MultiLayerNet(12, [9, 7], 5, activation, fast=True, **kw),
        MultiLayerNet(12, [9, 7], 5, activation, fast=False, **kw),
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_fused_step_matches_the_reference_layers(activation, dtype, backend, rng):
    fast, ref = nets(backend, activation, dtype)
    x = backend.asarray(rng.standard_normal((6, 3, 2, 2)), dtype)  # 4-D input: flattened by both
    t = backend.asarray(rng.integers(0, 5, 6))
    if has_views(backend.xp):
        assert fast.flat is not None and fast._fused is not None
        assert type(fast._fused.kernels) is type(kernels_for(backend.xp))
    else:
        # no guaranteed views (array_api_strict): run the fused step with the reference kernels
        assert fast.flat is None
        fast.forward_backward(x, t)
        fast._fused = FusedStep.plan(
            list(fast.layers.values()), fast.last_layer, Kernels(backend.xp)
        )
    for _ in range(2):  # the second step reuses the buffers the first one wrote
        loss_fast, loss_ref = fast.forward_backward(x, t), ref.forward_backward(x, t)
    assert_on(loss_fast, backend, dtype, ())
    close(loss_fast, loss_ref, dtype, "loss")
    for key, grad in ref.grads.items():
        assert_on(fast.grads[key], backend, dtype, grad.shape)
        close(fast.grads[key], grad, dtype, key)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_each_kernel_matches_the_reference_kernel(dtype, backend, rng):
    xp = backend.xp
    fast, ref = kernels_for(xp), Kernels(xp)

    def arr(*shape):
        return backend.asarray(rng.standard_normal(shape), dtype)

    a, b, h = arr(7, 5), arr(5), arr(7, 5)
    t = backend.asarray(rng.integers(0, 5, 7))
    for act in ("relu", "sigmoid", "tanh"):
        close(fast.bias_act(xp.asarray(a, copy=True), b, act), ref.bias_act(a, b, act), dtype, act)
        out = ref.bias_act(a, b, act)
        close(
            fast.act_grad(xp.asarray(h, copy=True), out, act), ref.act_grad(h, out, act), dtype, act
        )
    loss_f, dz_f = fast.softmax_xent(xp.asarray(a, copy=True), b, t)
    loss_r, dz_r = ref.softmax_xent(a, b, t)
    assert_on(loss_f, backend, dtype, ())
    assert_on(dz_f, backend, dtype, (7, 5))
    close(loss_f, loss_r, dtype, "loss")
    close(dz_f, dz_r, dtype, "dz")
    out = xp.zeros((5,), dtype=a.dtype, device=backend.device)
    fast.colsum_into(a, out)
    close(out, xp.sum(a, axis=0), dtype)
    out = xp.zeros((5, 5), dtype=a.dtype, device=backend.device)
    fast.matmul_into(a.T, h, out)
    close(out, a.T @ h, dtype)


CASES = [
    ("sgd", {}),
    ("sgd", {"momentum": 0.9, "weight_decay": 0.01}),
    ("nesterov", {}),
    ("adagrad", {"lr_decay": 0.01}),
    ("rmsprop", {"centered": True, "momentum": 0.5}),
    ("adam", {}),
    ("adam", {"amsgrad": True, "weight_decay": 0.1}),
    ("adamw", {}),
]


@pytest.mark.parametrize(
    "name, options", CASES, ids=[f"{n}-{'-'.join(o) or 'default'}" for n, o in CASES]
)
def test_update_flat_matches_per_parameter_updates(name, options, backend, rng):
    if not has_views(backend.xp):
        pytest.skip("flat parameters need a backend whose slices are views")
    flat_net, ref_net = nets(backend, "relu", "float64", weight_decay=0.0)
    flat_opt = make_optimizer(name, lr=0.01, **options)
    ref_opt = make_optimizer(name, lr=0.01, **options)

    def step(n):
        for _ in range(n):
            grads = {k: rng.standard_normal(tuple(v.shape)) for k, v in ref_net.params.items()}
            for key, g in grads.items():
                flat_net.grads[key][...] = backend.asarray(g, "float64")
            flat_net.step(flat_opt)
            ref_opt.update(
                ref_net.params, {k: backend.asarray(g, "float64") for k, g in grads.items()}
            )
        for key, param in ref_net.params.items():
            close(flat_net.params[key], param, "float64", key)

    step(4)
    assert flat_opt.steps == ref_opt.steps == 4
    # a checkpoint of flat state holds per-parameter arrays, which load either way round
    flat_state = copy.deepcopy({"steps": flat_opt.state_dict()["steps"], "state": {
        s: {k: to_numpy(v).copy() for k, v in arrays.items()} for s, arrays in flat_opt.state_dict()["state"].items()}})  # fmt: skip
    ref_state = {"steps": ref_opt.steps, "state": {
        s: {k: to_numpy(v).copy() for k, v in arrays.items()} for s, arrays in ref_opt.state_dict()["state"].items()}}  # fmt: skip
    assert flat_state["state"].keys() == ref_state["state"].keys()
    for slot, arrays in ref_state["state"].items():
        assert arrays.keys() == flat_state["state"][slot].keys()
        for key, value in arrays.items():
            close(flat_state["state"][slot][key], value, "float64", f"{slot}/{key}")
    flat_opt, ref_opt = (
        make_optimizer(name, lr=0.01, **options),
        make_optimizer(name, lr=0.01, **options),
    )
    flat_opt.load_state_dict(ref_state)
    ref_opt.load_state_dict(flat_state)
    step(3)


def test_self_check_passes_for_this_backends_kernels(backend):
    assert self_check(kernels_for(backend.xp), backend.xp, backend.device) is None


def test_self_check_catches_a_wrong_kernel():
    import numpy

    from xpnet.fused import NumpyKernels

    class Broken(NumpyKernels):
        def softmax_xent(self, a, b, t):
            loss, dz = super().softmax_xent(a, b, t)
            return loss, dz * 2.0

    xp = kernels_for(numpy).xp
    assert self_check(Broken(xp), xp) == "softmax + cross-entropy differs"


def test_xpnet_fused_0_selects_the_reference_kernels(monkeypatch, backend):
    from xpnet import fused

    monkeypatch.setattr(fused, "_KERNELS", {})
    monkeypatch.setenv("XPNET_FUSED", "0")
    assert type(fused.kernels_for(backend.xp)) is Kernels
