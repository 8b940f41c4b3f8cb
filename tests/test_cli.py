"""scripts/train.py as a user runs it: outputs, fallbacks, typos, bad values, signals, resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from xpnet.backend import gpu_available
from xpnet.cli import main

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train.py"
pytest.importorskip("sklearn", reason="the offline digits dataset needs scikit-learn")

# a few seconds on digits (1497 training samples, batch 100 -> 14 iterations per epoch)
TINY = [
    "--dataset",
    "digits",
    "--iters",
    "60",
    "--no-progress",
    "--init",
    "he",
    "--hidden",
    "32",
    "--lr",
    "0.5",
]


def run_cli(*args, cwd=None, env=None, timeout=120):
    """Run scripts/train.py in a subprocess, as a user would."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
        cwd=cwd, env=full_env, timeout=timeout, check=False,
    )  # fmt: skip


def no_traceback(result):
    assert "Traceback" not in result.stdout + result.stderr


def test_help_explains_every_option():
    result = run_cli("--help")
    assert result.returncode == 0
    for option in ("--device", "--backend", "--dataset", "--data-dir", "--hidden", "--iters", "--epochs",
                   "--batch-size", "--lr", "--seed", "--dtype", "--out", "--activation", "--init",
                   "--optimizer", "--weight-decay", "--checkpoint-every", "--resume"):  # fmt: skip
        assert option in result.stdout


def test_end_to_end_tiny_run_writes_metrics_plot_and_checkpoint(tmp_path):
    out = tmp_path / "run"
    result = run_cli(*TINY, "--out", str(out))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # what runs where, first
    assert lines[0].startswith("backend: numpy on cpu, dtype float32")
    assert lines[1].startswith("dataset: digits from scikit-learn")
    assert any(line.startswith("iter     0 / 60 | loss") for line in lines)
    assert any(line.startswith("final    60 / 60 |") for line in lines)
    records = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["final"] and records[-1]["iteration"] == 60
    assert records[-1]["test_acc"] > 0.8
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert (out / "model.npz").exists() and (out / "checkpoint.npz").exists()
    no_traceback(result)


def test_default_output_folder_is_new_under_runs(tmp_path):
    result = run_cli(*TINY, "--iters", "5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "metrics.jsonl").exists()


@pytest.mark.skipif(gpu_available("cupy"), reason="a GPU is present: no fallback happens")
def test_cuda_without_gpu_warns_once_and_falls_back(tmp_path):
    result = run_cli(*TINY, "--iters", "5", "--device", "cuda", "--out", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "falling back to the CPU" in warnings[0]
    assert result.stdout.startswith("backend: numpy on cpu")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--devise", "cpu"], "unrecognized arguments: --devise"),
        (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
        (["--dataset", "mnits"], "invalid choice: 'mnits'"),
        (["--optimizer", "adamm"], "invalid choice: 'adamm'"),
        (["--lr", "0"], "argument --lr: must be a positive number, got '0'"),
        (["--lr", "-0.1"], "argument --lr: must be a positive number"),
        (["--lr", "nan"], "argument --lr: must be a positive number"),
        (["--batch-size", "0"], "argument --batch-size: must be a positive integer, got '0'"),
        (["--iters", "ten"], "argument --iters: must be a positive integer, got 'ten'"),
        (["--hidden", "-5"], "argument --hidden: must be a positive integer"),
        (["--init", "kaiming"], "unknown initializer 'kaiming'"),
        (
            ["--batch-size", "5000"],
            "batch size 5000 is larger than the training set (1497 samples)",
        ),
        (["--iters", "5", "--epochs", "2"], "not allowed with argument"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args, message, capsys):
    with pytest.raises(SystemExit) as exc_info:
        code = main([*TINY, *args])
        raise SystemExit(code)
    assert exc_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1


def test_runtime_errors_exit_1_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a checkpoint")
    assert main(["--resume", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.npz is not a readable xpnet checkpoint" in err
    assert len(err.strip().splitlines()) == 1

    assert (
        main(
            [
                *TINY,
                "--dataset",
                "mnist",
                "--data-dir",
                str(tmp_path / "empty"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"x")
    assert main(["--resume", str(bad), "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_resume_rejects_changed_model_options(tmp_path, capsys):
    assert main([*TINY, "--iters", "5", "--out", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    assert (
        main(["--resume", str(tmp_path / "r" / "checkpoint.npz"), "--hidden", "64", "--lr", "0.05"])
        == 2
    )
    err = capsys.readouterr().err
    # both values, so the user sees what to drop
    assert "--hidden 64 (the run used 32), --lr 0.05 (the run used 0.5)" in err
    assert "a resumed run keeps its settings" in err


def test_nan_loss_exits_1_with_advice(tmp_path, capsys):
    code = main(
        [*TINY, "--lr", "1e20", "--iters", "200", "--log-every", "10", "--out", str(tmp_path / "r")]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "the loss became nan between iterations 0 and 10" in err
    # advice that works: --resume keeps the learning rate, so a new run
    assert "Start a new run with a smaller learning rate, e.g. --lr 1e+19" in err
    assert "Traceback" not in err and "warning" not in err


def _weights(path):
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files if k.startswith("params/")}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_writes_checkpoint_and_resume_is_bit_identical(sig, tmp_path):
    args = ["--dataset", "digits", "--iters", "3000", "--log-every", "50", "--no-progress", "--no-plot",
            "--optimizer", "momentum", "--lr", "0.05", "--hidden", "64", "64", "--init", "he"]  # fmt: skip
    ref = run_cli(*args, "--out", str(tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr

    out = tmp_path / "cut"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), *args, "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    seen = []
    for line in proc.stdout:  # wait until training is under way
        seen.append(line)
        if line.startswith("iter   100"):
            break
    time.sleep(0.05)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, stderr
    assert "checkpoint saved to" in stderr and "--resume" in stderr and "Traceback" not in stderr
    ckpt = out / "checkpoint.npz"
    assert not (out / "model.npz").exists()

    resumed = run_cli("--resume", str(ckpt), "--no-progress", "--no-plot")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout
    a, b = _weights(tmp_path / "ref" / "model.npz"), _weights(out / "model.npz")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    final = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()][-1]
    reference = [
        json.loads(s) for s in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()
    ][-1]
    assert final["test_acc"] == reference["test_acc"] and final["iteration"] == 3000
