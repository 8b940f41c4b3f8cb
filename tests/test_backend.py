"""The edge: resolving backends and devices, moving arrays, seeded draws."""

import numpy as np
import pytest
from conftest import HAS_TORCH, assert_on

from xpnet.backend import (
    DeviceFallbackWarning,
    Random,
    backend_of,
    gpu_available,
    resolve,
    to_numpy,
)
from xpnet.errors import BackendError, ConfigError


def test_cpu_is_numpy():
    be = resolve("cpu")
    assert be.name == "numpy" and be.device == "cpu"
    assert str(be) == "numpy on cpu"


def test_auto_without_gpu_is_numpy_quietly():
    if gpu_available("cupy"):
        pytest.skip("a GPU is present: auto picks cupy")
    assert resolve("auto").name == "numpy"


def test_cuda_without_gpu_warns_and_falls_back():
    if gpu_available("cupy"):
        pytest.skip("a GPU is present")
    with pytest.warns(DeviceFallbackWarning, match="falling back to the CPU"):
        be = resolve("cuda")
    assert be.name == "numpy"


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_torch_cuda_without_gpu_stays_torch_on_cpu():
    if gpu_available("torch"):
        pytest.skip("torch sees a GPU")
    with pytest.warns(DeviceFallbackWarning):
        be = resolve("cuda", "torch")
    assert be.name == "torch" and be.device.type == "cpu"


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(
        ConfigError,
        match="unknown backend 'jax'; choose one of: numpy, array_api_strict, torch, cupy",
    ):
        resolve("cpu", "jax")
    with pytest.raises(ConfigError, match="numpy runs on the CPU only"):
        resolve("cuda", "numpy")
    with pytest.raises(ConfigError, match="unknown dtype 'float8'"):
        resolve("cpu").dtype("float8")


def test_strict_devices():
    pytest.importorskip("array_api_strict")
    assert (
        str(resolve("device1", "array_api_strict").device) == "array_api_strict.Device('device1')"
    )
    with pytest.raises(ConfigError, match="array_api_strict has no device 'cuda'"):
        resolve("cuda", "array_api_strict")


@pytest.mark.parametrize("device", ["tpu", "gpu7", "cuda:x", "cpu:1", "mps"])
@pytest.mark.parametrize("backend", [None, "numpy", "array_api_strict", "torch"])
def test_unknown_device_strings_are_refused_never_the_cpu(device, backend):
    """'tpu' used to mean the CPU quietly; every backend now refuses an unknown device."""
    with pytest.raises(ConfigError, match=f"device '{device}'"):
        resolve(device, backend)


@pytest.mark.gpu
def test_a_gpu_index_past_the_last_gpu_is_refused_clearly():
    """cuda:N beyond the GPUs present is a one-line error on CuPy and torch, never device 0."""
    tried = 0
    for name in ("cupy", "torch"):
        if not gpu_available(name):
            continue
        tried += 1
        if name == "cupy":
            import cupy

            count = cupy.cuda.runtime.getDeviceCount()
        else:
            import torch

            count = torch.cuda.device_count()
        with pytest.raises(BackendError, match=f"no 'cuda:{count}'"):
            resolve(f"cuda:{count}", name)
        last = resolve(f"cuda:{count - 1}", name)
        x = last.asarray(np.ones(3), "float32")
        assert last.xp.sum(x) == 3.0
    if not tried:
        pytest.skip("needs a CUDA GPU (CuPy or torch)")


def test_cupy_without_gpu_is_an_error():
    if gpu_available("cupy"):
        pytest.skip("a GPU is present")
    with pytest.raises(BackendError):
        resolve("cuda", "cupy")


def test_native_device_object_infers_backend():
    xs = pytest.importorskip("array_api_strict")
    be = resolve(xs.Device("device1"))
    assert be.name == "array_api_strict"


def test_round_trip_and_backend_of(backend):
    host = np.arange(12, dtype=np.float32).reshape(3, 4)
    x = backend.asarray(host)
    assert_on(x, backend, "float32", (3, 4))
    assert backend_of(x) == backend
    back = to_numpy(x)
    assert isinstance(back, np.ndarray) and back.dtype == np.float32
    np.testing.assert_array_equal(back, host)
    # casting happens on the host, before the copy
    assert_on(backend.asarray(host, "float64"), backend, "float64")


def test_random_is_identical_across_backends(backend):
    a = Random(5).normal((3, 4), 0.1, xp=backend.xp, device=backend.device)
    b = Random(5).normal((3, 4), 0.1, xp=np, device="cpu")
    assert_on(a, backend, "float32", (3, 4))
    np.testing.assert_array_equal(to_numpy(a), b)


def test_random_state_round_trip():
    r = Random(1)
    r.permutation(10)
    state = r.get_state()
    first = r.permutation(10)
    r.set_state(state)
    np.testing.assert_array_equal(r.permutation(10), first)
