"""Chapter 3: the 3-layer network with fixed weights, forward pass only."""

from __future__ import annotations

from array_api_compat import array_namespace

from ..backend import resolve
from .functions import sigmoid

#: The weights printed on the slides. With them and a sigmoid output layer,
#: forward(init_network(), [1.0, 0.5]) is [0.67948244 0.7082739].
SLIDES_WEIGHTS = {
    "W1": [[0.1, 0.3, 0.5], [0.2, 0.4, 0.6]],
    "b1": [0.1, 0.2, 0.3],
    "W2": [[0.1, 0.3], [0.5, 0.2], [0.4, 0.6]],
    "b2": [0.2, 0.3],
    "W3": [[0.5, 0.2], [0.4, 0.6]],
    "b3": [0.1, 0.3],
}

#: The book's weights (section 3.4.3). With them and an identity output layer the book prints
#: [0.31682708 0.69627909].
BOOK_WEIGHTS = {
    "W1": [[0.1, 0.3, 0.5], [0.2, 0.4, 0.6]],
    "b1": [0.1, 0.2, 0.3],
    "W2": [[0.1, 0.4], [0.2, 0.5], [0.3, 0.6]],
    "b2": [0.1, 0.2],
    "W3": [[0.1, 0.3], [0.2, 0.4]],
    "b3": [0.1, 0.2],
}


def init_network(device="cpu", backend=None, dtype="float64", weights=SLIDES_WEIGHTS) -> dict:
    """Fixed weights W1..W3, b1..b3 (the slides' by default) as arrays on the chosen backend."""
    be = resolve(device, backend)
    return {name: be.asarray(value, dtype) for name, value in weights.items()}


def forward(network: dict, x, output_activation=sigmoid):
    """x -> sigmoid(x·W1 + b1) -> sigmoid(·W2 + b2) -> output_activation(·W3 + b3)."""
    xp = array_namespace(x, network["W1"])
    z = x
    for i in (1, 2):
        z = sigmoid(xp.matmul(z, network[f"W{i}"]) + network[f"b{i}"])
    return output_activation(xp.matmul(z, network["W3"]) + network["b3"])
