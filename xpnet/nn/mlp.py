"""Fully connected networks: MultiLayerNet (chapters 5-6, with the book's MultiLayerNetExtend
options) and the slides' TwoLayerNet, built on Network."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from ..backend import Random, resolve
from ..errors import ConfigError, choose
from .initializers import init_std
from .layers import ACTIVATIONS, Affine, Layer, SoftmaxWithLoss, as_int
from .network import Network, check_float_dtype


class MultiLayerNet(Network):
    """Fully connected net: input -> (Affine -> activation) × len(hidden_sizes) -> Affine -> softmax.

    `weight_init` is a fixed std (the book's 0.01) or "xavier"/"lecun" (√(1/n)), "glorot"
    (√(2/(n_in+n_out))) or "he" (√(2/n)); weights are drawn on the host from a NumPy generator
    seeded with `seed`, so every backend starts from the same numbers, and biases start at zero.
    `weight_decay` adds ½·λ·Σ‖W‖² to the loss. Chapter 6's extensions (the book's
    MultiLayerNetExtend): `batchnorm` puts a BatchNormalization between each hidden Affine and its
    activation, `dropout_ratio` > 0 a Dropout after each hidden activation (seeded from `seed`).
    """

    def __init__(
        self,
        input_size: int,
        hidden_sizes: Sequence[int],
        output_size: int,
        activation: str = "relu",
        weight_init="he",
        weight_decay: float = 0.0,
        batchnorm: bool = False,
        dropout_ratio: float = 0.0,
        *,
        device="cpu",
        backend: str | None = None,
        dtype="float32",
        seed: int | None = 0,
    ):
        from .batchnorm import BatchNormalization
        from .dropout import Dropout

        given = [input_size, *hidden_sizes, output_size]
        sizes = [as_int(n) for n in given]  # NumPy integers are integers too
        if any(n is None or n <= 0 for n in sizes):
            raise ConfigError(f"layer sizes must be positive integers, got {given}")
        input_size, *hidden_sizes, output_size = sizes
        if weight_decay < 0:
            raise ConfigError(f"weight decay must be >= 0, got {weight_decay}")
        activation_cls = ACTIVATIONS[choose("activation", activation, tuple(ACTIVATIONS))]
        be = resolve(device, backend)
        dtype = check_float_dtype(be.xp, dtype)
        rng = Random(seed)
        layers: list[Layer] = []
        for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
            W = rng.normal(
                (n_in, n_out),
                init_std(weight_init, n_in, n_out),
                xp=be.xp,
                device=be.device,
                dtype=dtype,
            )
            layers.append(Affine(W, be.zeros((n_out,), dtype)))
            if i < len(sizes) - 2:
                if batchnorm:
                    layers.append(
                        BatchNormalization(be.ones((n_out,), dtype), be.zeros((n_out,), dtype))
                    )
                layers.append(activation_cls())
                if dropout_ratio:
                    seed_i = None if seed is None else seed * 1000 + i
                    layers.append(Dropout(dropout_ratio, seed=seed_i))
        super().__init__(layers, SoftmaxWithLoss(), weight_decay)
        self.sizes = sizes
        self.config = {
            "model": "mlp",
            "input_size": input_size,
            "hidden_sizes": list(hidden_sizes),
            "output_size": output_size,
            "activation": activation,
            "weight_init": weight_init,
            "weight_decay": weight_decay,
            "batchnorm": bool(batchnorm),
            "dropout_ratio": float(dropout_ratio),
        }


class TwoLayerNet(MultiLayerNet):
    """The slides' network: input -> Affine1 -> ReLU1 -> Affine2 -> SoftmaxWithLoss."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        weight_init_std: float = 0.01,
        *,
        device="cpu",
        backend: str | None = None,
        dtype="float32",
        seed: int | None = 0,
    ):
        super().__init__(
            input_size, [hidden_size], output_size, "relu", weight_init_std,
            device=device, backend=backend, dtype=dtype, seed=seed,
        )  # fmt: skip
