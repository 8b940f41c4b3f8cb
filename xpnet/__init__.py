"""xpnet: the networks of "Deep Learning from Scratch" with hand-written backprop, on any array backend.

One code path runs on NumPy, CuPy, PyTorch tensors and any Array API library: every function and
layer takes its array namespace from its inputs, and only `xpnet.backend.resolve` (used at the
edge: the command line, the data loaders, network constructors) picks a device.
"""

from .backend import Backend, Random, resolve, to_numpy
from .data import Dataset, load_dataset, load_mnist
from .errors import XpnetError
from .nn.functions import (
    cross_entropy_error,
    identity,
    log_softmax,
    one_hot,
    relu,
    sigmoid,
    softmax,
    step_function,
    tanh,
)
from .nn.gradcheck import max_relative_error, numerical_gradient
from .nn.initializers import INITIALIZERS
from .nn.layers import Affine, Layer, ReLU, Sigmoid, SoftmaxWithLoss, Tanh
from .nn.mlp import MultiLayerNet, TwoLayerNet
from .nn.network import Network
from .nn.optimizers import (
    OPTIMIZERS,
    SGD,
    AdaGrad,
    Adam,
    AdamW,
    Momentum,
    Nesterov,
    Optimizer,
    RMSProp,
    make_optimizer,
)
from .nn.perceptron import AND, NAND, OR, XOR, perceptron
from .nn.three_layer import forward, init_network
from .training.checkpoint import load_checkpoint, load_model, save_checkpoint

__version__ = "0.1.0"

__all__ = [
    "AND",
    "INITIALIZERS",
    "NAND",
    "OPTIMIZERS",
    "OR",
    "SGD",
    "XOR",
    "AdaGrad",
    "Adam",
    "AdamW",
    "Affine",
    "Backend",
    "Dataset",
    "Layer",
    "Momentum",
    "MultiLayerNet",
    "Nesterov",
    "Network",
    "Optimizer",
    "RMSProp",
    "Random",
    "ReLU",
    "Sigmoid",
    "SoftmaxWithLoss",
    "Tanh",
    "TwoLayerNet",
    "XpnetError",
    "cross_entropy_error",
    "forward",
    "identity",
    "init_network",
    "load_checkpoint",
    "load_dataset",
    "load_mnist",
    "load_model",
    "log_softmax",
    "make_optimizer",
    "max_relative_error",
    "numerical_gradient",
    "one_hot",
    "perceptron",
    "relu",
    "resolve",
    "save_checkpoint",
    "sigmoid",
    "softmax",
    "step_function",
    "tanh",
    "to_numpy",
]

# chapters 6-8: convolution, pooling, batch normalization, dropout and the book's CNNs
from .nn.batchnorm import BatchNormalization
from .nn.conv import Convolution
from .nn.convnet import DeepConvNet, SimpleConvNet
from .nn.dropout import Dropout
from .nn.patches import col2im, im2col
from .nn.pooling import Pooling

__all__ += [
    "BatchNormalization",
    "Convolution",
    "DeepConvNet",
    "Dropout",
    "Pooling",
    "SimpleConvNet",
    "col2im",
    "im2col",
]
