"""Process-wide settings: project paths and the local Prefect environment."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RULES_DIR = PROJECT_ROOT / "rules"
DEFAULT_DATA = Path("data")
DEFAULT_INBOX = DEFAULT_DATA / "inbox"
DEFAULT_REFERENCE = DEFAULT_DATA / "reference"
DEFAULT_LAKE = DEFAULT_DATA / "lake"
DEFAULT_REPORTS = Path("reports")


def configure_prefect_environment() -> None:
    """Local, offline Prefect unless the caller configured one.

    Must run before `prefect` is imported. With no PREFECT_API_URL the flow runs
    on an ephemeral local server whose state lives in the project's .prefect/.
    """
    defaults = {
        "PREFECT_HOME": str(PROJECT_ROOT / ".prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_ENABLED": "true",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "PREFECT_SERVER_UI_ENABLED": "false" if "PREFECT_API_URL" not in os.environ else "true",
        "DO_NOT_TRACK": "1",
    }
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
