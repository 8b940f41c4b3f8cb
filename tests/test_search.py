"""scripts/search.py: the random search in one process and on real Dask clusters (loopback only).

The Dask tests start real worker processes: a LocalCluster, and a `dask scheduler` with two
`dask worker` processes on 127.0.0.1, one of which is killed mid-trial. Every search here is the
same tiny one (offline digits, a few trials), whose in-process result is the reference: wherever
and in whatever order the trials run, their numbers must be exactly the same.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from xpnet.apps.search import main
from xpnet.errors import ConfigError, XpnetError
from xpnet.experiments.search import (
    PLACEMENT_FIELDS,
    SearchConfig,
    TrialLog,
    run_trial,
    search,
    trial_settings,
    validation_split,
)
from xpnet.parallel.dask import Runner, TaskFailed, open_runner

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("sklearn", reason="the offline digits dataset needs scikit-learn")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# 4 trials of ~0.3-1 s each on a busy 2-core machine: long enough to kill a worker mid-trial
TINY = dict(dataset="digits", trials=4, epochs=120, hidden=[30] * 6)


def tiny(**changes) -> SearchConfig:
    return SearchConfig(**{**TINY, **changes})


def numbers(out: Path) -> dict[int, dict]:
    """trials.jsonl by trial number, without the fields that say where and how fast it ran."""
    lines = (out / "trials.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    by_trial = {
        r["trial"]: {k: v for k, v in r.items() if k not in PLACEMENT_FIELDS} for r in records
    }
    assert len(by_trial) == len(records), "a trial was written twice"
    return by_trial


def single_blas_thread():
    """Pin this process's BLAS to one thread like the workers' (where threadpoolctl can)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[int, dict]:
    """The tiny search, in this process."""
    out = tmp_path_factory.mktemp("reference")
    with single_blas_thread():
        result = search(tiny(), out)
    assert result.ran == 4 and result.interrupted is None and result.where == "in this process"
    got = numbers(out)
    assert sorted(got) == [0, 1, 2, 3]
    assert all(r["status"] == "ok" for r in got.values())
    return got


# ---------------------------------------------------------------------------------------------
# One process


def test_trials_are_seeded_by_search_seed_and_number_alone():
    config = tiny(trials=50)
    first = [trial_settings(config, k) for k in range(50)]
    assert [trial_settings(config, k) for k in reversed(range(50))] == first[::-1]
    assert len({s["seed"] for s in first}) == 50 and len({s["lr"] for s in first}) == 50
    for s in first:
        assert 1e-6 <= s["lr"] <= 1e-2 and 1e-8 <= s["weight_decay"] <= 1e-4
    assert trial_settings(tiny(seed=1), 0) != first[0]


def test_validation_split_is_taken_from_the_training_samples():
    from xpnet import load_dataset

    split = validation_split("digits", None, 500, 0.2, seed=0)
    full = load_dataset("digits", progress=False)
    assert split.x_train.shape == (400, 64) and split.x_test.shape == (100, 64)

    def rows(x, t):
        return sorted(zip((row.tobytes() for row in x), t.tolist(), strict=True))

    # train and validation partition the first 500 training samples (as a multiset: digits has
    # duplicate images); nothing of the test set is in either
    first = rows(full.x_train[:500], full.t_train[:500])
    assert sorted(rows(split.x_train, split.t_train) + rows(split.x_test, split.t_test)) == first
    assert rows(split.x_test, split.t_test) != rows(full.x_train[:100], full.t_train[:100])
    assert "the test set is not used" in split.source


def test_in_process_search_writes_trials_table_and_curves(reference, tmp_path):
    result = search(tiny(trials=3, epochs=3), tmp_path, command="python scripts/search.py ...")
    assert "distributed" not in result.where
    records = [json.loads(line) for line in (tmp_path / "trials.jsonl").read_text().splitlines()]
    assert [r["trial"] for r in records] == [0, 1, 2]
    for r in records:
        assert r["worker"] == "local" and r["status"] == "ok" and r["seconds"] >= 0
        assert r["curve"]["epoch"] == [0.0, 1.0, 2.0, 3.0]  # one point per epoch
        assert r["val_acc"] == r["curve"]["val_acc"][-1] and 0 <= r["val_acc"] <= 1
        assert 1e-6 <= r["lr"] <= 1e-2 and 1e-8 <= r["weight_decay"] <= 1e-4
    md = (tmp_path / "results.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and "rank" not in line]
    assert len(rows) == 3
    accs = [float(row.split("|")[3]) for row in rows]
    assert accs == sorted(accs, reverse=True)
    assert "validation split, not on the test set" in md
    png = (tmp_path / "best-curves.png").read_bytes()
    assert png[:8] == PNG_MAGIC and len(png) > 10_000


def test_a_diverging_trial_is_recorded_and_the_search_goes_on(tmp_path):
    result = search(tiny(trials=2, epochs=3, lr_range=(1.5, 2.0)), tmp_path)
    assert result.ran == 2
    for r in numbers(tmp_path).values():
        assert r["status"] == "failed" and r["error"].startswith(
            "TrainingDiverged: the loss became"
        )
        assert r["val_acc"] is None
    assert "Failed trials:" in (tmp_path / "results.md").read_text()


def test_resume_runs_only_the_unfinished_trials(reference, tmp_path):
    stopped = []

    def stop_after_two(record):
        stopped.append(record["trial"])
        if len(stopped) == 2:
            raise KeyboardInterrupt  # as Ctrl-C between two trials

    with single_blas_thread():
        first = search(tiny(), tmp_path, on_trial=stop_after_two)
    assert first.interrupted == signal.SIGINT and first.ran == 2 and sorted(first.trials) == [0, 1]
    assert "interrupted" in (tmp_path / "results.md").read_text()
    with open(tmp_path / "trials.jsonl", "a") as f:
        f.write('{"trial": 3, "status": "o')  # torn by a crash mid-write: cut off on resume
    with single_blas_thread(), pytest.warns(UserWarning, match="line 3: an unfinished record"):
        second = search(tiny(), tmp_path)
    assert second.ran == 2 and second.interrupted is None
    assert numbers(tmp_path) == reference
    again = search(tiny(), tmp_path)  # nothing left to do
    assert again.ran == 0 and numbers(tmp_path) == reference


def test_resume_refuses_other_settings(tmp_path):
    search(tiny(trials=1, epochs=2), tmp_path)
    with pytest.raises(ConfigError, match="epochs 2 there, 3 now"):
        search(tiny(trials=1, epochs=3), tmp_path)


@pytest.mark.parametrize("where", [[], ["--workers", "2"]], ids=["in-process", "local-cluster"])
def test_ctrl_c_keeps_finished_trials_and_says_how_to_continue(tmp_path, where):
    if where:
        pytest.importorskip("distributed", reason='pip install "xpnet[distributed]"')
    out = tmp_path / "s"
    args = [
        "--dataset",
        "digits",
        "--trials",
        "12",
        "--epochs",
        "40",
        "--hidden",
        "30",
        "--out",
        str(out),
    ]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts/search.py"), *args, *where],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (out / "trials.jsonl").exists() or not (out / "trials.jsonl").read_text():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal: to every process of the group
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, stderr
    kept = TrialLog(out / "trials.jsonl").read()
    assert 1 <= len(kept) < 12 and all(r["status"] == "ok" for r in kept.values())
    assert "continue with: python scripts/search.py" in stderr and str(out) in stderr
    assert "Traceback" not in stderr
    assert main(args) == 0
    assert sorted(TrialLog(out / "trials.jsonl").read()) == list(range(12))


def test_no_dask_is_imported_without_workers(tmp_path):
    code = (
        "import sys; from xpnet.apps.search import main; "
        f"rc = main(['--dataset', 'digits', '--trials', '1', '--epochs', '1', '--out', {str(tmp_path)!r}]); "
        "assert rc == 0; assert not {'dask', 'distributed'} & set(sys.modules), 'dask imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True)


def test_missing_dask_is_a_one_line_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` fails as if absent
    with pytest.raises(XpnetError, match=r'pip install "xpnet\[distributed\]"') as info:
        open_runner(workers=2)
    assert "\n" not in str(info.value)
    assert type(open_runner()) is Runner
    with pytest.raises(ConfigError, match="not both"):
        open_runner(workers=2, scheduler="tcp://127.0.0.1:1")


# ---------------------------------------------------------------------------------------------
# A trial log that is damaged, shared or incomplete


def lines_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]


def test_bad_lines_in_the_trial_log_are_skipped_by_line_number_and_their_trials_rerun(tmp_path):
    config = tiny(trials=4, epochs=2)
    search(config, tmp_path)
    r0, r1, r2, r3 = lines_of(tmp_path)
    other = {**r1, "lr": r1["lr"] * 2}  # a line from another search
    lines = [
        json.dumps(r0),
        "",  # a blank line is no record, and no problem
        "garbage",
        json.dumps({"trial": 1}),
        json.dumps({**r2, "trial": -1}),
        json.dumps({**r3, "trial": 0.9}),  # int() would make it trial 0
        json.dumps(other),
        json.dumps(r2),
        json.dumps(r3),
    ]
    (tmp_path / "trials.jsonl").write_text("\n".join(lines) + "\n")
    assert sorted(TrialLog(tmp_path / "trials.jsonl").read()) == [0, 1, 2, 3]  # a reader: no check
    with pytest.warns(UserWarning) as caught:
        result = search(config, tmp_path)
    said = [str(w.message) for w in caught]
    for n in (3, 4, 5, 6, 7):
        assert sum(f"line {n}:" in m for m in said) == 1, said
    assert not any("line 2:" in m for m in said)
    assert all("\n" not in m and "trials.jsonl" in m for m in said)
    assert result.ran == 1 and sorted(result.trials) == [0, 1, 2, 3]  # only trial 1 ran again
    assert result.trials[0] == r0 and result.trials[1]["lr"] == r1["lr"]
    assert "4 of 4 trials finished" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "trials.jsonl").read_text().startswith("\n".join(lines))  # nothing lost


def test_reading_the_trial_log_never_writes_it(tmp_path):
    search(tiny(trials=1, epochs=1), tmp_path)
    path = tmp_path / "trials.jsonl"
    with open(path, "a") as f:
        f.write('{"trial": 1, "status": "o')  # torn, or being written by the search right now
    before = path.read_bytes()
    assert sorted(TrialLog(path).read()) == [0]
    assert path.read_bytes() == before


def test_a_whole_last_record_without_its_newline_is_kept(tmp_path):
    config = tiny(trials=2, epochs=1)
    search(config, tmp_path)
    path = tmp_path / "trials.jsonl"
    first = path.read_text().splitlines()[0]
    path.write_text(first)  # an editor that drops the last newline
    result = search(config, tmp_path)
    assert result.ran == 1 and [r["trial"] for r in lines_of(tmp_path)] == [0, 1]


def test_a_folder_another_search_writes_into_is_refused(tmp_path, capsys):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".xpnet-running").write_text(f"{other.pid}\n")
        with pytest.raises(XpnetError, match=f"another run .*process {other.pid}"):
            search(tiny(trials=1, epochs=1), tmp_path)
        args = ["--dataset", "digits", "--trials", "1", "--epochs", "1", "--out", str(tmp_path)]
        assert main(args) == 1
        assert "another run" in capsys.readouterr().err
        assert not (tmp_path / "trials.jsonl").exists()
        assert (tmp_path / ".xpnet-running").read_text() == f"{other.pid}\n"  # still theirs
    finally:
        other.kill()
        other.wait()
    search(tiny(trials=1, epochs=1), tmp_path)  # its process is gone: the folder is free again
    assert not (tmp_path / ".xpnet-running").exists()


class LosingRunner(Runner):
    """Runs trials here, except those in `lose`, which are lost as if their workers died."""

    def __init__(self, lose):
        self.lose = set(lose)

    def run(self, fn, tasks):
        for key, args in tasks:
            if args[1] in self.lose:
                yield key, TaskFailed(f"{key}: its worker died 4 times while running it")
            else:
                yield key, fn(*args)


def test_a_trial_lost_to_its_workers_is_not_recorded_and_runs_again(tmp_path):
    config = tiny(trials=4, epochs=1)
    with pytest.warns(UserWarning) as caught:
        result = search(config, tmp_path, runner=LosingRunner({1, 2}))
    said = [str(w.message) for w in caught]
    assert len(said) == 2 and all(f"trial {k} was lost" in said[i] for i, k in enumerate((1, 2)))
    assert result.lost == [1, 2] and sorted(result.trials) == [0, 3]
    assert [r["trial"] for r in lines_of(tmp_path)] == [0, 3]
    assert "2 lost" in (tmp_path / "results.md").read_text()
    with open(tmp_path / "trials.jsonl", "a") as f:  # how xpnet 0.x recorded a lost trial
        f.write(json.dumps({"trial": 2, "status": "failed", **trial_settings(config, 2),
                            "network": None, "error": "trial-2: its worker died 4 times",
                            "curve": None, "val_acc": None, "train_acc": None, "seconds": None,
                            "worker": None, "host": None, "pid": None, "blas_threads": None,
                            "data": None}) + "\n")  # fmt: skip
    with pytest.warns(UserWarning, match="records trials 2 as failed though no worker ran them"):
        again = search(config, tmp_path)
    assert again.ran == 2 and again.lost == []
    assert all(r["status"] == "ok" for r in again.trials.values()) and len(again.trials) == 4


@pytest.mark.filterwarnings("default::UserWarning")  # as outside the tests: printed
def test_the_command_says_lost_trials_run_again_and_exits_1(tmp_path, monkeypatch, capsys):
    import xpnet.apps.search as app

    monkeypatch.setattr(app, "open_runner", lambda *a, **k: LosingRunner({0}))
    args = ["--dataset", "digits", "--trials", "2", "--epochs", "1", "--out", str(tmp_path)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "trial 0 was lost" in err and "run the lost ones with: python scripts/search.py" in err


# ---------------------------------------------------------------------------------------------
# Settings a user can get wrong


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(trials=10**12), "--trials must be at most"),
        (dict(validation=float("nan")), "--validation"),
        (dict(seed=-1), "--seed"),
        (dict(lr_range=(-2.0, 400.0)), "--lr-range"),
        (dict(weight_decay_range=(-400.0, 0.0)), "--weight-decay-range"),
    ],
)
def test_settings_out_of_range_are_one_line_errors(changes, message):
    with pytest.raises(ConfigError, match=message) as info:
        tiny(**changes).validate()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--trials", "1000000000000"], "--trials"),
        (["--validation", "nan"], "--validation"),
        (["--seed", "-1"], "--seed"),
        (["--lr-range", "-2", "400"], "--lr-range"),
    ],
)
def test_the_command_refuses_bad_settings_in_one_line(tmp_path, capsys, args, message):
    out = tmp_path / "s"
    assert main(["--dataset", "digits", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and message in err.splitlines()[-1]
    assert not (out / "trials.jsonl").exists()


def test_more_workers_than_cores_is_refused_before_any_starts(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # nothing may start, not even Dask
    out = tmp_path / "s"
    assert main(["--dataset", "digits", "--workers", "1000", "--out", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert "--workers 1000" in err and "cores" in err
    with pytest.raises(ConfigError, match="cores"):
        open_runner(workers=1000)


def test_no_data_is_one_line_before_any_worker_starts(tmp_path):
    need_dask()  # without it, --workers would fail for another reason
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["--dataset", "mnist", "--data-dir", str(empty), "--trials", "2", "--epochs", "1",
            "--workers", "2", "--out", str(tmp_path / "s")]  # fmt: skip
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/search.py"), *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: --data-dir") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Dask" not in proc.stdout  # no cluster was started


# ---------------------------------------------------------------------------------------------
# Standard output that goes away


def search_command(out: Path, *extra) -> list[str]:
    args = ["--dataset", "digits", "--trials", "3", "--epochs", "2", "--hidden", "30",
            "--out", str(out)]  # fmt: skip
    return [sys.executable, str(ROOT / "scripts/search.py"), *args, *extra]


def test_a_reader_that_goes_away_stops_the_printing_not_the_search(tmp_path):
    out = tmp_path / "s"
    proc = subprocess.Popen(search_command(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        assert proc.stdout.readline().startswith("search: 3 trials")  # as `| head -1`
        proc.stdout.close()
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped printing" in err and "Traceback" not in err and "error" not in err
    assert sorted(TrialLog(out / "trials.jsonl").read()) == [0, 1, 2]
    assert (out / "results.md").exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_standard_output_stops_the_printing_not_the_search(tmp_path):
    out = tmp_path / "s"
    with open("/dev/full", "w") as full:
        proc = subprocess.run(search_command(out), stdout=full, stderr=subprocess.PIPE, text=True,
                              timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "error" not in proc.stderr and "stopped printing" in proc.stderr
    assert sorted(TrialLog(out / "trials.jsonl").read()) == [0, 1, 2]


# ---------------------------------------------------------------------------------------------
# --scheduler that names no Dask scheduler


class FakeServer:
    """A TCP server on 127.0.0.1 that accepts and then stays silent, answers HTTP, or sends junk."""

    def __init__(self, kind: str):
        import socket

        self.kind, self.conns = kind, []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.conns.append(conn)
                if self.kind == "http":
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                elif self.kind == "junk":
                    conn.sendall(b"\xff" * 64)

    def close(self):
        for conn in [*self.conns, self.sock]:
            conn.close()


@pytest.mark.parametrize("kind", ["silent", "http", "junk"])
def test_a_scheduler_address_that_is_no_scheduler_is_one_line_after_a_timeout(tmp_path, kind):
    need_dask()
    server = FakeServer(kind)
    code = (
        "import sys, xpnet.parallel.dask as d; d.CONNECT_TIMEOUT = 3; "
        "from xpnet.apps.search import main; sys.exit(main(sys.argv[1:]))"
    )
    args = ["--dataset", "digits", "--trials", "1", "--epochs", "1", "--out", str(tmp_path / "s"),
            "--scheduler", server.address]  # fmt: skip
    try:
        proc = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=30)  # fmt: skip
    finally:
        server.close()
    err = proc.stderr.splitlines()
    assert proc.returncode == 1 and len(err) == 1, proc.stderr
    assert err[0].startswith("error: ") and server.address in err[0]
    assert "no Dask scheduler" in err[0] and "memory" not in err[0]


@pytest.mark.parametrize("address", ["notanaddress", "http://127.0.0.1:8786"])
def test_a_scheduler_argument_that_is_no_address_is_a_usage_error(tmp_path, capsys, address):
    need_dask()
    out = tmp_path / "s"
    assert main(["--dataset", "digits", "--scheduler", address, "--out", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert f"--scheduler {address}" in err and "tcp://HOST:PORT" in err


# ---------------------------------------------------------------------------------------------
# Real Dask clusters (each test asks for Dask itself: the tests above run without it)


def need_dask():
    return pytest.importorskip("distributed", reason='pip install "xpnet[distributed]"')


def test_local_cluster_gives_exactly_the_in_process_numbers(reference, tmp_path):
    need_dask()
    runner = open_runner(workers=2)
    try:
        result = search(tiny(), tmp_path, runner=runner)
    finally:
        runner.close()
    assert result.ran == 4 and "local Dask cluster of 2" in result.where
    assert numbers(tmp_path) == reference
    records = TrialLog(tmp_path / "trials.jsonl").read().values()
    assert all(r["worker"].startswith("tcp://127.0.0.1:") for r in records)
    assert all(r["pid"] != os.getpid() for r in records)
    assert {r["blas_threads"] for r in records} == {1}  # each worker pinned to one thread


def test_dask_runner_submits_as_it_goes_and_reports_a_task_lost_with_its_worker(monkeypatch):
    need_dask()
    import xpnet.parallel.dask as parallel

    monkeypatch.setattr(parallel, "ALLOWED_FAILURES", 0)  # the first death loses the task
    monkeypatch.setattr(parallel, "MIN_IN_FLIGHT", 1)

    def task(k):  # nested, so Dask ships it by value
        import os

        if k == 2:
            os._exit(1)  # as a worker killed for its memory, walltime or preemption
        return k * k

    consumed = []

    def tasks():
        for k in range(6):
            consumed.append(k)
            yield f"task-{k}", (k,)

    import socket

    import dask

    # Dask's default HTTP port taken (by another cluster on this machine): no warning, no error
    with contextlib.ExitStack() as stack:
        with contextlib.suppress(OSError):  # already taken
            stack.enter_context(socket.create_server(("127.0.0.1", 8787)))
        # one task on the worker at a time, so none but task 2 is on it when it dies
        with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}):
            runner = parallel.DaskRunner(workers=1)
    got = {}
    try:
        for key, result in runner.run(task, tasks()):
            got[key] = result
            assert len(consumed) <= len(got) + 2  # one worker thread: two tasks ahead at most
    finally:
        runner.close()
    assert {k: v for k, v in got.items() if k != "task-2"} == {
        f"task-{k}": k * k for k in (0, 1, 3, 4, 5)
    }
    assert isinstance(got["task-2"], TaskFailed) and "worker died" in str(got["task-2"])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1, on free ports."""
    distributed = need_dask()
    folder = tmp_path_factory.mktemp("cluster")
    file = folder / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1",
           "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "3"}  # fmt: skip
    # the `dask` command of this environment (`python -m distributed.cli.dask_X` is the same code)
    exe = Path(sys.executable).with_name("dask")
    logs, procs = [], []

    def start(kind, *args):
        log = open(folder / f"{kind}-{len(procs)}.log", "w")
        logs.append(log)
        command = (
            [str(exe), kind]
            if exe.exists()
            else [sys.executable, "-m", f"distributed.cli.dask_{kind}"]
        )
        procs.append(subprocess.Popen(
            [*command, *args], env=env, stdout=log, stderr=log,
            start_new_session=True, cwd=folder,
        ))  # fmt: skip

    try:
        start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
              "--scheduler-file", str(file))  # fmt: skip
        deadline = time.monotonic() + 60
        while not file.exists():
            assert procs[0].poll() is None and time.monotonic() < deadline, "no scheduler"
            time.sleep(0.1)
        for _ in range(2):
            start("worker", "--scheduler-file", str(file), "--host", "127.0.0.1", "--nthreads",
                  "1", "--no-dashboard")  # fmt: skip
        address = json.loads(file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        with distributed.Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=90)
        yield address
    finally:
        for proc in procs[::-1]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for log in logs:
            log.close()


def test_scheduler_with_two_worker_processes_gives_the_same_numbers(reference, cluster, tmp_path):
    args = ["--dataset", "digits", "--trials", "4", "--epochs", "120", "--hidden", *["30"] * 6]
    assert main([*args, "--scheduler", cluster, "--out", str(tmp_path)]) == 0
    assert numbers(tmp_path) == reference
    assert len({r["worker"] for r in TrialLog(tmp_path / "trials.jsonl").read().values()}) == 2


def test_a_worker_killed_mid_trial_costs_only_that_trial(cluster, tmp_path):
    def executing(dask_worker):  # nested, so Dask ships it by value to workers without tests/
        import os

        return os.getpid(), [ts.key for ts in dask_worker.state.executing]

    config = tiny(epochs=400)  # about 1-3 s a trial: time to see one running and kill its worker
    runner = open_runner(scheduler=cluster)
    outcome = {}

    def run():
        try:
            outcome["result"] = search(config, tmp_path, runner=runner)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    killed = None
    try:
        thread.start()
        deadline = time.monotonic() + 60
        while killed is None:
            assert thread.is_alive() and time.monotonic() < deadline, outcome
            for pid, keys in runner.client.run(executing).values():
                if keys and keys[0].startswith("trial-"):
                    killed = pid, int(keys[0].split("-")[1])
                    os.kill(pid, signal.SIGKILL)
                    break
            time.sleep(0.02)
        thread.join(timeout=120)
        assert not thread.is_alive(), "the search did not finish after a worker was killed"
    finally:
        runner.close()
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].ran == 4
    got = numbers(tmp_path)
    assert sorted(got) == [0, 1, 2, 3] and all(r["status"] == "ok" for r in got.values())
    rerun = TrialLog(tmp_path / "trials.jsonl").read()[killed[1]]
    assert rerun["pid"] != killed[0]  # it ran again, in another process
    with single_blas_thread():
        here = run_trial(config, killed[1])
    assert got[killed[1]] == {k: v for k, v in here.items() if k not in PLACEMENT_FIELDS}
