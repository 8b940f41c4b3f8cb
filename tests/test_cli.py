"""scripts/train.py as a user runs it: outputs, fallbacks, typos, bad values, signals, resume."""

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from xpnet.apps.train import main
from xpnet.backend import gpu_available

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


# -- issue 11: the command line's remaining traps -------------------------------------------------


def _digits_as_auto(monkeypatch):
    """`--dataset auto` as it behaves offline with no MNIST: the digits, named "digits"."""
    from xpnet.apps import train as cli
    from xpnet.data import load_dataset

    def fallback(config, progress):
        assert config.dataset == "auto"
        return load_dataset("digits", progress=False)

    monkeypatch.setattr(cli, "_load_data", fallback)


def test_checkpoint_records_the_dataset_used_and_resumes_on_it(tmp_path, monkeypatch, capsys):
    with monkeypatch.context() as m:
        _digits_as_auto(m)
        args = ["--iters", "20", "--no-progress", "--no-plot", "--hidden", "16"]
        assert main([*args, "--out", str(tmp_path / "r")]) == 0
    from xpnet.training.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "r" / "checkpoint.npz").config["dataset"] == "digits"
    capsys.readouterr()
    # MNIST may be available now: the resume still loads the digits, and naming them is no change
    ckpt = str(tmp_path / "r" / "checkpoint.npz")
    assert main(["--resume", ckpt, "--iters", "30", "--dataset", "digits", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "dataset: digits" in out and "final    30 / 30" in out


def test_resume_compares_init_by_value(tmp_path, capsys):
    base = ["--dataset", "digits", "--iters", "10", "--no-progress", "--no-plot", "--hidden", "16"]
    assert main([*base, "--out", str(tmp_path / "r")]) == 0  # the default init, the number 0.01
    capsys.readouterr()
    ckpt = str(tmp_path / "r" / "checkpoint.npz")
    assert main(["--resume", ckpt, "--iters", "15", "--init", "0.01", "--no-progress"]) == 0
    assert main(["--resume", ckpt, "--iters", "20", "--init", "1e-2", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["--resume", ckpt, "--iters", "25", "--init", "he"]) == 2
    assert "--init he (the run used 0.01)" in capsys.readouterr().err


def test_out_holding_another_run_is_refused_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "r"
    assert main([*TINY, "--iters", "5", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "curves.png" in before
    capsys.readouterr()
    assert main([*TINY, "--iters", "7", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {out} already holds files" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched

    assert main([*TINY, "--iters", "7", "--out", str(out), "--overwrite", "--no-plot"]) == 0
    printed = capsys.readouterr().out
    assert not (out / "curves.png").exists()  # the old run's curves are gone, not listed
    assert f"wrote {out}/{{config.json, metrics.jsonl, model.npz, checkpoint.npz}}" in printed
    records = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["iteration"] == 7

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*TINY, "--iters", "3", "--out", str(empty), "--no-plot"]) == 0


def test_negative_seed_is_a_usage_error_in_the_cli_and_the_api(capsys):
    assert main([*TINY, "--seed", "-1"]) == 2
    assert "argument --seed: must be an integer >= 0, got '-1'" in capsys.readouterr().err
    from xpnet.errors import ConfigError
    from xpnet.training.trainer import TrainConfig

    with pytest.raises(ConfigError, match="seed must be an integer >= 0, got -1"):
        TrainConfig(seed=-1).validate()


def test_out_of_memory_is_one_line_and_leaves_no_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*TINY, "--hidden", "1000000000"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: out of memory") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()
    assert main([*TINY, "--hidden", "1000000000", "--out", str(tmp_path / "a" / "b")]) == 1
    assert not (tmp_path / "a").exists()


def test_failures_leave_no_empty_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # fails after the folder was made: a diverging init, and a bad --resume folder
    assert main([*TINY, "--init", "1e300"]) == 1
    err = capsys.readouterr().err
    # the init is to blame, not the learning rate
    assert "before the first update" in err and "--init" in err and "--lr" not in err
    assert "warning" not in err
    assert not (tmp_path / "runs").exists()
    assert main([*TINY, "--init", "1e300", "--out", str(tmp_path / "x" / "y")]) == 1
    assert not (tmp_path / "x").exists()


def test_resume_accepts_a_run_folder(tmp_path, capsys):
    assert main([*TINY, "--iters", "5", "--out", str(tmp_path / "r"), "--no-plot"]) == 0
    capsys.readouterr()
    assert main(["--resume", str(tmp_path / "r"), "--iters", "8", "--no-progress"]) == 0
    assert "final     8 / 8" in capsys.readouterr().out
    (tmp_path / "nothing").mkdir()
    assert main(["--resume", str(tmp_path / "nothing")]) == 2
    assert "holds no checkpoint.npz" in capsys.readouterr().err


def test_resuming_a_finished_run_says_so_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "r"
    assert main([*TINY, "--iters", "10", "--out", str(out), "--no-plot"]) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["--resume", str(out / "checkpoint.npz"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "already finished at iteration 10" in printed and "done:" not in printed
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    # asked for more, it continues with one final line only, and honest times
    assert main(["--resume", str(out / "checkpoint.npz"), "--iters", "20", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "s in this session;" in printed and "s of training in all sessions" in printed
    records = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if r.get("final")] == [20]
    assert all(b["seconds"] >= a["seconds"] for a, b in itertools.pairwise(records))


def test_a_failing_write_is_reported_not_masked_by_the_plot(tmp_path, capsys, monkeypatch):
    import errno

    from xpnet import fileio
    from xpnet.apps import train as cli

    real_replace = fileio.os.replace

    def read_only(src, dst):
        if str(dst).endswith("checkpoint.npz"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "replace", read_only)
    plotted = []
    monkeypatch.setattr(cli, "_plot", lambda *a: plotted.append(1) or 1 / 0)
    assert main([*TINY, "--log-every", "5", "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "checkpoint.npz: permission denied; make the folder writable" in err
    assert "free some space" not in err and plotted == [1]


def test_tensorboard_logs_every_metrics_line(tmp_path, capsys):
    pytest.importorskip("tensorboardX")
    import struct

    from tensorboardX.proto import event_pb2

    from xpnet.training.writers import TENSORBOARD_TAGS

    out = tmp_path / "r"
    assert (
        main([*TINY, "--iters", "30", "--log-every", "10", "--out", str(out), "--tensorboard"]) == 0
    )
    assert "events.out.tfevents.*" in capsys.readouterr().out
    (events,) = out.glob("events.out.tfevents.*")
    scalars: dict[str, dict[int, float]] = {}
    data = events.read_bytes()
    pos = 0
    while pos < len(data):  # TFRecord: length, crc, event proto, crc
        (length,) = struct.unpack("<Q", data[pos : pos + 8])
        event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
        pos += 12 + length + 4
        for value in event.summary.value:
            scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    records = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert set(scalars) == set(TENSORBOARD_TAGS)
    for tag, key in TENSORBOARD_TAGS.items():
        assert scalars[tag] == pytest.approx({r["iteration"]: r[key] for r in records}, rel=1e-6)


def test_tensorboard_without_tensorboardx_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    monkeypatch.chdir(tmp_path)
    assert main([*TINY, "--tensorboard"]) == 1
    err = capsys.readouterr().err
    assert "pip install 'xpnet[tensorboard]'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_closed_stdout_stops_printing_not_the_run(tmp_path):
    """`train.py | head -3`: the reader goes away, the run still finishes and saves."""
    out = tmp_path / "r"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), *TINY, "--iters", "200", "--log-every", "5", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    head = [proc.stdout.readline() for _ in range(3)]
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 0, stderr
    assert head[0].startswith(b"backend:")
    assert "stopped printing to standard output" in stderr and "Traceback" not in stderr
    assert "Exception ignored" not in stderr
    records = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["final"] and (out / "model.npz").exists()


def test_full_stdout_device_stops_printing_not_the_run(tmp_path):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    out = tmp_path / "r"
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, str(SCRIPT), *TINY, "--iters", "20", "--out", str(out)],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "No space left on device" in result.stderr and "Traceback" not in result.stderr
    assert (out / "model.npz").exists()


def test_ctrl_c_at_startup_shows_no_traceback(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), *TINY], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # while Python imports NumPy and xpnet: once NumPy's library is mapped (a fixed sleep, on a
    # loaded machine, could land in the interpreter's own start-up, before any Python code runs)
    maps, deadline = Path(f"/proc/{proc.pid}/maps"), time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if "numpy" in maps.read_text():
                break
        except OSError:  # no /proc here: fall back to a pause
            time.sleep(0.15)
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    # 130 from our handler; -SIGINT only if it landed before Python's own handler was installed
    assert proc.returncode in (130, -signal.SIGINT), stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_two_runs_never_write_into_one_folder(tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    # a run in progress (this very process stands in for it) holds the folder
    (out / ".xpnet-running").write_text(f"{os.getpid()}\n")
    assert main([*TINY, "--iters", "5", "--out", str(out)]) == 1
    assert "another run is writing into" in capsys.readouterr().err
    assert main([*TINY, "--iters", "5", "--out", str(out), "--overwrite"]) == 1
    assert sorted(p.name for p in out.iterdir()) == [".xpnet-running"]

    # a marker left by a killed run (its process is gone) is taken over when resuming
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    (out / ".xpnet-running").unlink()
    assert main([*TINY, "--iters", "5", "--out", str(out), "--no-plot"]) == 0
    (out / ".xpnet-running").write_text(dead + "\n")
    assert main(["--resume", str(out), "--iters", "8", "--no-progress"]) == 0
    assert not (out / ".xpnet-running").exists()  # released at the end


def test_checkpoint_of_an_older_xpnet_saying_auto_resumes_on_the_dataset_used(
    tmp_path, monkeypatch, capsys
):
    import xpnet.training.trainer as train_module

    real = train_module.save_checkpoint

    def as_before(path, net, optimizer, *, iteration, config, extra):
        # before issue 11 the config said "auto"; only extra["dataset"] named the digits
        return real(
            path,
            net,
            optimizer,
            iteration=iteration,
            config={**config, "dataset": "auto"},
            extra=extra,
        )

    with monkeypatch.context() as m:
        _digits_as_auto(m)
        m.setattr(train_module, "save_checkpoint", as_before)
        assert (
            main(
                [
                    "--iters",
                    "10",
                    "--no-progress",
                    "--no-plot",
                    "--hidden",
                    "16",
                    "--out",
                    str(tmp_path / "r"),
                ]
            )
            == 0
        )
    capsys.readouterr()
    ckpt = str(tmp_path / "r" / "checkpoint.npz")
    assert main(["--resume", ckpt, "--iters", "15", "--dataset", "digits", "--no-progress"]) == 0
    assert "dataset: digits" in capsys.readouterr().out


def test_run_curves_name_the_last_accuracies(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from xpnet.training import curves as plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or Path(path))
    history = [
        {"iteration": 0, "loss": 2.3, "train_acc": 0.1, "test_acc": 0.09},
        {"iteration": 600, "loss": 0.1, "train_acc": 0.9989, "test_acc": 0.99361},
    ]
    plots.plot_run(history, tmp_path / "c.png")
    legend = [t.get_text() for t in figures[0].axes[1].get_legend().get_texts()]
    assert legend == ["train (last 0.9989)", "test (last 0.9936)"]


def test_an_ascii_terminal_gets_replacement_characters_not_a_traceback(tmp_path):
    # the λ of --weight-decay's help, and any later line, on a stdout that encodes only ASCII
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert "L2 penalty ?" in proc.stdout
    code = "from xpnet.progress import safe_print; safe_print('a \\u2192 b'); safe_print('then c')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.stdout.splitlines() == ["a ? b", "then c"], proc.stderr
