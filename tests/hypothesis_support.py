"""Hypothesis profiles, chosen by HYPOTHESIS_PROFILE (default `ci`, what `make test`
and CI run):

- `ci`: half the examples each test names (`examples(n)` = n / 2), from a fixed seed
  (`derandomize`), so that a red CI replays exactly on any machine and `make test`
  stays within its ten minutes (the property tests were a fifth of the suite's time);
- `dev`: a tenth of them, from a fresh seed each run, for a quick edit-test loop;
- `deep`: the examples named five times over, from a fresh seed, for a search before
  a release (`HYPOTHESIS_PROFILE=deep make unit`).

No profile sets a deadline: a test's example builds frames and files, whose time
varies with the machine's load, and speed lives in `make bench`, not in tests.
"""

from __future__ import annotations

import os
from typing import Final

from hypothesis import HealthCheck, settings

_SCALES: Final = {"ci": 0.5, "dev": 0.1, "deep": 5.0}
_COMMON: Final = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# max_examples: for the properties that name no number (Hypothesis' default is 100).
settings.register_profile("ci", _COMMON, max_examples=50, derandomize=True, print_blob=True)
settings.register_profile("dev", _COMMON, max_examples=10)
settings.register_profile("deep", _COMMON, max_examples=500)

PROFILE: Final = os.environ.get("HYPOTHESIS_PROFILE", "ci")
if PROFILE not in _SCALES:
    raise ValueError(f"HYPOTHESIS_PROFILE={PROFILE!r}: use one of {', '.join(_SCALES)}")
settings.load_profile(PROFILE)


def examples(wanted: int) -> int:
    """`wanted` examples scaled by the profile (at least 1)."""
    return max(1, round(wanted * _SCALES[PROFILE]))


def whole_runs(wanted: int) -> settings:
    """Settings of a property test whose examples write a sample and run it through
    the pipeline: `wanted` examples, scaled; each uses the test's temporary folders
    (function-scoped fixtures, a folder per example) and takes seconds."""
    return settings(
        max_examples=examples(wanted),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
