"""scripts/bench.py: every runner runs through the driver and prints a sane table; bad input is one line."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    """scripts/<name>.py as a module (it imports its neighbours as top-level modules)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "scripts"))


def test_bench_quick_runs_every_runner(tmp_path, monkeypatch, capsys):
    """Every runner of every default configuration, through the driver (interleaving, table,
    JSON), with the runs in this process: a fresh process per run (bench.run_isolated, which
    the docs' `bench.py --quick` block runs) matters for timing, not for what a runner computes,
    and 16 fresh processes importing torch took a minute of the suite."""
    bench = _script("bench")
    # no MNIST anywhere: the benchmark must fall back to synthetic data
    for name in ("XPNET_MNIST_DIR", "XPNET_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data, source = bench.load_data(None, True)
    assert "synthetic" in source and data.x_train.shape == (6000, 784)
    ran = []

    def in_process(runner, cfg, iters, args):
        ran.append((runner, cfg.name, iters))
        return bench.worker(runner, cfg, iters, args.seed, data)

    monkeypatch.setattr(bench, "run_isolated", in_process)
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--json", str(out)]) == 0
    assert "| config | runner | device |" in capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    runners = {(r["config"], r["runner"], r["device"]) for r in rows}
    assert len(runners) == len(rows) == len(ran)
    assert ("slides", "slides' NumPy code", "cpu") in runners
    assert ("slides", "xpnet numpy", "cpu") in runners
    assert ("large", "xpnet numpy", "cpu") in runners
    assert ("simple-cnn", "book's NumPy code", "cpu") in runners
    assert ("simple-cnn", "xpnet reader's loop", "cpu") in runners
    assert {(c, i) for _, c, i in ran} == {(c, bench.QUICK_ITERS[c]) for c in bench.DEFAULT_CONFIGS}
    for r in rows:
        assert r["seconds"] > 0 and r["us_per_iter"] > 0 and 0.0 <= r["test_acc"] <= 1.0
    # every runner of a configuration trains from the same weights on the same minibatches
    for config in bench.DEFAULT_CONFIGS:
        same = [r["test_acc"] for r in rows if r["config"] == config]
        assert max(same) - min(same) < 0.002, (config, same)


def _bench(*args, cwd=None):
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), *args],
        capture_output=True, text=True, timeout=120, check=False, cwd=cwd,
    )  # fmt: skip


@pytest.mark.parametrize(
    "args, message",
    [
        (["--repeat", "0"], "argument --repeat: must be a positive integer, got '0'"),
        (["--iters", "-5"], "argument --iters: must be a positive integer, got '-5'"),
        (["--iters", "0"], "argument --iters: must be a positive integer, got '0'"),
        (["--seed", "-1"], "argument --seed: must be an integer >= 0, got '-1'"),
        (["--json", "/nonexistent-folder/b.json"], "the folder /nonexistent-folder does not exist"),
        (["--json", "/proc/b.json"], "--json /proc/b.json: cannot write in /proc"),
        (["--json", "/"], "--json / is a folder"),
        (["--data-dir", "/nonexistent-folder"], "--data-dir /nonexistent-folder does not exist"),
    ],
)
def test_bench_bad_input_is_one_line_before_any_timing(args, message, tmp_path):
    result = _bench("--quick", "--runners", "xpnet-numpy", *args, cwd=tmp_path)
    assert result.returncode in (1, 2), result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and "| config |" not in result.stdout
    assert not list(tmp_path.iterdir())


def test_bench_runner_without_its_library_or_gpu_is_refused(monkeypatch):
    bench = _script("bench")
    from xpnet.errors import ConfigError

    monkeypatch.setattr(bench, "_importable", lambda name: name != "torch")
    with pytest.raises(
        ConfigError,
        match=r"--runners torch-cpu: needs PyTorch, which is not installed \(pip install torch\)",
    ):
        bench.check_runners(["xpnet-numpy", "torch-cpu"])
    monkeypatch.setattr(bench, "_importable", lambda name: True)
    monkeypatch.setattr(bench, "gpu_available", lambda name: False)
    with pytest.raises(ConfigError, match="--runners xpnet-cupy: needs a CUDA GPU with CuPy"):
        bench.check_runners(["xpnet-cupy"])


def test_bench_failing_runner_is_one_line(monkeypatch, capsys):
    bench = _script("bench")

    def crash(*args, **kwargs):
        return subprocess.CompletedProcess(args, 1, "", "Traceback ...\nValueError: boom\n")

    monkeypatch.setattr(bench.subprocess, "run", crash)
    assert bench.main(["--quick", "--configs", "large", "--runners", "xpnet-numpy"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "error: runner xpnet-numpy failed: ValueError: boom"


@pytest.mark.parametrize("config", ["slides", "simple-cnn"])
def test_profile_step_times_every_part_of_a_step(config, backend):
    profile_step = _script("profile_step")
    rows = profile_step.profile(config, backend, None, repeat=2, warmup=1)
    parts = [r["part"] for r in rows]
    assert parts[0] == "whole step: forward + backward + update"
    layers = ["Affine1", "ReLU1", "Affine2"] if config == "slides" else ["Convolution1", "Pooling1"]
    for name in layers:
        assert f"{name}.forward" in parts and f"{name}.backward" in parts
    for r in rows:
        assert r["host_us"] > 0 and r["device_us"] > 0 and r["calls"] >= 1, r
        if r["part"].endswith((".forward", ".backward")):
            assert r["in_step_us"] > 0, r
    kernels = [r for r in rows if r["part"].startswith("kernel ")]
    has_kernels = backend.name in ("numpy", "torch", "cupy")
    assert bool(kernels) == has_kernels, parts
    if has_kernels and config == "slides":
        # one step of the 784-50-10 net: bias+ReLU, softmax-cross-entropy, ReLU's derivative
        assert {r["part"].split(" (")[0] for r in kernels} >= {
            "kernel bias_act", "kernel softmax_xent", "kernel act_grad"
        }  # fmt: skip
    text = profile_step.table(config, rows)
    assert text.count("\n| ") == len(rows) + 1 + bool(kernels)


def test_profile_step_command_writes_json(tmp_path, capsys):
    out = tmp_path / "p.json"
    args = ["--configs", "slides", "--repeat", "2", "--warmup", "1", "--json", str(out)]
    assert _script("profile_step").main(args) == 0
    assert "| whole step: forward + backward + update | 1 |" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert saved["meta"]["repeat"] == 2 and saved["configs"]["slides"][0]["host_us"] > 0
    assert _script("profile_step").main(["--configs", "nope"]) == 2
    # an unwritable --json is refused before any timing
    assert _script("profile_step").main(["--json", str(tmp_path / "no" / "p.json")]) == 2
    assert "the folder" in capsys.readouterr().err and not (tmp_path / "no").exists()


def test_bench_command_warms_up_uncounted_with_the_bytecode_cache_on(monkeypatch, capsys):
    bench_command = _script("bench_command")
    calls = []
    # start and end of each run: the warm-up slow (cold caches), then 2, 3 and 4 s
    clock = iter([0.0, 100.0, 0.0, 2.0, 0.0, 3.0, 0.0, 4.0])
    monkeypatch.setattr(bench_command.time, "perf_counter", lambda: next(clock))

    def fake_run(argv, **kwargs):
        calls.append(kwargs["env"])
        return subprocess.CompletedProcess(argv, 0, "final | test acc: 0.9700\n", "")

    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setattr(bench_command.subprocess, "run", fake_run)
    argv = ["bench_command.py", "--data-dir", "/d", "--repeat", "3", "--only", "slides' code"]
    monkeypatch.setattr(sys, "argv", argv)
    assert bench_command.main() == 0
    out = capsys.readouterr().out
    assert len(calls) == 4 and all("PYTHONDONTWRITEBYTECODE" not in env for env in calls)
    assert "warm-up: slides' code    100.00 s (not counted)" in out
    assert "| slides' code | 3.00 | 2.00, 3.00, 4.00 | 0.9700 |" in out


def test_bench_command_rotates_the_order_of_the_commands(monkeypatch, capsys):
    bench_command = _script("bench_command")
    ran = []

    def fake_run(argv, **kwargs):
        ran.append(Path(argv[1]).name)
        return subprocess.CompletedProcess(argv, 0, "test acc: 0.9700\n", "")

    monkeypatch.setattr(bench_command.subprocess, "run", fake_run)
    monkeypatch.setattr(bench_command, "commands", lambda *a: {
        "a": ["python", "a.py"], "b": ["python", "b.py"], "c": ["python", "c.py"]})  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["bench_command.py", "--data-dir", "/d", "--repeat", "3"])
    assert bench_command.main() == 0
    rounds = [ran[i : i + 3] for i in range(0, len(ran), 3)]  # a warm-up round, then three
    assert rounds == [["c.py", "a.py", "b.py"], ["a.py", "b.py", "c.py"],
                      ["b.py", "c.py", "a.py"], ["c.py", "a.py", "b.py"]]  # fmt: skip
    assert "| a | " in capsys.readouterr().out


def test_bench_command_gives_each_command_against_every_reference(monkeypatch, capsys):
    bench_command = _script("bench_command")
    names = ["xpnet train.py", "torch lean", "slides' code", "numpy lean"]
    seconds = iter([8.0, 16.0, 32.0, 10.0])  # one round, in this order (no warm-up)
    clock = iter(t for s in seconds for t in (0.0, s))
    monkeypatch.setattr(bench_command.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(bench_command, "commands", lambda *a: {n: ["python", n] for n in names})
    monkeypatch.setattr(bench_command.subprocess, "run", lambda argv, **kwargs: (
        subprocess.CompletedProcess(argv, 0, "test acc: 0.9700\n", "")))  # fmt: skip
    argv = ["bench_command.py", "--data-dir", "/d", "--repeat", "1", "--warmup", "0"]
    monkeypatch.setattr(sys, "argv", argv)
    assert bench_command.main() == 0
    out = capsys.readouterr().out
    assert "| vs torch lean | vs slides' code | vs numpy lean |" in out
    assert "| xpnet train.py | 8.00 | 8.00 | 0.9700 | 0.50× | 0.25× | 0.80× |" in out
    assert "| numpy lean | 10.00 | 10.00 | 0.9700 | 0.62× | 0.31× | 1.00× |" in out


def test_bench_command_runs_the_lean_numpy_script_with_nothing_of_xpnet():
    """numpy_mnist.py is a reference: it must not import xpnet (then it would time xpnet's
    imports and could share its code)."""
    source = (ROOT / "scripts" / "numpy_mnist.py").read_text()
    assert "xpnet" not in "".join(
        line for line in source.splitlines() if line.startswith(("import", "from"))
    )
    assert "numpy_mnist.py" in " ".join(
        " ".join(argv)
        for argv in _script("bench_command").commands("/d", Path("/o"), 5, None).values()
    )


@pytest.mark.parametrize("script", ["numpy_mnist", "torch_mnist", "slides_mnist"])
def test_a_reference_command_with_a_wrong_data_dir_says_so_in_one_line(script, tmp_path):
    out = tmp_path / "out"
    args = [
        "--data-dir",
        str(tmp_path / "nothing"),
        *(["--out", str(out)] if script != "slides_mnist" else []),
    ]
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / f"{script}.py"), *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    if script == "torch_mnist" and "No module named 'torch'" in done.stderr:
        pytest.skip("torch is not installed")
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"error: {tmp_path / 'nothing'} holds no train-images-idx3-ubyte")
    assert not out.exists()


def test_ctrl_c_on_the_lean_numpy_command_is_one_line_and_keeps_whole_files(tmp_path):
    from conftest import mnist_dir

    if mnist_dir() is None:
        pytest.skip("XPNET_DATA_DIR does not hold MNIST")
    import signal

    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "numpy_mnist.py"), "--data-dir", str(mnist_dir()),
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
    )  # fmt: skip
    for line in proc.stdout:
        if line.startswith("iter   600"):
            break
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and stderr == (
        "interrupted: the files written so far are complete\n"
    ), stderr
    # every line whole: the first, and the second if its write came before the signal
    iterations = [
        json.loads(s)["iteration"] for s in (out / "metrics.jsonl").read_text().splitlines()
    ]
    assert iterations in ([0], [0, 600])
