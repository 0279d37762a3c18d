"""Process-wide settings: default paths and the resources shipped with the package.

Defaults are relative to the working directory (`data/`, `reports/`), so the same
command works from a checkout and from an installed wheel. The rule sets and the
Great Expectations project ship inside the package (`claimsflow/rulesets/`,
`claimsflow/ops/gx/`), found from this file, never from a checkout.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
#: The shipped rule sets (`--rules-dir` points elsewhere for a payer's own).
RULES_DIR = PACKAGE_DIR / "rulesets"
DEFAULT_DATA = Path("data")
DEFAULT_INBOX = DEFAULT_DATA / "inbox"
DEFAULT_REFERENCE = DEFAULT_DATA / "reference"
DEFAULT_LAKE = DEFAULT_DATA / "lake"
DEFAULT_REPORTS = Path("reports")

#: A batch file modified less than this many seconds ago may still be being copied
#: into the inbox: a run leaves it for the next one (`--quiet-seconds`,
#: the flow's `quiet_seconds`; docs/operations.md).
DEFAULT_QUIET_SECONDS = 30
