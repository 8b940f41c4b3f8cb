"""Hand-written float64 references for tests/test_book.py: the book's networks, written out once more
in plain NumPy (no xpnet), from the formulas of the book's chapters.

A network is a list of layer dicts; ``forward`` keeps what ``backward`` needs in them. Random draws
(initial weights, minibatches, dropout masks) come from NumPy's global generator in the order the
book's code draws them, so a reference and an xpnet.book script seeded alike see the same numbers.
"""

# ruff: noqa: NPY002 (the book's code draws from NumPy's global generator)

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

DELTA = 1e-7  # the book's guard in log(y + δ)
BN_EPS = 1e-6  # the book's batch-normalization ε


def normalized(x_uint8):
    """Pixels as the book's load_mnist normalizes them: float32 divided by 255."""
    return x_uint8.astype(np.float32) / np.float32(255.0)


def softmax(a):
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def loss_and_grad(scores, labels):
    """The book's softmax cross-entropy: −mean log(y_true + δ), and its gradient (y − t) / N."""
    n = scores.shape[0]
    if labels.ndim == 2:
        labels = labels.argmax(axis=1)
    y = softmax(scores)
    loss = -np.log(y[np.arange(n), labels] + DELTA).sum() / n
    dy = y.copy()
    dy[np.arange(n), labels] -= 1.0
    return loss, dy / n


# -- layers ----------------------------------------------------------------------------------------


def affine(W, b):
    return {"kind": "affine", "W": W, "b": b}


def conv(W, b, stride=1, pad=0):
    return {"kind": "conv", "W": W, "b": b, "stride": stride, "pad": pad}


def act(kind):
    return {"kind": kind}


def pool():
    return {"kind": "pool"}


def dropout(ratio):
    return {"kind": "dropout", "ratio": ratio}


def batchnorm(n):
    return {"kind": "bn", "gamma": np.ones(n), "beta": np.zeros(n), "rm": np.zeros(n),
            "rv": np.zeros(n)}  # fmt: skip


def _forward(layer, x, train):
    kind = layer["kind"]
    if kind == "affine":
        layer["x_shape"] = x.shape
        layer["x"] = x = x.reshape(x.shape[0], -1).astype(np.float64)
        return x @ layer["W"] + layer["b"]
    if kind == "relu":
        layer["mask"] = x > 0
        return np.where(x > 0, x, 0.0)
    if kind == "sigmoid":
        layer["y"] = y = 1.0 / (1.0 + np.exp(-x))
        return y
    if kind == "dropout":
        if not train:
            return x * (1.0 - layer["ratio"])
        layer["mask"] = np.random.rand(*x.shape) > layer["ratio"]
        return x * layer["mask"]
    if kind == "bn":
        shape = x.shape
        x = x.reshape(shape[0], -1)
        if train:
            mu = x.mean(axis=0)
            xc = x - mu
            var = (xc**2).mean(axis=0)
            std = np.sqrt(var + BN_EPS)
            layer.update(xc=xc, std=std, xn=xc / std)
            layer["rm"] = 0.9 * layer["rm"] + 0.1 * mu
            layer["rv"] = 0.9 * layer["rv"] + 0.1 * var
            xn = layer["xn"]
        else:
            xn = (x - layer["rm"]) / np.sqrt(layer["rv"] + BN_EPS)
        return (layer["gamma"] * xn + layer["beta"]).reshape(shape)
    if kind == "conv":
        W, s, p = layer["W"], layer["stride"], layer["pad"]
        xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (p, p), (p, p)))
        win = sliding_window_view(xp, W.shape[2:], axis=(2, 3))[:, :, ::s, ::s]
        layer.update(win=win, x_shape=x.shape)
        return np.einsum("ncyxij,fcij->nfyx", win, W, optimize=True) + layer["b"][:, None, None]
    if kind == "pool":  # 2×2, stride 2
        n, c, h, w = x.shape
        windows = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5)
        windows = windows.reshape(n, c, h // 2, w // 2, 4)
        layer.update(arg=windows.argmax(axis=-1), x_shape=x.shape)
        return windows.max(axis=-1)
    raise ValueError(kind)


def _backward(layer, d):
    kind = layer["kind"]
    if kind == "affine":
        layer["dW"] = layer["x"].T @ d
        layer["db"] = d.sum(axis=0)
        return (d @ layer["W"].T).reshape(layer["x_shape"])
    if kind == "relu":
        return np.where(layer["mask"], d, 0.0)
    if kind == "sigmoid":
        y = layer["y"]
        return d * y * (1.0 - y)
    if kind == "dropout":
        return d * layer["mask"]
    if kind == "bn":
        shape = d.shape
        d = d.reshape(shape[0], -1)
        xn, std, n = layer["xn"], layer["std"], d.shape[0]
        layer["dbeta"] = d.sum(axis=0)
        layer["dgamma"] = (d * xn).sum(axis=0)
        dxn = layer["gamma"] * d
        # x̂ = (x − μ)/σ: the gradient through the batch mean and variance, in closed form
        dx = (dxn - dxn.mean(axis=0) - xn * (dxn * xn).mean(axis=0)) / std
        del n
        return dx.reshape(shape)
    if kind == "conv":
        W, s, p = layer["W"], layer["stride"], layer["pad"]
        win = layer["win"]
        layer["dW"] = np.einsum("nfyx,ncyxij->fcij", d, win, optimize=True)
        layer["db"] = d.sum(axis=(0, 2, 3))
        n, c, h, w = layer["x_shape"]
        oh, ow = d.shape[2:]
        dx = np.zeros((n, c, h + 2 * p, w + 2 * p))
        for i in range(W.shape[2]):
            for j in range(W.shape[3]):
                part = np.einsum("nfyx,fc->ncyx", d, W[:, :, i, j])
                dx[:, :, i : i + s * (oh - 1) + 1 : s, j : j + s * (ow - 1) + 1 : s] += part
        return dx[:, :, p : p + h, p : p + w]
    if kind == "pool":
        n, c, h, w = layer["x_shape"]
        onehot = np.arange(4) == layer["arg"][..., None]  # (n, c, h/2, w/2, 4)
        dx = (onehot * d[..., None]).reshape(n, c, h // 2, w // 2, 2, 2)
        return dx.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)
    raise ValueError(kind)


class Net:
    """A sequence of reference layers ending in the book's softmax cross-entropy."""

    def __init__(self, layers, weight_decay=0.0):
        self.layers = layers
        self.weight_decay = weight_decay

    def params(self) -> dict:
        """The parameters by the book's names: W and b numbered over the layers that have them,
        then gamma and beta numbered over the batch-normalization layers."""
        out, bn = {}, {}
        weighted = [layer for layer in self.layers if "W" in layer]
        for i, layer in enumerate(weighted, 1):
            out[f"W{i}"], out[f"b{i}"] = layer, layer
        normed = [layer for layer in self.layers if layer["kind"] == "bn"]
        for i, layer in enumerate(normed, 1):
            bn[f"gamma{i}"], bn[f"beta{i}"] = layer, layer
        return {**out, **bn}

    def get(self, key):
        return self.params()[key][key.rstrip("0123456789")]

    def set(self, key, value):
        self.params()[key][key.rstrip("0123456789")] = value

    def scores(self, x, train=False):
        for layer in self.layers:
            x = _forward(layer, x, train)
        return x

    def loss(self, x, t, train=False):
        loss, _ = loss_and_grad(self.scores(x, train), t)
        decay = sum(0.5 * self.weight_decay * (self.get(k) ** 2).sum() for k in self.params()
                    if k.startswith("W"))  # fmt: skip
        return loss + decay

    def gradient(self, x, t) -> dict:
        _, d = loss_and_grad(self.scores(x, True), t)
        for layer in reversed(self.layers):
            d = _backward(layer, d)
        grads = {}
        for key, layer in self.params().items():
            name = key.rstrip("0123456789")
            grads[key] = layer["d" + name]
            if name == "W":
                grads[key] = grads[key] + self.weight_decay * layer["W"]
        return grads

    def accuracy(self, x, t):
        labels = t.argmax(axis=1) if t.ndim == 2 else t
        return (self.scores(x).argmax(axis=1) == labels).sum() / float(x.shape[0])


# -- the book's optimizer rules ------------------------------------------------------------------


class Optimizer:
    """The book's update rules (chapter 6), on a reference Net."""

    def __init__(self, kind, lr, **options):
        self.kind, self.lr, self.options = kind, lr, options
        self.state: dict = {}
        self.t = 0

    def step(self, net: Net, grads: dict) -> None:
        self.t += 1
        lr, o = self.lr, self.options
        for key, g in grads.items():
            w = net.get(key)
            s = self.state.setdefault(key, [np.zeros_like(w), np.zeros_like(w)])
            if self.kind == "sgd":
                w = w - lr * g
            elif self.kind == "momentum":
                s[0] = o.get("momentum", 0.9) * s[0] - lr * g
                w = w + s[0]
            elif self.kind == "nesterov":
                mu = o.get("momentum", 0.9)
                w = w + mu * mu * s[0] - (1 + mu) * lr * g
                s[0] = mu * s[0] - lr * g
            elif self.kind == "adagrad":
                s[0] = s[0] + g * g
                w = w - lr * g / (np.sqrt(s[0]) + 1e-7)
            elif self.kind == "rmsprop":
                rho = o.get("decay_rate", 0.99)
                s[0] = rho * s[0] + (1 - rho) * g * g
                w = w - lr * g / (np.sqrt(s[0]) + 1e-7)
            elif self.kind == "adam":
                b1, b2 = 0.9, 0.999
                lr_t = lr * np.sqrt(1.0 - b2**self.t) / (1.0 - b1**self.t)
                s[0] = s[0] + (1 - b1) * (g - s[0])
                s[1] = s[1] + (1 - b2) * (g * g - s[1])
                w = w - lr_t * s[0] / (np.sqrt(s[1]) + 1e-7)
            else:
                raise ValueError(self.kind)
            net.set(key, w)
