"""One writer per lake at a time.

Every batch needs the decisions of every batch before it (spec §6), so two runs
on the same lake must not interleave: a run holds an exclusive lock on
`lake/.writer.lock` from the moment it rebuilds its history until its catalog is
refreshed. A second run waits for it (or gives up after `timeout` seconds), then
sees the first run's batches as already recorded and skips them.
The lock is an OS file lock (flock): released by the kernel when a holder dies,
so a killed run never leaves the lake locked.

An object store has no file lock. A remote lake's lock file is local instead
(`storage.local_state`, one per lake URL): it serialises the runs of one machine
(the Prefect worker's), and the deployments' concurrency limit of 1 keeps a second
nightly run from starting elsewhere. Writers on two machines are not excluded by it;
the batch record's create-if-absent then still lets only one of them record a batch
(docs/object-storage.md).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from claimsflow.lake.backend import lake_at
from claimsflow.lake.storage import Location

LOCK_FILE = ".writer.lock"


class LakeBusy(Exception):
    """Another run held the lake's writer lock for longer than we would wait."""


@contextmanager
def writer_lock(
    lake: Location,
    timeout: float = 3600.0,
    on_wait: Callable[[str], None] | None = None,
    poll: float = 0.2,
) -> Iterator[None]:
    folder = lake_at(lake).state_dir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told and on_wait is not None:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                    on_wait(f"lake {lake} is being written by another run (pid {holder}); waiting")
                    told = True
                if time.monotonic() >= deadline:
                    raise LakeBusy(
                        f"{lake}: another run still holds the writer lock after {timeout:.0f}s"
                    ) from None
                time.sleep(poll)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
