"""Running a search: the trials not yet in the output folder, then the report."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

from ...errors import ConfigError, DataError
from ...fileio import atomic_write_text
from ...parallel.dask import Runner, TaskFailed
from ...training.trainer import Interrupted
from .config import SearchConfig, trial_settings
from .log import TrialLog
from .report import SearchResult, write_report
from .trial import run_trial


def _check_resume(out: Path, config: SearchConfig) -> None:
    path = out / "search.json"
    wanted = config.defining()
    if path.exists():
        try:
            stored = json.loads(path.read_text())["settings"]
        except (ValueError, KeyError, TypeError):
            raise DataError(f"{path} is not a search description; choose another --out") from None
        if stored != wanted:
            diff = ", ".join(
                f"{k} {stored.get(k)!r} there, {wanted.get(k)!r} now"
                for k in sorted(set(stored) | set(wanted))
                if stored.get(k) != wanted.get(k)
            )
            raise ConfigError(
                f"{out} holds a search with other settings ({diff}); rerun with its settings to "
                f"continue it, or choose another --out"
            )
    else:
        atomic_write_text(path, json.dumps({"settings": wanted}, indent=1) + "\n")


def search(
    config: SearchConfig,
    out,
    *,
    runner: Runner | None = None,
    on_trial: Callable[[dict], None] | None = None,
    command: str | None = None,
) -> SearchResult:
    """Run the trials of `config` not yet in `out`/trials.jsonl, then write the table and plot.

    Ctrl-C (KeyboardInterrupt, or SIGINT caught by a trial in this process) stops the search; the
    finished trials stay in trials.jsonl, the report is written from them and the result says
    `interrupted`. A dataset the workers cannot load raises DataError.
    """
    config.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_resume(out, config)
    log = TrialLog(out / "trials.jsonl")
    done = log.read()
    todo = [k for k in range(config.trials) if k not in done]
    runner = runner or Runner()
    t0 = time.perf_counter()
    ran, interrupted = 0, None
    try:
        tasks = [(f"trial-{k}", (config, k)) for k in todo]
        for key, result in runner.run(run_trial, tasks):
            if isinstance(result, TaskFailed):
                k = int(key.rsplit("-", 1)[1])
                result = {"trial": k, "status": "failed", **trial_settings(config, k), "network": None,
                          "error": str(result), "curve": None, "val_acc": None,
                          "train_acc": None, "seconds": None, "worker": None, "host": None,
                          "pid": None, "blas_threads": None, "data": None}  # fmt: skip
            log.append(result)
            done[result["trial"]] = result
            ran += 1
            if on_trial:
                on_trial(result)
    except KeyboardInterrupt:
        interrupted = signal.SIGINT
    except Interrupted as exc:  # SIGINT or SIGTERM, caught by a trial in this process
        interrupted = exc.signum
    seconds = time.perf_counter() - t0
    trials = {k: v for k, v in sorted(done.items()) if k < config.trials}
    result = SearchResult(config, trials, ran, seconds, runner.where, interrupted)
    result.paths = write_report(result, out, command)
    return result
