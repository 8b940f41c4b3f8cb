"""The slides' own NumPy code (chapter 5 TwoLayerNet and its training loop), as written.

Kept as the baseline of scripts/bench.py: float64 weights (np.random.randn), float32 inputs,
minibatches drawn with replacement by np.random.choice, boolean-mask ReLU, the loss computed a
second time after each update, and train/test accuracy on the full sets once per epoch. Only the
data loading (the slides use tensorflow.keras.datasets) and the printing are left to the caller.
"""

from collections import OrderedDict

import numpy as np


def softmax(x):
    x = x - np.max(x, axis=1, keepdims=True)
    exp_x = np.exp(x)
    return exp_x / np.sum(exp_x, axis=1, keepdims=True)


def cross_entropy_error(y, t):
    batch_size = y.shape[0]
    return -np.sum(t * np.log(y + 1e-7)) / batch_size


class Affine:
    def __init__(self, W, b):
        self.W = W
        self.b = b
        self.x = None
        self.dW = None
        self.db = None

    def forward(self, x):
        self.x = x
        return np.dot(x, self.W) + self.b

    def backward(self, dout):
        dx = np.dot(dout, self.W.T)
        self.dW = np.dot(self.x.T, dout)
        self.db = np.sum(dout, axis=0)
        return dx


class ReLU:
    def __init__(self):
        self.mask = None

    def forward(self, x):
        self.mask = x <= 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout):
        dout[self.mask] = 0
        return dout


class SoftmaxWithLoss:
    def __init__(self):
        self.y = None
        self.t = None
        self.loss = None

    def forward(self, x, t):
        self.y = softmax(x)
        self.t = t
        self.loss = cross_entropy_error(self.y, self.t)
        return self.loss

    def backward(self, dout=1):
        batch_size = self.y.shape[0]
        dx = (self.y - self.t) / batch_size
        return dx * dout


def to_onehot(labels, num_cls=10):
    y = np.zeros((labels.size, num_cls), dtype=np.float32)
    y[np.arange(labels.size), labels] = 1.0
    return y


class TwoLayerNet:
    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01):
        self.params = {}
        self.params["W1"] = weight_init_std * np.random.randn(input_size, hidden_size)
        self.params["b1"] = np.zeros(hidden_size)
        self.params["W2"] = weight_init_std * np.random.randn(hidden_size, output_size)
        self.params["b2"] = np.zeros(output_size)
        self.layers = OrderedDict()
        self.layers["Affine1"] = Affine(self.params["W1"], self.params["b1"])
        self.layers["ReLU1"] = ReLU()
        self.layers["Affine2"] = Affine(self.params["W2"], self.params["b2"])
        self.lastLayer = SoftmaxWithLoss()

    def predict(self, x):
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x, t):
        scores = self.predict(x)
        return self.lastLayer.forward(scores, t)

    def accuracy(self, x, t):
        scores = self.predict(x)
        y_pred = np.argmax(scores, axis=1)
        t_labels = np.argmax(t, axis=1)
        return np.sum(y_pred == t_labels) / float(x.shape[0])

    def gradient(self, x, t):
        self.loss(x, t)
        dout = self.lastLayer.backward()
        layers = list(self.layers.values())
        layers.reverse()
        for layer in layers:
            dout = layer.backward(dout)
        grads = {}
        grads["W1"] = self.layers["Affine1"].dW
        grads["b1"] = self.layers["Affine1"].db
        grads["W2"] = self.layers["Affine2"].dW
        grads["b2"] = self.layers["Affine2"].db
        return grads


def train(x_train, t_train, x_test, t_test, iters_num=10000, batch_size=100, learning_rate=0.1,
          hidden_size=50, seed=0, log=None):  # fmt: skip
    """The slides' training loop on flattened float32 images and integer labels.

    Returns (final test accuracy, [(iteration, train acc, test acc), ...] at the slides' log points).
    """
    np.random.seed(seed)
    t_train_oh = to_onehot(t_train)
    t_test_oh = to_onehot(t_test)
    network = TwoLayerNet(input_size=x_train.shape[1], hidden_size=hidden_size, output_size=10)
    train_size = x_train.shape[0]
    iter_per_epoch = max(train_size // batch_size, 1)
    history = []
    for i in range(iters_num):
        batch_mask = np.random.choice(train_size, batch_size)
        x_batch = x_train[batch_mask]
        t_batch = t_train_oh[batch_mask]
        grad = network.gradient(x_batch, t_batch)
        for key in ("W1", "b1", "W2", "b2"):
            network.params[key] -= learning_rate * grad[key]
        network.loss(x_batch, t_batch)
        if i % iter_per_epoch == 0:
            train_acc = network.accuracy(x_train, t_train_oh)
            test_acc = network.accuracy(x_test, t_test_oh)
            history.append((i, train_acc, test_acc))
            if log:
                log(
                    f"iter {i:5d} / {iters_num} | train acc: {train_acc:.4f} test acc: {test_acc:.4f}"
                )
    return network.accuracy(x_test, t_test_oh), history
