"""CNN runners for bench.py: the book's code as written, xpnet (its Trainer, and the book reader's
loop on xpnet's fast path), and a PyTorch reference.

Each trains the book's SimpleConvNet (conv 30@5×5 - ReLU - pool 2×2 - Affine 100 - ReLU - Affine
10), or its DeepConvNet (the "deep-cnn" configuration: xpnet and PyTorch only, the book's code
for it is not here), with Adam (lr 0.001), batch 100, on the same minibatches (xpnet's epoch
order: a permutation drawn from (seed, epoch)), xpnet and PyTorch from the same initial weights.
Only the steps are timed (gather, forward, backward, update); the test accuracy is measured
afterwards.
"""

from __future__ import annotations

import time

import numpy as np

from xpnet.backend import resolve, synchronize, to_numpy
from xpnet.nn.network import count_correct
from xpnet.training import TrainConfig, Trainer, epoch_order


def _config(cfg, iters: int, seed: int) -> TrainConfig:
    return TrainConfig(
        model=cfg.model, batch_size=cfg.batch_size, lr=cfg.lr, iters=iters, seed=seed,
        log_every=iters,
    )  # fmt: skip


def network(cfg, image_shape, seed: int):
    """The configuration's network with the Trainer's initial weights (its model defaults)."""
    from xpnet.nn.convnet import DeepConvNet, SimpleConvNet

    if cfg.model == "simple-cnn":
        return SimpleConvNet(image_shape, seed=seed)
    return DeepConvNet(image_shape, seed=seed)


def _batches(n: int, batch: int, seed: int, iters: int):
    """The minibatch indices of xpnet's Trainer, on the host."""
    steps = n // batch
    for i in range(iters):
        epoch, k = divmod(i, steps)
        if k == 0 or i == 0:
            order = epoch_order(seed, epoch, n)
        yield order[k * batch : (k + 1) * batch]


def run_xpnet(data, cfg, iters: int, seed: int, device: str, backend: str) -> dict:
    trainer = Trainer(_config(cfg, iters, seed), data, None, verbose=False, progress=False,
                      backend=resolve(device, backend))  # fmt: skip
    net = trainer.net
    synchronize(trainer.data.x_train)
    start = time.perf_counter()
    trainer.advance(iters)
    synchronize(net.params["W1"])
    seconds = time.perf_counter() - start
    d = trainer.data
    hits = count_correct(lambda xb: net.predict(xb), d.x_test, d.t_test, net.eval_batch_size)
    return {"seconds": seconds, "test_acc": int(hits) / d.x_test.shape[0]}


def run_reader(data, cfg, iters: int, seed: int) -> dict:
    """The book reader's loop on xpnet (NumPy): ``grads = net.gradient(x, t)`` then
    ``optimizer.update(net.params, grads)``, after ``xpnet.fast.install(net, optimizer)``; host
    minibatches gathered by indexing, as the book's code does."""
    import xpnet.fast
    from xpnet.nn.optimizers import Adam

    shape = (-1, *data.image_shape)
    x, t = data.x_train.reshape(shape), data.t_train
    net, opt = network(cfg, data.image_shape, seed), Adam(lr=cfg.lr)
    if xpnet.fast.install(net, opt) is None:
        raise RuntimeError("no fast step for this network (XPNET_FUSED=0?)")
    start = time.perf_counter()
    for idx in _batches(len(x), cfg.batch_size, seed, iters):
        grads = net.gradient(x[idx], t[idx])
        opt.update(net.params, grads)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "test_acc": net.accuracy(data.x_test.reshape(shape), data.t_test)}


def run_book(data, cfg, iters: int, seed: int) -> dict:
    """The book's ch07 SimpleConvNet and Adam as written (float64)."""
    from book_convnet_reference import BookAdam, BookSimpleConvNet

    shape = (-1, *data.image_shape)
    x = data.x_train.reshape(shape).astype(np.float64)
    t = data.t_train
    net, opt = BookSimpleConvNet(seed=seed), BookAdam(lr=cfg.lr)
    start = time.perf_counter()
    for idx in _batches(len(x), cfg.batch_size, seed, iters):
        opt.update(net.params, net.gradient(x[idx], t[idx]))
    seconds = time.perf_counter() - start
    test_acc = net.accuracy(data.x_test.reshape(shape).astype(np.float64), data.t_test)
    return {"seconds": seconds, "test_acc": float(test_acc)}


def torch_train(model, opt, x, t, seed: int, iters: int, batch: int, after_step=None) -> None:
    """`iters` eager PyTorch steps on xpnet's minibatches (a permutation per epoch drawn from
    (seed, epoch), gathered on the device): cross-entropy, backward, `opt.step()`, then
    `after_step(i, loss)` if given. The PyTorch reference of every bench.py configuration."""
    import torch

    n = x.shape[0]
    steps = n // batch
    order = None
    for i in range(iters):
        epoch, k = divmod(i, steps)
        if k == 0 or order is None:
            order = torch.from_numpy(epoch_order(seed, epoch, n)).to(x.device)
        idx = order[k * batch : (k + 1) * batch]
        loss = torch.nn.functional.cross_entropy(
            model(x.index_select(0, idx)), t.index_select(0, idx)
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if after_step is not None:
            after_step(i, loss)


def run_torch(data, cfg, iters: int, seed: int, device: str) -> dict:
    """Plain PyTorch: nn.Conv2d/MaxPool2d/Linear, F.cross_entropy, torch.optim.Adam, eager."""
    import torch

    from xpnet.nn.convnet import SimpleConvNet

    dev = torch.device(device)
    init = SimpleConvNet(data.image_shape, seed=seed).params
    conv = torch.nn.Conv2d(data.image_shape[0], 30, 5)
    fc1, fc2 = torch.nn.Linear(*init["W2"].shape), torch.nn.Linear(*init["W3"].shape)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(to_numpy(init["W1"])))
        fc1.weight.copy_(torch.from_numpy(to_numpy(init["W2"]).T.copy()))
        fc2.weight.copy_(torch.from_numpy(to_numpy(init["W3"]).T.copy()))
        for layer in (conv, fc1, fc2):
            layer.bias.zero_()
    model = torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                fc1, torch.nn.ReLU(), fc2).to(dev)  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    shape = (-1, *data.image_shape)
    x = torch.from_numpy(data.x_train.reshape(shape)).to(dev)
    t = torch.from_numpy(data.t_train.astype(np.int64)).to(dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    torch_train(model, opt, x, t, seed, iters, cfg.batch_size)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        xt = torch.from_numpy(data.x_test.reshape(shape)).to(dev)
        tt = torch.from_numpy(data.t_test.astype(np.int64)).to(dev)
        hits = sum(int((model(xt[i : i + 1000]).argmax(1) == tt[i : i + 1000]).sum())
                   for i in range(0, len(xt), 1000))  # fmt: skip
    return {"seconds": seconds, "test_acc": hits / len(xt)}
