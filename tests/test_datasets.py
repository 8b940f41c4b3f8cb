"""Datasets: the IDX reader, downloads against a local HTTP server, the cache rules, digits, real MNIST.

Nothing here touches the network or the real home cache: HOME, XDG_CACHE_HOME and XPNET_DATA_DIR
point into tmp_path, and every mirror is a server on 127.0.0.1 (or a closed port on it).
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import os
import socket
import struct
import sys
import tarfile
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import assert_on, mnist_dir

import xpnet
from xpnet.backend import to_numpy
from xpnet.data import (
    CIFAR10_CLASSES,
    BatchesDataset,
    BinaryBatches,
    Dataset,
    DataUnavailable,
    IdxDataset,
    IdxFile,
    catalogue,
    fetch,
    load_dataset,
    load_mnist,
    read_idx,
)
from xpnet.errors import ConfigError, DataError

NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder` with its bytes and mtime, to prove nothing was changed."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*part*"))


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Keep every test away from the real cache, the real network and any proxy."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("XPNET_DATA_DIR", raising=False)
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setattr(fetch, "TIMEOUT", 5.0)
    return tmp_path / "cache" / "xpnet"


# ---------------------------------------------------------------------------------------------
# A local HTTP server standing in for the mirrors


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        kind, body = self.server.routes.get(self.path, ("404", b""))
        if kind == "404":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # "drop" hangs up halfway through the promised body, as a failing connection would.
        self.wfile.write(body[: len(body) // 2] if kind == "drop" else body)

    def log_message(self, *args):
        pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a client giving up mid-response is one of the cases under test


@pytest.fixture
def server():
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.routes, srv.requests = {}, []
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join()


@pytest.fixture
def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens, so connecting fails at once like no network."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def make_tiny(seed: int = 0, labels_max: int = 10) -> SimpleNamespace:
    """A four-file MNIST look-alike with 3×4 images, its IDX bytes, gzip bytes and table entry."""
    rng = np.random.default_rng(seed)
    arrays = {
        NAMES[0]: rng.integers(0, 256, (12, 3, 4), dtype=np.uint8),
        NAMES[1]: rng.integers(0, labels_max, 12, dtype=np.uint8),
        NAMES[2]: rng.integers(0, 256, (5, 3, 4), dtype=np.uint8),
        NAMES[3]: rng.integers(0, labels_max, 5, dtype=np.uint8),
    }
    arrays[NAMES[2]][0, 0, 0] = 255  # so the test set's maximum is exactly 1.0
    raw = {n: idx_bytes(a) for n, a in arrays.items()}
    gzs = {n: gz(b) for n, b in raw.items()}
    files = tuple(IdxFile(n, arrays[n].shape, md5(gzs[n]), md5(raw[n])) for n in NAMES)
    return SimpleNamespace(arrays=arrays, raw=raw, gz=gzs, spec=IdxDataset("MNIST", files, 10))


@pytest.fixture
def tiny(server, monkeypatch):
    """The tiny dataset installed as "mnist", served by two mirrors /a/ and /b/."""
    data = make_tiny()
    monkeypatch.setitem(catalogue.RESOURCES, "mnist", data.spec)
    data.mirrors = (f"{server.url}/a/", f"{server.url}/b/")
    monkeypatch.setitem(fetch.MIRRORS, "mnist", data.mirrors)
    for prefix in ("/a/", "/b/"):
        for name in NAMES:
            server.routes[f"{prefix}{name}.gz"] = ("ok", data.gz[name])
    data.server = server
    return data


def assert_is_tiny(d, data) -> None:
    a = data.arrays
    assert d.name == "mnist" and d.num_classes == 10 and d.notice is None
    assert d.x_train.dtype == np.float32 and d.x_train.shape == (12, 12)
    # x / 255 up to float32 rounding: the loader multiplies by 1/255, which may differ by one ulp.
    np.testing.assert_allclose(d.x_train, a[NAMES[0]].reshape(12, -1) / 255, rtol=2e-7, atol=0)
    np.testing.assert_array_equal(d.t_train, a[NAMES[1]])
    np.testing.assert_allclose(d.x_test, a[NAMES[2]].reshape(5, -1) / 255, rtol=2e-7, atol=0)
    np.testing.assert_array_equal(d.t_test, a[NAMES[3]])
    assert d.t_train.dtype == np.int64 and d.x_test.max() == 1.0


# ---------------------------------------------------------------------------------------------
# The IDX reader


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("shape", [(7,), (4, 3, 5)], ids=["labels-1d", "images-3d"])
def test_read_idx_round_trips(tmp_path, compress, shape):
    array = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)
    data = gz(idx_bytes(array)) if compress else idx_bytes(array)
    path = tmp_path / "file.idx"
    path.write_bytes(data)
    for source in (path, str(path), data):
        out = read_idx(source)
        assert out.dtype == np.uint8 and out.shape == shape
        np.testing.assert_array_equal(out, array)


def test_read_idx_converts_big_endian_types_to_native():
    array = np.array([[-2, 70000], [3, 2**31 - 1]], dtype=np.int32)
    out = read_idx(idx_bytes(array.astype(">i4"), code=0x0C))
    assert out.dtype == np.dtype(np.int32) and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


_GOOD = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x01" + _GOOD[1:], "not an IDX file"),
        (b"<!DOCTYPE html><html>", "not an IDX file"),
        (_GOOD[:2] + b"\x07" + _GOOD[3:], "unknown IDX data type code 0x07"),
        (_GOOD[:3] + b"\x00" + _GOOD[4:], "0 dimensions"),
        (_GOOD[:2], "truncated"),
        (_GOOD[:10], "truncated"),
        (_GOOD[:-1], "truncated: 23 bytes of data where its header promises 24"),
        (_GOOD + b"\x00\x00", "corrupt: 2 extra bytes"),
        (gz(_GOOD)[:-12], "truncated or corrupt gzip"),
        (gz(_GOOD)[:-8] + b"\x00\x00\x00\x00" + gz(_GOOD)[-4:], "truncated or corrupt gzip"),
        (gz(_GOOD)[:15] + b"\xff" * 5 + gz(_GOOD)[20:], "truncated or corrupt gzip"),
    ],
    ids=[
        "bad-magic",
        "html",
        "bad-type",
        "zero-dims",
        "short-header",
        "short-dims",
        "short-payload",
        "extra-bytes",
        "truncated-gzip",
        "bad-gzip-crc",
        "garbled-gzip",
    ],
)
def test_read_idx_rejects_bad_files_naming_them(tmp_path, data, words):
    path = tmp_path / "broken-idx3-ubyte.gz"
    path.write_bytes(data)
    with pytest.raises(DataError, match=r"broken-idx3-ubyte\.gz") as info:
        read_idx(path)
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_read_idx_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match=r"cannot read .*nothing-here"):
        read_idx(tmp_path / "nothing-here")


# ---------------------------------------------------------------------------------------------
# Downloads


def test_download_into_cache_is_verified_and_atomic(tiny, isolated):
    d = load_dataset("mnist")
    assert_is_tiny(d, tiny)
    dest = isolated / "mnist"
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{n}.gz" for n in NAMES)
    for name in NAMES:
        assert (dest / f"{name}.gz").read_bytes() == tiny.gz[name]
    assert leftovers(isolated) == []
    assert tiny.server.requests == [f"/a/{n}.gz" for n in NAMES]
    assert (
        d.source == f"downloaded from {tiny.mirrors[0]} into {dest} (4 files), checksums verified"
    )

    again = load_dataset("mnist")
    assert_is_tiny(again, tiny)
    assert len(tiny.server.requests) == 4, "a verified cache must not be downloaded again"
    assert again.source == f"{dest} (4 files), checksums verified"


def test_auto_names_the_dataset_it_loaded_and_every_dataset_has_an_image_shape(tiny):
    d = load_dataset("auto")
    assert_is_tiny(d, tiny)  # name "mnist", not "auto": checkpoints record what was used
    assert d.image_shape == (1, 3, 4) and d.class_names == tuple("0123456789")
    images = load_dataset("auto", flatten=False)
    assert images.name == "mnist" and images.image_shape == (1, 3, 4)
    assert images.x_train.shape == (12, 1, 3, 4) and images.x_train.dtype == np.float32
    np.testing.assert_array_equal(images.x_train.reshape(12, -1), d.x_train)


def test_as_images_turns_flat_rows_into_images_on_every_backend(tiny, backend):
    d = load_dataset("mnist")
    rows = backend.asarray(d.x_test, "float32")
    images = d.as_images(rows)
    assert_on(images, backend, "float32", (5, 1, 3, 4))
    expected = load_dataset("mnist", flatten=False).x_test
    np.testing.assert_array_equal(to_numpy(images), expected)


def test_dataset_image_shape_is_inferred_or_checked():
    x, t = np.zeros((4, 2, 5, 6), np.float32), np.zeros(4, np.int64)
    d = Dataset("x", x, t, x, t, num_classes=2, source="test")
    assert d.image_shape == (2, 5, 6)
    flat = x.reshape(4, -1)
    assert Dataset("x", flat, t, flat, t, 2, "test").image_shape is None
    assert Dataset("x", flat, t, flat, t, 2, "test", image_shape=(2, 6, 5)).image_shape == (2, 6, 5)
    with pytest.raises(DataError, match=r"image_shape \(3, 5, 6\) does not fit samples of 60"):
        Dataset("x", flat, t, flat, t, 2, "test", image_shape=(3, 5, 6))
    with pytest.raises(DataError, match="has no image shape"):
        Dataset("x", flat, t, flat, t, 2, "test").as_images(flat)


@pytest.mark.parametrize("failure", ["truncated-idx", "garbage", "drop", "404", "wrong-data"])
def test_a_bad_first_mirror_falls_through_to_the_second(tiny, isolated, failure):
    name = NAMES[0]
    bad = {
        "truncated-idx": ("ok", gz(tiny.raw[name][:-5])),
        "garbage": ("ok", b"<html>Service Unavailable</html>"),
        "drop": ("drop", tiny.gz[name]),
        "404": ("404", b""),
        "wrong-data": ("ok", gz(idx_bytes(tiny.arrays[name] ^ 1))),
    }[failure]
    tiny.server.routes[f"/a/{name}.gz"] = bad
    d = load_dataset("mnist")
    assert_is_tiny(d, tiny)
    assert (isolated / "mnist" / f"{name}.gz").read_bytes() == tiny.gz[name]
    assert f"/a/{name}.gz" in tiny.server.requests and f"/b/{name}.gz" in tiny.server.requests
    assert leftovers(isolated) == []
    assert tiny.mirrors[1] in d.source


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("progress", [True, False])
def test_downloads_draw_a_progress_bar_on_a_terminal_only_when_asked(tiny, monkeypatch, progress):
    monkeypatch.setattr(sys, "stderr", _Terminal())
    load_dataset("mnist", progress=progress)
    drawn = sys.stderr.getvalue()
    if progress:
        assert f"{NAMES[0]}.gz:" in drawn and "B/s" in drawn and drawn.endswith("\n")
    else:
        assert drawn == ""


def test_a_file_served_uncompressed_is_kept_under_its_uncompressed_name(tiny, isolated):
    name = NAMES[1]
    tiny.server.routes[f"/a/{name}.gz"] = ("ok", tiny.raw[name])
    assert_is_tiny(load_dataset("mnist"), tiny)
    assert (isolated / "mnist" / name).read_bytes() == tiny.raw[name]
    assert not (isolated / "mnist" / f"{name}.gz").exists()
    assert_is_tiny(load_dataset("mnist"), tiny)
    assert len(tiny.server.requests) == 4


def test_every_mirror_failing_names_the_file_and_each_mirror(tiny, isolated):
    name = NAMES[2]
    tiny.server.routes[f"/a/{name}.gz"] = ("drop", tiny.gz[name])
    tiny.server.routes[f"/b/{name}.gz"] = ("ok", gz(tiny.raw[name][:-1]))
    for dataset in ("mnist", "auto"):  # bad bytes from a mirror are not "no network": no fallback
        with pytest.raises(DataError) as info:
            load_dataset(dataset)
        message = str(info.value)
        assert f"could not download MNIST's {name}.gz into {isolated / 'mnist'}" in message
        assert f"{tiny.mirrors[0]}{name}.gz: connection closed after" in message
        assert f"{tiny.mirrors[1]}{name}.gz is truncated" in message
        assert "\n" not in message
    assert not (isolated / "mnist" / f"{name}.gz").exists()
    assert leftovers(isolated) == []


def test_a_corrupt_file_in_the_cache_is_deleted_and_fetched_once(tiny, isolated, capsys):
    name = NAMES[0]
    cached = isolated / "mnist" / f"{name}.gz"
    cached.parent.mkdir(parents=True)
    for n in NAMES:
        (cached.parent / f"{n}.gz").write_bytes(tiny.gz[n])
    cached.write_bytes(tiny.gz[name][: len(tiny.gz[name]) // 2])
    d = load_dataset("mnist")
    assert_is_tiny(d, tiny)
    assert cached.read_bytes() == tiny.gz[name]
    assert tiny.server.requests == [f"/a/{name}.gz"]
    # announced, in one line, before the download (issue 11 item 7)
    err = capsys.readouterr().err
    assert err == (
        f"notice: the cached {cached} is a truncated or corrupt gzip file (Compressed file ended "
        f"before the end-of-stream marker was reached); deleting it and downloading it again\n"
    )
    load_dataset("mnist")
    assert capsys.readouterr().err == "", "a good cache is used silently"


def test_a_corrupt_cached_file_that_cannot_be_refetched_raises(tiny, isolated):
    name = NAMES[1]
    cached = isolated / "mnist" / f"{name}.gz"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(gz(tiny.raw[name][:-3]))
    tiny.server.routes[f"/a/{name}.gz"] = ("404", b"")
    tiny.server.routes[f"/b/{name}.gz"] = ("ok", b"not a gzip file at all")
    with pytest.raises(DataError) as info:
        load_dataset("mnist")
    message = str(info.value)
    assert f"{name}.gz" in message and "was deleted" in message
    assert f"{tiny.mirrors[0]}{name}.gz: HTTP 404" in message
    assert f"{tiny.mirrors[1]}{name}.gz is not an IDX file" in message
    assert not cached.exists(), "a bad file must never stay where it would be used"
    assert [r for r in tiny.server.requests if name in r] == [f"/a/{name}.gz", f"/b/{name}.gz"]


@pytest.mark.parametrize("named_by", ["argument", "env"])
@pytest.mark.parametrize("damage", ["truncated", "other-pixels", "garbage"])
def test_a_bad_file_in_a_user_folder_is_never_touched(
    tiny, tmp_path, monkeypatch, named_by, damage
):
    folder = tmp_path / "mydata"
    folder.mkdir()
    for n in NAMES:
        (folder / f"{n}.gz").write_bytes(tiny.gz[n])
    bad = folder / f"{NAMES[2]}.gz"
    bad.write_bytes(
        {
            "truncated": tiny.gz[NAMES[2]][:-20],
            "other-pixels": gz(idx_bytes(tiny.arrays[NAMES[2]] // 2)),
            "garbage": b"\x1f\x8b not really gzip",
        }[damage]
    )
    os.utime(bad, ns=(1_000_000_000, 1_000_000_000))
    before = snapshot(folder)
    if named_by == "env":
        monkeypatch.setenv("XPNET_DATA_DIR", str(folder))
    data_dir = folder if named_by == "argument" else None
    for dataset in ("mnist", "auto"):  # a bad file never falls back to digits silently
        with pytest.raises(DataError) as info:
            load_dataset(dataset, data_dir)
        message = str(info.value)
        assert message.startswith(str(bad)) and "replace it with a genuine copy" in message
        how = "leave --data-dir out" if named_by == "argument" else "unset XPNET_DATA_DIR"
        assert f"{how} to download MNIST into the cache" in message and "\n" not in message
    assert snapshot(folder) == before
    assert tiny.server.requests == []


@pytest.mark.parametrize("named_by", ["argument", "env"])
def test_a_user_folder_lacking_files_is_an_error_and_gets_nothing(
    tiny, tmp_path, isolated, monkeypatch, named_by
):
    folder = tmp_path / "mydata"
    folder.mkdir()
    (folder / NAMES[0]).write_bytes(tiny.raw[NAMES[0]])  # uncompressed is accepted too
    (folder / f"{NAMES[1]}.gz").write_bytes(tiny.gz[NAMES[1]])
    before = snapshot(folder)
    if named_by == "env":
        monkeypatch.setenv("XPNET_DATA_DIR", str(folder))
    for dataset in ("mnist", "auto"):
        with pytest.raises(DataError) as info:
            load_dataset(dataset, folder if named_by == "argument" else None)
        message = str(info.value)
        how = "--data-dir" if named_by == "argument" else "XPNET_DATA_DIR"
        assert message.startswith(
            f"{how} {folder} lacks MNIST's {NAMES[2]}[.gz] and {NAMES[3]}[.gz]; put them in "
            f"{folder / 'mnist'} or {folder}, or "
        )
        assert f"to download MNIST into the cache {isolated}" in message and "\n" not in message
    assert snapshot(folder) == before and tiny.server.requests == []


def test_files_in_the_dataset_subfolder_are_found(tiny, tmp_path):
    sub = tmp_path / "mydata" / "mnist"
    sub.mkdir(parents=True)
    for n in NAMES:
        (sub / f"{n}.gz").write_bytes(tiny.gz[n])
    d = load_dataset("mnist", str(tmp_path / "mydata"))
    assert_is_tiny(d, tiny)
    assert d.source == f"{sub} (4 files), checksums verified"
    assert tiny.server.requests == []


def test_a_folder_of_other_files_is_a_clear_error(tiny, tmp_path, closed_port_url, monkeypatch):
    folder = tmp_path / "mydata"
    folder.mkdir()
    for name in ("notes.txt", "train.csv"):
        (folder / name).write_text("x")
    for download in (False, True):  # a named folder is never downloaded into either way
        with pytest.raises(DataError) as info:
            load_dataset("mnist", folder, download=download)
        message = str(info.value)
        assert message.startswith(
            f"--data-dir {folder} holds no dataset: {folder} holds notes.txt, train.csv but none "
            f"of the MNIST files; it should hold MNIST's {NAMES[0]}"
        )
        assert not isinstance(info.value, DataUnavailable)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "train.csv"]


def test_an_idx_file_of_the_wrong_shape_is_rejected(tiny, tmp_path):
    for n in NAMES:
        (tmp_path / f"{n}.gz").write_bytes(tiny.gz[n])
    wrong = tiny.arrays[NAMES[0]].reshape(12, 4, 3)
    (tmp_path / f"{NAMES[0]}.gz").write_bytes(gz(idx_bytes(wrong)))
    with pytest.raises(
        DataError, match=r"holds uint8 data of shape \(12, 4, 3\), not the uint8 \(12, 3, 4\)"
    ):
        load_dataset("mnist", tmp_path)


def test_the_other_datasets_files_in_its_own_subfolder_are_named(tiny, tmp_path, monkeypatch):
    other = make_tiny(seed=1)
    monkeypatch.setitem(catalogue.RESOURCES, "fashion-mnist", other.spec)
    sub = tmp_path / "fashion-mnist"
    sub.mkdir()
    for n in NAMES:
        (sub / f"{n}.gz").write_bytes(tiny.gz[n])  # MNIST's files where Fashion-MNIST's belong
    with pytest.raises(DataError, match=r"wrong checksum .*it is MNIST's file \(--dataset mnist\)"):
        load_dataset("fashion-mnist", tmp_path)


def test_a_flat_folder_of_the_other_dataset_is_left_alone(
    tiny, tmp_path, monkeypatch, closed_port_url
):
    """MNIST's files lying flat in a folder are not Fashion-MNIST's: skipped, never 'delete it'."""
    other = make_tiny(seed=1)
    fashion = IdxDataset("Fashion-MNIST", other.spec.files, 10)
    monkeypatch.setitem(catalogue.RESOURCES, "fashion-mnist", fashion)
    monkeypatch.setitem(fetch.MIRRORS, "fashion-mnist", (closed_port_url,))
    for n in NAMES:
        (tmp_path / f"{n}.gz").write_bytes(tiny.gz[n])
    before = snapshot(tmp_path)
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", tmp_path)
    message = str(info.value)
    assert message.startswith(
        f"--data-dir {tmp_path} holds no Fashion-MNIST files ({tmp_path / NAMES[0]}.gz is MNIST's)"
    )
    assert "delete" not in message and "point --data-dir at the folder holding them" in message
    assert snapshot(tmp_path) == before
    # and the MNIST files still serve MNIST
    assert_is_tiny(load_dataset("mnist", tmp_path), tiny)


def test_an_interrupted_download_leaves_no_file(tiny, isolated, monkeypatch):
    real_open = open

    class Interrupting:
        def __init__(self, *args):
            self.file = real_open(*args)

        def write(self, chunk):
            raise KeyboardInterrupt

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    monkeypatch.setattr(fetch, "open", Interrupting, raising=False)
    with pytest.raises(KeyboardInterrupt):
        load_dataset("mnist")
    assert not (isolated / "mnist").exists(), "neither the file nor the folder made for it stays"


@pytest.mark.parametrize("where", ["mkdir", "open", "write"])
@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.ENOSPC])
def test_an_unwritable_folder_is_a_one_line_error(tiny, isolated, monkeypatch, where, code):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    if where == "mkdir":
        monkeypatch.setattr(fetch.Path, "mkdir", fail)
    elif where == "open":
        monkeypatch.setattr(fetch, "open", fail, raising=False)
    else:
        real_open = open

        def open_then_fail(*args):
            f = real_open(*args)
            f.write = fail
            return f

        monkeypatch.setattr(fetch, "open", open_then_fail, raising=False)
    with pytest.raises(DataError) as info:
        load_dataset("mnist")
    message = str(info.value)
    why = f"cannot write to {isolated / 'mnist'}: {os.strerror(code).lower()}"
    assert message.startswith(why)
    assert "--data-dir" in message and "XPNET_DATA_DIR" in message and "\n" not in message
    assert not (isolated / "mnist").exists(), "the folder made for the download is removed"
    # The default dataset cannot be had from an unwritable cache, as without a network (issue 11
    # item 9): it falls back to digits and says why.
    d = load_dataset("auto")
    assert d.name == "digits" and f"({why})" in d.notice


def test_labels_are_checked_against_the_number_of_classes(server, tmp_path, monkeypatch):
    data = make_tiny(labels_max=12)
    data.arrays[NAMES[1]][3] = 11
    raw = idx_bytes(data.arrays[NAMES[1]])
    files = list(data.spec.files)
    files[1] = IdxFile(NAMES[1], (12,), None, md5(raw))
    monkeypatch.setitem(catalogue.RESOURCES, "mnist", IdxDataset("MNIST", tuple(files), 10))
    for n in NAMES:
        (tmp_path / n).write_bytes(raw if n == NAMES[1] else data.raw[n])
    with pytest.raises(DataError, match=r"mnist training set: label 1[01] is outside 0\.\.9"):
        load_dataset("mnist", tmp_path)


def test_label_and_image_counts_must_agree(server, tmp_path, monkeypatch):
    data = make_tiny()
    labels = data.arrays[NAMES[3]][:4]
    files = list(data.spec.files)
    files[3] = IdxFile(NAMES[3], (4,), None, md5(idx_bytes(labels)))
    monkeypatch.setitem(catalogue.RESOURCES, "mnist", IdxDataset("MNIST", tuple(files), 10))
    for n in NAMES:
        (tmp_path / n).write_bytes(idx_bytes(labels) if n == NAMES[3] else data.raw[n])
    with pytest.raises(DataError, match="mnist test set: 4 labels for 5 images"):
        load_dataset("mnist", tmp_path)


def test_without_network_mnist_raises_and_auto_falls_back(
    tiny, isolated, closed_port_url, monkeypatch
):
    mirrors = (closed_port_url, closed_port_url + "second/")
    monkeypatch.setitem(fetch.MIRRORS, "mnist", mirrors)
    with pytest.raises(DataError) as info:
        load_dataset("mnist")
    message = str(info.value)
    assert f"could not download MNIST's {NAMES[0]}.gz" in message
    assert f"{mirrors[0]}{NAMES[0]}.gz: " in message and f"{mirrors[1]}{NAMES[0]}.gz: " in message
    assert "--dataset digits, which works offline" in message
    with pytest.raises(DataError):
        load_mnist()

    d = load_dataset("auto")
    assert d.name == "digits" and d.x_train.shape == (1497, 64)
    assert d.notice.startswith(f"MNIST is not in {isolated / 'mnist'} and could not be downloaded")
    assert "(no network: " in d.notice and "--dataset mnist" in d.notice and "\n" not in d.notice
    assert "127.0.0.1" not in d.notice, "the notice gives the error, not every URL"
    assert leftovers(isolated) == []

    d = load_dataset("auto", download=False)
    assert d.name == "digits" and "downloading is off" in d.notice


def test_the_fallback_notice_has_no_doubled_parentheses(tiny, monkeypatch):
    """An SSL error's text ends in "(_ssl.c:1000)": inside the notice's parentheses that read "))"."""

    def fail(url, timeout):
        raise urllib.error.URLError(
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local "
            "issuer certificate (_ssl.c:1000)"
        )

    monkeypatch.setattr(urllib.request, "urlopen", fail)
    d = load_dataset("auto")
    assert d.name == "digits"
    assert "(no network: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: " in d.notice
    assert "((" not in d.notice and "))" not in d.notice and ") (" not in d.notice
    assert d.notice.count("(") == d.notice.count(")") == 1
    assert "Pass --data-dir" in d.notice  # none was passed: that is the advice


# ---------------------------------------------------------------------------------------------
# A folder the user names (issue 11 item 1) and an unwritable cache (item 9)

MNIST_FILES = "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte"


@pytest.mark.parametrize("dataset", ["auto", "mnist"])
@pytest.mark.parametrize("online", [True, False], ids=["online", "offline"])
def test_a_data_dir_that_does_not_exist_is_an_error_and_is_not_created(
    tiny, tmp_path, closed_port_url, monkeypatch, dataset, online
):
    if not online:
        monkeypatch.setitem(fetch.MIRRORS, "mnist", (closed_port_url,))
    typo = tmp_path / "dtaa"
    with pytest.raises(DataError) as info:
        load_dataset(dataset, typo)
    message = str(info.value)
    assert message.startswith(f"--data-dir {typo} does not exist; it should be a folder holding ")
    assert (
        f"MNIST's {MNIST_FILES} (each may end in .gz), directly or in {typo / 'mnist'}" in message
    )
    assert "leave --data-dir out to use the cache" in message and "\n" not in message
    assert not typo.exists(), "a mistyped folder is never created"
    assert tiny.server.requests == []


def test_unavailable_is_told_apart_from_a_wrong_folder(
    tiny, tmp_path, closed_port_url, monkeypatch
):
    """Callers such as a benchmark fall back only on DataUnavailable, never on a mistyped folder."""
    with pytest.raises(DataError) as info:
        load_dataset("mnist", tmp_path / "typo")
    assert not isinstance(info.value, DataUnavailable)
    monkeypatch.setitem(fetch.MIRRORS, "mnist", (closed_port_url,))
    with pytest.raises(DataUnavailable) as info:
        load_dataset("mnist")
    assert (
        info.value.why.startswith("no network: ")
        and info.value.where == tmp_path / "cache" / "xpnet" / "mnist"
    )
    with pytest.raises(DataUnavailable, match="downloading is off"):
        load_dataset("mnist", download=False)


def test_a_data_dir_that_is_a_file_is_an_error(tiny, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    with pytest.raises(DataError, match=f"--data-dir {a_file} is not a folder; it should be"):
        load_dataset("auto", a_file)


@pytest.mark.parametrize("dataset", ["auto", "mnist"])
@pytest.mark.parametrize("online", [True, False], ids=["online", "offline"])
def test_an_empty_data_dir_is_an_error_never_a_fallback(
    tiny, tmp_path, closed_port_url, monkeypatch, dataset, online
):
    if not online:
        monkeypatch.setitem(fetch.MIRRORS, "mnist", (closed_port_url,))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as info:
        load_dataset(dataset, empty)
    message = str(info.value)
    assert message.startswith(f"--data-dir {empty} holds no dataset: {empty} is empty; it should ")
    assert f"MNIST's {MNIST_FILES}" in message and "\n" not in message
    assert list(empty.iterdir()) == [], "nothing is downloaded into a folder named by mistake"
    assert tiny.server.requests == []


def test_a_data_dir_holding_part_of_mnist_offline_never_falls_back(
    tiny, tmp_path, closed_port_url, monkeypatch
):
    monkeypatch.setitem(fetch.MIRRORS, "mnist", (closed_port_url,))
    (tmp_path / f"{NAMES[0]}.gz").write_bytes(tiny.gz[NAMES[0]])
    with pytest.raises(DataError, match=rf"--data-dir {tmp_path} lacks MNIST's {NAMES[1]}\[\.gz\]"):
        load_dataset("auto", tmp_path)
    assert not (tmp_path / "mnist").exists()


def state(folder: Path) -> tuple:
    """Every file under `folder` (bytes, mtime) and every folder's mtime: creating and removing a
    subfolder leaves no file behind but changes its parent's mtime."""
    folders = [folder, *(p for p in folder.rglob("*") if p.is_dir())]
    return snapshot(folder), {str(p): p.stat().st_mtime_ns for p in folders}


def freeze(folder: Path) -> tuple:
    """`state(folder)` after setting every folder's mtime to a fixed past time."""
    for p in [folder, *folder.rglob("*")]:
        if p.is_dir():
            os.utime(p, ns=(1_000_000_000, 1_000_000_000))
    return state(folder)


@pytest.mark.parametrize("named_by", ["argument", "env"])
@pytest.mark.parametrize("online", [True, False], ids=["online", "offline"])
def test_a_named_mnist_folder_is_never_written_for_another_dataset(
    tiny, cifar, tmp_path, isolated, closed_port_url, monkeypatch, named_by, online
):
    """The issue: --data-dir (or XPNET_DATA_DIR) naming the user's MNIST folder and --dataset
    cifar10 created (and, offline, removed again) a cifar10/ subfolder there."""
    folder = tmp_path / "my-mnist"
    folder.mkdir()
    for n in NAMES:
        (folder / f"{n}.gz").write_bytes(tiny.gz[n])
    if not online:
        monkeypatch.setitem(fetch.MIRRORS, "cifar10", (closed_port_url,))
    if named_by == "env":
        monkeypatch.setenv("XPNET_DATA_DIR", str(folder))
    how = "--data-dir" if named_by == "argument" else "XPNET_DATA_DIR"
    before = freeze(folder)
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", folder if named_by == "argument" else None)
    assert state(folder) == before and cifar.server.requests == []  # not even a folder made
    message = str(info.value)
    assert message.startswith(f"{how} {folder} holds no CIFAR-10 files: {folder} holds ")
    assert "it should hold CIFAR-10's cifar-10-binary.tar.gz" in message
    assert f"point {how} at the folder holding them, or " in message
    assert f"to download CIFAR-10 into the cache {isolated}" in message and "\n" not in message
    assert not isinstance(info.value, DataUnavailable)
    # and the folder still serves MNIST, read only
    assert_is_tiny(load_dataset("mnist", folder if named_by == "argument" else None), tiny)
    assert state(folder) == before


def test_xpnet_data_dir_must_exist_and_is_never_downloaded_into(
    tiny, tmp_path, isolated, monkeypatch
):
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("XPNET_DATA_DIR", str(missing))
    with pytest.raises(DataError, match=f"XPNET_DATA_DIR {missing} does not exist; .* create it"):
        load_dataset("auto")
    assert not missing.exists()
    # an existing (empty) one is read, never written: the error says how to download instead
    missing.mkdir()
    with pytest.raises(DataError) as info:
        load_dataset("auto")
    message = str(info.value)
    assert message.startswith(f"XPNET_DATA_DIR {missing} holds no dataset: {missing} is empty;")
    assert message.endswith(f"unset XPNET_DATA_DIR to download MNIST into the cache {isolated}")
    assert list(missing.iterdir()) == [] and tiny.server.requests == []
    monkeypatch.delenv("XPNET_DATA_DIR")
    assert_is_tiny(load_dataset("auto"), tiny)


@pytest.mark.parametrize("via", ["HOME", "XDG_CACHE_HOME"])
def test_a_cache_whose_home_does_not_exist_is_never_created(tiny, tmp_path, monkeypatch, via):
    """The issue: HOME=/nonexistent created /nonexistent/.cache/xpnet. xpnet makes its cache
    folder (and ~/.cache, or $XDG_CACHE_HOME, as the XDG spec asks), never the folder above."""
    nowhere = tmp_path / "nonexistent"
    if via == "HOME":
        monkeypatch.delenv("XDG_CACHE_HOME")
        monkeypatch.setenv("HOME", str(nowhere))
        root = nowhere / ".cache" / "xpnet"
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", str(nowhere / "cache"))
        root = nowhere / "cache" / "xpnet"
    with pytest.raises(DataUnavailable) as info:
        load_dataset("mnist")
    message = str(info.value)
    assert message == (
        f"cannot create the cache {root}: {nowhere} does not exist; set HOME or XDG_CACHE_HOME "
        f"to an existing folder, or point --data-dir or XPNET_DATA_DIR at a folder that holds "
        f"the dataset"
    )
    d = load_dataset("auto")  # the cache cannot be had, as without a network: digits, and why
    assert d.name == "digits" and f"(cannot create the cache {root}: " in d.notice
    # a named folder is read as ever; the uncompressed copies are simply not kept
    folder = tmp_path / "mydata"
    folder.mkdir()
    for n in NAMES:
        (folder / f"{n}.gz").write_bytes(tiny.gz[n])
    assert_is_tiny(load_dataset("mnist", folder), tiny)
    assert not nowhere.exists() and tiny.server.requests == []


@pytest.mark.parametrize("via", ["XDG_CACHE_HOME", "HOME"])
def test_an_unwritable_cache_falls_back_to_digits(tiny, tmp_path, monkeypatch, via):
    """Tests run as root, which writes through chmod 0o500; a cache path under a regular FILE
    cannot be created by anyone (mkdir fails with ENOTDIR), so it stands in for a read-only one."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    if via == "XDG_CACHE_HOME":
        monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "cache"))
        cache = blocker / "cache" / "xpnet" / "mnist"
    else:
        monkeypatch.delenv("XDG_CACHE_HOME")
        monkeypatch.setenv("HOME", str(blocker))
        cache = blocker / ".cache" / "xpnet" / "mnist"
    d = load_dataset("auto")
    assert d.name == "digits" and d.x_train.shape == (1497, 64)
    assert d.notice.startswith(
        f"MNIST is not in {cache} and could not be downloaded (cannot write to {cache}: not a "
        f"directory); using scikit-learn's offline 8x8 digits instead."
    )
    assert tiny.server.requests == [], "nothing is downloaded that could not be kept"
    with pytest.raises(DataError) as info:
        load_dataset("mnist")  # named, it never falls back
    message = str(info.value)
    assert message.startswith(f"cannot write to {cache}: not a directory; set XDG_CACHE_HOME")
    assert "\n" not in message


def test_unknown_dataset_names_list_the_choices():
    with pytest.raises(
        ConfigError,
        match="unknown dataset 'cifar'; choose one of: mnist, fashion-mnist, cifar10, digits, auto",
    ):
        load_dataset("cifar")


def test_cache_location_follows_xdg_then_home(tiny, tmp_path, monkeypatch):
    load_dataset("mnist")
    (tmp_path / "home").mkdir()  # xpnet never creates HOME itself
    assert (tmp_path / "cache" / "xpnet" / "mnist" / f"{NAMES[0]}.gz").is_file()
    for xdg in (None, "relative/dir"):  # the XDG spec says a relative path is to be ignored
        if xdg is None:
            monkeypatch.delenv("XDG_CACHE_HOME")
        else:
            monkeypatch.setenv("XDG_CACHE_HOME", xdg)
        d = load_dataset("mnist")
        assert str(tmp_path / "home" / ".cache" / "xpnet" / "mnist") in d.source


# ---------------------------------------------------------------------------------------------
# scikit-learn's digits (offline)


def test_digits_shapes_ranges_and_a_fixed_split():
    d = load_dataset("digits")
    assert (d.name, d.num_classes, d.notice) == ("digits", 10, None)
    assert d.source == "scikit-learn's bundled 8x8 digits, offline"
    assert "(" not in d.source, 'the CLI prints "from <source> (N train / M test samples)"'
    assert d.image_shape == (1, 8, 8) and d.class_names == tuple("0123456789")
    assert d.x_train.shape == (1497, 64) and d.x_test.shape == (300, 64)
    assert d.x_train.dtype == np.float32 and d.t_train.dtype == np.int64
    assert d.x_train.min() == 0.0 and d.x_train.max() == 1.0 and d.x_test.max() <= 1.0
    assert set(np.unique(d.t_test)) == set(range(10))
    # Pinned: RandomState's stream is frozen, so this split must never change.
    assert d.t_test[:12].tolist() == [2, 8, 2, 6, 6, 7, 1, 9, 8, 5, 2, 8]
    again = load_dataset("digits")
    np.testing.assert_array_equal(again.x_test, d.x_test)
    np.testing.assert_array_equal(again.t_train, d.t_train)

    from sklearn.datasets import load_digits

    full = load_digits()
    ours = np.concatenate([d.x_train, d.x_test]) * 16
    rows = sorted(
        map(
            bytes,
            np.concatenate([ours, np.concatenate([d.t_train, d.t_test])[:, None]], 1).astype(
                np.uint8
            ),
        )
    )
    theirs = sorted(
        map(bytes, np.concatenate([full.data, full.target[:, None]], 1).astype(np.uint8))
    )
    assert rows == theirs, "train + test must be exactly the 1797 samples, each once"


def test_digits_options():
    d = load_dataset("digits", normalize=False, flatten=False, one_hot_label=True)
    assert d.x_train.shape == (1497, 1, 8, 8) and d.x_train.dtype == np.uint8
    assert d.x_train.max() == 16
    assert d.t_train.shape == (1497, 10) and d.t_train.dtype == np.float32
    np.testing.assert_array_equal(d.t_train.sum(axis=1), 1)
    np.testing.assert_array_equal(d.t_test.argmax(axis=1), load_dataset("digits").t_test)


def test_digits_without_scikit_learn(monkeypatch, closed_port_url):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(
        DataError, match=r"pip install scikit-learn \(or pip install \"xpnet\[datasets\]\"\)"
    ):
        load_dataset("digits")
    monkeypatch.setitem(fetch.MIRRORS, "mnist", (closed_port_url,))
    with pytest.raises(
        DataError, match=r"could not download MNIST.*the offline fallback failed too"
    ):
        load_dataset("auto")


# ---------------------------------------------------------------------------------------------
# Verified uncompressed copies in xpnet's own cache: a second load inflates nothing


@pytest.fixture
def inflations(monkeypatch):
    """The sizes gzip.decompress returned, one per call: every file inflated is listed."""
    calls, real = [], gzip.decompress

    def counting(data):
        out = real(data)
        calls.append(len(out))
        return out

    monkeypatch.setattr(gzip, "decompress", counting)
    return calls


def user_folder(tmp_path: Path, files: dict[str, bytes]) -> Path:
    folder = tmp_path / "mydata"
    folder.mkdir(exist_ok=True)
    for name, data in files.items():
        (folder / f"{name}.gz").write_bytes(data)
    return folder


def copy_path(isolated: Path, spec: IdxFile) -> Path:
    return isolated / "unpacked" / f"{spec.name}.{spec.md5_raw}"


def assert_same_arrays(a, b) -> None:
    for field in ("x_train", "t_train", "x_test", "t_test"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x.dtype, x.shape) == (y.dtype, y.shape) and x.tobytes() == y.tobytes(), field


@pytest.mark.parametrize("where", ["named", "cache"])
def test_a_second_load_reads_the_verified_uncompressed_copies(
    tiny, tmp_path, isolated, inflations, where
):
    folder = user_folder(tmp_path, tiny.gz) if where == "named" else None
    if where == "cache":
        load_dataset("mnist")  # downloaded into the cache, then loaded from there
    before = snapshot(folder) if folder else None
    inflations.clear()
    first = load_dataset("mnist", folder)
    assert sorted(inflations) == sorted(len(tiny.raw[n]) for n in NAMES)
    for spec in tiny.spec.files:  # the source's MD5, then its uncompressed bytes
        header = f"{md5(tiny.gz[spec.name])}\n".encode()
        assert copy_path(isolated, spec).read_bytes() == header + tiny.raw[spec.name]
    assert sorted(p.name for p in (isolated / "unpacked").iterdir()) == sorted(
        f"{n}.{md5(tiny.raw[n])}" for n in NAMES
    )
    inflations.clear()
    second = load_dataset("mnist", folder)
    assert inflations == [], "a second load must not inflate the .gz files"
    assert_is_tiny(second, tiny)
    assert_same_arrays(first, second)
    assert second.source == first.source
    raw = load_dataset("mnist", folder, normalize=False, flatten=False)
    np.testing.assert_array_equal(raw.x_train[:, 0], tiny.arrays[NAMES[0]])
    assert raw.x_train.flags.writeable, "callers may shuffle in place"
    if folder:
        assert snapshot(folder) == before, "the copies go into xpnet's cache, never the folder"
    assert inflations == []


def test_a_corrupt_or_stale_copy_is_ignored_and_rewritten(tiny, tmp_path, isolated, inflations):
    folder = user_folder(tmp_path, tiny.gz)
    expected = load_dataset("mnist", folder)
    spec = tiny.spec.files[0]
    copy = copy_path(isolated, spec)
    good = copy.read_bytes()
    header = len(f"{md5(tiny.gz[spec.name])}\n")
    flipped = bytearray(good)
    flipped[-5] ^= 1
    damaged = {
        "flipped-byte": bytes(flipped),
        "truncated": good[:-7],
        "empty": b"",
        "no-header": good[header:],
        "another-source": f"{md5(b'another')}\n".encode() + good[header:],
        "another-file": good[:header] + tiny.raw[NAMES[2]],
    }
    for name, data in damaged.items():
        copy.write_bytes(data)
        inflations.clear()
        d = load_dataset("mnist", folder)
        assert inflations == [len(tiny.raw[spec.name])], name  # that file only, never an error
        assert_same_arrays(d, expected)
        assert copy.read_bytes() == good, f"{name}: the copy is rewritten"
    copy.unlink()
    copy.mkdir()  # unreadable as a file, and cannot be replaced: ignored, loading goes on
    inflations.clear()
    assert_same_arrays(load_dataset("mnist", folder), expected)
    assert len(inflations) == 1 and copy.is_dir()
    assert sorted(p.name for p in (isolated / "unpacked").iterdir() if p.name.startswith(".")) == []


def test_a_recompressed_source_gets_its_own_copy(tiny, tmp_path, isolated, inflations):
    """A copy re-compressed by someone (verified by its data's MD5) is cached too, and replacing
    the source by another genuine copy makes the old copy stale."""
    expected = load_dataset("mnist", user_folder(tmp_path, tiny.gz))
    other = {n: gzip.compress(tiny.raw[n], compresslevel=1, mtime=1) for n in NAMES}
    assert all(md5(other[n]) != md5(tiny.gz[n]) for n in NAMES)
    folder = user_folder(tmp_path, other)
    inflations.clear()
    assert_same_arrays(load_dataset("mnist", folder), expected)
    assert len(inflations) == 4, "the copies of the other source are stale"
    spec = tiny.spec.files[0]
    assert copy_path(isolated, spec).read_bytes().startswith(f"{md5(other[spec.name])}\n".encode())
    inflations.clear()
    assert_same_arrays(load_dataset("mnist", folder), expected)
    assert inflations == []


def test_no_copy_without_a_checksum_to_verify_it_by(server, tmp_path, isolated, monkeypatch):
    """A file verified by its .gz MD5 alone, whose data MD5 is unknown or wrong, gets no copy:
    one could never be verified (and would be rewritten on every load)."""
    data = make_tiny()
    files = list(data.spec.files)
    files[0] = IdxFile(NAMES[0], files[0].shape, files[0].md5_gz, None)
    files[1] = IdxFile(NAMES[1], files[1].shape, files[1].md5_gz, "0" * 32)
    monkeypatch.setitem(catalogue.RESOURCES, "mnist", IdxDataset("MNIST", tuple(files), 10))
    assert_is_tiny(load_dataset("mnist", user_folder(tmp_path, data.gz)), data)
    assert sorted(p.name for p in (isolated / "unpacked").iterdir()) == sorted(
        f"{n}.{md5(data.raw[n])}" for n in NAMES[2:]
    )


def test_without_a_cache_folder_loading_works_as_before(tiny, tmp_path, monkeypatch, inflations):
    """A cache that cannot be made (under a regular file here) is skipped, never an error."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "cache"))
    folder = user_folder(tmp_path, tiny.gz)
    for _ in range(2):
        inflations.clear()
        assert_is_tiny(load_dataset("mnist", folder), tiny)
        assert len(inflations) == 4
    assert blocker.read_text() == "not a folder"


# ---------------------------------------------------------------------------------------------
# The tests' own data folder (tests/conftest.py)


def test_the_tests_find_mnist_where_xpnet_data_dir_names_it(tmp_path, monkeypatch):
    """XPNET_DATA_DIR is the one variable: the tests look for MNIST in it, in either layout the
    loader accepts; XPNET_MNIST_DIR, their old name for it, is read when it is not set."""
    flat, data = tmp_path / "flat", tmp_path / "data"
    flat.mkdir()
    (data / "mnist").mkdir(parents=True)
    for n in NAMES:
        (flat / f"{n}.gz").write_bytes(b"")
        (data / "mnist" / n).write_bytes(b"")
    monkeypatch.delenv("XPNET_MNIST_DIR", raising=False)
    monkeypatch.setenv("XPNET_DATA_DIR", str(flat))
    assert mnist_dir() == flat
    monkeypatch.setenv("XPNET_DATA_DIR", str(data))
    assert mnist_dir() == data
    monkeypatch.setenv("XPNET_MNIST_DIR", str(flat))
    assert mnist_dir() == data, "XPNET_DATA_DIR comes first"
    (data / "mnist" / NAMES[3]).unlink()
    assert mnist_dir() is None
    monkeypatch.delenv("XPNET_DATA_DIR")
    assert mnist_dir() == flat


# ---------------------------------------------------------------------------------------------
# The real MNIST (XPNET_DATA_DIR)

MNIST_DIR = mnist_dir()
needs_mnist = pytest.mark.skipif(
    MNIST_DIR is None, reason="set XPNET_DATA_DIR to a folder holding the four MNIST files"
)


@pytest.fixture(scope="module")
def real_mnist(tmp_path_factory):
    before = snapshot(MNIST_DIR)
    with pytest.MonkeyPatch.context() as mp:  # module-scoped: `isolated` does not apply yet
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        d = load_dataset("mnist", MNIST_DIR)
    assert snapshot(MNIST_DIR) == before, "loading must not write into the data folder"
    return d


@pytest.mark.mnist
@needs_mnist
def test_real_mnist(real_mnist):
    d = real_mnist
    assert d.x_train.shape == (60000, 784) and d.x_test.shape == (10000, 784)
    assert d.name == "mnist" and d.image_shape == (1, 28, 28)
    assert d.x_train.dtype == np.float32 and d.t_train.dtype == np.int64
    assert d.x_train.min() == 0.0 and d.x_train.max() == 1.0 and d.x_test.max() == 1.0
    assert abs(float(d.x_train.mean()) - 0.1307) < 1e-3  # the well-known MNIST pixel mean
    assert set(np.unique(d.t_train)) == set(range(10)) == set(np.unique(d.t_test))
    assert np.bincount(d.t_train).min() > 5000 and np.bincount(d.t_train).max() < 7000
    assert np.bincount(d.t_test).min() > 800 and np.bincount(d.t_test).max() < 1200
    assert d.source == f"{MNIST_DIR} (4 files), checksums verified"


@pytest.mark.mnist
@needs_mnist
def test_real_mnist_book_signature(real_mnist, isolated):
    before = snapshot(MNIST_DIR)
    (x_train, t_train), (x_test, t_test) = load_mnist(
        normalize=False, flatten=False, one_hot_label=True, data_dir=MNIST_DIR
    )
    assert snapshot(MNIST_DIR) == before
    # xpnet's own cache holds the verified uncompressed copies, nothing else
    assert [p.name for p in isolated.iterdir()] == ["unpacked"]
    assert x_train.shape == (60000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28)
    assert x_train.dtype == np.uint8 and x_train.max() == 255
    assert t_train.shape == (60000, 10) and t_test.shape == (10000, 10)
    np.testing.assert_array_equal(t_test.argmax(axis=1), real_mnist.t_test)
    np.testing.assert_allclose(
        real_mnist.x_test, x_test.reshape(10000, -1) / 255, rtol=2e-7, atol=0
    )


@pytest.mark.mnist
@needs_mnist
def test_real_mnist_from_the_copies_is_bit_identical(isolated, inflations):
    first = load_dataset("mnist", MNIST_DIR, normalize=False)
    assert len(inflations) == 4
    inflations.clear()
    second = load_dataset("mnist", MNIST_DIR, normalize=False)
    assert inflations == [], "a second load must not inflate the .gz files"
    assert_same_arrays(first, second)
    for spec, array in zip(catalogue.RESOURCES["mnist"].files, (second.x_train, second.t_train,
                           second.x_test, second.t_test), strict=True):  # fmt: skip
        expected = read_idx(MNIST_DIR / f"{spec.name}.gz")
        np.testing.assert_array_equal(array, expected.reshape(len(expected), -1).squeeze())
    assert second.x_train.dtype == np.uint8
    assert_same_arrays(load_dataset("mnist", MNIST_DIR), real_mnist_floats(MNIST_DIR))


def real_mnist_floats(folder: Path):
    """MNIST loaded with no cache at all, for comparison."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", "/nonexistent/cache")
        return load_dataset("mnist", folder)


# ---------------------------------------------------------------------------------------------
# CIFAR-10 (binary version) from small archives the tests write in its real format

CIFAR_FOLDER = "cifar-10-batches-bin"
CIFAR_BATCHES = (*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin")
RECORDS = 3  # per batch file (CIFAR's have 10,000)


def cifar_archive(records, meta=None, members=None, mtime=0) -> bytes:
    """A tar.gz laid out as cifar-10-binary.tar.gz: `records` maps batch name -> (labels, images)."""
    files = {}
    for name, (labels, images) in records.items():
        rows = np.concatenate([labels[:, None], images.reshape(len(images), -1)], axis=1)
        files[f"{CIFAR_FOLDER}/{name}"] = rows.astype(np.uint8).tobytes()
    files[f"{CIFAR_FOLDER}/batches.meta.txt"] = (
        meta if meta is not None else ("\n".join(CIFAR10_CLASSES) + "\n\n").encode()
    )
    files[f"{CIFAR_FOLDER}/readme.html"] = b"<html></html>"
    files.update(members or {})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mtime = len(data), mtime
            tar.addfile(info, io.BytesIO(data))
    return gz(buffer.getvalue())


def make_cifar(seed: int = 0) -> SimpleNamespace:
    rng = np.random.default_rng(seed)
    records = {
        name: (
            rng.integers(0, 10, RECORDS, dtype=np.uint8),
            rng.integers(0, 256, (RECORDS, 3, 32, 32), dtype=np.uint8),
        )
        for name in CIFAR_BATCHES
    }
    records["test_batch.bin"][1][0, 2, 31, 31] = 255  # so the test set's maximum is exactly 1.0
    blob = cifar_archive(records)
    spec = BinaryBatches(
        "cifar-10-binary.tar.gz",
        md5(blob),
        CIFAR_FOLDER,
        CIFAR_BATCHES[:5],
        CIFAR_BATCHES[5:],
        RECORDS,
        (3, 32, 32),
        "batches.meta.txt",
    )
    return SimpleNamespace(
        records=records, blob=blob, spec=spec, dataset=BatchesDataset("CIFAR-10", (spec,), 10)
    )


@pytest.fixture
def cifar(server, monkeypatch):
    """The small archive installed as "cifar10", served by one mirror /c/."""
    data = make_cifar()
    monkeypatch.setitem(catalogue.RESOURCES, "cifar10", data.dataset)
    data.mirror = f"{server.url}/c/"
    monkeypatch.setitem(fetch.MIRRORS, "cifar10", (data.mirror,))
    server.routes["/c/cifar-10-binary.tar.gz"] = ("ok", data.blob)
    data.server = server
    return data


def assert_is_cifar(d, data) -> None:
    train = [data.records[n] for n in CIFAR_BATCHES[:5]]
    labels = np.concatenate([t for t, _ in train])
    images = np.concatenate([x for _, x in train])
    test_labels, test_images = data.records["test_batch.bin"]
    assert (d.name, d.num_classes, d.notice) == ("cifar10", 10, None)
    assert d.image_shape == (3, 32, 32) and d.class_names == CIFAR10_CLASSES
    assert d.x_train.shape == (5 * RECORDS, 3072) and d.x_train.dtype == np.float32
    assert d.x_test.shape == (RECORDS, 3072) and d.t_test.shape == (RECORDS,)
    assert d.t_train.dtype == np.int64 and d.t_test.dtype == np.int64
    # the record layout: 1024 red, 1024 green, 1024 blue bytes, each row-major; x / 255
    np.testing.assert_allclose(d.x_train, images.reshape(-1, 3072) / 255, rtol=2e-7, atol=0)
    np.testing.assert_allclose(d.x_test, test_images.reshape(-1, 3072) / 255, rtol=2e-7, atol=0)
    np.testing.assert_array_equal(d.t_train, labels)
    np.testing.assert_array_equal(d.t_test, test_labels)
    assert d.x_test.max() == 1.0 and d.x_train.min() >= 0.0


def test_cifar10_is_registered_with_the_published_checksum():
    spec = catalogue.RESOURCES["cifar10"]
    (archive,) = spec.files
    # https://www.cs.toronto.edu/~kriz/cifar.html: "CIFAR-10 binary version (suitable for C programs)"
    assert archive.name == "cifar-10-binary.tar.gz"
    assert archive.md5 == "c32a1d4ab5d03f1284b67883e8d87530"
    assert (archive.records, archive.image_shape, spec.num_classes) == (10000, (3, 32, 32), 10)
    assert archive.train == tuple(f"data_batch_{i}.bin" for i in range(1, 6))
    assert archive.test == ("test_batch.bin",)
    assert fetch.MIRRORS["cifar10"] == ("https://www.cs.toronto.edu/~kriz/",)
    assert "cifar10" in catalogue.DATASETS
    fashion = catalogue.RESOURCES["fashion-mnist"].class_names
    assert len(fashion) == 10 and fashion[0] == "T-shirt/top" and fashion[9] == "Ankle boot"
    assert catalogue.RESOURCES["mnist"].class_names == tuple("0123456789")


def test_cifar10_is_downloaded_verified_and_cached(cifar, isolated):
    d = load_dataset("cifar10")
    assert_is_cifar(d, cifar)
    archive = isolated / "cifar10" / "cifar-10-binary.tar.gz"
    assert sorted(p.name for p in archive.parent.iterdir()) == [archive.name]
    assert archive.read_bytes() == cifar.blob
    assert leftovers(isolated) == []
    assert cifar.server.requests == ["/c/cifar-10-binary.tar.gz"]
    assert d.source == (
        f"downloaded from {cifar.mirror} into {archive.parent} (1 file), checksums verified"
    )
    again = load_dataset("cifar10")
    assert_is_cifar(again, cifar)
    assert len(cifar.server.requests) == 1, "a verified cache must not be downloaded again"
    assert again.source == f"{archive.parent} (1 file), checksums verified"


def test_cifar10_images_and_options(cifar):
    d = load_dataset("cifar10", normalize=False, flatten=False, one_hot_label=True)
    labels, images = cifar.records["data_batch_2.bin"]
    assert d.x_train.shape == (5 * RECORDS, 3, 32, 32) and d.x_train.dtype == np.uint8
    np.testing.assert_array_equal(d.x_train[RECORDS : 2 * RECORDS], images)
    # channel 0 is the record's first 1024 pixel bytes (red), row-major
    record = cifar.records["data_batch_1.bin"]
    assert d.x_train[0, 1, 2, 3] == record[1][0].reshape(-1)[1024 + 2 * 32 + 3]
    assert d.t_train.shape == (5 * RECORDS, 10) and d.t_train.dtype == np.float32
    np.testing.assert_array_equal(d.t_train[RECORDS : 2 * RECORDS].argmax(axis=1), labels)
    assert d.image_shape == (3, 32, 32)
    flat = load_dataset("cifar10")
    np.testing.assert_allclose(flat.as_images(flat.x_test), d.x_test / 255, rtol=2e-7, atol=0)


@pytest.mark.parametrize("where", ["flat", "subfolder"])
def test_cifar10_from_a_named_folder_is_only_read(cifar, tmp_path, where):
    folder = tmp_path / "data"
    target = folder / "cifar10" if where == "subfolder" else folder
    target.mkdir(parents=True)
    (target / "cifar-10-binary.tar.gz").write_bytes(cifar.blob)
    before = snapshot(folder)
    d = load_dataset("cifar10", folder)
    assert_is_cifar(d, cifar)
    assert d.source == f"{target} (1 file), checksums verified"
    assert snapshot(folder) == before and cifar.server.requests == []


def _bad_archives(data) -> dict[str, tuple[bytes, str]]:
    """Damaged copies of the archive and the words the error must contain."""
    blob, records = data.blob, data.records
    short = dict(records)
    short["data_batch_4.bin"] = (
        records["data_batch_4.bin"][0][:2],
        records["data_batch_4.bin"][1][:2],
    )
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0xFF
    no_batch = {k: v for k, v in records.items() if k != "data_batch_3.bin"}
    return {
        "truncated": (blob[: len(blob) // 2], "is a truncated or corrupt gzip file"),
        "flipped-byte": (bytes(flipped), "is a truncated or corrupt gzip file"),
        "html": (b"<html>Service Unavailable</html>", "is not a gzip file"),
        "not-a-tar": (gz(b"\x00" * 100 + b"junk" * 200), "not a tar archive inside the gzip"),
        "missing-batch": (cifar_archive(no_batch), f"lacks {CIFAR_FOLDER}/data_batch_3.bin"),
        "short-batch": (
            cifar_archive(short),
            f"{CIFAR_FOLDER}/data_batch_4.bin holds 6146 bytes, not 3 records of 3073",
        ),
        "other-content": (
            cifar_archive(records, mtime=1),  # same batches, other bytes: only the MD5 tells
            f"has the wrong checksum (md5 {md5(cifar_archive(records, mtime=1))}, not the published",
        ),
    }


BAD_ARCHIVES = (
    "truncated",
    "flipped-byte",
    "html",
    "not-a-tar",
    "missing-batch",
    "short-batch",
    "other-content",
)


@pytest.mark.parametrize("damage", BAD_ARCHIVES)
def test_a_bad_cifar10_archive_in_a_named_folder_is_a_one_line_error(cifar, tmp_path, damage):
    data, words = _bad_archives(cifar)[damage]
    bad = tmp_path / "cifar-10-binary.tar.gz"
    bad.write_bytes(data)
    before = snapshot(tmp_path)
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", tmp_path)
    message = str(info.value)
    assert message.startswith(f"{bad} ") and words in message, message
    assert "replace it with a genuine copy" in message and "\n" not in message
    assert snapshot(tmp_path) == before and cifar.server.requests == []


@pytest.mark.parametrize("damage", ["truncated", "other-content"])
def test_a_bad_cached_cifar10_archive_is_announced_and_fetched_again(
    cifar, isolated, capsys, damage
):
    data, words = _bad_archives(cifar)[damage]
    cached = isolated / "cifar10" / "cifar-10-binary.tar.gz"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(data)
    assert_is_cifar(load_dataset("cifar10"), cifar)
    assert cached.read_bytes() == cifar.blob
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"notice: the cached {cached} ")
    assert words in err[0] and err[0].endswith("; deleting it and downloading it again")
    assert cifar.server.requests == ["/c/cifar-10-binary.tar.gz"]


@pytest.mark.parametrize("damage", ["truncated", "short-batch", "other-content"])
def test_a_bad_cifar10_download_is_never_kept(cifar, isolated, damage):
    data, words = _bad_archives(cifar)[damage]
    cifar.server.routes["/c/cifar-10-binary.tar.gz"] = ("ok", data)
    with pytest.raises(DataError) as info:
        load_dataset("cifar10")
    message = str(info.value)
    assert message.startswith(
        f"could not download CIFAR-10's cifar-10-binary.tar.gz into {isolated / 'cifar10'}: "
        f"{cifar.mirror}cifar-10-binary.tar.gz "
    )
    assert words in message and "\n" not in message
    assert not (isolated / "cifar10").exists() and leftovers(isolated) == []


def test_cifar10_labels_and_class_names_are_checked(cifar, tmp_path, monkeypatch):
    records = dict(cifar.records)
    labels, images = records["test_batch.bin"]
    records["test_batch.bin"] = (np.where(np.arange(RECORDS) == 1, 12, labels), images)
    for meta, pattern in [
        (None, r"cifar10 test set: label 12 is outside 0\.\.9"),
        (b"cat\ndog\n", "cifar10: 2 class names for 10 classes"),
    ]:
        blob = cifar_archive(records if meta is None else cifar.records, meta=meta)
        spec = BinaryBatches(**{**cifar.spec.__dict__, "md5": md5(blob)})
        monkeypatch.setitem(catalogue.RESOURCES, "cifar10", BatchesDataset("CIFAR-10", (spec,), 10))
        (tmp_path / "cifar-10-binary.tar.gz").write_bytes(blob)
        with pytest.raises(DataError, match=pattern):
            load_dataset("cifar10", tmp_path)


def test_cifar10_offline_and_in_an_empty_folder(cifar, tmp_path, closed_port_url, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", empty)
    message = str(info.value)
    assert message.startswith(f"--data-dir {empty} holds no dataset: {empty} is empty")
    assert "CIFAR-10's cifar-10-binary.tar.gz (the archive as downloaded, not extracted" in message
    monkeypatch.setitem(fetch.MIRRORS, "cifar10", (closed_port_url,))
    with pytest.raises(DataError, match=r"could not download CIFAR-10's .*--dataset digits"):
        load_dataset("cifar10")
    with pytest.raises(
        DataError, match=r"cifar-10-binary\.tar\.gz not found in .* downloading is off"
    ):
        load_dataset("cifar10", download=False)


@pytest.mark.parametrize("model", ["simple-cnn", "deep-cnn"])
def test_the_cnns_train_on_cifar10_from_the_command_line(cifar, tmp_path, model):
    """--dataset cifar10 with a CNN: 3×32×32 images reach the network as images."""
    from xpnet.apps.train import main

    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "cifar-10-binary.tar.gz").write_bytes(cifar.blob)
    out = tmp_path / "run"
    argv = ["--model", model, "--dataset", "cifar10", "--data-dir", str(folder), "--iters", "3",
            "--batch-size", "5", "--no-progress", "--no-plot", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    net = xpnet.load_model(out / "model.npz")
    assert net.params["W1"].shape[1] == 3  # the first convolution sees three channels
    assert net.predict(np.zeros((2, 3, 32, 32), np.float32)).shape == (2, 10)
