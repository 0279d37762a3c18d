"""Where a command's time went: stage marks, written out on request.

`mark(stage)` notes that `stage` ended now (wall clock, seconds since the epoch):
the command, the flow and the run's outputs mark their stages as they finish, so
the gap between two marks is the later stage's duration. When CLAIMS_TIMELINE_FILE
names a file, `write()` puts the marks there as JSON (`make bench` reads it to show
where `adjudicate run` spends its time: imports, Prefect's start, each batch, the
gate, the report, the metrics, the shutdown); otherwise marks cost a list append.

The marks are per process: a flow run by a worker marks in the worker's process.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

TIMELINE_ENV = "CLAIMS_TIMELINE_FILE"

_marks: list[tuple[str, float]] = []


def mark(stage: str) -> None:
    """`stage` ended now."""
    _marks.append((stage, time.time()))


def marks() -> list[tuple[str, float]]:
    """The marks so far, oldest first."""
    return list(_marks)


def write(path: Path | None = None) -> Path | None:
    """Write the marks as JSON to `path` (default: $CLAIMS_TIMELINE_FILE); None if neither."""
    target = path or (Path(os.environ[TIMELINE_ENV]) if os.environ.get(TIMELINE_ENV) else None)
    if target is None:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    aside = target.with_name(f".{target.name}.tmp")
    aside.write_text(
        json.dumps({"marks": [{"stage": s, "at": t} for s, t in _marks]}), encoding="utf-8"
    )
    os.replace(aside, target)
    return target


class Laps:
    """Durations of successive stages (for the run's metrics), each also marked."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str, *, total: str | None = None) -> float:
        """`stage` ended now: its duration is added under `total` (default: `stage`)."""
        now = time.perf_counter()
        took = now - self._last
        self._last = now
        key = total or stage
        self.seconds[key] = self.seconds.get(key, 0.0) + took
        mark(stage)
        return took
