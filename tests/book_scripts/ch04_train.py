# Chapter 4 in the book's style: the sigmoid TwoLayerNet trained by minibatch gradient descent.
# ruff: noqa: NPY002 (the book's scripts draw from NumPy's global generator)
import numpy as np

from xpnet.book.ch04.two_layer_net import TwoLayerNet
from xpnet.book.common.functions import cross_entropy_error, softmax
from xpnet.book.common.gradient import numerical_gradient
from xpnet.book.dataset.mnist import load_mnist

(x_train, t_train), (x_test, t_test) = load_mnist(normalize=True, one_hot_label=True)

# a numerical gradient of a tiny linear model, as the chapter's simpleNet
W = np.random.randn(4, 3)
x = x_train[0, 300:304]


t = np.array([0, 0, 1])


def f(w):
    return cross_entropy_error(softmax(np.dot(x, w)), t)


print("dW:", " ".join(str(v) for v in numerical_gradient(f, W).flatten()))

network = TwoLayerNet(input_size=784, hidden_size=20, output_size=10)
iters_num = 31
train_size = x_train.shape[0]
batch_size = 50
learning_rate = 0.5
iter_per_epoch = max(train_size / batch_size, 1)

for i in range(iters_num):
    batch_mask = np.random.choice(train_size, batch_size)
    x_batch = x_train[batch_mask]
    t_batch = t_train[batch_mask]
    grad = network.gradient(x_batch, t_batch)
    for key in ("W1", "b1", "W2", "b2"):
        network.params[key] -= learning_rate * grad[key]
    loss = network.loss(x_batch, t_batch)
    if i % 10 == 0:
        print("loss:" + str(loss))
    if i % iter_per_epoch == 0:
        print(
            "train acc, test acc | "
            + str(network.accuracy(x_train, t_train))
            + ", "
            + str(network.accuracy(x_test, t_test))
        )
