# Chapter 6 in the book's style: the optimizers compared on one network each, and weight decay.
# ruff: noqa: NPY002 (the book's scripts draw from NumPy's global generator)
import numpy as np

from xpnet.book.common.multi_layer_net import MultiLayerNet
from xpnet.book.common.optimizer import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop
from xpnet.book.dataset.mnist import load_mnist

(x_train, t_train), (x_test, t_test) = load_mnist(normalize=True)
train_size = x_train.shape[0]
batch_size = 40
max_iterations = 12

optimizers = {
    "SGD": SGD(),
    "Momentum": Momentum(),
    "Nesterov": Nesterov(),
    "AdaGrad": AdaGrad(),
    "RMSprop": RMSprop(),
    "Adam": Adam(),
}
networks = {}
for key in optimizers:
    networks[key] = MultiLayerNet(input_size=784, hidden_size_list=[20, 20], output_size=10)
networks["decay"] = MultiLayerNet(
    input_size=784,
    hidden_size_list=[20, 20],
    output_size=10,
    activation="sigmoid",
    weight_init_std="xavier",
    weight_decay_lambda=0.1,
)
optimizers["decay"] = SGD(lr=0.1)

for i in range(max_iterations):
    batch_mask = np.random.choice(train_size, batch_size)
    x_batch = x_train[batch_mask]
    t_batch = t_train[batch_mask]
    for key in optimizers:
        grads = networks[key].gradient(x_batch, t_batch)
        optimizers[key].update(networks[key].params, grads)
    if i % 4 == 3:
        for key in optimizers:
            print(key + ":" + str(networks[key].loss(x_batch, t_batch)))
for key in optimizers:
    print(key + " test acc:" + str(networks[key].accuracy(x_test, t_test)))

# the optimizers on plain numbers, as the chapter's comparison on f(x, y) = x²/20 + y²
params = {"x": -7.0, "y": 2.0}
for key, optimizer in {"SGD": SGD(lr=0.95), "Adam": Adam(lr=0.3)}.items():
    params["x"], params["y"] = -7.0, 2.0
    for _ in range(5):
        optimizer.update(params, {"x": params["x"] / 10.0, "y": 2.0 * params["y"]})
    print(key + " at:" + str(params["x"]) + " " + str(params["y"]))
