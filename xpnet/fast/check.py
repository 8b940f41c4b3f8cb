"""self_check: the fused kernels against the layers and the optimizers' plain rules, at run time.

The compiled CuPy kernels are built on the user's GPU, so the registry (which imports this
module; this one imports no lookup) runs this once per
(device, dtype, use) before their first use; the tests run it on every backend that has kernels.
"""

from __future__ import annotations

from ..backend import DTYPES, Backend, dtype_name
from ..nn.mlp import MultiLayerNet
from ..nn.optimizers import SGD, Adam, AdamW
from .step import FusedStep

#: what self_check covers: an activation's step kernels, or an optimizer kernel
CHECKS = ("relu", "sigmoid", "tanh", "sgd", "adam")


def fixed_kernels(kernels):
    """An optimizer's ``kernels`` that always uses this kernels object (self_check, replays)."""
    return lambda use, like: getattr(kernels, use, None)


def self_check(be: Backend, kernels, dtype=None, uses=CHECKS) -> str | None:
    """Compare the fused path with the layers on random networks; None when all agree.

    For each activation in `uses`: more rows and more classes than a CUDA block has threads,
    weight decay and an out-of-range label (NaN, never a read outside the row); for "sgd" and
    "adam", the optimizers that use them against their plain rules (skipped where the kernels
    have no such kernel: both sides would run the plain rule). In `dtype`, or float32 and
    float64 when None. The compiled CuPy kernels run it once per (device, dtype, use) before
    their first use, so a kernel that fails to compile or computes wrong numbers costs speed,
    not correctness.
    """
    import numpy

    if kernels is None:
        return None
    unknown = set(uses) - set(CHECKS)
    if unknown:
        raise ValueError(f"self_check knows {CHECKS}, not {sorted(unknown)}")
    xp = be.xp
    rng = numpy.random.default_rng(0)
    tol = {"float32": 2e-4, "float64": 1e-10}
    optimizers = {
        "sgd": [lambda: SGD(0.1)],
        "adam": [lambda: Adam(0.01), lambda: AdamW(0.01, weight_decay=0.1)],
    }

    def close(a, b, name) -> bool:
        a, b = xp.astype(a, xp.float64), xp.astype(b, xp.float64)
        return bool(xp.max(xp.abs(a - b)) <= tol[name] * (1.0 + float(xp.max(xp.abs(b)))))

    for name in DTYPES if dtype is None else (dtype_name(xp, dtype),):
        for use in uses:
            has_kernel = getattr(kernels, use, None) is not None
            for make in optimizers.get(use, ()) if has_kernel else ():
                params = {"p": be.asarray(rng.standard_normal(50), name)}
                grads = {"p": be.asarray(rng.standard_normal(50), name)}
                fast, plain = make(), make()
                fast.kernels = fixed_kernels(kernels)
                p_fast = {k: xp.asarray(v, copy=True) for k, v in params.items()}
                p_plain = {k: xp.asarray(v, copy=True) for k, v in params.items()}
                for _ in range(3):
                    fast.update(p_fast, grads)
                    plain.update(p_plain, grads)
                if not close(p_fast["p"], p_plain["p"], name):
                    return f"the {type(fast).__name__} update differs ({name})"
            if use in optimizers:
                continue
            for n, d, h, c in [(300, 7, 5, 3), (9, 6, 4, 300)]:
                net = MultiLayerNet(d, [h], c, use, "he", 0.01, device=be, dtype=name, seed=1)
                net.set_params(
                    {
                        k: be.asarray(rng.standard_normal(v.shape), name)
                        for k, v in net.params.items()
                    }
                )
                x = be.asarray(rng.standard_normal((n, d)), name)
                t = be.asarray(rng.integers(0, c, n))
                ref_loss = net.forward_backward(x, t)
                ref = {k: xp.asarray(g, copy=True) for k, g in net.grads.items()}
                step = FusedStep.plan(net, kernels)
                loss = step.forward_backward(x, t)
                where = f"{name}, {n} rows, {c} classes"
                if not close(loss, ref_loss, name):
                    return f"the {use} network's loss differs ({where})"
                for key, grad in net.grads.items():
                    if not close(grad, ref[key], name):
                        return f"the {use} network's {key} gradient differs ({where})"
                if not close(step.predict(x), net.predict(x), name):
                    return f"the {use} network's scores differ ({where})"
                if getattr(kernels, "checks_labels", False):
                    bad = be.asarray(numpy.array([0, c] + [1] * (n - 2)))
                    if not bool(xp.isnan(step.forward_backward(x, bad))):
                        return f"an out-of-range label did not give a NaN loss ({where})"
    return None
