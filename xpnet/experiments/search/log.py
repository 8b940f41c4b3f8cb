"""trials.jsonl: the search's record of finished trials, one JSON line each."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ...errors import DataError


class TrialLog:
    """trials.jsonl: one JSON line per finished trial, each flushed and fsynced as it is written."""

    def __init__(self, path):
        self.path = Path(path)

    def read(self) -> dict[int, dict]:
        """The finished trials by number; a torn last line (a crash mid-write) is cut off."""
        if not self.path.exists():
            return {}
        raw = self.path.read_bytes()
        good = raw[: raw.rfind(b"\n") + 1]
        if len(good) != len(raw):
            with open(self.path, "r+b") as f:
                f.truncate(len(good))
        records = {}
        for n, line in enumerate(good.decode("utf-8").splitlines(), 1):
            try:
                record = json.loads(line)
                records[int(record["trial"])] = record
            except (ValueError, KeyError, TypeError):
                raise DataError(
                    f"{self.path} line {n} is not a trial record; move the file away to start over"
                ) from None
        return records

    def append(self, record: dict) -> None:
        line = json.dumps(record, allow_nan=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
