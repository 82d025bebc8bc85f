"""A real ``mlflow server`` for tests: SQLite backend and served artifacts in one folder, on 127.0.0.1.

The server runs in its own process group, so :meth:`MlflowServer.kill` takes down every process it
started at once, the way a crash does (SIGKILL, nothing flushed), and :meth:`MlflowServer.start`
brings it back on the same port, database and artifacts.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent

__all__ = ["MlflowServer", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class MlflowServer:
    """``mlflow server`` with its database, artifacts and log under ``root``; ``url`` is ``http://127.0.0.1:<port>``."""

    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> MlflowServer:
        """Start the server (again) and wait until it answers ``/health``."""
        assert self.process is None or self.process.poll() is not None, "the server is already running"
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "server.log", "a") as log:
            self.process = subprocess.Popen(
                [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
                 "--artifacts-destination", str(self.root / "artifacts"), "--host", "127.0.0.1",
                 "--port", str(self.port), "--workers", "1"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.root,
            )
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None and time.monotonic() < deadline, self.log_tail()
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)

    def kill(self) -> None:
        """SIGKILL the server's whole process group and wait for it: a crash, not a shutdown."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        """Stop the server (SIGTERM to its process group; SIGKILL after 30 s)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, n: int = 3000) -> str:
        path = self.root / "server.log"
        return path.read_text()[-n:] if path.is_file() else ""
