"""trials.jsonl: the search's record of finished trials, one JSON line each.

Only the search that holds the folder's claim writes it, and only by appending whole lines. Any
other reader (a count, a test, a second search refused at the door) only reads. A line that is no
trial record of this search (a torn write, an edit, a line from another search) is reported by its
number and skipped, so its trial runs again; nothing in the file is ever rewritten or removed,
except the unfinished tail a crash left behind, which the claim holder cuts off before appending.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ...errors import DataError
from ...training.runs import reason
from .config import SearchConfig, trial_settings

#: the per-epoch series of an "ok" record's curve
CURVE_KEYS = ("epoch", "loss", "train_acc", "val_acc")


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def record_problem(record, config: SearchConfig | None = None) -> str | None:
    """Why `record` is no trial record (of the search `config`, when given); None when it is one."""
    if not isinstance(record, dict):
        return "not a JSON object"
    k = record.get("trial")
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        return f'"trial" must be a trial number (an integer >= 0), not {k!r}'
    status = record.get("status")
    if status not in ("ok", "failed"):
        return f'trial {k}: "status" must be "ok" or "failed", not {status!r}'
    for key in ("lr", "weight_decay"):
        if not (_number(record.get(key)) and record[key] > 0):
            return f'trial {k}: "{key}" must be a positive number, not {record.get(key)!r}'
    if config is not None:
        drawn = trial_settings(config, k)
        if any(record.get(key) != drawn[key] for key in ("lr", "weight_decay", "seed")):
            return (
                f"trial {k}: its learning rate, weight decay or seed is not the one seed "
                f"{config.seed} draws for it (a line from another search?)"
            )
    if status == "failed":
        return None if isinstance(record.get("error"), str) else f'trial {k}: no "error" message'
    for key in ("val_acc", "train_acc"):
        if not (_number(record.get(key)) and 0 <= record[key] <= 1):
            return f'trial {k}: "{key}" must be an accuracy in [0, 1], not {record.get(key)!r}'
    if not (_number(record.get("seconds")) and record["seconds"] >= 0):
        return f'trial {k}: "seconds" must be a number >= 0, not {record.get("seconds")!r}'
    curve = record.get("curve")
    if not (
        isinstance(curve, dict)
        and all(isinstance(curve.get(key), list) for key in CURVE_KEYS)
        and len({len(curve[key]) for key in CURVE_KEYS}) == 1
        and all(_number(x) for key in CURVE_KEYS for x in curve[key])
    ):
        return f'trial {k}: "curve" must hold equally long lists of numbers {", ".join(CURVE_KEYS)}'
    return None


def _numbers(items: list[int], shown: int = 8) -> str:
    text = ", ".join(map(str, items[:shown]))
    return text + (f" and {len(items) - shown} more" if len(items) > shown else "")


def is_lost(record: dict) -> bool:
    """A failure that no worker ran: its task was lost (as earlier versions recorded it)."""
    return record["status"] == "failed" and record.get("worker") is None


class TrialLog:
    """trials.jsonl: one JSON line per finished trial, each flushed and fsynced as it is written."""

    def __init__(self, path):
        self.path = Path(path)

    def read(self, config: SearchConfig | None = None) -> dict[int, dict]:
        """The finished trials by number (bad lines skipped, see `scan`); never writes."""
        return self.scan(config)[0]

    def scan(self, config: SearchConfig | None = None) -> tuple[dict[int, dict], list[str]]:
        """The finished trials by number, and a line for each line of the file that was skipped.

        Skipped: lines that are no trial record (of the search `config`, when given), later lines
        for a trial already read, and failures no worker ran (trials lost by an older xpnet); each
        of these trials runs again. Blank lines are ignored. The file is never written.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}, []
        except OSError as exc:
            raise DataError(f"cannot read {self.path}: {reason(exc)}") from None
        records: dict[int, dict] = {}
        skipped, again, lost = [], [], set()
        lines = raw.split(b"\n")
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"))
                problem = record_problem(record, config)
            except (UnicodeDecodeError, ValueError):
                problem = "not JSON"
            if problem is not None:
                if n == len(lines):  # no newline after it: cut short while it was written
                    problem = "unfinished (the search stopped while writing it)"
                skipped.append(f"{self.path} line {n}: {problem}; skipped (its trial runs again)")
            elif is_lost(record):
                lost.add(record["trial"])
            elif record["trial"] in records:
                again.append(n)
            else:
                records[record["trial"]] = record
        if again:
            skipped.append(
                f"{self.path} lines {_numbers(again)} repeat trials already recorded (two searches "
                f"wrote into it?); the first record of each trial is used"
            )
        if lost - set(records):
            skipped.append(
                f"{self.path} records trials {_numbers(sorted(lost - set(records)))} as failed "
                f"though no worker ran them (they were lost); they run again"
            )
        return records, skipped

    def repair(self) -> str | None:
        """End the file with a newline, so appended lines stand alone: a whole last record gets
        its newline, an unfinished one (a crash mid-write) is cut off. Only for the claim holder.

        Returns what was done, for a message, or None when the file needed nothing.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        if not raw or raw.endswith(b"\n"):
            return None
        start = raw.rfind(b"\n") + 1
        line_number = raw.count(b"\n") + 1
        try:
            problem = record_problem(json.loads(raw[start:].decode("utf-8")))
        except (UnicodeDecodeError, ValueError):
            problem = "not JSON"
        with open(self.path, "r+b") as f:
            if problem is None:
                f.seek(0, os.SEEK_END)
                f.write(b"\n")
            else:
                f.truncate(start)
            f.flush()
            os.fsync(f.fileno())
        if problem is None:
            return None
        return (
            f"{self.path} line {line_number}: an unfinished record (the search stopped while "
            f"writing it) was cut off; its trial runs again"
        )

    def append(self, record: dict) -> None:
        line = json.dumps(record, allow_nan=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
