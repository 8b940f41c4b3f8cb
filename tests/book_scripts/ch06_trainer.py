# Chapter 6 in the book's style: batch normalization and dropout, trained by the Trainer.

from xpnet.book.common.multi_layer_net_extend import MultiLayerNetExtend
from xpnet.book.common.trainer import Trainer
from xpnet.book.dataset.mnist import load_mnist

(x_train, t_train), (x_test, t_test) = load_mnist(normalize=True)
x_train = x_train[:200]
t_train = t_train[:200]

network = MultiLayerNetExtend(
    input_size=784,
    hidden_size_list=[30, 30],
    output_size=10,
    weight_decay_lambda=0.01,
    use_dropout=True,
    dropout_ration=0.2,
    use_batchnorm=True,
)
trainer = Trainer(
    network,
    x_train,
    t_train,
    x_test,
    t_test,
    epochs=3,
    mini_batch_size=50,
    optimizer="Momentum",
    optimizer_param={"lr": 0.05},
    evaluate_sample_num_per_epoch=60,
)
trainer.train()
print("accuracies:", trainer.train_acc_list, trainer.test_acc_list)
