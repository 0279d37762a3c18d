"""Named crash points for the crash-safety tests.

`crash_point("after-validation")` kills the process with SIGKILL when the
environment variable CLAIMS_CRASH_AT names that point (and, if
CLAIMS_CRASH_AFTER=N is set, only on its N-th visit). Unset, it costs one dict
lookup. It lets tests prove that a run killed at any step leaves the lake as
if the step never started.

With CLAIMS_CRASH_ONCE=<path> the point kills only the first process that
reaches it (the one that creates <path>): across processes, as when a Dask
worker dies once and its part is retried on another worker.

CLAIMS_STALL_AT=<point> (and CLAIMS_STALL_AFTER=N) makes the run wait there
instead, so a test can act on a run at a known step (send it a signal, take a
file away): the point creates `<CLAIMS_STALL_DIR>/stalled`, then waits until
`<CLAIMS_STALL_DIR>/go` exists (at most ten minutes).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

_visits: dict[str, int] = {}
#: The longest a stalled run waits for its test.
STALL_SECONDS = 600.0


def crash_point(name: str) -> None:
    if os.environ.get("CLAIMS_STALL_AT") == name and _reached(name, "CLAIMS_STALL_AFTER"):
        _stall(Path(os.environ.get("CLAIMS_STALL_DIR", ".")))
    if os.environ.get("CLAIMS_CRASH_AT") != name:
        return
    if not _reached(name, "CLAIMS_CRASH_AFTER"):
        return
    once = os.environ.get("CLAIMS_CRASH_ONCE")
    if once is not None:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return  # another process crashed here already
    os.kill(os.getpid(), signal.SIGKILL)


def _reached(name: str, after: str) -> bool:
    """Count a visit of `name`; whether it is the one `after` names (the first)."""
    key = f"{after}:{name}"
    _visits[key] = _visits.get(key, 0) + 1
    return _visits[key] == int(os.environ.get(after, "1"))


def _stall(folder: Path) -> None:
    (folder / "stalled").touch()
    deadline = time.monotonic() + STALL_SECONDS
    while not (folder / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
