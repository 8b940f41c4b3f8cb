"""Shared fixtures: one parametrization over every available array backend and device.

XPNET_TEST_BACKENDS (comma-separated ids, e.g. "numpy" or "strict,strict-device1") restricts it;
the nox sessions use that to run one backend each.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from array_api_compat import array_namespace
from array_api_compat import device as device_of

from xpnet.backend import Backend, gpu_available, resolve

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_STRICT = importlib.util.find_spec("array_api_strict") is not None

# (id, backend, device, available)
_BACKENDS = [
    ("numpy", "numpy", "cpu", True),
    ("strict", "array_api_strict", "cpu", HAS_STRICT),
    ("strict-device1", "array_api_strict", "device1", HAS_STRICT),
    ("torch-cpu", "torch", "cpu", HAS_TORCH),
    ("torch-cuda", "torch", "cuda", HAS_TORCH and gpu_available("torch")),
    ("cupy", "cupy", "cuda", gpu_available("cupy")),
]
_SELECTED = {s.strip() for s in os.environ.get("XPNET_TEST_BACKENDS", "").split(",") if s.strip()}


def _params():
    params = []
    for ident, name, device, available in _BACKENDS:
        if _SELECTED and ident not in _SELECTED:
            continue
        marks = (
            [] if available else [pytest.mark.skip(reason=f"{ident}: not installed or no device")]
        )
        params.append(pytest.param((name, device), id=ident, marks=marks))
    return params


@pytest.fixture(params=_params())
def backend(request) -> Backend:
    """The backend (namespace + device) under test."""
    name, device = request.param
    return resolve(device, name)


@pytest.fixture
def xp(backend):
    """The array namespace under test (the `backend` fixture's)."""
    return backend.xp


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def assert_on(result, backend: Backend, dtype=None, shape=None) -> None:
    """Assert that `result` has the backend's namespace and device, and the given dtype and shape."""
    assert array_namespace(result) is backend.xp, (
        f"namespace {array_namespace(result)} != {backend.xp}"
    )
    assert device_of(result) == backend.device, f"device {device_of(result)} != {backend.device}"
    if dtype is not None:
        assert result.dtype == backend.dtype(dtype), f"dtype {result.dtype} != {dtype}"
    if shape is not None:
        assert tuple(result.shape) == tuple(shape), f"shape {tuple(result.shape)} != {shape}"


def mnist_dir() -> Path | None:
    """The data folder XPNET_DATA_DIR names, when it holds the four MNIST files where the loader
    looks for them (directly in it or in its mnist/ subfolder, each maybe gzipped).

    XPNET_MNIST_DIR, the tests' former name for it, is still read when XPNET_DATA_DIR is not set
    (without a DeprecationWarning: the suite turns warnings into errors).
    """
    from xpnet.data.files import locate

    value = os.environ.get("XPNET_DATA_DIR") or os.environ.get("XPNET_MNIST_DIR")
    if not value:
        return None
    path = Path(value).expanduser()
    return path if all(locate("mnist", path)) else None


def _skip_reason(report) -> str:
    """The reason a skipped test report gives, without pytest's "Skipped: " prefix."""
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def pytest_configure(config):
    """xpnet's cache ($XDG_CACHE_HOME/xpnet) in a folder of this session: loading MNIST from
    XPNET_DATA_DIR writes a decoded copy into the cache, and the tests must not leave files in
    the user's own (the commands they run inherit the variable)."""
    if not hasattr(config, "workerinput"):
        folder = tempfile.mkdtemp(prefix="xpnet-test-cache-")
        config._xpnet_cache = (folder, os.environ.get("XDG_CACHE_HOME"))
        os.environ["XDG_CACHE_HOME"] = folder


def pytest_unconfigure(config):
    held = getattr(config, "_xpnet_cache", None)
    if held is not None:
        folder, before = held
        if before is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = before
        shutil.rmtree(folder, ignore_errors=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Skips counted by reason, one line each (addopts has no -rs: one line per skip floods a run
    where whole backends are absent); `pytest -rs` still lists every skipped test."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped or any(c in config.option.reportchars for c in "saA"):
        return  # -rs, -ra, -rA: pytest lists every skip itself
    counts: dict[str, int] = {}
    for report in skipped:
        reason = _skip_reason(report)
        reason = reason if len(reason) <= 160 else reason[:157] + "..."
        counts[reason] = counts.get(reason, 0) + 1
    shown = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    limit = 12
    terminalreporter.section(f"{len(skipped)} skipped, by reason", sep="-")
    for reason, n in shown[:limit]:
        terminalreporter.write_line(f"{n:5d}  {reason}")
    if len(shown) > limit:
        rest = sum(n for _, n in shown[limit:])
        terminalreporter.write_line(
            f"{rest:5d}  for {len(shown) - limit} other reasons (pytest -rs lists every skip)"
        )
