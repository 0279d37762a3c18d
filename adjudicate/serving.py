"""Serve the deployments for real: Prefect server, work pool, deployments, worker.

    python -m adjudicate.serving start [--host 127.0.0.1] [--port 4200]   (make serve)
    python -m adjudicate.serving stop                                      (make stop)

State lives in PREFECT_HOME (the project's .prefect/ under make): the server's
SQLite database, unless PREFECT_API_DATABASE_CONNECTION_URL names another (e.g.
PostgreSQL), the logs server.log and worker.log, and the pid files server.pid and
worker.pid that `stop` reads. The tests start their own stack with the same
functions on a free port and a temporary home.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from adjudicate.prefect_env import DEFAULT_PREFECT_HOME

WORK_POOL = "claims-process"
SERVER, WORKER, REPORTS = "server", "worker", "reports"


class ServeError(Exception):
    """A step of serving failed; the message says which and where its log is."""


@dataclass(frozen=True)
class Stack:
    """Where one served stack lives and how its processes are configured."""

    home: Path
    host: str = "127.0.0.1"
    port: int = 4200
    project_dir: Path = field(default_factory=Path.cwd)
    pool: str = WORK_POOL
    worker_poll_seconds: int = 5
    extra_env: Mapping[str, str] = field(default_factory=dict)
    #: reports/ (run reports, Data Docs) served over HTTP on this loopback port.
    reports_port: int = 4201

    @property
    def reports_url(self) -> str:
        return f"http://{self.host}:{self.reports_port}/"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def pid_file(self, name: str) -> Path:
        return self.home / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.home / f"{name}.log"

    def env(self) -> dict[str, str]:
        """The environment of every process of the stack (inherits the caller's)."""
        env = dict(os.environ)
        env.update(
            {
                "PREFECT_HOME": str(self.home),
                "PREFECT_API_URL": self.api_url,
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_SERVER_UI_ENABLED": "true",
                "DO_NOT_TRACK": "1",
                # The pull step of prefect.yaml runs the flows from here.
                "CLAIMS_PROJECT_DIR": str(self.project_dir),
                "PREFECT_WORKER_QUERY_SECONDS": str(self.worker_poll_seconds),
                "PYTHONUNBUFFERED": "1",
                # The flows' artifacts link here rather than to file:// (claimsflow/ops).
                "CLAIMS_REPORTS_URL": self.reports_url,
            }
        )
        env.update(self.extra_env)
        return env


def start_server(stack: Stack) -> subprocess.Popen[bytes]:
    """Start `prefect server start` in its own process group; returns once launched."""
    stack.home.mkdir(parents=True, exist_ok=True)
    # Refuse a busy port up front: the health check could otherwise be answered by
    # whatever already listens there.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((stack.host, stack.port))
        except OSError as exc:
            raise ServeError(f"{stack.host}:{stack.port} is already in use ({exc})") from None
    return _launch(
        stack,
        SERVER,
        ["server", "start", "--host", stack.host, "--port", str(stack.port), "--analytics-off"],
    )


def wait_until_healthy(
    stack: Stack, server: subprocess.Popen[bytes] | None = None, timeout: float = 180.0
) -> None:
    """Poll the API's health endpoint until it answers (or the server dies, or time runs out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            raise ServeError(
                f"the Prefect server exited with code {server.returncode}; "
                f"see {stack.log_file(SERVER)}"
            )
        try:
            with urllib.request.urlopen(f"{stack.api_url}/health", timeout=2) as answer:  # noqa: S310 - our own loopback URL
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise ServeError(f"the Prefect server did not answer within {timeout:.0f}s")


def create_work_pool(stack: Stack) -> None:
    _prefect(stack, ["work-pool", "create", stack.pool, "--type", "process", "--overwrite"])


def deploy(stack: Stack) -> None:
    """Deploy every deployment of the project's prefect.yaml."""
    _prefect(stack, ["--no-prompt", "deploy", "--all"])


def start_worker(stack: Stack) -> subprocess.Popen[bytes]:
    return _launch(
        stack,
        WORKER,
        [
            "worker",
            "start",
            "--pool",
            stack.pool,
            "--type",
            "process",
            "--name",
            f"{stack.pool}-worker",
            "--install-policy",
            "never",
        ],
    )


def start_reports(stack: Stack) -> subprocess.Popen[bytes]:
    """Serve the project's reports/ folder read-only over HTTP, on loopback only."""
    stack.home.mkdir(parents=True, exist_ok=True)
    reports = stack.project_dir / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    args = ["-m", "http.server", "--bind", stack.host, "--directory", str(reports)]
    return _launch(stack, REPORTS, [*args, str(stack.reports_port)], module=None)


def wait_until_serving_reports(
    stack: Stack, reports: subprocess.Popen[bytes], timeout: float = 30.0
) -> None:
    """Wait until the reports server answers (a link opened before would fail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if reports.poll() is not None:
            raise ServeError(
                f"the reports server exited with code {reports.returncode} "
                f"(is {stack.host}:{stack.reports_port} in use?); see {stack.log_file(REPORTS)}"
            )
        try:
            with urllib.request.urlopen(stack.reports_url, timeout=2) as answer:  # noqa: S310 - our own loopback URL
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise ServeError(f"the reports server did not answer within {timeout:.0f}s")


def stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """End a process this module started, and its children (its process group)."""
    if process.poll() is None:
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(timeout)
    # Children of the group (a flow run of the worker) may outlive its leader.
    _signal_group(process.pid, signal.SIGKILL)


def serve(stack: Stack) -> None:
    """What `make serve` does: server, work pool, deployments, worker; pids to files."""
    if _running(stack, SERVER):
        print(f"a Prefect server from {stack.home} is already running: {stack.url}")
        return
    database = os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL")
    print(f"starting the Prefect server on {stack.url} (database: ", end="")
    print("PREFECT_API_DATABASE_CONNECTION_URL)" if database else f"{stack.home}/prefect.db)")
    server = start_server(stack)
    stack.pid_file(SERVER).write_text(str(server.pid))
    try:
        wait_until_healthy(stack, server)
        print(f"creating work pool {stack.pool} (type process)")
        create_work_pool(stack)
        print("deploying prefect.yaml")
        deploy(stack)
        worker = start_worker(stack)
        stack.pid_file(WORKER).write_text(str(worker.pid))
        reports = start_reports(stack)
        stack.pid_file(REPORTS).write_text(str(reports.pid))
        wait_until_serving_reports(stack, reports)
    except Exception:
        stop_served(stack)
        raise
    print(f"worker started (log: {stack.log_file(WORKER)})")
    print(f"reports: {stack.reports_url} (run reports and Data Docs)")
    print(f"Prefect UI: {stack.url}   (API: {stack.api_url}; `make stop` to end)")


def stop_served(stack: Stack) -> None:
    """What `make stop` does: end the worker, then the server, from their pid files."""
    for name in (REPORTS, WORKER, SERVER):
        pid_file = stack.pid_file(name)
        pid = _read_pid(pid_file)
        if pid is not None and _is_ours(pid):
            print(f"stopping the {name} (pid {pid})")
            _signal_group(pid, signal.SIGTERM)
            _wait_gone(pid, 20.0)
            _signal_group(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)


def _launch(
    stack: Stack, name: str, args: list[str], module: str | None = "prefect"
) -> subprocess.Popen[bytes]:
    log = stack.log_file(name).open("ab")
    try:
        # A session of its own: the process leads a group that `stop` ends whole.
        return subprocess.Popen(  # noqa: S603 - our interpreter, fixed arguments
            [sys.executable, *(["-m", module] if module else []), *args],
            cwd=stack.project_dir,
            env=stack.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        log.close()


def _prefect(stack: Stack, args: list[str], timeout: float = 300.0) -> None:
    done = subprocess.run(  # noqa: S603 - our interpreter, fixed arguments
        [sys.executable, "-m", "prefect", *args],
        cwd=stack.project_dir,
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()
        raise ServeError(f"prefect {' '.join(args)} failed ({done.returncode}):\n{output}")


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _is_ours(pid: int) -> bool:
    """A live `python -m prefect server|worker` (or `-m http.server`, the reports)
    process: a pid file can outlive its
    process, and the pid be reused by an unrelated one, which must not be signalled."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if b"http.server" in args:
        return True
    return b"prefect" in args and (SERVER.encode() in args or WORKER.encode() in args)


def _running(stack: Stack, name: str) -> bool:
    pid = _read_pid(stack.pid_file(name))
    return pid is not None and _is_ours(pid)


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _is_ours(pid):
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adjudicate.serving", description=__doc__)
    parser.add_argument("command", choices=["start", "stop"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4200)
    options = parser.parse_args(argv)
    home = Path(os.environ.get("PREFECT_HOME", DEFAULT_PREFECT_HOME)).resolve()
    stack = Stack(home=home, host=options.host, port=options.port)
    try:
        if options.command == "start":
            serve(stack)
        else:
            stop_served(stack)
    except ServeError as exc:
        print(f"serving: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
