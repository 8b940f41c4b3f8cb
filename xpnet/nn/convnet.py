"""Chapters 7 and 8: the book's convolutional networks, as Networks (so the Trainer and
checkpoints work with them unchanged).

Both take images (N, C, H, W) — MNIST as (N, 1, 28, 28) — and keep the book's parameter names
(W1, b1, ... numbered over all layers that have a W, gamma1, beta1, ... over the batch-norm
layers). Weights are drawn on the host from a NumPy generator seeded with ``seed`` (so every
backend starts from the same numbers); biases start at zero, γ at one and β at zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ..backend import Random, resolve
from ..errors import ConfigError
from .batchnorm import BatchNormalization
from .conv import Convolution
from .dropout import Dropout
from .initializers import init_std, parse_init
from .layers import Affine, Layer, ReLU, SoftmaxWithLoss, as_int
from .network import Network
from .patches import output_size as _out_size
from .pooling import Pooling


def _positive_int(name: str, value) -> int:
    """`value` as a Python int (NumPy integers are integers too), or a ConfigError unless >= 1."""
    number = as_int(value)
    if number is None or number < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return number


def _input_dim(value) -> tuple[int, int, int]:
    dims = tuple(value) if isinstance(value, Sequence) else ()
    if len(dims) != 3:
        raise ConfigError(f"input_dim must be (channels, height, width), got {value!r}")
    return tuple(_positive_int("each of input_dim", d) for d in dims)  # type: ignore[return-value]


def _conv_param(value: Mapping, defaults: Mapping) -> dict:
    unknown = set(value) - set(defaults)
    if unknown:
        raise ConfigError(
            f"unknown conv_param keys {sorted(unknown)}; use {', '.join(sorted(defaults))}"
        )
    param = {**defaults, **value}
    for key in ("filter_num", "filter_size", "stride"):
        param[key] = _positive_int(f"conv_param {key}", param[key])
    pad = as_int(param["pad"])
    if pad is None or pad < 0:
        raise ConfigError(f"conv_param pad must be an integer >= 0, got {param['pad']!r}")
    param["pad"] = pad
    return param


class _Builder:
    """Draws the layers' initial values in order from one seeded host generator."""

    def __init__(self, device, backend, dtype, seed):
        self.be = resolve(device, backend)
        self.rng = Random(seed)
        self.dtype = dtype

    def normal(self, shape, std):
        be = self.be
        return self.rng.normal(shape, std, xp=be.xp, device=be.device, dtype=self.dtype)

    def zeros(self, n):
        return self.be.zeros((n,), self.dtype)

    def ones(self, n):
        return self.be.ones((n,), self.dtype)

    def conv(self, c_in, param, std):
        fn, fs = param["filter_num"], param["filter_size"]
        W = self.normal((fn, c_in, fs, fs), std)
        return Convolution(W, self.zeros(fn), param["stride"], param["pad"])

    def affine(self, n_in, n_out, std):
        return Affine(self.normal((n_in, n_out), std), self.zeros(n_out))

    def batchnorm(self, n):
        return BatchNormalization(self.ones(n), self.zeros(n))


class SimpleConvNet(Network):
    """The book's SimpleConvNet: conv - ReLU - pool - affine - ReLU - affine - softmax.

    Convolution(filter_num filters of filter_size², stride, pad) -> ReLU -> 2×2 max pooling
    (stride 2) -> Affine(hidden_size) -> ReLU -> Affine(output_size) -> SoftmaxWithLoss. Weights
    ~ N(0, weight_init_std²) as in the book (0.01), or, as for MultiLayerNet, an initializer name
    ("he": √(2/fan-in), "xavier", "glorot"), with a convolution's fan-in C·FH·FW. The first
    convolution computes no input gradient.
    """

    eval_batch_size = 1000  # the patch matrix of 1000 images: 58 MB in float32
    sample_ndim = 3  # one C×H×W image

    def __init__(
        self,
        input_dim=(1, 28, 28),
        conv_param: Mapping | None = None,
        hidden_size: int = 100,
        output_size: int = 10,
        weight_init_std: float = 0.01,
        weight_decay: float = 0.0,
        *,
        device="cpu",
        backend: str | None = None,
        dtype="float32",
        seed: int | None = 0,
    ):
        dims = _input_dim(input_dim)
        param = _conv_param(
            conv_param or {}, {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1}
        )
        hidden_size = _positive_int("hidden_size", hidden_size)
        output_size = _positive_int("output_size", output_size)
        init = parse_init(weight_init_std)
        if not weight_decay >= 0:
            raise ConfigError(f"weight decay must be >= 0, got {weight_decay}")
        c, h, w = dims
        fs, pad, stride = param["filter_size"], param["pad"], param["stride"]
        conv_h, conv_w = (_out_size(n, fs, stride, pad) for n in (h, w))
        if conv_h < 2 or conv_w < 2:
            raise ConfigError(
                f"a {fs}x{fs} filter (pad {pad}, stride {stride}) leaves no room for 2x2 pooling "
                f"on a {h}x{w} input"
            )
        pool_size = param["filter_num"] * (conv_h // 2) * (conv_w // 2)
        b = _Builder(device, backend, dtype, seed)
        fan_in = c * fs * fs
        layers: list[Layer] = [
            b.conv(c, param, init_std(init, fan_in, param["filter_num"])),
            ReLU(),
            Pooling(2, 2, stride=2),
            b.affine(pool_size, hidden_size, init_std(init, pool_size, hidden_size)),
            ReLU(),
            b.affine(hidden_size, output_size, init_std(init, hidden_size, output_size)),
        ]
        super().__init__(layers, SoftmaxWithLoss(), weight_decay)
        self.config = {
            "model": "simple-cnn",
            "input_dim": list(dims),
            "conv_param": dict(param),
            "hidden_size": hidden_size,
            "output_size": output_size,
            "weight_init_std": init,
            "weight_decay": weight_decay,
        }


_DEEP_DEFAULTS = (
    {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 32, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 32, "filter_size": 3, "pad": 2, "stride": 1},
    {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
)


class DeepConvNet(Network):
    """The book's DeepConvNet (chapter 8), about 99.4% on MNIST.

    (conv - ReLU - conv - ReLU - pool) × 3 -> affine(hidden_size) - ReLU - dropout -
    affine(output_size) - softmax; six 3×3 convolutions with 16, 16, 32, 32, 64, 64 filters
    (the fourth with pad 2, as in the book), 2×2 max pooling, He initialization
    (std √(2/fan-in)). With ``batchnorm=True`` a BatchNormalization follows every convolution and
    the hidden Affine, before its ReLU.

    Differences from the book's code: no Dropout after the last Affine (the book drops out the
    scores themselves), Dropout is the inverted, seeded kind (see xpnet.dropout), and the hidden
    Affine's fan-in is computed from the input size instead of fixed at 64·4·4. The book's trained
    weights load all the same (``load_params``): both of its dropouts' test-time factors are folded
    into the last Affine (xpnet.nn.bookformat), so the scores are the book's.
    """

    #: the book's last layer is Dropout(0.5), which scales the scores by 0.5 at evaluation
    book_output_scale = 0.5
    eval_batch_size = 250  # the widest patch matrix of 250 images: 113 MB in float32
    sample_ndim = 3  # one C×H×W image

    def __init__(
        self,
        input_dim=(1, 28, 28),
        conv_param_1: Mapping | None = None,
        conv_param_2: Mapping | None = None,
        conv_param_3: Mapping | None = None,
        conv_param_4: Mapping | None = None,
        conv_param_5: Mapping | None = None,
        conv_param_6: Mapping | None = None,
        hidden_size: int = 50,
        output_size: int = 10,
        dropout_ratio: float = 0.5,
        batchnorm: bool = False,
        weight_decay: float = 0.0,
        *,
        device="cpu",
        backend: str | None = None,
        dtype="float32",
        seed: int | None = 0,
    ):
        dims = _input_dim(input_dim)
        given = (conv_param_1, conv_param_2, conv_param_3, conv_param_4, conv_param_5, conv_param_6)
        params = [_conv_param(p or {}, d) for p, d in zip(given, _DEEP_DEFAULTS, strict=True)]
        hidden_size = _positive_int("hidden_size", hidden_size)
        output_size = _positive_int("output_size", output_size)
        if not isinstance(batchnorm, bool):
            raise ConfigError(f"batchnorm must be True or False, got {batchnorm!r}")
        if not weight_decay >= 0:
            raise ConfigError(f"weight decay must be >= 0, got {weight_decay}")
        b = _Builder(device, backend, dtype, seed)
        layers: list[Layer] = []
        c, h, w = dims
        for i, param in enumerate(params):
            fs = param["filter_size"]
            layers.append(b.conv(c, param, math.sqrt(2.0 / (c * fs * fs))))
            h = _out_size(h, fs, param["stride"], param["pad"])
            w = _out_size(w, fs, param["stride"], param["pad"])
            c = param["filter_num"]
            if batchnorm:
                layers.append(b.batchnorm(c))
            layers.append(ReLU())
            if i % 2 == 1:
                layers.append(Pooling(2, 2, stride=2))
                h, w = h // 2, w // 2
            if h < 1 or w < 1:
                raise ConfigError(
                    f"input_dim {dims} is too small for DeepConvNet's convolutions and poolings"
                )
        n_in = c * h * w
        layers.append(b.affine(n_in, hidden_size, math.sqrt(2.0 / n_in)))
        if batchnorm:
            layers.append(b.batchnorm(hidden_size))
        layers += [
            ReLU(),
            Dropout(dropout_ratio, seed=seed),
            b.affine(hidden_size, output_size, math.sqrt(2.0 / hidden_size)),
        ]
        super().__init__(layers, SoftmaxWithLoss(), weight_decay)
        self.config = {
            "model": "deep-cnn",
            "input_dim": list(dims),
            **{f"conv_param_{i + 1}": dict(p) for i, p in enumerate(params)},
            "hidden_size": hidden_size,
            "output_size": output_size,
            "dropout_ratio": float(dropout_ratio),
            "batchnorm": batchnorm,
            "weight_decay": weight_decay,
        }
