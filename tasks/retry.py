"""Which failures a task retries: transient source errors only.

A SQL connection that drops or a lake whose writer lock is held by another run
(`LakeBusy`) may succeed a minute later, so those are retried with back-off.
Validation and configuration errors (bad reference data, an unknown rule set, a
table without ingest_seq) would fail the same way again: never retried.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from prefect.client.schemas.objects import State, TaskRun
from prefect.tasks import exponential_backoff

from claimsflow.lake.lock import LakeBusy

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    LakeBusy,
    sa.exc.OperationalError,  # the DBAPI's connection errors, wrapped by SQLAlchemy
    sa.exc.InterfaceError,
    sa.exc.TimeoutError,  # connection pool exhausted
    ConnectionError,
    TimeoutError,
)

#: Delays before retries 1, 2, 3: 10 s, 20 s, 40 s.
SOURCE_BACKOFF = exponential_backoff(backoff_factor=10)(3)
#: The lock is held for a whole run: wait longer between attempts (1, 2, 4 minutes).
LOCK_BACKOFF = exponential_backoff(backoff_factor=60)(3)


def is_transient(error: BaseException | None) -> bool:
    return isinstance(error, TRANSIENT_ERRORS)


def retry_on_transient(task: Any, task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect `retry_condition_fn`: retry only when the failure is transient."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, BaseException) and is_transient(error)
