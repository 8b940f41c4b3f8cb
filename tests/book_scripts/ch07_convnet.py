# Chapter 7 in the book's style: a small SimpleConvNet trained by the Trainer, then saved.

from xpnet.book.ch07.simple_convnet import SimpleConvNet
from xpnet.book.common.trainer import Trainer
from xpnet.book.dataset.mnist import load_mnist

(x_train, t_train), (x_test, t_test) = load_mnist(flatten=False)
x_train, t_train = x_train[:120], t_train[:120]
x_test, t_test = x_test[:100], t_test[:100]

max_epochs = 2
network = SimpleConvNet(
    input_dim=(1, 28, 28),
    conv_param={"filter_num": 4, "filter_size": 5, "pad": 0, "stride": 1},
    hidden_size=12,
    output_size=10,
    weight_init_std=0.01,
)
trainer = Trainer(
    network,
    x_train,
    t_train,
    x_test,
    t_test,
    epochs=max_epochs,
    mini_batch_size=40,
    optimizer="Adam",
    optimizer_param={"lr": 0.01},
    evaluate_sample_num_per_epoch=100,
)
trainer.train()
print("accuracy in batches of 15:", network.accuracy(x_test, t_test, batch_size=15))
network.save_params("params.pkl")
print("Saved Network Parameters!")
