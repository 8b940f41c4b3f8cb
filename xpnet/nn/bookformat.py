"""The book's format for trained weights: a pickle of a dict of NumPy arrays.

The book's ``save_params`` writes ``{"W1": array, "b1": array, ...}`` (batch normalization's
``gamma1``, ``beta1``, ... after every W and b) and its ``load_params`` reads it back; its trained
networks ship in that format (ch07/params.pkl, ch08/deep_convnet_params.pkl). Every Network here
reads and writes it (``Network.load_params`` / ``save_params``): the parameter names are the
book's already. The file is read by xpnet.fileio.load_pickle, which refuses anything but arrays,
dicts, lists, numbers and strings, so loading a file cannot run code.

Two translations keep the predictions the book's:

- Dropout. xpnet's is inverted (scaled in training, the identity at evaluation); the book's keeps
  units unscaled in training and multiplies by 1 − p at evaluation. The book's test-time factor is
  folded into the weights W of the next layer that has weights: loading multiplies that W by
  1 − p, saving divides it back, so (x·(1 − p))·W = x·((1 − p)·W) gives the same scores.
- A network whose book counterpart ends in a dropout after its last layer (the book's DeepConvNet
  drops out the scores themselves) says so with ``book_output_scale`` (0.5 there): loading
  multiplies the last layer's W and b by it, saving divides.

Batch normalization's running statistics are not in the book's format (its networks that save
weights have none); xpnet adds them as ``running_mean1``, ``running_var1``, ... numbered like
``gamma1``, and reads them when present.
"""

from __future__ import annotations

import re

import numpy as np

from ..backend import to_numpy
from ..errors import CheckpointError
from ..fileio import load_pickle, save_pickle
from .dropout import Dropout

_KEY = re.compile(r"([A-Za-z_]+?)(\d+)$")


def book_order(keys) -> list[str]:
    """Keys in the book's order: every W and b by number, then the rest (gamma1, beta1, ...)."""
    keys = list(keys)
    first = [k for k in keys if _KEY.match(k) and _KEY.match(k).group(1) in ("W", "b")]
    return first + [k for k in keys if k not in first]


def read_params(file_name) -> dict[str, np.ndarray]:
    """The dict of arrays in the book-format pickle `file_name`, or a CheckpointError naming it."""
    params = load_pickle(file_name)
    if not isinstance(params, dict) or not all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in params.items()
    ):
        raise CheckpointError(
            f"{file_name} does not hold weights in the book's format (a dict of NumPy arrays "
            f"named W1, b1, ...)"
        )
    return params


def _buffer_keys(net) -> dict[str, str]:
    """Book-format key -> the network's buffer key ("running_mean1" -> "BatchNormalization1....")."""
    keys, numbers = {}, {}
    for name, layer in net.layers.items():
        for attr in layer.buffer_names:
            numbers[attr] = numbers.get(attr, 0) + 1
            keys[f"{attr}{numbers[attr]}"] = f"{name}.{attr}"
    return keys


def _scales(net) -> dict[str, float]:
    """Parameter key -> the factor from the book's value to xpnet's (1.0 where none is folded in).

    Each W is multiplied by the test-time factors (1 − p) of the dropouts since the previous layer
    with weights; the last layer's W and b by ``book_output_scale`` as well.
    """
    scales = dict.fromkeys(net.params, 1.0)
    weights = {id(layer): key for key, layer, attr in net.param_slots() if attr == "W"}
    pending = 1.0
    for layer in net.layers.values():
        if isinstance(layer, Dropout) and layer.inverted:
            pending *= 1.0 - layer.dropout_ratio
        elif id(layer) in weights:
            scales[weights[id(layer)]], pending = pending, 1.0
    out = getattr(net, "book_output_scale", 1.0)
    for key in list(weights.values())[-1:]:  # the scores' layer: the last with weights
        scales[key] *= out
        scales["b" + key[1:]] = out  # no dropout folds into a bias
    return scales


def save_params(net, file_name):
    """Write `net`'s weights to `file_name` in the book's format (atomically); returns the path."""
    scales = _scales(net)
    params = {key: to_numpy(value) / scales[key] for key, value in net.params.items()}
    params = {key: params[key] for key in book_order(params)}
    buffers = net.buffers
    for book_key, key in _buffer_keys(net).items():
        params[book_key] = to_numpy(buffers[key])
    return save_pickle(params, file_name)


def match_params(net, given: dict, file_name) -> dict[str, np.ndarray]:
    """The book-format arrays `given` by the network's keys (buffers as "Layer.attr"), checked:
    every parameter present, nothing unknown, every shape the network's."""
    buffer_keys = _buffer_keys(net)
    expected = set(net.params)
    missing = sorted(expected - set(given))
    unknown = sorted(set(given) - expected - set(buffer_keys))
    if missing or unknown:
        what = f"lacks {', '.join(missing)}" if missing else f"has {', '.join(unknown)} besides"
        raise CheckpointError(
            f"{file_name} does not fit this network: it {what} the network's parameters "
            f"({', '.join(book_order(net.params))})"
        )
    current = {**net.params, **net.buffers}
    values = {}
    for book_key, host in given.items():
        key = buffer_keys.get(book_key, book_key)
        if tuple(host.shape) != tuple(current[key].shape):
            raise CheckpointError(
                f"{file_name}: {book_key} has shape {tuple(host.shape)}, the network's "
                f"{tuple(current[key].shape)}"
            )
        values[key] = host
    return values


def load_params(net, file_name) -> None:
    """Set `net`'s weights from the book-format pickle `file_name` (cast to the network's dtype)."""
    values = match_params(net, read_params(file_name), file_name)
    scales = _scales(net)
    be, dtype = net.backend, net.dtype
    for key, host in values.items():
        if key in scales:  # scaled in float64, rounded once to the network's dtype
            host = np.multiply(host, scales[key], dtype=np.float64)
        values[key] = be.asarray(host, dtype)
    net.set_params(values)
