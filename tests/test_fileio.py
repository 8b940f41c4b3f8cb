"""xpnet.fileio: atomic replacement of regular files only; links written through, devices and pipes
written in place, folders refused; temporaries of killed writers cleaned up."""

import os
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from xpnet import fileio
from xpnet.errors import ConfigError
from xpnet.fileio import WriteError, atomic_write, atomic_write_text, check_writable, destination

ROOT = Path(__file__).resolve().parents[1]
posix_only = pytest.mark.skipif(os.name != "posix", reason="links, FIFOs and devices are POSIX's")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".probe-" in p.name)


def test_a_regular_file_is_replaced_atomically_and_fsynced(tmp_path, monkeypatch):
    path = tmp_path / "out.json"
    path.write_text("old")
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(
        os, "replace", lambda a, b: events.append(("replace", Path(b))) or real_replace(a, b)
    )
    assert atomic_write_text(path, "new") == path
    assert path.read_text() == "new"
    # the data reach the disk before the rename, and the rename before the call returns
    assert events == ["fsync", ("replace", path), "fsync"]
    assert leftovers(tmp_path) == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"old")

    def half(f):
        f.write(b"half of it")
        raise OSError(28, "No space left on device")

    with pytest.raises(WriteError, match="no space left on device; free some space"):
        atomic_write(path, half)
    assert path.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_missing_folders_are_created(tmp_path):
    path = tmp_path / "a" / "b" / "out.txt"
    atomic_write_text(path, "x")
    assert path.read_text() == "x"


@posix_only
@pytest.mark.parametrize("relative", [True, False])
def test_a_symlink_is_written_through_to_its_target(tmp_path, relative):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "results.json"
    target.write_text("old")
    link = tmp_path / "results.json"
    link.symlink_to(Path("real/results.json") if relative else target)
    atomic_write_text(link, "new")
    assert link.is_symlink(), "the link survives"
    assert target.read_text() == "new" and link.read_text() == "new"
    assert leftovers(tmp_path) == [] and leftovers(tmp_path / "real") == []
    # a chain of links ends at the same file
    chain = tmp_path / "chain"
    chain.symlink_to(link)
    atomic_write_text(chain, "newer")
    assert chain.is_symlink() and link.is_symlink() and target.read_text() == "newer"


@posix_only
def test_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "out.json"
    link.symlink_to(tmp_path / "later.json")
    check_writable(link, "--json")
    atomic_write_text(link, "{}")
    assert link.is_symlink() and (tmp_path / "later.json").read_text() == "{}"
    # a link into a folder that does not exist: refused up front, and by the write, untouched
    nowhere = tmp_path / "nowhere.json"
    nowhere.symlink_to(tmp_path / "missing" / "x.json")
    with pytest.raises(ConfigError, match=r"--json .*nowhere.json: the folder .*missing"):
        check_writable(nowhere, "--json")
    with pytest.raises(WriteError, match="no such file or directory"):
        atomic_write_text(nowhere, "{}")
    assert nowhere.is_symlink() and not (tmp_path / "missing").exists()


@posix_only
def test_a_symlink_loop_is_an_error(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(WriteError, match="too many levels of symbolic links"):
        atomic_write_text(a, "x")
    with pytest.raises(ConfigError, match=r"--json: cannot write .*too many levels"):
        check_writable(a, "--json")
    assert a.is_symlink() and b.is_symlink()


@posix_only
def test_a_fifo_is_written_into_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    check_writable(fifo, "--json")
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    atomic_write_text(fifo, '{"a": 1}')
    reader.join(timeout=30)
    assert received == ['{"a": 1}']
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "still a FIFO"
    assert leftovers(tmp_path) == []


def _same_device(path: Path, before: os.stat_result) -> None:
    after = os.lstat(path)
    assert stat.S_ISCHR(after.st_mode), f"{path} is no longer a character device"
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)


@posix_only
def test_a_character_device_is_written_into_not_replaced(tmp_path):
    """A device node of our own (a copy of /dev/null), so the old code could replace it safely."""
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, AttributeError, OSError) as exc:
        pytest.skip(f"cannot make a device node here: {exc}")
    before = os.lstat(node)
    check_writable(node, "--json")
    atomic_write_text(node, "nothing")
    atomic_write(node, lambda f: f.write(b"\0" * 1000))
    _same_device(node, before)
    assert leftovers(tmp_path) == []
    link = tmp_path / "link-to-null"
    link.symlink_to(node)
    atomic_write_text(link, "x")
    assert link.is_symlink()
    _same_device(node, before)


@posix_only
def test_dev_null_is_never_replaced():
    null = Path("/dev/null")
    if not null.exists() or not stat.S_ISCHR(os.lstat(null).st_mode):
        pytest.skip("no /dev/null character device here")
    before = os.lstat(null)
    # a guard before the write: a regression must fail here, not replace the machine's /dev/null
    assert destination(null) == (null, True)
    check_writable(null, "--json")
    atomic_write_text(null, "{}")
    _same_device(null, before)
    assert not any(".null.tmp-" in name for name in os.listdir("/dev"))


@posix_only
def test_dev_full_says_no_space_and_stays(tmp_path):
    full = Path("/dev/full")
    if not full.exists() or not stat.S_ISCHR(os.lstat(full).st_mode):
        pytest.skip("no /dev/full here")
    before = os.lstat(full)
    assert destination(full) == (full, True)
    with pytest.raises(WriteError, match="cannot write /dev/full: no space left on device"):
        atomic_write_text(full, "{}")
    _same_device(full, before)


@posix_only
def test_an_open_file_named_through_proc_is_written_in_place(tmp_path):
    """`--json /dev/stdout` with stdout redirected to a file: write into that open file."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("no /proc here")
    out = tmp_path / "stdout.txt"
    with open(out, "w") as f:
        f.write("printed before\n")  # what the command printed
        link = tmp_path / "my-stdout"
        link.symlink_to(f"/proc/self/fd/{f.fileno()}")
        inode = os.stat(out).st_ino
        f.flush()
        atomic_write_text(link, "through the descriptor")
        assert link.is_symlink()
    assert os.stat(out).st_ino == inode, "the open file is written, not replaced by another"
    assert out.read_text() == "printed before\nthrough the descriptor", "appended, not truncated"
    assert leftovers(tmp_path) == []


def test_a_folder_is_refused(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(WriteError, match="it is a folder; name a file"):
        atomic_write_text(folder, "x")
    with pytest.raises(ConfigError, match=r"--json .*results is a folder; name a file"):
        check_writable(folder, "--json")
    assert folder.is_dir() and (folder / "keep.txt").read_text() == "mine"
    if os.name == "posix":
        link = tmp_path / "link"
        link.symlink_to(folder)
        with pytest.raises(WriteError, match="it is a folder"):
            atomic_write_text(link, "x")
        assert link.is_symlink() and folder.is_dir()
    assert leftovers(tmp_path) == [] and leftovers(folder) == []


# -- temporaries of writers that were killed ----------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys, time
    from xpnet.fileio import atomic_write

    def slow(f):
        f.write(b"x" * 1_000_000)
        f.flush()
        print("writing", flush=True)
        time.sleep(600)

    atomic_write(sys.argv[1], slow)
    """
)


@posix_only
def test_temporaries_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(b"old")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout.readline().strip() == "writing"
        live = tmp_path / f".checkpoint.npz.tmp-{writer.pid}"
        assert live.stat().st_size == 1_000_000
        # a write of the same file while the other writer lives keeps its temporary
        atomic_write(path, lambda f: f.write(b"mine"))
        assert live.is_file() and path.read_bytes() == b"mine"
    finally:
        writer.kill()  # SIGKILL: no finally, no cleanup in the writer
        writer.wait(timeout=60)
        writer.stdout.close()
    assert live.is_file(), "a SIGKILL leaves its temporary behind"
    others = [
        tmp_path / ".checkpoint.npz.tmp-notapid",  # not ours to judge
        tmp_path / f".other.npz.tmp-{writer.pid}",  # another file's
        tmp_path / f".checkpoint.npz.tmp-{os.getppid()}",  # a live process's
    ]
    for other in others:
        other.write_bytes(b"?")
    atomic_write(path, lambda f: f.write(b"again"))
    assert not live.exists(), "the dead writer's temporary is gone"
    assert path.read_bytes() == b"again"
    assert all(other.is_file() for other in others)
    assert fileio.remove_stale_temporaries(path) == []


def test_a_dead_pid_is_told_from_a_live_one():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=60)  # reaped: its pid names no process (until the system reuses it)
    assert not fileio._alive(dead.pid)
    assert fileio._alive(os.getpid()) and fileio._alive(os.getppid())
