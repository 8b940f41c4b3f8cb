"""Optimizers against numbers worked out by hand: two steps of every rule, on every backend.

Each rule below is written out for one weight, with its hyperparameters as literal numbers and
no call into xpnet, and applied to every element of a tiny parameter set. The optimizers must
land on those numbers after the first and after the second step, with their plain rules
(``kernels = None``) and with a backend's fused kernels (``xpnet.fast.fused.optimizer_kernel``)
alike. These need nothing but NumPy; the comparisons with ``torch.optim`` in test_optimizers.py
are a second opinion.

The numbers avoid the values where a wrong formula gives the right answer: no gradient of
magnitude 0, 1 or 2 (g·g = g/g, g² = 2g), and hyperparameters away from their defaults.
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
from xpnet.errors import CheckpointError, ConfigError
from xpnet.fast.fused import optimizer_kernel

START = {"W": [1.0, -2.0], "b": [0.5]}
GRAD1 = {"W": [0.5, -4.0], "b": [3.0]}
# W[1]: |g2| < |g1|/2, so Adam's v shrinks at step 2 and amsgrad's running maximum matters
GRAD2 = {"W": [-1.5, 1.5], "b": [3.0]}


# -- the rules for one weight w, with gradients g1 and g2: (w after step 1, w after step 2) ----


def sgd(w, g1, g2):
    """SGD(lr=0.1): w ← w − 0.1·g."""
    w1 = w - 0.1 * g1
    return w1, w1 - 0.1 * g2


def sgd_defaults(w, g1, g2):
    """SGD(): lr 0.01."""
    w1 = w - 0.01 * g1
    return w1, w1 - 0.01 * g2


def sgd_decay(w, g1, g2):
    """SGD(lr=0.1, weight_decay=0.1): the L2 term 0.1·w joins the gradient."""
    w1 = w - 0.1 * (g1 + 0.1 * w)
    return w1, w1 - 0.1 * (g2 + 0.1 * w1)


def sgd_dampening(w, g1, g2):
    """SGD(lr=0.1, momentum=0.5, dampening=0.25, weight_decay=0.1): b starts at the first
    (undamped) gradient, then b ← 0.5·b + 0.75·g."""
    g = g1 + 0.1 * w
    b = g
    w1 = w - 0.1 * b
    g = g2 + 0.1 * w1
    b = 0.5 * b + 0.75 * g
    return w1, w1 - 0.1 * b


def momentum_lr_change(w, g1, g2):
    """Momentum(lr=0.1), lr set to 0.2 before step 2: b ← 0.9·b + g holds no learning rate."""
    b = g1
    w1 = w - 0.1 * b
    b = 0.9 * b + g2
    return w1, w1 - 0.2 * b


def momentum_decay(w, g1, g2):
    """Momentum(lr=0.1, weight_decay=0.1)."""
    g = g1 + 0.1 * w
    b = g
    w1 = w - 0.1 * b
    g = g2 + 0.1 * w1
    b = 0.9 * b + g
    return w1, w1 - 0.1 * b


def nesterov(w, g1, g2):
    """Nesterov(lr=0.1): b ← 0.9·b + g (b = g first), w ← w − 0.1·(g + 0.9·b)."""
    b = g1
    w1 = w - 0.1 * (g1 + 0.9 * b)
    b = 0.9 * b + g2
    return w1, w1 - 0.1 * (g2 + 0.9 * b)


def nesterov_decay(w, g1, g2):
    """Nesterov(lr=0.1, momentum=0.5, weight_decay=0.1)."""
    g = g1 + 0.1 * w
    b = g
    w1 = w - 0.1 * (g + 0.5 * b)
    g = g2 + 0.1 * w1
    b = 0.5 * b + g
    return w1, w1 - 0.1 * (g + 0.5 * b)


def adagrad(w, g1, g2):
    """AdaGrad(lr=0.1): h ← h + g², w ← w − 0.1·g/(√h + 1e-10)."""
    h = g1 * g1
    w1 = w - 0.1 * g1 / (math.sqrt(h) + 1e-10)
    h = h + g2 * g2
    return w1, w1 - 0.1 * g2 / (math.sqrt(h) + 1e-10)


def adagrad_all(w, g1, g2):
    """AdaGrad(lr=0.1, lr_decay=0.5, weight_decay=0.1, initial_accumulator_value=0.75, eps=0.25):
    step t uses lr 0.1/(1 + (t − 1)·0.5)."""
    g = g1 + 0.1 * w
    h = 0.75 + g * g
    w1 = w - 0.1 * g / (math.sqrt(h) + 0.25)
    g = g2 + 0.1 * w1
    h = h + g * g
    return w1, w1 - (0.1 / 1.5) * g / (math.sqrt(h) + 0.25)


def rmsprop(w, g1, g2):
    """RMSProp(lr=0.1, alpha=0.5, eps=0.25): v ← 0.5·v + 0.5·g², w ← w − 0.1·g/(√v + 0.25)."""
    v = 0.5 * g1 * g1
    w1 = w - 0.1 * g1 / (math.sqrt(v) + 0.25)
    v = 0.5 * v + 0.5 * g2 * g2
    return w1, w1 - 0.1 * g2 / (math.sqrt(v) + 0.25)


def rmsprop_defaults(w, g1, g2):
    """RMSProp(): lr 0.01, alpha 0.99, eps 1e-8."""
    v = 0.01 * g1 * g1
    w1 = w - 0.01 * g1 / (math.sqrt(v) + 1e-8)
    v = 0.99 * v + 0.01 * g2 * g2
    return w1, w1 - 0.01 * g2 / (math.sqrt(v) + 1e-8)


def rmsprop_centered(w, g1, g2):
    """RMSProp(lr=0.1, alpha=0.5, eps=0.25, centered=True): the root of v − ḡ², ḡ ← 0.5·ḡ + 0.5·g."""
    v, m = 0.5 * g1 * g1, 0.5 * g1
    w1 = w - 0.1 * g1 / (math.sqrt(v - m * m) + 0.25)
    v, m = 0.5 * v + 0.5 * g2 * g2, 0.5 * m + 0.5 * g2
    return w1, w1 - 0.1 * g2 / (math.sqrt(v - m * m) + 0.25)


def rmsprop_momentum(w, g1, g2):
    """RMSProp(lr=0.1, alpha=0.5, eps=0.25, momentum=0.5, weight_decay=0.1):
    b ← 0.5·b + g/(√v + 0.25) from b = 0, w ← w − 0.1·b."""
    g = g1 + 0.1 * w
    v = 0.5 * g * g
    b = g / (math.sqrt(v) + 0.25)
    w1 = w - 0.1 * b
    g = g2 + 0.1 * w1
    v = 0.5 * v + 0.5 * g * g
    b = 0.5 * b + g / (math.sqrt(v) + 0.25)
    return w1, w1 - 0.1 * b


def rmsprop_all(w, g1, g2):
    """RMSProp(lr=0.1, alpha=0.5, eps=0.25, momentum=0.5, weight_decay=0.1, centered=True)."""
    g = g1 + 0.1 * w
    v, m = 0.5 * g * g, 0.5 * g
    b = g / (math.sqrt(v - m * m) + 0.25)
    w1 = w - 0.1 * b
    g = g2 + 0.1 * w1
    v, m = 0.5 * v + 0.5 * g * g, 0.5 * m + 0.5 * g
    b = 0.5 * b + g / (math.sqrt(v - m * m) + 0.25)
    return w1, w1 - 0.1 * b


def adam(w, g1, g2):
    """Adam(lr=0.1, betas=(0.5, 0.75), eps=0.25): m ← 0.5·m + 0.5·g, v ← 0.75·v + 0.25·g²,
    w ← w − 0.1·m̂/(√v̂ + 0.25) with m̂ = m/(1 − 0.5ᵗ), v̂ = v/(1 − 0.75ᵗ)."""
    m, v = 0.5 * g1, 0.25 * g1 * g1
    w1 = w - 0.1 * (m / 0.5) / (math.sqrt(v / 0.25) + 0.25)
    m, v = 0.5 * m + 0.5 * g2, 0.75 * v + 0.25 * g2 * g2
    return w1, w1 - 0.1 * (m / 0.75) / (math.sqrt(v / 0.4375) + 0.25)


def adam_defaults(w, g1, g2):
    """Adam(): lr 0.001, betas (0.9, 0.999), eps 1e-8."""
    m, v = 0.1 * g1, 0.001 * g1 * g1
    w1 = w - 0.001 * (m / 0.1) / (math.sqrt(v / 0.001) + 1e-8)
    m, v = 0.9 * m + 0.1 * g2, 0.999 * v + 0.001 * g2 * g2
    return w1, w1 - 0.001 * (m / 0.19) / (math.sqrt(v / 0.001999) + 1e-8)


def adam_decay(w, g1, g2):
    """Adam(lr=0.1, betas=(0.5, 0.75), eps=0.25, weight_decay=0.1): L2, 0.1·w joins g."""
    g = g1 + 0.1 * w
    m, v = 0.5 * g, 0.25 * g * g
    w1 = w - 0.1 * (m / 0.5) / (math.sqrt(v / 0.25) + 0.25)
    g = g2 + 0.1 * w1
    m, v = 0.5 * m + 0.5 * g, 0.75 * v + 0.25 * g * g
    return w1, w1 - 0.1 * (m / 0.75) / (math.sqrt(v / 0.4375) + 0.25)


def adam_amsgrad_decay(w, g1, g2):
    """Adam(lr=0.1, betas=(0.5, 0.75), eps=0.25, weight_decay=0.1, amsgrad=True): the largest v
    so far stands in for v."""
    g = g1 + 0.1 * w
    m, v = 0.5 * g, 0.25 * g * g
    v_max = v
    w1 = w - 0.1 * (m / 0.5) / (math.sqrt(v_max / 0.25) + 0.25)
    g = g2 + 0.1 * w1
    m, v = 0.5 * m + 0.5 * g, 0.75 * v + 0.25 * g * g
    v_max = max(v_max, v)
    return w1, w1 - 0.1 * (m / 0.75) / (math.sqrt(v_max / 0.4375) + 0.25)


def adamw_lr_change(w, g1, g2):
    """AdamW(lr=0.1, betas=(0.5, 0.75), eps=0.25, weight_decay=0.2), lr 0.05 at step 2: first
    w ← w·(1 − lr·0.2), then Adam's step on the loss's gradient alone."""
    m, v = 0.5 * g1, 0.25 * g1 * g1
    w1 = w * (1 - 0.1 * 0.2) - 0.1 * (m / 0.5) / (math.sqrt(v / 0.25) + 0.25)
    m, v = 0.5 * m + 0.5 * g2, 0.75 * v + 0.25 * g2 * g2
    return w1, w1 * (1 - 0.05 * 0.2) - 0.05 * (m / 0.75) / (math.sqrt(v / 0.4375) + 0.25)


def adamw_amsgrad(w, g1, g2):
    """AdamW(lr=0.1, betas=(0.5, 0.75), eps=0.25, weight_decay=0.2, amsgrad=True)."""
    m, v = 0.5 * g1, 0.25 * g1 * g1
    v_max = v
    w1 = w * 0.98 - 0.1 * (m / 0.5) / (math.sqrt(v_max / 0.25) + 0.25)
    m, v = 0.5 * m + 0.5 * g2, 0.75 * v + 0.25 * g2 * g2
    v_max = max(v_max, v)
    return w1, w1 * 0.98 - 0.1 * (m / 0.75) / (math.sqrt(v_max / 0.4375) + 0.25)


def adamw_defaults(w, g1, g2):
    """AdamW(): Adam's defaults and weight decay 0.01."""
    m, v = 0.1 * g1, 0.001 * g1 * g1
    w1 = w * (1 - 0.001 * 0.01) - 0.001 * (m / 0.1) / (math.sqrt(v / 0.001) + 1e-8)
    m, v = 0.9 * m + 0.1 * g2, 0.999 * v + 0.001 * g2 * g2
    return w1, w1 * (1 - 0.001 * 0.01) - 0.001 * (m / 0.19) / (math.sqrt(v / 0.001999) + 1e-8)


# id: (the optimizer, the rule by hand, the learning rate set before step 2 or None)
CASES = {
    "sgd": (lambda: xpnet.SGD(lr=0.1), sgd, None),
    "sgd-defaults": (lambda: xpnet.SGD(), sgd_defaults, None),
    "sgd-weight-decay": (lambda: xpnet.SGD(lr=0.1, weight_decay=0.1), sgd_decay, None),
    "sgd-dampening": (
        lambda: xpnet.SGD(lr=0.1, momentum=0.5, dampening=0.25, weight_decay=0.1),
        sgd_dampening,
        None,
    ),
    "momentum-lr-change": (lambda: xpnet.Momentum(lr=0.1), momentum_lr_change, 0.2),
    "momentum-weight-decay": (
        lambda: xpnet.Momentum(lr=0.1, weight_decay=0.1),
        momentum_decay,
        None,
    ),
    "nesterov": (lambda: xpnet.Nesterov(lr=0.1), nesterov, None),
    "nesterov-weight-decay": (
        lambda: xpnet.Nesterov(lr=0.1, momentum=0.5, weight_decay=0.1),
        nesterov_decay,
        None,
    ),
    "momentum-nesterov": (
        lambda: xpnet.Momentum(lr=0.1, momentum=0.5, nesterov=True, weight_decay=0.1),
        nesterov_decay,
        None,
    ),
    "adagrad": (lambda: xpnet.AdaGrad(lr=0.1), adagrad, None),
    "adagrad-all": (
        lambda: xpnet.AdaGrad(
            lr=0.1, lr_decay=0.5, weight_decay=0.1, initial_accumulator_value=0.75, eps=0.25
        ),
        adagrad_all,
        None,
    ),
    "rmsprop": (lambda: xpnet.RMSProp(lr=0.1, alpha=0.5, eps=0.25), rmsprop, None),
    "rmsprop-defaults": (lambda: xpnet.RMSProp(), rmsprop_defaults, None),
    "rmsprop-centered": (
        lambda: xpnet.RMSProp(lr=0.1, alpha=0.5, eps=0.25, centered=True),
        rmsprop_centered,
        None,
    ),
    "rmsprop-momentum": (
        lambda: xpnet.RMSProp(lr=0.1, alpha=0.5, eps=0.25, momentum=0.5, weight_decay=0.1),
        rmsprop_momentum,
        None,
    ),
    "rmsprop-all": (
        lambda: xpnet.RMSProp(
            lr=0.1, alpha=0.5, eps=0.25, momentum=0.5, weight_decay=0.1, centered=True
        ),
        rmsprop_all,
        None,
    ),
    "adam": (lambda: xpnet.Adam(lr=0.1, betas=(0.5, 0.75), eps=0.25), adam, None),
    "adam-defaults": (lambda: xpnet.Adam(), adam_defaults, None),
    "adam-weight-decay": (
        lambda: xpnet.Adam(lr=0.1, betas=(0.5, 0.75), eps=0.25, weight_decay=0.1),
        adam_decay,
        None,
    ),
    "adam-amsgrad-weight-decay": (
        lambda: xpnet.Adam(lr=0.1, betas=(0.5, 0.75), eps=0.25, weight_decay=0.1, amsgrad=True),
        adam_amsgrad_decay,
        None,
    ),
    "adamw-lr-change": (
        lambda: xpnet.AdamW(lr=0.1, betas=(0.5, 0.75), eps=0.25, weight_decay=0.2),
        adamw_lr_change,
        0.05,
    ),
    "adamw-amsgrad": (
        lambda: xpnet.AdamW(lr=0.1, betas=(0.5, 0.75), eps=0.25, weight_decay=0.2, amsgrad=True),
        adamw_amsgrad,
        None,
    ),
    "adamw-defaults": (lambda: xpnet.AdamW(), adamw_defaults, None),
}

KERNELS = {"plain": None, "fused": optimizer_kernel}


def by_hand(rule):
    """{key: (values after step 1, values after step 2)} of the rule on every element."""
    out = {}
    for key, start in START.items():
        pairs = [rule(w, g1, g2) for w, g1, g2 in zip(start, GRAD1[key], GRAD2[key], strict=True)]
        out[key] = ([p[0] for p in pairs], [p[1] for p in pairs])
    return out


def on(backend, values):
    return {key: backend.asarray(v, "float64") for key, v in values.items()}


def test_the_hand_numbers_are_not_trivial():
    """A spot check of the rules above, against numbers done on paper."""
    hand = by_hand(sgd)
    np.testing.assert_allclose(hand["W"], [[0.95, -1.6], [1.1, -1.75]], rtol=1e-15)
    np.testing.assert_allclose(hand["b"], [[0.2], [-0.1]], rtol=1e-15)
    # Momentum step 2: b = 0.9·g1 + g2; w = w1 − 0.2·b
    w2 = by_hand(momentum_lr_change)["W"][1]
    np.testing.assert_allclose(w2, [0.95 + 0.2 * 1.05, -1.6 + 0.2 * 2.1], rtol=1e-15)
    # Adam's first step is lr·g/(|g| + ε) whatever β: 0.1·0.5/0.75
    np.testing.assert_allclose(by_hand(adam)["W"][0], [1.0 - 0.05 / 0.75, -2.0 + 0.4 / 4.25])
    # amsgrad keeps W[1]'s larger first v: its second step differs from Adam's, W[0]'s does not
    plain, kept = by_hand(adam_decay)["W"][1], by_hand(adam_amsgrad_decay)["W"][1]
    assert plain[0] == kept[0] and abs(plain[1] - kept[1]) > 1e-3


@pytest.mark.parametrize("kernels", list(KERNELS))
@pytest.mark.parametrize("case", list(CASES))
def test_two_steps_match_the_hand_worked_rule(case, kernels, backend):
    make, rule, lr2 = CASES[case]
    expected = by_hand(rule)
    opt = make()
    opt.kernels = KERNELS[kernels]
    params = on(backend, START)
    objects = dict(params)
    given = []
    for step, grads in enumerate((GRAD1, GRAD2)):
        if step == 1 and lr2 is not None:
            opt.lr = lr2
        device_grads = on(backend, grads)
        given.append(device_grads)
        opt.update(params, device_grads)
        assert opt.steps == step + 1
        for key, param in params.items():
            assert param is objects[key], "update must change the parameters in place"
            assert_on(param, backend, "float64", (len(START[key]),))
            np.testing.assert_allclose(
                to_numpy(param), expected[key][step], rtol=1e-12, atol=1e-15,
                err_msg=f"{case}, {key} after step {step + 1}",
            )  # fmt: skip
    for device_grads, grads in zip(given, (GRAD1, GRAD2), strict=True):
        for key, grad in device_grads.items():
            np.testing.assert_array_equal(
                to_numpy(grad), grads[key], err_msg="grads must not change"
            )
    assert set(opt.state) == set(opt.slots)


def test_plain_sgd_keeps_no_state():
    opt = xpnet.SGD(lr=0.1)
    params = {k: np.array(v) for k, v in START.items()}
    opt.update(params, {k: np.array(v) for k, v in GRAD1.items()})
    assert opt.slots == () and opt.state == {}


@pytest.mark.parametrize(
    "make, slots",
    [
        (lambda: xpnet.SGD(momentum=0.5), ("momentum_buffer",)),
        (lambda: xpnet.AdaGrad(), ("sum",)),
        (lambda: xpnet.RMSProp(), ("square_avg",)),
        (lambda: xpnet.RMSProp(centered=True), ("square_avg", "grad_avg")),
        (lambda: xpnet.RMSProp(momentum=0.5), ("square_avg", "momentum_buffer")),
        (lambda: xpnet.Adam(), ("exp_avg", "exp_avg_sq")),
        (lambda: xpnet.AdamW(amsgrad=True), ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")),
    ],
)
def test_state_after_two_steps_is_the_hand_worked_state(make, slots):
    """The state a checkpoint saves: every slot's array after step 2, worked out by hand."""
    opt = make()
    assert opt.slots == slots
    params = {k: np.array(v) for k, v in START.items()}
    for grads in (GRAD1, GRAD2):
        opt.update(params, {k: np.array(v) for k, v in grads.items()})
    g1, g2 = np.array(GRAD1["W"]), np.array(GRAD2["W"])
    state = opt.state_dict()["state"]
    assert set(state) == set(slots)
    hand = {
        "sum": g1 * g1 + g2 * g2,
        "square_avg": 0.99 * 0.01 * g1 * g1 + 0.01 * g2 * g2,
        "grad_avg": 0.99 * 0.01 * g1 + 0.01 * g2,
        "exp_avg": 0.9 * 0.1 * g1 + 0.1 * g2,
        "exp_avg_sq": 0.999 * 0.001 * g1 * g1 + 0.001 * g2 * g2,
    }
    for slot in slots:
        if slot == "momentum_buffer" and isinstance(opt, xpnet.SGD):
            expected = 0.5 * g1 + g2
        elif slot == "momentum_buffer":  # RMSProp's: b = 0.5·b + g/(√v + ε)
            v1 = 0.01 * g1 * g1
            v2 = 0.99 * v1 + 0.01 * g2 * g2
            expected = 0.5 * g1 / (np.sqrt(v1) + 1e-8) + g2 / (np.sqrt(v2) + 1e-8)
        elif slot == "max_exp_avg_sq":
            expected = np.maximum(0.001 * g1 * g1, hand["exp_avg_sq"])
        else:
            expected = hand[slot]
        np.testing.assert_allclose(state[slot]["W"], expected, rtol=1e-12, err_msg=slot)


@pytest.mark.parametrize("saved_as", ["float32", "float64"])
@pytest.mark.parametrize("case", ["sgd-dampening", "adagrad-all", "rmsprop-all", "adamw-amsgrad"])
def test_resuming_after_one_step_lands_on_the_hand_worked_second_step(case, saved_as):
    """state_dict after step 1, saved in either dtype and loaded into a fresh optimizer, gives
    the second step by hand; the loaded arrays are copied, never written."""
    make, rule, _ = CASES[case]
    expected = by_hand(rule)
    params = {k: np.array(v) for k, v in START.items()}
    first = make()
    first.update(params, {k: np.array(v) for k, v in GRAD1.items()})
    saved = first.state_dict()
    saved = {
        "steps": saved["steps"],
        "state": {s: {k: a.astype(saved_as) for k, a in arrays.items()} for s, arrays in saved["state"].items()},
    }  # fmt: skip
    loaded = {s: {k: a.copy() for k, a in arrays.items()} for s, arrays in saved["state"].items()}
    second = make()
    second.load_state_dict(saved)
    second.update(params, {k: np.array(v) for k, v in GRAD2.items()})
    assert second.steps == 2
    for key, param in params.items():
        # the float32 round trip of the state costs float32's precision, no more
        np.testing.assert_allclose(param, expected[key][1], rtol=1e-6)
    for slot, arrays in second.state.items():
        for key, array in arrays.items():
            assert array.dtype == np.float64, "the loaded state takes the weights' dtype"
            np.testing.assert_array_equal(saved["state"][slot][key], loaded[slot][key])


def test_state_from_another_backend_is_moved_onto_the_weights():
    """Adam's state saved from array_api_strict arrays resumes on NumPy (through the host)."""
    strict = pytest.importorskip("array_api_strict")
    make, rule, _ = CASES["adam"]
    expected = by_hand(rule)
    first = make()
    params = {k: strict.asarray(v, dtype=strict.float64) for k, v in START.items()}
    first.update(params, {k: strict.asarray(v, dtype=strict.float64) for k, v in GRAD1.items()})
    second = make()
    second.load_state_dict(first.state_dict())
    host = {k: np.asarray(to_numpy(v), dtype=np.float32) for k, v in params.items()}
    second.update(host, {k: np.array(v, dtype=np.float32) for k, v in GRAD2.items()})
    for key, param in host.items():
        np.testing.assert_allclose(param, expected[key][1], rtol=1e-6)
    for arrays in second.state.values():
        for array in arrays.values():
            assert isinstance(array, np.ndarray) and array.dtype == np.float32


@pytest.mark.skipif(not HAS_STRICT, reason="array_api_strict is not installed")
def test_state_from_the_host_is_moved_onto_the_weights_device():
    """NumPy state (a checkpoint's) for weights on array_api_strict's second device: the state
    must follow the weights there, or the next update mixes devices."""
    import array_api_strict as strict

    make, rule, _ = CASES["rmsprop-all"]
    expected = by_hand(rule)
    first = make()
    host = {k: np.array(v) for k, v in START.items()}
    first.update(host, {k: np.array(v) for k, v in GRAD1.items()})
    second = make()
    second.load_state_dict(first.state_dict())
    dev = strict.Device("device1")
    params = {k: strict.asarray(v, device=dev) for k, v in host.items()}
    second.update(params, {k: strict.asarray(np.array(v), device=dev) for k, v in GRAD2.items()})
    for key, param in params.items():
        np.testing.assert_allclose(to_numpy(param), expected[key][1], rtol=1e-12)
    for arrays in second.state.values():
        for array in arrays.values():
            assert array_namespace(array) is strict and array.device == dev


def test_an_optimizer_hands_its_kernel_the_parameter_the_gradient_and_the_rate():
    """The kernels protocol: SGD's "sgd" kernel gets (param, grad, lr) and must do the update
    (NumPy has none; torch's and CuPy's are compared with the plain rule in test_fused.py)."""
    calls = []

    def sgd_kernel(p, g, lr):
        calls.append(lr)
        p -= lr * g

    opt = xpnet.SGD(lr=0.1)
    opt.kernels = lambda use, like: sgd_kernel if use == "sgd" else None
    params = {k: np.array(v) for k, v in START.items()}
    expected = by_hand(sgd)
    for step, grads in enumerate((GRAD1, GRAD2)):
        opt.update(params, {k: np.array(v) for k, v in grads.items()})
        for key, param in params.items():
            np.testing.assert_allclose(param, expected[key][step], rtol=1e-12)
    assert calls == [0.1] * 4  # once per parameter and step


def test_a_state_without_steps_is_refused():
    opt = xpnet.Adam()
    with pytest.raises(CheckpointError, match=re.escape("optimizer state needs a step count 'steps' and state arrays 'state'")):  # fmt: skip
        opt.load_state_dict({"steps": 1})
    empty = xpnet.Adam()
    empty.load_state_dict({"steps": 0, "state": {"anything": {}}})  # nothing saved yet: fits
    assert empty.steps == 0


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: xpnet.SGD(lr=-1), "learning rate must be a positive number, got -1.0"),
        (lambda: xpnet.SGD(lr=[1]), "learning rate must be a number, got [1]"),
        (lambda: xpnet.SGD(dampening=-0.5), "dampening must be in [0, 1), got -0.5"),
        (lambda: xpnet.SGD(momentum=0.5, nesterov=1), "nesterov must be True or False, got 1"),
        (lambda: xpnet.SGD(weight_decay="x"), "weight decay must be a number, got 'x'"),
        (lambda: xpnet.AdaGrad(lr_decay="x"), "lr decay must be a number, got 'x'"),
        (lambda: xpnet.AdaGrad(weight_decay=-1), "weight decay must be >= 0, got -1.0"),
        (lambda: xpnet.AdaGrad(eps="x"), "eps must be a number, got 'x'"),
        (
            lambda: xpnet.AdaGrad(initial_accumulator_value=math.inf),
            "initial accumulator value must be >= 0, got inf",
        ),
        (lambda: xpnet.RMSProp(alpha="x"), "alpha must be a number, got 'x'"),
        (lambda: xpnet.RMSProp(eps=-1), "eps must be a positive number, got -1.0"),
        (lambda: xpnet.RMSProp(weight_decay=-1), "weight decay must be >= 0, got -1.0"),
        (lambda: xpnet.RMSProp(momentum=-0.5), "momentum must be in [0, 1), got -0.5"),
        (lambda: xpnet.Adam(betas=("x", 0.9)), "beta1 must be a number, got 'x'"),
        (lambda: xpnet.Adam(betas=(0.9, "x")), "beta2 must be a number, got 'x'"),
        (lambda: xpnet.Adam(betas=(0.9, 0.9, 0.9)), "betas must be a pair (beta1, beta2)"),
        (lambda: xpnet.Adam(eps=math.nan), "eps must be a positive number, got nan"),
        (lambda: xpnet.Adam(weight_decay=-1), "weight decay must be >= 0, got -1.0"),
        (lambda: xpnet.Adam(amsgrad="no"), "amsgrad must be True or False, got 'no'"),
        (lambda: xpnet.AdamW(lr=math.inf), "learning rate must be a positive number, got inf"),
        (lambda: xpnet.Momentum(momentum=1), "momentum must be in [0, 1), got 1.0"),
        (lambda: xpnet.Nesterov(momentum=0.0), "Nesterov momentum needs momentum > 0"),
    ],
)
def test_every_option_is_checked_with_its_own_name(make, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        make()


def test_options_at_the_edge_of_their_range():
    assert xpnet.SGD(momentum=0.0, dampening=0.0, weight_decay=0.0).slots == ()
    assert xpnet.AdaGrad(lr_decay=0.0, initial_accumulator_value=0.0).lr_decay == 0.0
    assert xpnet.Adam(betas=(0.0, 0.0)).betas == (0.0, 0.0)
    assert xpnet.Adam(lr=1e-300).lr == 1e-300


def test_make_optimizer_takes_any_case_and_checks_the_name():
    assert type(xpnet.make_optimizer("RMSProp")) is xpnet.RMSProp
    with pytest.raises(ConfigError, match="unknown optimizer 3"):
        xpnet.make_optimizer(3)


def test_the_rules_on_another_device_by_hand():
    """Every case above on array_api_strict's second device, whatever XPNET_TEST_BACKENDS
    selects: the state each rule creates must follow its weights there."""
    pytest.importorskip("array_api_strict")
    generic = xpnet.resolve("device1", "array_api_strict")
    for case in CASES:
        test_two_steps_match_the_hand_worked_rule(case, "plain", generic)
