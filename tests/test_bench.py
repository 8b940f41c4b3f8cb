"""scripts/bench.py --quick runs every available runner and prints a sane table."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_quick_runs_every_runner(tmp_path):
    out = tmp_path / "bench.json"
    # no MNIST anywhere: the benchmark must fall back to synthetic data
    env = {k: v for k, v in os.environ.items() if k not in ("XPNET_MNIST_DIR", "XPNET_DATA_DIR")}
    env.update(HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / "cache"))
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=600, check=False, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "| config | runner | device |" in result.stdout
    rows = json.loads(out.read_text())["rows"]
    runners = {(r["config"], r["runner"], r["device"]) for r in rows}
    assert ("slides", "slides' NumPy code", "cpu") in runners
    assert ("slides", "xpnet numpy", "cpu") in runners
    assert ("large", "xpnet numpy", "cpu") in runners
    for r in rows:
        assert r["seconds"] > 0 and r["us_per_iter"] > 0 and 0.0 <= r["test_acc"] <= 1.0
    # xpnet and the torch reference train from the same weights on the same minibatches
    same = [
        r["test_acc"]
        for r in rows
        if r["config"] == "slides" and r["runner"] != "slides' NumPy code"
    ]
    assert max(same) - min(same) < 0.02
