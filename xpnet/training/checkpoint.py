"""Checkpoints: a network's weights, the optimizer's state and the run's progress in one .npz file.

Arrays are stored as NumPy arrays on the host, so a checkpoint written on the GPU loads on the CPU
and vice versa; everything else (configuration, iteration, step counts) is JSON in the entry
``meta``. Files are written atomically and loaded without pickle.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from array_api_compat import is_array_api_obj

from ..backend import resolve, to_numpy
from ..errors import CheckpointError, ShapeError
from ..fileio import atomic_write

FORMAT = "xpnet-checkpoint"
VERSION = 1


def _flatten(tree, prefix: str, arrays: dict) -> Any:
    """Move the arrays of a nested dict into `arrays` (keyed by path) and return the rest as JSON."""
    if isinstance(tree, dict):
        return {str(k): _flatten(v, f"{prefix}/{k}", arrays) for k, v in tree.items()}
    if is_array_api_obj(tree):
        arrays[prefix] = to_numpy(tree)
        return {"__array__": prefix}
    if isinstance(tree, tuple | list):
        return [_flatten(v, f"{prefix}/{i}", arrays) for i, v in enumerate(tree)]
    return tree


def _unflatten(tree, arrays, move) -> Any:
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            return move(arrays[tree["__array__"]])
        return {k: _unflatten(v, arrays, move) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_unflatten(v, arrays, move) for v in tree]
    return tree


@dataclass
class Checkpoint:
    """The contents of a checkpoint file, arrays on the host."""

    params: dict[str, np.ndarray]
    model: dict  # the network's kind ("model") and constructor arguments (Network.config)
    iteration: int = 0
    config: dict = field(default_factory=dict)  # the training configuration
    optimizer: dict | None = None  # optimizer.state_dict(), arrays as host NumPy arrays
    extra: dict = field(default_factory=dict)  # run progress: history, loss accumulators...
    path: Path | None = None
    buffers: dict[str, np.ndarray] = field(default_factory=dict)  # running statistics
    layer_states: dict = field(default_factory=dict)  # dropout's random state, by layer name

    def optimizer_state(self, backend) -> dict | None:
        """The optimizer state with its arrays moved onto `backend`."""
        if self.optimizer is None:
            return None
        return _unflatten(self.optimizer, self._arrays, backend.asarray)

    _arrays: dict = field(default_factory=dict, repr=False)


def save_checkpoint(
    path, net, optimizer=None, *, iteration: int = 0, config=None, extra=None
) -> Path:
    """Atomically write the network's weights (and optimizer state, progress) to `path`."""
    payload = checkpoint_payload(net, optimizer, iteration=iteration, config=config, extra=extra)
    return write_checkpoint(path, *payload)


def checkpoint_payload(
    net, optimizer=None, *, iteration: int = 0, config=None, extra=None, copy: bool = False
) -> tuple[dict, dict]:
    """What `save_checkpoint` writes: (host arrays by name, the JSON entry "meta" as a dict).
    `copy`: every array and the meta copied, to be written later while training goes on."""
    arrays = {f"params/{key}": to_numpy(value) for key, value in net.params.items()}
    arrays.update({f"buffers/{key}": to_numpy(value) for key, value in net.buffers.items()})
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model": getattr(net, "config", {}),
        "param_shapes": {key: list(value.shape) for key, value in net.params.items()},
        "layer_states": getattr(net, "layer_states", {}),
        "iteration": int(iteration),
        "config": config or {},
        "optimizer": None
        if optimizer is None
        else _flatten(optimizer.state_dict(), "optim", arrays),
        "extra": _flatten(extra or {}, "extra", arrays),
    }
    if copy:  # NumPy's arrays are the training's own; JSON round trips exactly
        arrays = {key: np.array(value, copy=True) for key, value in arrays.items()}
        meta = json.loads(json.dumps(meta))
    return arrays, meta


def write_checkpoint(path, arrays: dict, meta: dict) -> Path:
    """Atomically write a `checkpoint_payload` to `path`."""
    entries = {**arrays, "meta": np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)}
    return atomic_write(path, lambda f: np.savez(f, **entries))


def model_file(path) -> Path:
    """The saved model a path names: the file itself, or a run folder's model.npz."""
    path = Path(path)
    return path / "model.npz" if path.is_dir() else path


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint file; a missing, truncated or foreign file raises CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        # np.load is given an open file so that it is closed even when np.load itself fails
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        meta = json.loads(bytes(arrays.pop("meta")).decode("utf-8"))
        if meta.get("format") != FORMAT:
            raise KeyError("format")
    except (
        OSError,
        ValueError,
        KeyError,
        EOFError,
        AttributeError,
        TypeError,
        zipfile.BadZipFile,
    ) as exc:
        raise CheckpointError(
            f"{path} is not a readable xpnet checkpoint (truncated or corrupt: {type(exc).__name__}); "
            f"use an earlier checkpoint or start a new run"
        ) from None
    if meta.get("version", 0) > VERSION:
        raise CheckpointError(
            f"{path} was written by a newer xpnet (format {meta['version']}); upgrade xpnet"
        )
    params = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("params/")}
    buffers = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("buffers/")}
    expected = {k: tuple(s) for k, s in meta.get("param_shapes", {}).items()}
    if expected != {k: v.shape for k, v in params.items()}:
        raise CheckpointError(f"{path} is damaged: its weights do not match its own description")
    return Checkpoint(
        params=params,
        buffers=buffers,
        layer_states=meta.get("layer_states", {}),
        model=meta.get("model", {}),
        iteration=int(meta.get("iteration", 0)),
        config=meta.get("config", {}),
        optimizer=meta.get("optimizer"),
        extra=_unflatten(meta.get("extra", {}), arrays, lambda a: a),
        path=path,
        _arrays=arrays,
    )


def describe(shapes: dict) -> str:
    """'784-50-10' for a fully connected net's weight shapes, else the shapes themselves."""
    weights = [tuple(s) for k, s in shapes.items() if k.startswith("W")]
    if weights and all(len(s) == 2 for s in weights):
        return "-".join(str(n) for n in [weights[0][0], *(s[1] for s in weights)])
    return ", ".join(f"{k} {tuple(s)}" for k, s in shapes.items())


def restore_params(net, ckpt: Checkpoint) -> None:
    """Load the checkpoint's weights (and buffers) into `net`, on net's backend, checking the
    architecture."""
    be = net.backend
    try:
        net.set_params(
            {k: be.asarray(v, net.dtype) for k, v in {**ckpt.params, **ckpt.buffers}.items()}
        )
        net.set_layer_states(ckpt.layer_states)
    except ShapeError:
        have = describe({k: v.shape for k, v in net.params.items()})
        got = describe({k: v.shape for k, v in ckpt.params.items()})
        raise CheckpointError(
            f"{ckpt.path} holds a {got} network, which does not fit this {have} network; "
            f"build the network the checkpoint describes (xpnet.checkpoint.load_model) or start a new run"
        ) from None


def model_classes() -> dict:
    """The networks a checkpoint can name in its "model" entry."""
    from ..nn.mlp import MultiLayerNet

    classes = {"mlp": MultiLayerNet}
    try:
        from ..nn.convnet import DeepConvNet, SimpleConvNet
    except ImportError:  # pragma: no cover - the CNNs are part of the package
        return classes
    return {**classes, "simple-cnn": SimpleConvNet, "deep-cnn": DeepConvNet}


def build_model(model: dict, device="cpu", backend=None, dtype="float32", seed=0):
    """A fresh network of the kind and size `model` describes (a checkpoint's, or Network.config)."""
    kwargs = dict(model)
    kind = kwargs.pop("model", "mlp")
    classes = model_classes()
    if kind not in classes:
        raise CheckpointError(
            f"unknown model {kind!r} (this xpnet knows {', '.join(classes)}); upgrade xpnet"
        )
    return classes[kind](**kwargs, device=resolve(device, backend), dtype=dtype, seed=seed)


def load_model(path, device="cpu", backend=None, dtype=None):
    """Rebuild the network a checkpoint describes, on any backend, with its trained weights.

    ``dtype`` None keeps the dtype the weights were saved in.
    """
    ckpt = load_checkpoint(path)
    if dtype is None:
        dtype = str(next(iter(ckpt.params.values())).dtype)
    try:
        net = build_model(ckpt.model, device, backend, dtype)
    except TypeError:
        raise CheckpointError(
            f"{path} does not describe its network; it cannot be rebuilt"
        ) from None
    restore_params(net, ckpt)
    return net
