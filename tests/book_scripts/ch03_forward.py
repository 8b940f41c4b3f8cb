# Chapter 3 in the book's style: a trained 3-layer network read from a pickle, run on the test set.

import pickle

import numpy as np

from xpnet.book.common.functions import sigmoid, softmax
from xpnet.book.dataset.mnist import load_mnist


def get_data():
    _, (x_test, t_test) = load_mnist(normalize=True, flatten=True, one_hot_label=False)
    return x_test, t_test


def init_network():
    with open("weights.pkl", "rb") as f:
        network = pickle.load(f)
    return network


def predict(network, x):
    W1, W2, W3 = network["W1"], network["W2"], network["W3"]
    b1, b2, b3 = network["b1"], network["b2"], network["b3"]
    z1 = sigmoid(np.dot(x, W1) + b1)
    z2 = sigmoid(np.dot(z1, W2) + b2)
    return softmax(np.dot(z2, W3) + b3)


x, t = get_data()
network = init_network()

batch_size = 25
accuracy_cnt = 0
for i in range(0, len(x), batch_size):
    y_batch = predict(network, x[i : i + batch_size])
    p = np.argmax(y_batch, axis=1)
    accuracy_cnt += np.sum(p == t[i : i + batch_size])

print("Accuracy:" + str(float(accuracy_cnt) / len(x)))
print("first probabilities:", " ".join(str(v) for v in predict(network, x[:1])[0]))
