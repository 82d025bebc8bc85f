"""A real Label Studio server for tests: installed into its own venv, started on 127.0.0.1, stopped after.

Label Studio's pins conflict with mlci's, so it lives in ``<repo>/.venv-labelstudio``, installed
from ``tests/requirements-labelstudio.txt`` (the one place its version is written) the first time
and reused while the stamp file in it records the same requirements. The install also migrates an
empty database once (``label-studio version`` migrates and exits) and keeps it as a template:
a fresh database takes ~55 s of migrations on two busy cores, a copy of the template starts in ~6 s.

Each server gets a throwaway data directory, its own process group (stopped as a group, nothing is
left behind) and these users, each with a personal access token (PAT) made the way a person makes
one (log in, then ``POST /api/token/``):

* the admin, created by ``label-studio start`` (``LABEL_STUDIO_USERNAME``/``PASSWORD``), who also
  has a known legacy token (``LABEL_STUDIO_USER_TOKEN``). A new organisation refuses legacy tokens;
  the admin enables them through ``POST /api/jwt/settings`` so both kinds of token can be tested;
* annotators who sign up through ``/user/signup/`` and so join the same organisation.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = Path(__file__).resolve().parent / "requirements-labelstudio.txt"
DEFAULT_VENV = REPO / ".venv-labelstudio"
#: Written last by :func:`ensure_installed`: the requirements the venv was built from.
STAMP_NAME = ".mlci-installed"
#: An empty, migrated data directory inside the venv (see the module docstring).
TEMPLATE_NAME = "mlci-empty-data"

__all__ = ["LabelStudioUser", "LabelStudioServer", "ensure_installed", "start_label_studio", "free_port"]


@dataclass(frozen=True)
class LabelStudioUser:
    """A user of the test server: log-in credentials, Label Studio user id, personal access token."""

    email: str
    password: str
    id: int
    token: str

    def __repr__(self) -> str:
        return f"LabelStudioUser(email={self.email!r}, id={self.id})"


@dataclass
class LabelStudioServer:
    """A running Label Studio and its users; :meth:`stop` ends its process group."""

    url: str
    admin: LabelStudioUser
    #: The admin's legacy token (``Authorization: Token ...``), enabled for the organisation.
    legacy_token: str
    annotators: tuple[LabelStudioUser, ...]
    #: Signs every JWT the server issues (tests mint expired access tokens with it).
    secret_key: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen
    #: Seconds from process start to the first healthy answer, and to every user being ready.
    started_seconds: float = 0.0
    ready_seconds: float = 0.0

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the server's process group, SIGKILL it after ``timeout`` s; waits for the exit."""
        _stop_group(self.process, timeout)

    def __repr__(self) -> str:
        return f"LabelStudioServer(url={self.url!r}, data_dir={str(self.data_dir)!r})"


def ensure_installed(venv: Path = DEFAULT_VENV, *, timeout: float = 1800.0) -> Path:
    """The venv's ``label-studio`` executable, installing it (and the template database) if needed.

    A file lock next to the venv makes parallel test processes wait for one install.
    """
    wanted = REQUIREMENTS.read_text()
    executable = venv / "bin" / "label-studio"
    with open(str(venv) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = venv / STAMP_NAME
        if stamp.exists() and stamp.read_text() == wanted and executable.exists():
            return executable
        shutil.rmtree(venv, ignore_errors=True)
        started = time.monotonic()
        _run([sys.executable, "-m", "venv", str(venv)], timeout=timeout)
        _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              "-r", str(REQUIREMENTS)], timeout=timeout)
        template = venv / TEMPLATE_NAME
        template.mkdir()
        _run([str(executable), "version"], timeout=600, env=_server_environment(template, secrets.token_hex(32)))
        (template / ".env").unlink(missing_ok=True)
        stamp.write_text(wanted)
        print(f"Label Studio installed into {venv} in {time.monotonic() - started:.0f} s", file=sys.stderr)
        return executable


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_label_studio(data_dir: Path, *, venv: Path = DEFAULT_VENV, annotators: int = 2,
                       startup_timeout: float = 180.0) -> LabelStudioServer:
    """Install if needed, start Label Studio on 127.0.0.1 with its data in ``data_dir``, create its users.

    ``data_dir`` must not exist yet. The server is stopped again if anything after its start fails.
    """
    executable = ensure_installed(venv)
    shutil.copytree(venv / TEMPLATE_NAME, data_dir)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    secret_key = secrets.token_hex(32)
    admin_email, admin_password = "admin@mlci.test", secrets.token_urlsafe(12)
    legacy_token = secrets.token_hex(20)
    env = _server_environment(data_dir, secret_key)
    # Through the environment, not argv, so `ps` shows no password. LABEL_STUDIO_ names come first in
    # Label Studio's lookup, so a USERNAME or HOST of the developer's shell cannot leak in.
    env.update(LABEL_STUDIO_USERNAME=admin_email, LABEL_STUDIO_PASSWORD=admin_password,
               LABEL_STUDIO_USER_TOKEN=legacy_token, LABEL_STUDIO_HOST=url)
    log_path = data_dir / "label-studio.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        # --internal-host is the address bound (its default is every interface); --host is only the public URL.
        process = subprocess.Popen(
            [str(executable), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
             "--host", url],
            cwd=data_dir, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_healthy(url, process, log_path, startup_timeout)
        started_seconds = time.monotonic() - started
        admin = _user_with_token(url, admin_email, admin_password, sign_up=False)
        _enable_legacy_tokens(url, admin.token)
        people = tuple(
            _user_with_token(url, f"annotator{i}@mlci.test", secrets.token_urlsafe(12), sign_up=True)
            for i in range(1, annotators + 1)
        )
    except BaseException:
        _stop_group(process, 20.0)
        raise
    return LabelStudioServer(
        url=url, admin=admin, legacy_token=legacy_token, annotators=people, secret_key=secret_key,
        data_dir=data_dir, log_path=log_path, process=process, started_seconds=started_seconds,
        ready_seconds=time.monotonic() - started,
    )


def _server_environment(data_dir: Path, secret_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LABEL_STUDIO_", "HEARTEX_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
        # Set here, or Label Studio writes a random one into <data_dir>/.env.
        SECRET_KEY=secret_key,
        # No calls to pypi.org or analytics endpoints from a test.
        LATEST_VERSION_CHECK="false",
        COLLECT_ANALYTICS="false",
    )
    return env


def _run(command: list[str], *, timeout: float, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise RuntimeError(f"{' '.join(command[:3])} ... failed with exit code {done.returncode}:\n{tail}")


def _wait_healthy(url: str, process: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Label Studio exited with code {process.returncode}:\n{_tail(log_path)}")
        try:
            if requests.get(f"{url}/health", timeout=2).json().get("status") == "UP":
                return
        except (requests.RequestException, ValueError):
            pass
        time.sleep(0.25)
    # Label Studio silently moves to another port when its port is taken: the log says where it went.
    raise RuntimeError(f"Label Studio not healthy at {url} after {timeout:.0f} s:\n{_tail(log_path)}")


def _user_with_token(url: str, email: str, password: str, *, sign_up: bool) -> LabelStudioUser:
    """Log in (or sign up, which logs in) through the web forms, then create the user's PAT."""
    session = requests.Session()
    page = f"{url}/user/signup/" if sign_up else f"{url}/user/login/"
    session.get(page, timeout=30).raise_for_status()  # sets the csrftoken cookie the form needs
    answer = session.post(page, data={"email": email, "password": password,
                                      "csrfmiddlewaretoken": session.cookies["csrftoken"]},
                          headers={"Referer": page}, allow_redirects=False, timeout=30)
    if answer.status_code != 302:  # the forms redirect on success and render themselves again on errors
        raise RuntimeError(f"{'sign-up' if sign_up else 'log-in'} of {email} failed: HTTP {answer.status_code}")
    created = session.post(f"{url}/api/token/", headers={"X-CSRFToken": session.cookies["csrftoken"],
                                                         "Referer": url}, timeout=30)
    created.raise_for_status()
    token = created.json()["token"]
    me = session.get(f"{url}/api/current-user/whoami", timeout=30).json()
    return LabelStudioUser(email=email, password=password, id=int(me["id"]), token=token)


def _enable_legacy_tokens(url: str, personal_access_token: str) -> None:
    access = requests.post(f"{url}/api/token/refresh/", json={"refresh": personal_access_token}, timeout=30)
    access.raise_for_status()
    answer = requests.post(f"{url}/api/jwt/settings", json={"legacy_api_tokens_enabled": True},
                           headers={"Authorization": f"Bearer {access.json()['access']}"}, timeout=30)
    answer.raise_for_status()
    if answer.json().get("legacy_api_tokens_enabled") is not True:
        raise RuntimeError(f"legacy tokens still disabled: {answer.text[:200]}")


def _stop_group(process: subprocess.Popen, timeout: float) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        except ProcessLookupError:
            pass
    # Anything the server started and left in its group goes too.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


if __name__ == "__main__":  # `make test` installs Label Studio this way, beside the first tests
    ensure_installed()
