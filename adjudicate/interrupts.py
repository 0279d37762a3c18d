"""Stopping `adjudicate run` with SIGTERM or SIGINT (a scheduler, Ctrl-C).

The signal becomes an exception in the main thread, where the flow runs: the run
unwinds like a failed one. A batch being written is dropped from `_staging/`
(nothing half-published), the writer lock is released with its file descriptor,
and Prefect marks the flow run Crashed. The command then stops the temporary Prefect
server it started, prints one line and exits 3. The batches recorded before the
signal stay; the next run skips them and goes on (docs/reliability.md).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(BaseException):
    """The run was asked to stop. A BaseException, as KeyboardInterrupt is: no
    `except Exception` on the way up takes it for an error of the data."""

    def __init__(self, signum: int) -> None:
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.signal_name}")


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGINT raise `Interrupted` while the block runs (main thread only).

    After the first signal, more of them are ignored: the run is already unwinding,
    and a second Ctrl-C must not cut its clean-up short.
    """

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        for number in SIGNALS:
            signal.signal(number, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = {number: signal.signal(number, interrupt) for number in SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def stop_temporary_server() -> None:
    """Stop the temporary Prefect server this process started, if it started one.

    Prefect stops it at exit too (atexit); stopping it here means it is gone before
    the command says it stopped, whatever else runs at exit.
    """
    module = sys.modules.get("prefect.server.api.server")
    if module is None:
        return  # no temporary server in this process
    # Prefect keeps its running temporary servers in this mapping (one per port).
    servers = list(module.SubprocessASGIServer._instances.values())
    if not servers:
        return
    # The run's last log lines (its crashed state) are still on their way to the
    # server: sent first, they are not lost (nor reported as undeliverable at exit).
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)
    for server in servers:
        server.stop()
