"""The book's dataset/mnist.py: ``load_mnist`` on xpnet's MNIST loader (xpnet.data: found in
$XPNET_DATA_DIR or the cache, else downloaded, every file checked against its MD5), returning what
the book's returns: images as uint8, or float32 divided by 255.0 with ``normalize``; labels as
uint8, or float64 one-hot rows; (N, 784) rows, or (N, 1, 28, 28) images without ``flatten``.

With XPNET_DEVICE=cuda (xpnet.book.device) the arrays are on the GPU.
"""

import numpy as np

from xpnet.book import device as _device
from xpnet.data.datasets import load_dataset as _load_dataset

train_num = 60000
test_num = 10000
img_dim = (1, 28, 28)
img_size = 784


def init_mnist():
    """Make sure the MNIST files are at hand (download and check them if they are not)."""
    _load_dataset("mnist", normalize=False)


def _change_one_hot_label(X):
    """Labels as float64 one-hot rows of 10, as the book's."""
    T = np.zeros((X.size, 10))
    T[np.arange(X.size), X] = 1
    return T


def load_mnist(normalize=True, flatten=True, one_hot_label=False):
    """MNIST as ((x_train, t_train), (x_test, t_test)), the book's way (see the module docstring).

    normalize: pixel values as float32 in [0.0, 1.0] (x / 255.0); else uint8 0..255.
    flatten: each image a row of 784 values; else (1, 28, 28).
    one_hot_label: labels as one-hot rows such as [0,0,1,0,0,0,0,0,0,0]; else integers.
    """
    data = _load_dataset("mnist", normalize=False, flatten=True)
    parts = {}
    for key, x, t in (("train", data.x_train, data.t_train), ("test", data.x_test, data.t_test)):
        if normalize:
            x = x.astype(np.float32)
            x /= 255.0  # float32 divided by 255, the book's rounding
        t = t.astype(np.uint8)
        if one_hot_label:
            t = _change_one_hot_label(t)
        if not flatten:
            x = x.reshape(-1, 1, 28, 28)
        be = _device.backend()
        parts[key] = (_device.put(x, be), _device.put(t, be))
    return parts["train"], parts["test"]
