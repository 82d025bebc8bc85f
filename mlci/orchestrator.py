"""Prefect's local state and a local Prefect API server, handled without importing Prefect.

Prefect reads its settings once, when it is first imported, so the command line applies
:func:`prefect_environment` before any command imports a flow. On the embedded default that keeps
Prefect's database under ``MLCI_HOME`` (``make clean`` really starts over), gives the temporary
server's first start (a database migration, 20-60 s on two busy cores) a timeout that fits slow
machines, and turns off the server's telemetry, whose heartbeat races the migration on a fresh
database and prints "database is locked" tracebacks.

Prefect's temporary server has no scheduler, so ``mlci serve`` needs a real API:
:class:`LocalPrefectServer` runs ``prefect server start`` (API, UI and the scheduler service) on
127.0.0.1 in a child process and stops it, with everything it started, on exit.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import MutableMapping
from pathlib import Path

__all__ = [
    "LocalPrefectServer",
    "PrefectServerError",
    "STARTUP_TIMEOUT_SECONDS",
    "apply_prefect_environment",
    "prefect_environment",
]

#: Seconds a new Prefect server may take to answer: a fresh SQLite database is migrated first,
#: measured at ~40 s on two busy cores (Prefect's own default is 20 s).
STARTUP_TIMEOUT_SECONDS = 180


class PrefectServerError(RuntimeError):
    """A local Prefect server could not be started."""


def prefect_environment(home: Path, environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Prefect variables mlci sets by default for an installation whose local state is in ``home``.

    Variables already present in ``environ`` (default: ``os.environ``) are left out, so a user's
    own Prefect configuration always wins. The user's Prefect profiles (``~/.prefect/profiles.toml``,
    where ``prefect config set`` writes, e.g. a ``PREFECT_API_URL``) keep applying when only the
    database moves under ``home``.
    """
    environ = os.environ if environ is None else environ
    defaults = {
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": str(STARTUP_TIMEOUT_SECONDS),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    if "PREFECT_HOME" not in environ:
        defaults["PREFECT_HOME"] = str(Path(home) / "prefect")
        defaults["PREFECT_PROFILES_PATH"] = str(Path.home() / ".prefect" / "profiles.toml")
    return {name: value for name, value in defaults.items() if name not in environ}


def apply_prefect_environment(home: Path, environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set :func:`prefect_environment` in ``environ`` (default: ``os.environ``); returns what was set.

    Creates the Prefect home it sets: Prefect creates it without its parents, and fails without it.
    """
    environ = os.environ if environ is None else environ
    missing = prefect_environment(home, environ)
    if "PREFECT_HOME" in missing:
        Path(missing["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    environ.update(missing)
    return missing


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the server will bind: a port left in TIME_WAIT by a server just stopped is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


class LocalPrefectServer:
    """``prefect server start`` on 127.0.0.1 in a child process, for as long as the context lasts.

    Parameters
    ----------
    home : Path
        Prefect home of the server (its SQLite database and ``server.log`` live there).
    port : int, default=4200
        Port on 127.0.0.1. ``0`` picks a free one.
    startup_timeout : float, default=STARTUP_TIMEOUT_SECONDS
        Seconds to wait for the API to answer before giving up.

    Attributes
    ----------
    api_url : str
        ``http://127.0.0.1:<port>/api`` once started.
    log_path : Path
        The server's console output.
    """

    host = "127.0.0.1"

    def __init__(self, home: Path, *, port: int = 4200, startup_timeout: float = STARTUP_TIMEOUT_SECONDS):
        self.home = Path(home)
        self.port = port
        self.startup_timeout = startup_timeout
        self.log_path = self.home / "server.log"
        self._process: subprocess.Popen | None = None

    def __repr__(self) -> str:
        return f"LocalPrefectServer(home={str(self.home)!r}, port={self.port})"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        """Start the server and wait until its API answers; returns the API URL."""
        if self.port == 0:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((self.host, 0))
                self.port = sock.getsockname()[1]
        elif not _port_is_free(self.host, self.port):
            raise PrefectServerError(
                f"port {self.port} on {self.host} is in use: choose another with --port, or set "
                f"PREFECT_API_URL=http://{self.host}:{self.port}/api to use the Prefect server running there"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PREFECT_HOME": str(self.home),
            "PREFECT_SERVER_API_HOST": self.host,
            "PREFECT_SERVER_API_PORT": str(self.port),
            # The UI calls the API from the browser: without this it looks for it on port 4200.
            "PREFECT_UI_API_URL": self.api_url,
        }
        env.pop("PREFECT_API_URL", None)  # the server must not try to reach another API
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start", "--host", self.host, "--port", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                # Its own process group: a Ctrl-C in the terminal reaches mlci first, which stops
                # its served flow while the API is still up, then stops the server.
                start_new_session=True,
            )
        try:
            self._wait_until_healthy()
        except BaseException:
            self.stop()
            raise
        return self.api_url

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                raise PrefectServerError(
                    f"the Prefect server exited with status {code} while starting: {self._last_log_line()} "
                    f"(full log: {self.log_path})"
                )
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        raise PrefectServerError(
            f"the Prefect server did not answer within {self.startup_timeout:.0f} s (log: {self.log_path})"
        )

    def _last_log_line(self) -> str:
        try:
            lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return "no output"
        return lines[-1].strip() if lines else "no output"

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server and every process it started (its whole process group)."""
        process, self._process = self._process, None
        if process is None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                process.poll()  # reap the group leader, or the group never looks empty
                try:
                    os.killpg(process.pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.2)

    def __enter__(self) -> LocalPrefectServer:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
