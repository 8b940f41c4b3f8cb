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
from xpnet.parallel.dask import Runner, blas_threads, open_runner

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
    with single_blas_thread():
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
        "30",
        "--epochs",
        "60",
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
    assert 1 <= len(kept) < 30 and all(r["status"] == "ok" for r in kept.values())
    assert "continue with: python scripts/search.py" in stderr and str(out) in stderr
    assert "Traceback" not in stderr
    assert main(args) == 0
    assert sorted(TrialLog(out / "trials.jsonl").read()) == list(range(30))


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
# Real Dask clusters

distributed = pytest.importorskip("distributed", reason='pip install "xpnet[distributed]"')


def test_local_cluster_gives_exactly_the_in_process_numbers(reference, tmp_path):
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
    if blas_threads() is not None:  # threadpoolctl is installed: check the pinning
        assert {r["blas_threads"] for r in records} == {1}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1, on free ports."""
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
