"""scripts/compare.py: every comparison end to end (--quick, few iterations), and its edge cases."""

import contextlib
import json
import math
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import mnist_dir

from xpnet import datasets, experiments
from xpnet.backend import resolve, to_numpy
from xpnet.experiments import (
    COMPARISONS,
    DataCache,
    Variant,
    main,
    markdown,
    run_comparison,
    write_report,
)
from xpnet.train import Interrupted, Trainer

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("sklearn", reason="the offline digits dataset needs scikit-learn")
pytest.importorskip("matplotlib", reason="the comparisons draw PNG files")

ITERS = 40  # about 3 epochs of digits: every code path, in well under a second per variant
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No test may reach the network: MNIST and Fashion-MNIST are unavailable unless on disk."""
    monkeypatch.setattr(datasets, "MIRRORS", {})
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
    assert {d["name"] for d in doc["datasets"]} == {"digits"}  # --quick: the offline data
    if name == "dataset":
        status = {r["variant"]: r["status"] for r in rows}
        assert status["digits (8x8)"] == "ok"
        for missing in ("MNIST", "Fashion-MNIST"):
            assert status[missing].startswith("unavailable: not in ")
            assert {r["variant"]: r["dataset"] for r in rows}[missing] == missing
            assert "could not be downloaded (no mirrors are configured)" in status[missing]
    else:
        assert all(r["status"] == "ok" or r["status"].startswith("loss did not fall") for r in rows)
        assert all(v["iterations"] == ITERS for v in doc["variants"])


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
            seen.append((self, [to_numpy(self._epoch_order(e)) for e in epochs]))
            return record

    monkeypatch.setattr(experiments, "Trainer", Recording)
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


def test_an_interrupt_keeps_the_finished_variants(tmp_path, monkeypatch, capsys):
    started = []

    class StopSecond(Trainer):
        def run(self):
            started.append(self)
            if len(started) == 2:
                raise Interrupted("SIGINT at iteration 0; nothing saved", signal.SIGINT)
            return super().run()

    monkeypatch.setattr(experiments, "Trainer", StopSecond)
    out = tmp_path / "out"
    assert main(["width", "--quick", "--iters", "20", "--out", str(out)]) == 128 + signal.SIGINT
    rows = table((out / "width.md").read_text())
    assert [r["status"] for r in rows] == ["ok", "interrupted at iteration 0"] + [
        "not run (interrupted)"
    ] * 3
    assert json.loads((out / "width.json").read_text())["interrupted"] is True
    assert len(started) == 2
    assert "interrupted" in capsys.readouterr().err


def test_default_output_folder_is_new_under_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["depth", "--quick", "--iters", "10"]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.endswith("-compare-depth")
    assert sorted(p.name for p in run.iterdir()) == ["depth.json", "depth.md", "depth.png"]


@pytest.mark.mnist
@pytest.mark.skipif(mnist_dir() is None, reason="set XPNET_MNIST_DIR to the MNIST files")
def test_quick_mnist_is_a_small_subset(tmp_path):
    out = tmp_path / "out"
    args = ["--quick", "--iters", "20", "--data-dir", str(mnist_dir()), "--out", str(out)]
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
