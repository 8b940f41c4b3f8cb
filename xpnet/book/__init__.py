"""The book's own code on xpnet: its ``common`` and ``dataset`` packages and the chapter modules its
scripts import, by the book's names and signatures, on xpnet's layers, networks and optimizers.

A script of the book (oreilly-japan/deep-learning-from-scratch) runs after these edits of its
import lines, and nothing else:

- ``from common.X import ...`` → ``from xpnet.book.common.X import ...``
- ``from dataset.mnist import ...`` → ``from xpnet.book.dataset.mnist import ...``
- ``from M import ...``, M a module beside the script in chapter NN (two_layer_net,
  simple_convnet, deep_convnet) → ``from xpnet.book.chNN.M import ...``

On NumPy, after the same ``np.random.seed``, it prints what the book's code prints (to rounding):
the networks draw their initial weights, minibatches and dropout masks from NumPy's global
generator in the book's order and compute in float64. ``XPNET_DEVICE=cuda`` puts the data and the
networks on a GPU (xpnet.book.device). docs/book.md lists the scripts run and what they printed.
"""
