"""monitoring/alerts.yml: valid Prometheus rules, their unit tests pass, and every
metric they read is one the run writes (claimsflow.ops.metrics)."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from claimsflow.ops.metrics import EventLogSize, RunMetrics, build_registry
from tests.paths import REPO_ROOT

pytestmark = [pytest.mark.promtool, pytest.mark.integration]

MONITORING = REPO_ROOT / "monitoring"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not found: apt-get install prometheus (Debian) to check the alert rules",
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=MONITORING, capture_output=True, text=True, timeout=60, check=False
    )


@needs_promtool
def test_promtool_check_rules() -> None:
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout


@needs_promtool
def test_promtool_test_rules() -> None:
    tested = promtool("test", "rules", "alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_alerts_read_only_metrics_the_run_writes(tmp_path: Path) -> None:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text(encoding="utf-8"))
    alerts = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    assert set(alerts) == {
        "ClaimsNightlyMissing",
        "ClaimsNightlyMetricsAbsent",
        "ClaimsNightlyFailed",
        "ClaimsRejectionRateHigh",
        "ClaimsDenialRateJump",
        "ClaimsDataQualityGateFailed",
    }
    used = {name for expr in alerts.values() for name in re.findall(r"claims_\w+", expr)}
    full = RunMetrics(
        success=True,
        finished_at=dt.datetime(2025, 1, 15, 3, tzinfo=dt.UTC),
        event_log=EventLogSize(1, 1, 1),
        duration_seconds=1.0,
        cases_by_status={"APPROVED": 1, "DENIED": 1},
        rows_in=2,
        rows_rejected=0,
        batches_by_status={"PROCESSED": 1},
        quality_failures={"claims_run_decisions": 0},
        quality_ok=True,
    )
    written = {metric.name for metric in build_registry(full, None).collect()}
    # Gauges are named without the exposition suffixes; compare on sample names too.
    samples = {s.name for m in build_registry(full, None).collect() for s in m.samples}
    assert used <= written | samples, used - (written | samples)
    # Every alert names its runbook section, and docs/operations.md has it.
    runbook = (REPO_ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    for rule in (r for g in rules["groups"] for r in g["rules"]):
        anchor = rule["annotations"]["runbook"].split("#")[1]
        assert anchor == rule["alert"].lower()
        assert f"## {rule['alert']}" in runbook
