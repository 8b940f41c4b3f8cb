"""The book's common/trainer.py: Trainer, its training loop with its log lines, on xpnet's
optimizers (xpnet.book.common.optimizer)."""

import numpy as np
from array_api_compat import device as _device_of

from xpnet.backend import namespace_of as _namespace_of
from xpnet.book.common.optimizer import *  # noqa: F403
from xpnet.book.common.optimizer import SGD as _SGD
from xpnet.book.common.optimizer import AdaGrad as _AdaGrad
from xpnet.book.common.optimizer import Adam as _Adam
from xpnet.book.common.optimizer import Momentum as _Momentum
from xpnet.book.common.optimizer import Nesterov as _Nesterov
from xpnet.book.common.optimizer import RMSprop as _RMSprop
from xpnet.errors import choose as _choose

_OPTIMIZERS = {"sgd": _SGD, "momentum": _Momentum, "nesterov": _Nesterov, "adagrad": _AdaGrad,
               "rmsprop": _RMSprop, "adam": _Adam}  # fmt: skip


def _rows(a, index):
    """a[index] for host indices `index`, on any backend (a gather on the array's device)."""
    if isinstance(a, np.ndarray):
        return a[index]
    xp = _namespace_of(a)
    return xp.take(a, xp.asarray(index, device=_device_of(a)), axis=0)


class Trainer:
    """Trains `network` on (x_train, t_train) for `epochs` epochs of minibatches of
    `mini_batch_size` drawn with replacement (np.random.choice, NumPy's global generator), with
    the optimizer named `optimizer` ('SGD', 'Momentum', 'Nesterov', 'AdaGrad', 'RMSprop', 'Adam')
    built from `optimizer_param`.

    With `verbose` it prints, as the book's, "train loss:<loss>" after every step and, at the
    start of each epoch, "=== epoch:<n>, train acc:<a>, test acc:<b> ===" measured on the first
    `evaluate_sample_num_per_epoch` samples of each set (all of them when None); ``train`` ends
    with the accuracy on the whole test set. The accuracies are kept in ``train_acc_list`` and
    ``test_acc_list``, the losses in ``train_loss_list``.

    As in the book, ``iter_per_epoch`` is train_size / mini_batch_size, a float: when the batch
    size does not divide the training set, ``current_iter % iter_per_epoch`` is 0 only at the first
    step (and wherever a multiple of it is whole), so the epoch lines stop. That is the book's
    behaviour, kept so that its scripts print what they print there.
    """

    def __init__(self, network, x_train, t_train, x_test, t_test,
                 epochs=20, mini_batch_size=100,
                 optimizer='SGD', optimizer_param={'lr':0.01},  # noqa: B006
                 evaluate_sample_num_per_epoch=None, verbose=True):  # fmt: skip
        self.network = network
        self.verbose = verbose
        self.x_train = x_train
        self.t_train = t_train
        self.x_test = x_test
        self.t_test = t_test
        self.epochs = epochs
        self.batch_size = mini_batch_size
        self.evaluate_sample_num_per_epoch = evaluate_sample_num_per_epoch
        name = _choose("optimizer", str(optimizer).lower(), tuple(_OPTIMIZERS))
        self.optimizer = _OPTIMIZERS[name](**optimizer_param)
        self.train_size = x_train.shape[0]
        self.iter_per_epoch = max(self.train_size / mini_batch_size, 1)
        self.max_iter = int(epochs * self.iter_per_epoch)
        self.current_iter = 0
        self.current_epoch = 0
        self.train_loss_list = []
        self.train_acc_list = []
        self.test_acc_list = []

    def train_step(self):
        """One minibatch step; at the start of an epoch, the accuracies."""
        batch_mask = np.random.choice(self.train_size, self.batch_size)  # noqa: NPY002 (the book's global generator)
        x_batch = _rows(self.x_train, batch_mask)
        t_batch = _rows(self.t_train, batch_mask)
        grads = self.network.gradient(x_batch, t_batch)
        self.optimizer.update(self.network.params, grads)
        loss = self.network.loss(x_batch, t_batch)
        self.train_loss_list.append(loss)
        if self.verbose:
            print("train loss:" + str(loss))
        if self.current_iter % self.iter_per_epoch == 0:
            self.current_epoch += 1
            x_train_sample, t_train_sample = self.x_train, self.t_train
            x_test_sample, t_test_sample = self.x_test, self.t_test
            if self.evaluate_sample_num_per_epoch is not None:
                n = self.evaluate_sample_num_per_epoch
                x_train_sample, t_train_sample = self.x_train[:n, ...], self.t_train[:n, ...]
                x_test_sample, t_test_sample = self.x_test[:n, ...], self.t_test[:n, ...]
            train_acc = self.network.accuracy(x_train_sample, t_train_sample)
            test_acc = self.network.accuracy(x_test_sample, t_test_sample)
            self.train_acc_list.append(train_acc)
            self.test_acc_list.append(test_acc)
            if self.verbose:
                print(
                    f"=== epoch:{self.current_epoch}, train acc:{train_acc}, test acc:{test_acc} ==="
                )
        self.current_iter += 1

    def train(self):
        """All max_iter steps, then the accuracy on the whole test set."""
        for _ in range(self.max_iter):
            self.train_step()
        test_acc = self.network.accuracy(self.x_test, self.t_test)
        if self.verbose:
            print("=============== Final Test Accuracy ===============")
            print("test acc:" + str(test_acc))
