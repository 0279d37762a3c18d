"""The local, offline Prefect environment of the entry points (CLI, `make serve`).

`adjudicate run` without PREFECT_API_URL needs a Prefect API for its flow run.
Prefect's own ephemeral mode starts one when the flow begins: the command's
process first imports Prefect's whole server package (FastAPI, the ORM models:
~8 s on an idle two-core machine, 20 s loaded) only to launch a second
interpreter that imports it again, and the flow waits for both. `TemporaryServer`
launches the same server (`uvicorn prefect.server.api.server:create_app`, the
command Prefect runs, with the same ephemeral flags: no UI, the ephemeral set of
services, the database migrated on start) as soon as the command has checked its
arguments, without importing Prefect here, and points PREFECT_API_URL at it; the
command imports the pipeline and the flow while the server starts on the other
core. The flow run is a real run in ./.prefect's database, as before: `make serve`
shows it. With PREFECT_API_URL set (`make serve`'s server, or any other) nothing is
started.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

#: Prefect's state (the temporary server's SQLite, logs) beside the data, in the
#: working directory, unless PREFECT_HOME says otherwise.
DEFAULT_PREFECT_HOME = Path(".prefect")

#: Seconds the temporary server has to answer its health check.
STARTUP_TIMEOUT_SECONDS = 90.0
#: Seconds it has to stop after SIGTERM (it flushes the events it holds) before SIGKILL.
STOP_TIMEOUT_SECONDS = 10.0
#: uvicorn's exit code when the port it was given is taken (then another port is tried).
PORT_IN_USE = 3


def configure_prefect_environment() -> None:
    """Local, offline Prefect unless the caller configured one.

    Must run before `prefect` is imported. With no PREFECT_API_URL the flow runs
    on a temporary local server whose state lives in ./.prefect/.
    """
    for name, value in prefect_defaults().items():
        os.environ.setdefault(name, value)


def prefect_defaults() -> dict[str, str]:
    """The settings `configure_prefect_environment` gives Prefect unless set already."""
    return {
        "PREFECT_HOME": str(DEFAULT_PREFECT_HOME.resolve()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_ENABLED": "true",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "PREFECT_SERVER_UI_ENABLED": "false" if "PREFECT_API_URL" not in os.environ else "true",
        "DO_NOT_TRACK": "1",
    }


class TemporaryServerError(Exception):
    """The temporary Prefect server did not start; the message is for the user."""


class TemporaryServer:
    """Prefect's API server for one command, in a process of its own.

    `launch()` returns at once; `wait_until_ready()` blocks until the API answers.
    The server is stopped when the interpreter exits, after Prefect's own exit
    handlers have sent their last logs and events (see `launch`).
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    def launch(self) -> None:
        """Start the server's process; returns at once. This process's environment is
        left alone until `activate` (a command that then finds a mistake in its
        configuration calls `stop` and goes no further)."""
        self._start()

    def activate(self) -> str:
        """Configure Prefect (`configure_prefect_environment`), point PREFECT_API_URL at
        the server and stop it at exit; returns the URL.

        Must run before `prefect` is imported: Prefect registers its own exit
        handlers (log and event flushes) when it is imported, and exit handlers run
        last-registered first, so the server registered here outlives them.
        """
        configure_prefect_environment()
        os.environ["PREFECT_API_URL"] = self.api_url
        atexit.register(self.stop)
        return self.api_url

    def _start(self) -> None:
        self.port = _free_port(self.host)
        site = _site_packages()
        env = {
            **prefect_defaults(),
            **os.environ,
            # What Prefect's own ephemeral server runs with (SubprocessASGIServer).
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
        }
        env.pop("PREFECT_API_URL", None)
        Path(env["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(  # noqa: S603 - this interpreter, Prefect's server
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                str(site),
                "--factory",
                "prefect.server.api.server:create_app",
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--log-level",
                "error",
                "--lifespan",
                "on",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
        )

    def wait_until_ready(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> None:
        """Block until the API's health check answers; a dead or silent server raises."""
        deadline = time.monotonic() + timeout
        retries = 3
        while time.monotonic() < deadline:
            process = self.process
            if process is None:
                raise TemporaryServerError("the temporary Prefect server was not started")
            code = process.poll()
            if code == PORT_IN_USE and retries:
                retries -= 1  # another process took the port between our probe and uvicorn
                self._start()
                os.environ["PREFECT_API_URL"] = self.api_url
                continue
            if code is not None:
                raise TemporaryServerError(
                    f"the temporary Prefect server exited with code {code} "
                    "(set PREFECT_API_URL to use a running server)"
                )
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as answer:  # noqa: S310 - our own loopback URL
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise TemporaryServerError(
            f"the temporary Prefect server did not answer within {timeout:.0f}s "
            "(set PREFECT_API_URL to use a running server)"
        )

    def stop(self, *, at_once: bool = False) -> None:
        """SIGTERM, then SIGKILL if it has not stopped in time (at once: SIGKILL, for a
        server no flow has used). Safe to call twice."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        if at_once:
            process.kill()
            process.wait()
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def prefect_api() -> TemporaryServer | None:
    """The API of this command: None when PREFECT_API_URL names one, else a temporary
    server, launched (then `activate` it, or `stop` it, and `wait_until_ready` before
    the flow)."""
    if os.environ.get("PREFECT_API_URL"):
        return None
    server = TemporaryServer()
    server.launch()
    return server


def _site_packages() -> Path:
    """The folder Prefect is installed in (uvicorn's --app-dir), without importing it."""
    spec = importlib.util.find_spec("prefect")
    if spec is None or spec.origin is None:  # pragma: no cover - Prefect is a dependency
        raise TemporaryServerError("Prefect is not installed")
    return Path(spec.origin).parent.parent


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
