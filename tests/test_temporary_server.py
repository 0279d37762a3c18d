"""`adjudicate run` without PREFECT_API_URL: its own temporary Prefect server.

One real command over an empty inbox (a fresh Prefect home: the server creates and
migrates its database): the flow run is recorded COMPLETED in that database (what
`make serve`'s UI reads), the command's stage marks are written where
CLAIMS_TIMELINE_FILE says, and the server does not outlive the command. A second,
in-process case checks that a configuration mistake found after the launch stops
the server and leaves the environment as it was.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from adjudicate import prefect_env
from adjudicate.prefect_env import TemporaryServer
from tests.batch_helpers import write_reference

pytestmark = [pytest.mark.prefect, pytest.mark.e2e, pytest.mark.slow]

ADJUDICATE = str(Path(sys.executable).with_name("adjudicate"))


def test_a_run_on_its_own_temporary_server_is_a_recorded_flow_run(tmp_path: Path) -> None:
    write_reference(tmp_path / "ref")
    (tmp_path / "inbox").mkdir()
    home = tmp_path / "prefect-home"
    timeline = tmp_path / "timeline.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {
        "PREFECT_HOME": str(home),
        "CLAIMS_TIMELINE_FILE": str(timeline),
        # One file per run here (the default is under the reports folder anyway).
        "CLAIMS_METRICS_FILE": str(tmp_path / "claims.prom"),
        "COVERAGE_PROCESS_START": "",
    }
    done = subprocess.run(
        [ADJUDICATE, "run", "--inbox", "inbox", "--reference", "ref", "--lake", "lake"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with sqlite3.connect(home / "prefect.db") as db:
        runs = db.execute(
            "SELECT f.name, r.state_type FROM flow_run r JOIN flow f ON f.id = r.flow_id"
        ).fetchall()
    assert runs == [("nightly-adjudication", "COMPLETED")]
    stages = [m["stage"] for m in json.loads(timeline.read_text("utf-8"))["marks"]]
    assert stages[:4] == ["command", "checks", "imports", "prefect-server"]
    assert stages[-3:] == ["flow-returned", "summary", "shutdown"]
    assert "gate" in stages and "report" in stages and "metrics" in stages
    # Nothing was processed: no gate verdict in the metrics.
    assert "claims_nightly_quality_gate_ok" not in (tmp_path / "claims.prom").read_text("utf-8")


def test_a_launched_server_that_is_not_used_is_stopped_without_a_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    before = dict(os.environ)
    server = prefect_env.prefect_api()
    assert isinstance(server, TemporaryServer) and server.process is not None
    process = server.process
    server.stop(at_once=True)  # as `run` does when the reference data is wrong
    assert process.poll() is not None
    assert dict(os.environ) == before  # not activated: PREFECT_API_URL never set
    with socket.socket() as probe:  # its port is free again
        probe.bind(("127.0.0.1", server.port))
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4999/api")
    assert prefect_env.prefect_api() is None  # a configured API: nothing is started
