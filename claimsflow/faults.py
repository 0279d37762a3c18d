"""Named crash points for the crash-safety tests.

`crash_point("after-validation")` kills the process with SIGKILL when the
environment variable CLAIMS_CRASH_AT names that point (and, if
CLAIMS_CRASH_AFTER=N is set, only on its N-th visit). Unset, it costs one dict
lookup. It lets tests prove that a run killed at any step leaves the lake as
if the step never started.

With CLAIMS_CRASH_ONCE=<path> the point kills only the first process that
reaches it (the one that creates <path>): across processes, as when a Dask
worker dies once and its part is retried on another worker.
"""

from __future__ import annotations

import os
import signal

_visits: dict[str, int] = {}


def crash_point(name: str) -> None:
    if os.environ.get("CLAIMS_CRASH_AT") != name:
        return
    _visits[name] = _visits.get(name, 0) + 1
    if _visits[name] < int(os.environ.get("CLAIMS_CRASH_AFTER", "1")):
        return
    once = os.environ.get("CLAIMS_CRASH_ONCE")
    if once is not None:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return  # another process crashed here already
    os.kill(os.getpid(), signal.SIGKILL)
