# Chapter 5 in the book's style: the TwoLayerNet of layers, its gradients checked, then trained.
# ruff: noqa: NPY002 (the book's scripts draw from NumPy's global generator)
import numpy as np

from xpnet.book.ch05.two_layer_net import TwoLayerNet
from xpnet.book.dataset.mnist import load_mnist

(x_train, t_train), (x_test, t_test) = load_mnist(normalize=True, one_hot_label=True)

network = TwoLayerNet(input_size=784, hidden_size=5, output_size=10)
x_batch = x_train[:3]
t_batch = t_train[:3]
grad_numerical = network.numerical_gradient(x_batch, t_batch)
grad_backprop = network.gradient(x_batch, t_batch)
for key in grad_numerical.keys():
    diff = np.average(np.abs(grad_backprop[key] - grad_numerical[key]))
    print(key + " diff:" + str(diff) + " sum:" + str(np.sum(grad_backprop[key])))

network = TwoLayerNet(input_size=784, hidden_size=30, output_size=10)
train_size = x_train.shape[0]
batch_size = 60
iter_per_epoch = max(train_size / batch_size, 1)
for i in range(16):
    batch_mask = np.random.choice(train_size, batch_size)
    grad = network.gradient(x_train[batch_mask], t_train[batch_mask])
    for key in ("W1", "b1", "W2", "b2"):
        network.params[key] -= 0.1 * grad[key]
    loss = network.loss(x_train[batch_mask], t_train[batch_mask])
    if i % iter_per_epoch == 0:
        print(network.accuracy(x_train, t_train), network.accuracy(x_test, t_test), loss)
