"""Chapter 6: dropout, inverted and seeded.

Where xpnet differs from the book's ``common/layers.py`` Dropout: it is *inverted* dropout, as in
``torch.nn.Dropout``: in training each unit is kept with probability 1 − p and scaled by
1/(1 − p), so evaluation is the identity (the book keeps units unscaled and multiplies by 1 − p
at evaluation instead; the expected output is the same). Masks come from a seeded generator, so a
run is reproducible.
"""

from __future__ import annotations

import numpy as np
from array_api_compat import device as device_of
from array_api_compat import is_cupy_namespace, is_torch_namespace

from .backend import asarray, dtype_name, namespace_of
from .errors import ConfigError
from .layers import Layer


class Dropout(Layer):
    """Zero each input with probability ``dropout_ratio`` in training, scale the rest by 1/(1 − p).

    y = x·m/(1 − p) with m ~ Bernoulli(1 − p) per element; backward dx = dy·m/(1 − p). With
    ``train=False`` the layer is the identity.

    Randomness: the masks come from a generator seeded with ``seed``. On torch and CuPy the mask is
    drawn on the arrays' device with that backend's generator (a torch.Generator on the device, a
    cupy.random.RandomState) seeded with ``seed``, so no host-to-device copy is made per step;
    elsewhere (NumPy, array_api_strict, any other library) with a NumPy Generator on the host,
    moved once. The same seed therefore gives the same masks on every run of one backend and
    device, but not the same masks across backends.
    """

    def __init__(self, dropout_ratio: float = 0.5, *, seed: int | None = 0):
        ratio = float(dropout_ratio)
        if not 0.0 <= ratio < 1.0:
            raise ConfigError(f"dropout ratio must be in [0, 1), got {dropout_ratio}")
        self.dropout_ratio = ratio
        self.seed = seed
        self.mask = None
        self._host = np.random.default_rng(seed)
        self._device_rng = None  # (key, generator), created on first use on torch or CuPy

    def _uniform(self, x, xp):
        """U[0, 1) samples of x's shape, dtype and device."""
        dev = device_of(x)
        shape = tuple(x.shape)
        if is_torch_namespace(xp):
            import torch

            key = ("torch", str(dev))
            if self._device_rng is None or self._device_rng[0] != key:
                gen = torch.Generator(device=dev)
                if self.seed is None:
                    gen.seed()
                else:
                    gen.manual_seed(int(self.seed))
                self._device_rng = (key, gen)
            return torch.rand(shape, generator=self._device_rng[1], dtype=x.dtype, device=dev)
        if is_cupy_namespace(xp):
            import cupy

            key = ("cupy", str(dev))
            if self._device_rng is None or self._device_rng[0] != key:
                with dev:
                    self._device_rng = (key, cupy.random.RandomState(self.seed))
            with dev:
                return self._device_rng[1].random_sample(shape, dtype=x.dtype)
        name = dtype_name(xp, x.dtype)
        host = self._host.random(shape, dtype=np.float32 if name == "float32" else np.float64)
        return asarray(host, xp, dev)

    def forward(self, x, train: bool = True):
        if not train or self.dropout_ratio == 0.0:
            if train:
                self.mask = None
            return x
        xp = namespace_of(x)
        keep = 1.0 - self.dropout_ratio
        mask = xp.astype(self._uniform(x, xp) < keep, x.dtype) * (1.0 / keep)
        self.mask = mask
        return x * mask

    def backward(self, dout, input_grad: bool = True):
        if self.mask is None:
            return dout
        return dout * self.mask
