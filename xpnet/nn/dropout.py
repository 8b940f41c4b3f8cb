"""Chapter 6: dropout, inverted and seeded.

Where xpnet differs from the book's ``common/layers.py`` Dropout: it is *inverted* dropout, as in
``torch.nn.Dropout``: in training each unit is kept with probability 1 − p and scaled by
1/(1 − p), so evaluation is the identity (the book keeps units unscaled and multiplies by 1 − p
at evaluation instead; the expected output is the same). Masks come from a seeded generator, so a
run is reproducible. Both of the book's choices are options: ``inverted=False`` scales at test time,
and ``uniform`` draws the masks from another source (xpnet.book passes NumPy's global generator,
``np.random.rand``, so that ``np.random.seed`` gives the book's masks).
"""

from __future__ import annotations

import numpy as np
from array_api_compat import device as device_of
from array_api_compat import is_cupy_namespace, is_torch_namespace

from ..backend import asarray, dtype_name, namespace_of
from ..errors import ConfigError
from .layers import Layer


class Dropout(Layer):
    """Zero each input with probability ``dropout_ratio`` in training, scale the rest by 1/(1 − p).

    y = x·m/(1 − p) with m ~ Bernoulli(1 − p) per element; backward dx = dy·m/(1 − p). With
    ``train=False`` the layer is the identity.

    Randomness: the n-th training forward pass draws its mask from a generator seeded with
    (``seed``, n), so the layer's whole random state is the count n (``get_state``/``set_state``,
    saved in checkpoints: a resumed run draws the masks an uninterrupted one would). On torch and
    CuPy the mask is drawn on the arrays' device with that backend's generator (a torch.Generator
    on the device, a cupy.random.RandomState), so no host-to-device copy is made per step;
    elsewhere (NumPy, array_api_strict, any other library) with a NumPy Generator on the host,
    moved once. The same seed therefore gives the same masks on every run of one backend and
    device, but not the same masks across backends.

    The book's variant, as options: ``inverted=False`` keeps the units unscaled in training,
    y = x·m, and scales at evaluation instead, y = x·(1 − p) (the same expected output);
    ``uniform(shape)``, when given, returns host NumPy samples of U[0, 1) and a unit is kept where
    its sample is above p, as the book's ``np.random.rand(*x.shape) > dropout_ratio`` (the seed and
    state above are then unused: the source keeps its own).
    """

    def __init__(
        self,
        dropout_ratio: float = 0.5,
        *,
        seed: int | None = 0,
        inverted: bool = True,
        uniform=None,
    ):
        ratio = float(dropout_ratio)
        if not 0.0 <= ratio < 1.0:
            raise ConfigError(f"dropout ratio must be in [0, 1), got {dropout_ratio}")
        if not isinstance(inverted, bool):
            raise ConfigError(f"inverted must be True or False, got {inverted!r}")
        if uniform is not None and not callable(uniform):
            raise ConfigError(f"uniform must be a function of a shape, got {uniform!r}")
        self.dropout_ratio = ratio
        self.inverted = inverted
        self.uniform = uniform
        self.seed = seed if seed is not None else int(np.random.SeedSequence().entropy % 2**63)
        self.calls = 0  # training forward passes so far: the mask's random state
        self.mask = None
        # (key, generator), created on first use on torch or CuPy
        self._device_rng = None  # pragma: no mutate - read on torch and CuPy only

    def get_state(self) -> dict:
        """The random state: the seed and the number of masks drawn."""
        return {"seed": self.seed, "calls": self.calls}

    def set_state(self, state: dict) -> None:
        self.seed, self.calls = int(state["seed"]), int(state["calls"])

    def _call_seed(self) -> int:
        """A 63-bit seed for this call's mask, from (seed, calls)."""
        words = np.random.SeedSequence([self.seed, self.calls]).generate_state(2, np.uint32)
        return (int(words[0]) << 31) ^ int(words[1])

    def _uniform(self, x, xp):
        """U[0, 1) samples of x's shape, dtype and device."""
        dev = device_of(x)
        shape = tuple(x.shape)
        if is_torch_namespace(xp):  # pragma: no mutate block - torch only (no torch here)
            import torch

            key = ("torch", str(dev))
            if self._device_rng is None or self._device_rng[0] != key:
                self._device_rng = (key, torch.Generator(device=dev))
            gen = self._device_rng[1]
            gen.manual_seed(self._call_seed())  # host-side state: no wait for the GPU
            return torch.rand(shape, generator=gen, dtype=x.dtype, device=dev)
        if is_cupy_namespace(xp):  # pragma: no mutate block - CuPy only (no GPU here)
            import cupy

            key = ("cupy", str(dev))
            with dev:
                if self._device_rng is None or self._device_rng[0] != key:
                    self._device_rng = (key, cupy.random.RandomState(self._call_seed()))
                else:
                    self._device_rng[1].seed(self._call_seed())
                return self._device_rng[1].random_sample(shape, dtype=x.dtype)
        name = dtype_name(xp, x.dtype)
        host = np.random.default_rng(self._call_seed()).random(
            shape, dtype=np.float32 if name == "float32" else np.float64
        )
        return asarray(host, xp, dev)

    def forward(self, x, train: bool = True):
        if not train and not self.inverted:
            return x * (1.0 - self.dropout_ratio)
        if not train or (self.dropout_ratio == 0.0 and self.uniform is None):
            if train:
                self.mask = None
            return x
        xp = namespace_of(x)
        keep = 1.0 - self.dropout_ratio
        if self.uniform is not None:
            host = np.asarray(self.uniform(tuple(x.shape))) > self.dropout_ratio
            mask = asarray(host, xp, device_of(x), dtype_name(xp, x.dtype))
        else:
            mask = xp.astype(self._uniform(x, xp) < keep, x.dtype)
        if self.inverted:
            mask = mask * (1.0 / keep)
        self.calls += 1
        self.mask = mask
        return x * mask

    def backward(self, dout, input_grad: bool = True):  # pragma: no mutate - unused
        if self.mask is None:
            return dout
        return dout * self.mask
