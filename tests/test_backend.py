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
        resolve("tpu", "numpy")
    with pytest.raises(ConfigError, match="unknown dtype 'float8'"):
        resolve("cpu").dtype("float8")


def test_strict_devices():
    pytest.importorskip("array_api_strict")
    assert (
        str(resolve("device1", "array_api_strict").device) == "array_api_strict.Device('device1')"
    )
    with pytest.raises(ConfigError, match="array_api_strict has no device 'gpu7'"):
        resolve("gpu7", "array_api_strict")


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
