"""Data on the training device, and the minibatches drawn from it.

The training set is validated and moved to the device once. Each epoch's sample order is one
permutation drawn on the host from a generator seeded with (seed, epoch) and moved once per epoch;
minibatches are slices of it gathered with `xp.take` on the device. Because the order depends only
on (seed, epoch), a resumed run, every benchmark runner and every process of a data-parallel run
take the same global minibatches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from array_api_compat import is_numpy_namespace

from ..backend import Backend
from ..errors import DataError, LabelError, ShapeError
from ..nn.functions import check_labels


@dataclass
class DeviceData:
    """A dataset's arrays on the training device (features in the network dtype, int64 labels)."""

    x_train: object
    t_train: object
    x_test: object
    t_test: object
    num_classes: int
    #: the training images as uint8 codes and the factor that makes them x_train (codes · factor,
    #: the same bits), for gathering a quarter of the bytes each step; None when not image data
    codes_train: object = None
    factor: float = 1.0


def uint8_codes(x: np.ndarray, scale, rows: int = 512) -> np.ndarray | None:
    """The uint8 codes c with c · float32(1/scale) == x exactly, or None when x is not such data.

    Derived from the features themselves (never stored beside them), so features changed after
    loading are never replaced by stale codes; in blocks of `rows`, about 0.1 s for MNIST.
    """
    if not scale or x.dtype != np.float32:
        return None
    factor, codes = np.float32(1 / scale), np.empty(x.shape, np.uint8)
    block = np.empty((min(rows, len(x)), *x.shape[1:]), np.float32)
    back = np.empty_like(block)
    for start in range(0, len(x), rows):
        part = x[start : start + rows]
        b, k = block[: len(part)], back[: len(part)]
        np.rint(np.multiply(part, np.float32(scale), out=b), out=b)
        if b.min() < 0 or b.max() > 255:
            return None
        codes[start : start + rows] = b
        np.multiply(codes[start : start + rows], factor, out=k, dtype=np.float32)
        if not np.array_equal(k, part):
            return None
    return codes


def _codes_to_device(dataset, be: Backend, dtype: str, shape):
    """The training images as uint8 codes on the device, and the factor that makes them the
    float32 features exactly; (None, 1.0) when they are not such data, or not on NumPy."""
    if dtype != "float32" or not is_numpy_namespace(be.xp):
        # elsewhere the cast and the multiply are separate operations a step (on a GPU, two more
        # kernel launches), which cost more than the smaller gather saves
        return None, 1.0
    scale = getattr(dataset, "scale", None)
    codes = uint8_codes(np.asarray(dataset.x_train), scale)
    if codes is None:
        return None, 1.0
    return be.asarray(np.reshape(codes, (codes.shape[0], *(shape or (-1,))))), 1.0 / scale


def host_labels(t, num_classes: int, what: str) -> np.ndarray:
    """`what`'s labels as int64 class indices (one-hot rows become their argmax), checked once."""
    t = np.asarray(t)
    if t.ndim == 2:  # one-hot rows
        t = t.argmax(axis=1)
    try:
        check_labels(t, (t.shape[0] if t.ndim else 0, num_classes))
    except (LabelError, ShapeError) as error:
        raise DataError(f"{what} data: {error}") from None
    return t.astype(np.int64, copy=False)


def split_to_device(x, t, num_classes: int, what: str, be: Backend, dtype, shape=None):
    """One split's features (flattened, or each sample in `shape`, in `dtype`) and checked int64
    labels, on the device."""
    x = be.asarray(np.reshape(x, (x.shape[0], *(shape or (-1,)))), dtype)
    return x, be.asarray(host_labels(t, num_classes, what))


def to_device(dataset, be: Backend, dtype: str, images: bool = False) -> DeviceData:
    """Validate a host dataset once and move it to the device once (as C×H×W images for CNNs)."""
    shape = None
    if images:
        shape = getattr(dataset, "image_shape", None)
        if shape is None:
            raise DataError(
                f"the {dataset.name} dataset has no image shape, so a CNN cannot train on it; "
                f"use --model mlp"
            )
    if (
        dataset.t_train.shape[0] != dataset.x_train.shape[0]
        or dataset.t_test.shape[0] != dataset.x_test.shape[0]
    ):
        raise DataError("the number of labels differs from the number of samples")
    c = dataset.num_classes
    x_train, t_train = split_to_device(
        dataset.x_train, dataset.t_train, c, "training", be, dtype, shape
    )
    x_test, t_test = split_to_device(dataset.x_test, dataset.t_test, c, "test", be, dtype, shape)
    codes, factor = _codes_to_device(dataset, be, dtype, shape)
    return DeviceData(x_train, t_train, x_test, t_test, c, codes, factor)


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the n training samples in `epoch` (host int64): a function of (seed, epoch)
    alone, so a resumed run, and every benchmark runner, takes the same minibatches."""
    return np.random.default_rng([seed, epoch]).permutation(n)


class Sampler:
    """The minibatches of a run: batch j of epoch e is rows order_e[j·B : (j+1)·B].

    The last partial batch of an epoch is dropped, as the slides do. With `shard` = (rank, size)
    a process takes its own 1/size of every global batch (rows rank·B/size onwards), so `size`
    processes together see exactly the minibatches of a single one.
    """

    def __init__(self, data: DeviceData, batch_size: int, seed: int, be: Backend, shard=(0, 1)):
        self.data, self.seed, self.be = data, seed, be
        self.n = data.x_train.shape[0]
        self.batch_size = batch_size
        self.steps_per_epoch = max(self.n // batch_size, 1)
        rank, size = shard
        if batch_size % size:
            raise DataError(
                f"a global batch of {batch_size} cannot be split evenly over {size} processes; "
                f"give a --batch-size that {size} divides"
            )
        per = batch_size // size
        self._rows = (rank * per, (rank + 1) * per)
        self._order = (None, None, None)  # (epoch, device permutation, labels in that order)
        x, codes = data.x_train, data.codes_train
        if codes is not None:
            # a quarter of the bytes to gather (uint8), normalized as the dataset was: the same
            # float32 values, ~25 µs less per step of the slides' net (docs/performance.md)
            float32, factor = x.dtype, np.float32(data.factor)

            def gather(i):  # NumPy only: the cast inside the multiply, one pass, no temporary
                return np.multiply(codes.take(i, axis=0), factor, dtype=float32)
        else:
            xp = be.xp

            def gather(i):
                return xp.take(x, i, axis=0)

        self.gather_x = gather

    def order(self, epoch: int):
        """This epoch's sample order on the device (drawn on the host, moved once per epoch)."""
        return self._epoch(epoch)[1]

    def _epoch(self, epoch: int) -> tuple:
        """(epoch, its order, the labels in that order), made once per epoch: a step's labels
        are then a slice, not a gather."""
        if self._order[0] != epoch:
            order = self.be.asarray(epoch_order(self.seed, epoch, self.n))
            self._order = (epoch, order, self.be.xp.take(self.data.t_train, order, axis=0))
        return self._order

    def batch(self, iteration: int):
        """(x, t) of this process for update number `iteration` (from 0), on the device."""
        epoch, j = divmod(iteration, self.steps_per_epoch)
        _, order, labels = self._epoch(epoch)
        start = j * self.batch_size + self._rows[0]
        stop = start + self._rows[1] - self._rows[0]
        return self.gather_x(order[start:stop]), labels[start:stop]
