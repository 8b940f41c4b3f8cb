"""scripts/compare.py: every comparison end to end (--quick, few iterations), and its edge cases."""

import contextlib
import errno
import json
import math
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import mnist_dir

from xpnet.apps import compare as cli
from xpnet.apps.compare import main
from xpnet.backend import resolve, to_numpy
from xpnet.data import fetch
from xpnet.errors import ConfigError
from xpnet.experiments import compare as experiments
from xpnet.experiments.compare import (
    COMPARISONS,
    DataCache,
    Variant,
    markdown,
    run_comparison,
    write_report,
)
from xpnet.experiments.compare import plots as compare_plots
from xpnet.experiments.compare import run as compare_run
from xpnet.training.trainer import Interrupted, Trainer

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("sklearn", reason="the offline digits dataset needs scikit-learn")
pytest.importorskip("matplotlib", reason="the comparisons draw PNG files")

ITERS = 40  # about 3 epochs of digits: every code path, in well under a second per variant
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No test may reach the network: MNIST and Fashion-MNIST are unavailable unless on disk."""
    monkeypatch.setattr(fetch, "MIRRORS", {})
    monkeypatch.delenv("XPNET_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def table(md: str) -> list[dict]:
    """The rows of the Markdown table, as {column: cell}."""
    lines = [line for line in md.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert set(lines[1].replace("|", "")) == {"-"}
    return [
        dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
        for line in lines[2:]
    ]


def check_outputs(out: Path, name: str) -> tuple[list[dict], dict]:
    """The PNG, table and JSON of comparison `name` exist and agree; returns (rows, json)."""
    png = (out / f"{name}.png").read_bytes()
    assert png[:8] == PNG_MAGIC and len(png) > 20_000
    rows = table((out / f"{name}.md").read_text())
    doc = json.loads((out / f"{name}.json").read_text())
    assert doc["complete"] is True
    labels = [v.label for v in COMPARISONS[name].variants]
    assert [r["variant"] for r in rows] == labels  # exactly one row per variant, in order
    assert [v["label"] for v in doc["variants"]] == labels
    for row, v in zip(rows, doc["variants"], strict=True):
        assert row["status"] == v["status"]
        for record in v["history"]:
            assert all(math.isfinite(record[k]) for k in ("loss", "train_acc", "test_acc"))
            assert 0 <= record["train_acc"] <= 1 and 0 <= record["test_acc"] <= 1
        if v["final"] is None:
            assert row["test acc"] == "—"
            continue
        assert v["final"] == v["history"][-1] and v["iterations"] == doc["iterations"]
        its = [r["iteration"] for r in v["history"]]
        assert its == sorted(its) and its[0] == 0 and its[-1] == doc["iterations"]
        assert float(row["train acc"]) == pytest.approx(v["final"]["train_acc"], abs=1e-4)
        assert float(row["test acc"]) == pytest.approx(v["final"]["test_acc"], abs=1e-4)
        loss, seconds = float(row["loss"]), float(row["time (s)"])
        assert math.isfinite(loss) and loss > 0 and math.isfinite(seconds) and seconds >= 0
        assert float(row["lr"]) == v["config"]["lr"] and v["config"]["seed"] == doc["seed"]
    return rows, doc


@pytest.mark.parametrize("name", list(COMPARISONS))
def test_every_comparison_runs_quick_and_writes_plot_table_and_histories(name, tmp_path, capsys):
    out = tmp_path / "out"
    # offline (the autouse fixture): no --data-dir, so a missing dataset is "unavailable", where
    # a named empty folder would be an error
    argv = [name, "--quick", "--iters", str(ITERS), "--out", str(out)]
    assert main(argv) == 0
    rows, doc = check_outputs(out, name)
    stdout = capsys.readouterr().out
    for row in rows:  # one progress line per variant
        assert sum(line.startswith(f"  {row['variant']} ") for line in stdout.splitlines()) == 1
    assert doc["command"] == "python scripts/compare.py " + " ".join(argv)
    if name == "init":  # the report names the command as it was typed
        again = tmp_path / "again"
        assert main([*argv[:-1], str(again)], prog="xpnet compare") == 0
        typed = json.loads((again / "init.json").read_text())["command"]
        assert typed == "xpnet compare " + " ".join([*argv[:-1], str(again)])
    assert {d["name"] for d in doc["datasets"]} == {"digits"}  # --quick: the offline data
    if name == "dataset":
        status = {r["variant"]: r["status"] for r in rows}
        assert status["digits (8x8)"] == "ok"
        for missing in ("MNIST", "Fashion-MNIST"):
            assert status[missing].startswith("unavailable: not in ")
            assert {r["variant"]: r["dataset"] for r in rows}[missing] == missing
            assert "could not be downloaded (no mirrors are configured)" in status[missing]
    else:
        for row, v in zip(rows, doc["variants"], strict=True):
            if name == "batchnorm" and row["variant"] == "without batch norm, std 1":
                # std 1 through five ReLU layers without normalization: the book's worst case
                assert row["status"] == "ok" or row["status"].startswith("diverged at iteration")
                continue
            assert row["status"] == "ok" or row["status"].startswith("loss did not fall")
            assert v["iterations"] == ITERS
    if COMPARISONS[name].epochs is not None:  # the chapter 6-7 ones: small multiples by epoch
        per_epoch = max(doc["datasets"][0]["train_samples"] // 100, 1)
        assert doc["epochs"] == pytest.approx(ITERS / per_epoch)
        assert doc["n_train"] == COMPARISONS[name].n_train
        if doc["n_train"]:
            assert doc["datasets"][0]["train_samples"] == doc["n_train"]


def test_a_diverging_variant_is_reported_with_its_curve_not_raised(tmp_path):
    sweep = replace(
        COMPARISONS["lr"],
        variants=(Variant("lr 0.1", {"lr": 0.1}), Variant("lr 1e20", {"lr": 1e20})),
    )
    report = run_comparison(
        sweep, DataCache(quick=True), resolve("cpu"), iters=60, dataset="digits"
    )
    ok, diverged = report.outcomes
    assert ok.status == "ok" and ok.final["iteration"] == 60
    assert diverged.status.startswith("diverged at iteration ")
    at = int(diverged.status.rsplit(" ", 1)[1])
    assert 0 < at <= 60 and at % report.log_every == 0 and diverged.final is None
    assert diverged.history and diverged.history[-1]["iteration"] < at  # the curve before it
    assert "the loss became" in diverged.detail
    write_report(report, tmp_path)
    assert (tmp_path / "lr.png").read_bytes()[:8] == PNG_MAGIC
    rows = table(markdown(report))
    assert rows[1]["status"] == diverged.status and rows[1]["test acc"] == "—"
    doc = json.loads((tmp_path / "lr.json").read_text())
    assert doc["variants"][1]["history"] == diverged.history


def test_a_dataset_that_cannot_be_had_is_reported_unavailable(tmp_path):
    folder = tmp_path / "mnist-folder"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte").write_bytes(b"not an idx file")
    report = run_comparison("dataset", DataCache(folder, quick=True), resolve("cpu"), iters=20)
    status = {o.label: o.status for o in report.outcomes}
    # a bad file in a folder the user named: refused, with the first clause of the reason only
    assert (
        status["MNIST"].startswith("unavailable: ") and "train-images-idx3-ubyte" in status["MNIST"]
    )
    assert "\n" not in status["MNIST"] and "delete it" not in status["MNIST"]
    assert status["Fashion-MNIST"].startswith("unavailable: ")
    assert status["digits (8x8)"] == "ok"
    assert [o.history for o in report.outcomes[:2]] == [[], []]


def test_missing_training_data_is_an_error_not_a_row(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["depth", "--dataset", "mnist", "--data-dir", str(tmp_path), "--out", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "MNIST" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing was trained, nothing written


def test_an_output_path_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    assert main(["width", "--quick", "--out", str(tmp_path / "taken")]) == 2  # a usage error
    err = capsys.readouterr().err
    assert err.endswith(
        f"compare.py: error: --out {tmp_path / 'taken'} is a file, not a folder; choose another output folder\n"
    )
    assert "Traceback" not in err


def test_unknown_comparison_exits_2_naming_the_valid_ones():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "compare.py"), "actvation"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "invalid choice: 'actvation'" in errors[0]
    for name in (*COMPARISONS, "all"):
        assert name in errors[0]
    assert "Traceback" not in result.stderr


def test_variants_share_initial_weights_and_sample_order(tmp_path, monkeypatch):
    seen = []

    class Recording(Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.initial = {k: to_numpy(v).copy() for k, v in self.net.params.items()}

        def run(self):
            record = super().run()
            epochs = range(self.iteration // self.steps_per_epoch + 1)
            seen.append((self, [to_numpy(self.sampler.order(e)) for e in epochs]))
            return record

    monkeypatch.setattr(compare_run, "Trainer", Recording)
    report = run_comparison(
        "optimizer", DataCache(quick=True), resolve("cpu"), iters=45, dataset="digits"
    )
    assert len(seen) == len(COMPARISONS["optimizer"].variants) == len(report.outcomes)
    first, orders = seen[0]
    assert len(orders) == 4 and not np.array_equal(orders[0], orders[1])  # 14 steps an epoch
    for trainer, other in seen[1:]:
        assert trainer.config.seed == first.config.seed
        assert trainer.config.batch_size == first.config.batch_size
        for a, b in zip(orders, other, strict=True):
            np.testing.assert_array_equal(a, b)
        for key, w in first.initial.items():  # same architecture and init: same weights
            np.testing.assert_array_equal(w, trainer.initial[key], err_msg=key)
    assert len({trainer.config.optimizer for trainer, _ in seen}) == len(seen)


def stop_at(monkeypatch, n: int) -> list:
    """Make the n-th variant trained (from 1; 0: none) stop by SIGINT; returns the Trainers run."""
    started: list = []

    class StopAt(Trainer):
        def run(self):
            started.append(self)
            if len(started) == n:
                raise Interrupted("SIGINT at iteration 0; nothing saved", signal.SIGINT)
            return super().run()

    monkeypatch.setattr(compare_run, "Trainer", StopAt)
    return started


def test_an_interrupt_keeps_the_finished_variants_and_a_rerun_trains_only_the_rest(
    tmp_path, monkeypatch, capsys
):
    started = stop_at(monkeypatch, 2)
    out = tmp_path / "out"
    argv = ["width", "--quick", "--iters", "20", "--out", str(out)]
    assert main(argv) == 128 + signal.SIGINT
    assert sorted(p.name for p in out.iterdir()) == [
        "width.partial.json", "width.partial.md", "width.partial.png"
    ]  # fmt: skip
    md = (out / "width.partial.md").read_text()
    assert "**Partial report:** 1 of 5 variants trained, 4 not finished (interrupted)" in md
    rows = table(md)
    assert [r["status"] for r in rows] == ["ok", "interrupted at iteration 0"] + [
        "not run (interrupted)"
    ] * 3
    partial = json.loads((out / "width.partial.json").read_text())
    assert partial["interrupted"] is True and partial["complete"] is False
    assert len(started) == 2
    err = capsys.readouterr().err
    assert err.startswith("interrupted: width: 1 of 5 variants trained") and "run again" in err

    # the same command again: the trained variant is kept, the four others are trained
    started = stop_at(monkeypatch, 0)
    assert main(argv) == 0
    assert len(started) == 4 and started[0].config.hidden == [50]
    printed = capsys.readouterr().out
    assert f"resuming {out / 'width.partial.json'}" in printed
    assert sum("(kept from the earlier run)" in line for line in printed.splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["width.json", "width.md", "width.png"]
    rows, doc = check_outputs(out, "width")
    assert doc["complete"] is True and doc["interrupted"] is False
    assert doc["variants"][0] == partial["variants"][0]  # kept as it was, curve and all


def test_an_interrupted_rerun_leaves_the_complete_report_as_it_was(tmp_path, monkeypatch, capsys):
    """The issue: `compare.py width --out D`, then the same (--retrain: trained again) interrupted:
    D's .md, .json and .png held 1 variant and 4 'not run'. Now the partial report goes beside."""
    out = tmp_path / "out"
    argv = ["width", "--quick", "--iters", "20", "--out", str(out)]
    assert main(argv) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(before) == ["width.json", "width.md", "width.png"]
    stop_at(monkeypatch, 2)
    capsys.readouterr()
    assert main([*argv, "--retrain"]) == 128 + signal.SIGINT
    for name, content in before.items():
        assert (out / name).read_bytes() == content, f"{name} was replaced"
    assert (out / "width.partial.md").exists() and (out / "width.partial.png").exists()
    partial = json.loads((out / "width.partial.json").read_text())
    assert [v["status"] for v in partial["variants"]][:2] == ["ok", "interrupted at iteration 0"]
    err = capsys.readouterr().err
    assert "(width.md, .json and .png, of an earlier complete run, are left as they were)" in err
    assert len(err.strip().splitlines()) == 1


def test_a_rerun_with_the_same_settings_keeps_every_variant_unless_retrain(
    tmp_path, monkeypatch, capsys
):
    out = tmp_path / "out"
    argv = ["depth", "--quick", "--iters", "10", "--out", str(out)]
    assert main(argv) == 0
    first = json.loads((out / "depth.json").read_text())
    started = stop_at(monkeypatch, 0)
    capsys.readouterr()
    assert main(argv) == 0
    assert started == []  # nothing trained again
    printed = capsys.readouterr().out
    assert f"resuming {out / 'depth.json'}: the variants it holds are kept" in printed
    assert sum(line.endswith("(kept from the earlier run)") for line in printed.splitlines()) == 5
    assert json.loads((out / "depth.json").read_text()) == first
    assert main([*argv, "--seed", "1"]) == 0 and len(started) == 5  # other settings: trained
    assert main([*argv, "--seed", "1", "--retrain"]) == 0 and len(started) == 10


def test_ctrl_c_between_two_variants_keeps_the_finished_ones(tmp_path, monkeypatch, capsys):
    built = []

    class CtrlCWhileBuilding(Trainer):  # Ctrl-C outside the training loop (moving data, a net)
        def __init__(self, *args, **kwargs):
            built.append(1)
            if len(built) == 3:
                raise KeyboardInterrupt
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(compare_run, "Trainer", CtrlCWhileBuilding)
    out = tmp_path / "out"
    assert main(["width", "--quick", "--iters", "20", "--out", str(out)]) == 130
    rows = table((out / "width.partial.md").read_text())
    assert [r["status"] for r in rows] == ["ok", "ok"] + ["not run (interrupted)"] * 3
    assert "Traceback" not in capsys.readouterr().err


def test_sigterm_between_two_variants_keeps_the_finished_ones(tmp_path, monkeypatch):
    def unhandled(signum, frame):  # what SIGTERM would do without a handler: end it all
        raise AssertionError("SIGTERM reached the default handler: the process would be gone")

    built = []

    class TermWhileBuilding(Trainer):
        def __init__(self, *args, **kwargs):
            built.append(1)
            if len(built) == 2:
                os.kill(os.getpid(), signal.SIGTERM)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(compare_run, "Trainer", TermWhileBuilding)
    saved = signal.signal(signal.SIGTERM, unhandled)
    try:
        code = main(["depth", "--quick", "--iters", "10", "--out", str(tmp_path)])
    finally:
        signal.signal(signal.SIGTERM, saved)
    assert code == 128 + signal.SIGTERM
    rows = table((tmp_path / "depth.partial.md").read_text())
    assert [r["status"] for r in rows] == ["ok"] + ["not run (interrupted)"] * 4


@pytest.mark.parametrize(
    "error",
    [ConfigError("--hidden 0: layer sizes must be positive; choose another"), MemoryError()],
    ids=["ConfigError", "MemoryError"],
)
def test_a_failing_variant_is_recorded_and_the_others_kept(error, tmp_path, monkeypatch, capsys):
    started = []

    class FailFourth(Trainer):
        def run(self):
            started.append(self)
            if len(started) == 4:
                raise error
            return super().run()

    monkeypatch.setattr(compare_run, "Trainer", FailFourth)
    out = tmp_path / "out"
    argv = ["width", "--quick", "--iters", "20", "--out", str(out)]
    assert main(argv) == 1
    assert len(started) == 5  # the one after it ran too
    rows = table((out / "width.partial.md").read_text())
    why = (
        "out of memory"
        if isinstance(error, MemoryError)
        else "--hidden 0: layer sizes must be positive"
    )
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", f"failed: {why}", "ok"]
    failed = json.loads((out / "width.partial.json").read_text())["variants"][3]
    assert failed["detail"] and failed["config"]["hidden"] == [500] and failed["final"] is None
    assert not (out / "width.md").exists()
    captured = capsys.readouterr()
    assert f"  500 units                  failed: {why}" in captured.out.splitlines()
    assert captured.err == (
        "error: width: 4 of 5 variants trained, 1 failed; the same command run again into this "
        "folder trains only the missing ones\n"
    )

    # rerun: only the failed variant is trained again
    built = stop_at(monkeypatch, 0)
    assert main(argv) == 0
    assert [t.config.hidden for t in built] == [[500]]
    check_outputs(out, "width")
    assert not (out / "width.partial.md").exists()


def test_a_partial_report_of_other_settings_is_not_resumed(tmp_path, monkeypatch, capsys):
    stop_at(monkeypatch, 2)
    out = tmp_path / "out"
    assert main(["depth", "--quick", "--iters", "10", "--out", str(out)]) == 130
    started = stop_at(monkeypatch, 0)
    capsys.readouterr()
    assert main(["depth", "--quick", "--iters", "12", "--out", str(out)]) == 0
    assert len(started) == 5  # nothing kept: its iterations differ
    err = capsys.readouterr().err
    assert (
        f"notice: {out / 'depth.partial.json'} is of other settings (iterations 10 there, " in err
    )
    _, doc = check_outputs(out, "depth")
    assert doc["iterations"] == 12 and not (out / "depth.partial.json").exists()


def test_a_broken_partial_report_is_replaced_not_trusted(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "depth.partial.json").write_text('{"variants": [{"label": "1 hidden layer"')
    started = stop_at(monkeypatch, 0)
    assert main(["depth", "--quick", "--iters", "10", "--out", str(out)]) == 0
    assert len(started) == 5 and not (out / "depth.partial.json").exists()


def test_workers_that_fail_keep_what_finished(tmp_path, monkeypatch):
    """The Dask path: a cluster that goes away after one variant; the rerun keeps it."""
    from xpnet.errors import XpnetError
    from xpnet.parallel.dask import Runner

    class OneThenGone(Runner):
        where = "on a cluster that fails"

        def run(self, fn, tasks):
            key, args = tasks[0]
            yield key, fn(*args)
            raise XpnetError("lost the scheduler at tcp://127.0.0.1:1; start it again")

    monkeypatch.setattr(cli, "open_runner", lambda *a: OneThenGone())
    out = tmp_path / "out"
    argv = ["depth", "--quick", "--iters", "10", "--out", str(out)]
    assert main(argv) == 1
    rows = table((out / "depth.partial.md").read_text())
    assert [r["status"] for r in rows] == ["ok"] + [
        "failed: lost the scheduler at tcp://127.0.0.1:1"
    ] * 4

    keys = []

    class Here(Runner):  # runs the tasks it is given, counting them
        where = "here, counted"

        def run(self, fn, tasks):
            for key, args in tasks:
                keys.append(key)
                yield key, fn(*args)

    monkeypatch.setattr(cli, "open_runner", lambda *a: Here())
    assert main(argv) == 0
    assert keys == ["variant-1", "variant-2", "variant-3", "variant-4"]
    check_outputs(out, "depth")


def test_default_output_folder_is_new_under_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["depth", "--quick", "--iters", "10"]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.endswith("-compare-depth")
    assert sorted(p.name for p in run.iterdir()) == ["depth.json", "depth.md", "depth.png"]


MNIST_DIR = mnist_dir()  # read before the autouse fixture removes XPNET_DATA_DIR


@pytest.mark.mnist
@pytest.mark.skipif(MNIST_DIR is None, reason="set XPNET_DATA_DIR to the MNIST files")
def test_quick_mnist_is_a_small_subset(tmp_path):
    out = tmp_path / "out"
    args = ["--quick", "--iters", "20", "--data-dir", str(MNIST_DIR), "--out", str(out)]
    assert main(["dataset", *args]) == 0
    rows, doc = check_outputs(out, "dataset")
    mnist = next(d for d in doc["datasets"] if d["name"] == "mnist")
    assert (mnist["train_samples"], mnist["test_samples"]) == experiments.QUICK_SUBSET
    assert rows[0]["network"] == "784-50-10" and rows[0]["status"] == "ok"


def test_variants_on_a_local_dask_cluster_match_one_process(tmp_path):
    """--workers 2: the variants run in two worker processes, with the numbers of one process."""
    pytest.importorskip("distributed", reason='pip install "xpnet[distributed]"')
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the workers run one BLAS thread each; so should the reference
        threadpool_limits = None
    out = tmp_path / "dask"
    assert main(["lr", "--quick", "--iters", str(ITERS), "--workers", "2", "--out", str(out)]) == 0
    _, doc = check_outputs(out, "lr")
    limit = threadpool_limits(1) if threadpool_limits else contextlib.nullcontext()
    with limit:
        here = run_comparison("lr", DataCache(None, quick=True), resolve("cpu"), iters=ITERS)
    assert doc["datasets"] and doc["datasets"][0]["name"] == "digits"

    def numbers(history):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in history]

    assert len(here.outcomes) == len(doc["variants"])
    for mine, theirs in zip(here.outcomes, doc["variants"], strict=True):
        assert (theirs["label"], theirs["status"]) == (mine.label, mine.status)
        assert numbers(theirs["history"]) == numbers(mine.history)
    assert {v["status"] for v in doc["variants"]} > {"ok"}  # the rates too large for it as well


def test_first_train_keeps_the_first_n_training_samples_and_every_test_sample():
    digits = DataCache(quick=True)("digits")
    small = experiments.first_train(digits, 300)
    np.testing.assert_array_equal(small.x_train, digits.x_train[:300])
    np.testing.assert_array_equal(small.t_train, digits.t_train[:300])
    assert small.x_test is digits.x_test and small.t_test is digits.t_test
    assert small.source.endswith("its first 300 training samples")
    assert len(experiments.first_train(digits, 10**6).x_train) == len(digits.x_train)
    with pytest.raises(ConfigError, match="n_train must be positive"):
        experiments.first_train(digits, 0)


def test_n_train_trains_every_variant_on_exactly_the_first_n_samples(monkeypatch):
    seen = []

    class Recording(Trainer):
        def run(self):
            seen.append((self.n_train, to_numpy(self.data.x_train).copy(), self.config))
            return super().run()

    monkeypatch.setattr(compare_run, "Trainer", Recording)
    small = replace(
        COMPARISONS["overfit"],
        variants=COMPARISONS["overfit"].variants[:2],
        n_train=250,  # 2 updates of 100 an epoch (the last 50 wait for the next epoch's order)
        epochs=3,
        log_epochs=1,
    )
    load = DataCache(quick=True)
    report = run_comparison(small, load, resolve("cpu"), dataset="digits")
    digits = load("digits")
    assert len(seen) == 2
    for n, x, config in seen:
        assert n == 250 and x.shape == (250, 64)
        np.testing.assert_allclose(x, digits.x_train[:250], rtol=1e-6)
        assert config.iters == 6 and config.log_every == 2
    assert report.iters == 6 and report.steps_per_epoch == 2 and report.epochs == 3
    assert report.datasets["digits"]["train_samples"] == 250
    assert report.datasets["digits"]["test_samples"] == len(digits.x_test)
    for o in report.outcomes:
        assert [r["epoch"] for r in o.history] == [0, 1, 2, 3]
        assert o.status == "ok" and o.iterations == 6
    md = markdown(report)
    assert "6 iterations (3 epochs of 2 updates)" in md
    assert "its first 250 training samples" in md
    rows = table(md)
    assert [r["regularization"] for r in rows] == ["none", "weight decay 0.1"]


def test_panel_plots_draw_one_panel_per_facet_and_one_legend(tmp_path, monkeypatch):
    figures = []
    save = compare_plots._save_figure

    def keep(fig, path):
        figures.append(fig)
        return save(fig, path)

    monkeypatch.setattr(compare_plots, "_save_figure", keep)
    bn = COMPARISONS["batchnorm"]
    report = run_comparison(bn, DataCache(quick=True), resolve("cpu"), iters=4, dataset="digits")
    groups = experiments.panels(report)
    assert list(groups) == [f"initial std {s:g}" for s in experiments.BATCHNORM_INITS]
    for title, members in groups.items():
        assert [v.line for v, _ in members] == ["with batch norm", "without"]
        assert all(title.endswith(o.settings["init"].removeprefix("std ")) for _, o in members)
    write_report(report, tmp_path)
    (fig,) = figures
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == list(groups)
    assert all(len(ax.get_lines()) == 2 for ax in shown)  # train accuracy, with and without BN
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[0] == "with batch norm" and "without" in labels[1]
    assert shown[0].get_xlabel() == "epoch" and shown[0].get_ylabel() == "train accuracy"

    figures.clear()
    cnn = run_comparison("cnn", DataCache(quick=True), resolve("cpu"), iters=6, dataset="digits")
    write_report(cnn, tmp_path)
    (fig,) = figures
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(shown) == 2 and shown[1].get_title() == "test accuracy against wall time"
    assert len(shown[0].get_lines()) == 4  # train and test of each
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "MLP train", "MLP test", "SimpleConvNet train", "SimpleConvNet test"
    ]  # fmt: skip
    assert [r["network"] for r in table(markdown(cnn))] == ["64-50-10", "conv 30@5x5-pool-100-10"]


def test_a_failure_after_the_output_folder_was_made_leaves_no_empty_folder(tmp_path, monkeypatch):
    from xpnet.errors import XpnetError

    def refuse(*args, **kwargs):
        raise XpnetError("no scheduler at tcp://127.0.0.1:1")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "open_runner", refuse)
    assert main(["lr", "--quick", "--iters", "5"]) == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert main(["lr", "--quick", "--iters", "5", "--out", str(tmp_path / "a" / "b")]) == 1
    assert not (tmp_path / "a").exists()


def test_a_negative_seed_is_a_usage_error_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["lr", "--quick", "--seed", "-1"]) == 2
    assert "--seed: must be an integer >= 0" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def _refuse_writes_under(folder: Path, monkeypatch) -> None:
    """Make creating a file in `folder` fail as on a read-only filesystem. Tests run as root, which
    writes through chmod 0o500, so the refusal is made where Python opens files: both the
    built-in open (the atomic writes) and os.open (tempfile's probes)."""
    import builtins

    real_open, real_os_open = builtins.open, os.open

    def inside(path) -> bool:
        return isinstance(path, str | os.PathLike) and Path(path).parent == folder

    def refuse(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    def open_(path, *args, **kwargs):
        if inside(path) and (len(args) == 0 or args[0] != "r") and kwargs.get("mode", "w") != "r":
            refuse(path)
        return real_open(path, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(os, "open", os_open)


@pytest.mark.parametrize("how", ["read-only filesystem", "chmod 0o500"])
def test_a_read_only_out_is_refused_before_anything_trains(how, tmp_path, monkeypatch, capsys):
    out = tmp_path / "results"
    out.mkdir()
    if how == "chmod 0o500":
        if os.geteuid() == 0:
            pytest.skip("root writes through chmod 0o500; the other case stands in for it")
        out.chmod(0o500)
    else:
        _refuse_writes_under(out, monkeypatch)
    started = stop_at(monkeypatch, 0)
    try:
        code = main(["width", "--quick", "--iters", "20", "--out", str(out)])
    finally:
        out.chmod(0o700)
    assert code == 2 and started == []  # a usage error, found before any training
    err = capsys.readouterr().err
    assert err.endswith(f"compare.py: error: --out {out / 'width.md'}: cannot write in {out} "
                        f"({os.strerror(errno.EROFS if how != 'chmod 0o500' else errno.EACCES)})\n")  # fmt: skip
    assert "Traceback" not in err and sum("error" in line for line in err.splitlines()) == 1


def test_an_out_path_under_a_regular_file_is_one_line_before_anything_trains(
    tmp_path, monkeypatch, capsys
):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "results"
    started = stop_at(monkeypatch, 0)
    assert main(["width", "--quick", "--out", str(out)]) == 1 and started == []
    assert capsys.readouterr().err == (
        f"error: cannot create the output folder {out}: not a directory; choose another with --out\n"
    )


def run_script(*args, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "compare.py"), *args],
        capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_an_ascii_stdout_gets_every_line(tmp_path):
    """PYTHONIOENCODING=ascii: "→" in "loss did not fall (2.30 → 52.58)" prints as "?", and every
    line after it still prints."""
    out = tmp_path / "out"
    result = run_script("lr", "--quick", "--iters", "20", "--out", str(out),
                        env={"PYTHONIOENCODING": "ascii"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    labels = [v.label for v in COMPARISONS["lr"].variants]
    for label in labels:
        assert sum(line.startswith(f"  {label} ") for line in lines) == 1, label
    arrow = [line for line in lines if "loss did not fall" in line]
    assert arrow and all(" ? " in line for line in arrow)  # lr 100 at least, with its "→" as "?"
    assert lines[-1] == f"wrote {out}/{{lr.png, lr.md, lr.json}}"
    assert result.stderr == ""
    assert "→" in (out / "lr.md").read_text(encoding="utf-8")  # the files keep it


def test_python_m_xpnet_apps_compare_help():
    result = subprocess.run(
        [sys.executable, "-m", "xpnet.apps.compare", "--help"],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
        env={**os.environ, "PYTHONIOENCODING": "ascii"},
    )  # fmt: skip
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("usage: compare.py [-h]") and "--workers N" in result.stdout


def _ctrl_c_as_in_a_terminal():
    """In the child, before exec: SIGINT as a terminal's foreground job has it. A suite started in
    the background by a shell without job control (`(pytest &)`) has SIGINT ignored, children
    inherit that, and Python then installs no KeyboardInterrupt handler: the Ctrl-C below would
    do nothing (seen in two runs started so)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_on_a_rerun_leaves_the_complete_report_as_it_was(tmp_path):
    """The issue as reported: a complete comparison, then the same one trained again (--retrain)
    and interrupted by SIGINT."""
    out = tmp_path / "out"
    args = ["width", "--quick", "--iters", "300", "--out", str(out)]
    assert run_script(*args).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "compare.py"), *args, "--retrain"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=_ctrl_c_as_in_a_terminal,
    )  # fmt: skip
    for line in proc.stdout:  # the first variant is done: the second is under way
        if line.startswith("  10 units "):
            break
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name in before} == before
    rows = table((out / "width.partial.md").read_text())
    assert rows[0]["status"] == "ok" and rows[-1]["status"] == "not run (interrupted)"
    assert "Traceback" not in stderr and "left as they were" in stderr


def test_ctrl_c_while_the_report_is_written_waits_for_its_last_file(tmp_path, monkeypatch, capsys):
    real = cli.write_report

    def interrupted_midway(report, out):
        os.kill(os.getpid(), signal.SIGINT)  # as if Ctrl-C came while the plot was drawn
        return real(report, out)

    monkeypatch.setattr(cli, "write_report", interrupted_midway)
    assert main(["depth", "--quick", "--iters", "10", "--out", str(tmp_path)]) == 130
    check_outputs(tmp_path, "depth")  # the three files, all of this run
    assert capsys.readouterr().err == "interrupted after the files above were written\n"


def test_an_interrupt_before_any_variant_finished_writes_nothing(tmp_path, monkeypatch, capsys):
    stop_at(monkeypatch, 1)
    out = tmp_path / "out"
    assert main(["depth", "--quick", "--iters", "10", "--out", str(out)]) == 130
    assert not out.exists()  # made for this run, and empty: removed
    assert (
        capsys.readouterr().err == "interrupted: depth: no variant finished; nothing was written\n"
    )
