"""Running a search: the trials not yet in the output folder, then the report."""

from __future__ import annotations

import json
import signal
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from ...errors import ConfigError, DataError
from ...fileio import atomic_write_text
from ...parallel.dask import Runner, TaskFailed
from ...training.runs import claim, prepare_output_folder, release
from ...training.trainer import Interrupted
from .config import SearchConfig
from .log import TrialLog
from .report import SearchResult, write_report
from .trial import run_trial


def _check_resume(out: Path, config: SearchConfig) -> None:
    """search.json: the settings of the search in `out`, which a resumed search must keep.

    Written for a new search; a folder whose search has no trial yet takes the new settings.
    """
    path = out / "search.json"
    wanted = config.defining()
    log = out / "trials.jsonl"
    started = log.exists() and log.stat().st_size > 0
    if path.exists() and started:
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


class SearchFolder:
    """The output folder, held by one search: created, claimed so no second process writes into
    it (xpnet.training.runs, the rule train.py follows), its settings checked against the config
    (or written, for a new search), its trial log repaired and read. Release it with `close()`.
    """

    def __init__(self, out, config: SearchConfig):
        self.config = config.validate()
        self.out = prepare_output_folder(Path(out), reuse=True)
        self.log = TrialLog(self.out / "trials.jsonl")
        self._claims: list[Path] = []
        claim(self.out, self._claims)
        try:
            _check_resume(self.out, config)
            repaired = self.log.repair()
            #: the finished trials, by number
            self.done, self.skipped = self.log.scan(config)
            if repaired:
                self.skipped.append(repaired)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        release(self._claims)

    def __enter__(self) -> SearchFolder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: the most skipped lines of trials.jsonl named one by one
SKIPPED_SHOWN = 5


def search(
    config: SearchConfig,
    out,
    *,
    runner: Runner | None = None,
    on_trial: Callable[[dict], None] | None = None,
    command: str | None = None,
) -> SearchResult:
    """Run the trials of `config` not yet in `out`/trials.jsonl, then write the table and plot.

    `out` is a folder (claimed for the time of the search: another process writing into it is
    an XpnetError) or a SearchFolder the caller holds. Lines of trials.jsonl that are no trial
    record of this search are skipped with a warning naming the line, and their trials rerun.

    A trial that raises is recorded as failed. A trial lost with its worker (Dask's KilledWorker:
    out of memory, walltime, preemption) is no result: it is not recorded, a warning says so, the
    result lists it in `lost`, and the next call with the same `out` runs it again.

    Ctrl-C (KeyboardInterrupt, or SIGINT caught by a trial in this process) stops the search; the
    finished trials stay in trials.jsonl, the report is written from them and the result says
    `interrupted`. A dataset the workers cannot load raises DataError.
    """
    if isinstance(out, SearchFolder):
        if out.config != config:
            raise ConfigError(f"{out.out} was opened for another search than this one")
        return _search(out, runner, on_trial, command)
    with SearchFolder(out, config) as folder:
        return _search(folder, runner, on_trial, command)


def _search(folder: SearchFolder, runner, on_trial, command) -> SearchResult:
    config, done = folder.config, dict(folder.done)
    shown = folder.skipped[:SKIPPED_SHOWN]
    if len(folder.skipped) > len(shown):
        shown.append(f"{folder.log.path}: {len(folder.skipped) - len(shown)} more lines skipped")
    for message in shown:
        warnings.warn(message, stacklevel=3)
    runner = runner or Runner()
    tasks = ((f"trial-{k}", (config, k)) for k in range(config.trials) if k not in done)
    t0 = time.perf_counter()
    ran, lost, interrupted = 0, [], None
    try:
        for key, result in runner.run(run_trial, tasks):
            if isinstance(result, TaskFailed):  # the worker, not the trial, failed: no result
                k = int(key.rsplit("-", 1)[1])
                lost.append(k)
                warnings.warn(
                    f"trial {k} was lost ({result}); it is not recorded, and runs again when the "
                    f"search is rerun",
                    stacklevel=3,
                )
                continue
            folder.log.append(result)
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
    result = SearchResult(config, trials, ran, seconds, runner.where, interrupted, sorted(lost))
    result.paths = write_report(result, folder.out, command)
    return result
