# Chapter 8 in the book's style: DeepConvNet, two training steps with dropout, saved and reloaded.
# ruff: noqa: NPY002 (the book's scripts draw from NumPy's global generator)
import numpy as np

from xpnet.book.ch08.deep_convnet import DeepConvNet
from xpnet.book.common.optimizer import Adam
from xpnet.book.dataset.mnist import load_mnist

(x_train, t_train), (x_test, t_test) = load_mnist(flatten=False)

network = DeepConvNet()
optimizer = Adam(lr=0.001)
for _ in range(2):
    batch_mask = np.random.choice(x_train.shape[0], 6)
    grads = network.gradient(x_train[batch_mask], t_train[batch_mask])
    optimizer.update(network.params, grads)
    print("train loss:" + str(network.loss(x_train[batch_mask], t_train[batch_mask])))

print("test acc:" + str(network.accuracy(x_test[:10], t_test[:10], batch_size=5)))
scores = network.predict(x_test[:2], train_flg=False)
print("scores:", " ".join(str(v) for v in scores.flatten()))
network.save_params("deep_convnet_params.pkl")

network = DeepConvNet()
network.load_params("deep_convnet_params.pkl")
print("reloaded test acc:" + str(network.accuracy(x_test[:10], t_test[:10], batch_size=5)))
