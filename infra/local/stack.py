"""mlci's production topology on one machine, without Docker: start it, print its environment, stop it.

    python infra/local/stack.py up     [--dir .stack]   # start what is not running; idempotent
    python infra/local/stack.py env    [--dir .stack]   # `export` lines for a client: MLCI_*, PREFECT_API_URL, MLFLOW_*
    python infra/local/stack.py status [--dir .stack]   # each service: pid, address, alive
    python infra/local/stack.py down   [--dir .stack] [--purge]

Services (each a real server, on 127.0.0.1, on a free port chosen on the first ``up`` and kept):
PostgreSQL from Debian's packages (one database and role each for MLflow and Prefect), S3 from
moto's server, ``mlflow server`` (PostgreSQL backend, S3 artifact destination, ``--serve-artifacts``),
``prefect server start`` (PostgreSQL), a Dask scheduler with two worker processes under nannies, and
a Prefect process worker on the work pool ``mlci-process``. Every process is started in its own
session, its process id recorded in ``<dir>/stack.json``; ``down`` stops them by those ids and then
sweeps for any process still carrying this stack's marker in its environment, so nothing is left.

Run it with the project's interpreter (``.venv/bin/python``): the servers are the executables
installed beside it. Passwords are generated on the first ``up`` into ``<dir>/secrets.json``
(mode 600) and reach the servers through environment variables, never command lines (``ps``).
moto keeps objects in memory: ``down`` discards the S3 content (the databases persist in ``<dir>``).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
MARKER = "MLCI_STACK_DIR"  # in every service's environment: how `down` finds strays
STORE_BUCKET, ARTIFACT_BUCKET = "mlci-store", "mlci-mlflow"
WORK_POOL = "mlci-process"
DASK_WORKERS = 2
# Order of start; `down` goes backwards.
SERVICES = ["postgres", "s3", "mlflow", "prefect", "dask-scheduler", "dask-workers", "worker"]
PORTS = ["postgres", "s3", "mlflow", "prefect", "dask-scheduler", "dask-dashboard"]


class StackError(RuntimeError):
    """A one-line problem with what to do about it."""


# --- state --------------------------------------------------------------------------------------


class Stack:
    """The files of one stack under ``directory``: ports, pids, secrets, logs, data."""

    def __init__(self, directory: Path):
        self.dir = directory.resolve()
        self.state_file = self.dir / "stack.json"
        self.secrets_file = self.dir / "secrets.json"
        self.logs = self.dir / "logs"
        self.state = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        self.secrets = json.loads(self.secrets_file.read_text()) if self.secrets_file.exists() else {}

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2))
        tmp.replace(self.state_file)

    def ensure_config(self) -> None:
        """Ports and passwords of the first ``up``; kept so clients' settings stay valid."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        if not self.secrets:
            self.secrets = {name: secrets.token_hex(16) for name in ("pg_admin", "pg_mlflow", "pg_prefect")}
            self.secrets["s3_key_id"] = "mlci" + secrets.token_hex(4)
            self.secrets["s3_secret"] = secrets.token_hex(20)
            fd = os.open(self.secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(self.secrets, out)
        ports = self.state.setdefault("ports", {})
        for name in PORTS:
            ports.setdefault(name, free_port())
        self.state.setdefault("pids", {})
        self.save()

    def port(self, name: str) -> int:
        return self.state["ports"][name]

    def url(self, name: str) -> str:
        return f"http://{HOST}:{self.port(name)}"

    def pg_url(self, db: str, driver: str = "postgresql") -> str:
        return f"{driver}://{db}:{self.secrets['pg_' + db]}@{HOST}:{self.port('postgres')}/{db}"

    def client_env(self) -> dict[str, str]:
        """What a client (CLI, worker, notebook) needs to use this stack."""
        return {
            "MLCI_STORE": f"s3://{STORE_BUCKET}/mlci",
            "MLCI_S3_ENDPOINT_URL": self.url("s3"),
            "MLCI_S3_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": self.secrets["s3_key_id"],
            "AWS_SECRET_ACCESS_KEY": self.secrets["s3_secret"],
            "MLCI_MLFLOW_TRACKING_URI": self.url("mlflow"),
            "MLFLOW_TRACKING_URI": self.url("mlflow"),
            "PREFECT_API_URL": self.url("prefect") + "/api",
            "MLCI_DASK_ADDRESS": f"tcp://{HOST}:{self.port('dask-scheduler')}",
            "MLCI_PROJECT_DIR": str(ROOT),
        }

    def service_env(self, name: str, **extra: str) -> dict[str, str]:
        """The environment of a service: this machine's, without the caller's Prefect/MLflow/AWS
        settings (a profile pointing elsewhere must not leak in), plus the stack's own."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PREFECT_", "MLFLOW_", "AWS_", "DASK_"))}
        home = self.dir / "home" / name
        home.mkdir(parents=True, exist_ok=True)
        env.update(PREFECT_HOME=str(home / "prefect"), MLCI_HOME=str(home / "mlci"),
                   PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", **{MARKER: str(self.dir)})
        env.update(extra)
        return env

    def pids(self, name: str) -> list[int]:
        return self.state["pids"].get(name, [])


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) is not alive.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def ours(stack: Stack, pid: int) -> bool:
    """Alive and started by this stack: a recorded pid that the system reused is not ours."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return alive(pid) and f"{MARKER}={stack.dir}".encode() in environ


def running(stack: Stack, name: str) -> bool:
    pids = stack.pids(name)
    return bool(pids) and all(ours(stack, p) for p in pids)


def spawn(stack: Stack, name: str, argv: list[str], env: dict[str, str], cwd: Path | None = None) -> int:
    """Start ``argv`` in a session of its own (so its children go with it), output to its log."""
    with open(stack.logs / f"{name}.log", "ab") as log:
        process = subprocess.Popen(argv, env=env, cwd=cwd or stack.dir, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    return process.pid


def wait_until(what: str, check, timeout: float, stack: Stack, log: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        if time.monotonic() > deadline:
            tail = (stack.logs / f"{log}.log").read_text(errors="replace").splitlines()[-15:]
            raise StackError(f"{what} did not come up within {timeout:.0f} s; its log "
                             f"({stack.logs / (log + '.log')}) ends:\n  " + "\n  ".join(tail))
        time.sleep(0.5)


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=3) as response:
        return response.status == 200


def tcp_open(port: int) -> bool:
    with socket.create_connection((HOST, port), timeout=2):
        return True


def http_json(method: str, url: str, body: dict | None = None) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


# --- PostgreSQL ---------------------------------------------------------------------------------


def pg_bin() -> Path:
    """The newest installed PostgreSQL's binaries (Debian keeps them off PATH)."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise StackError("PostgreSQL is not installed: run infra/local/install-postgres (Debian's postgresql package)")


def as_postgres_user(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to Debian's ``postgres`` user when we are root."""
    if os.geteuid() != 0:
        return argv
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *argv]


def pg_data_dir(stack: Stack) -> Path:
    """``<dir>/postgres``, or, as root, a folder the ``postgres`` user can reach when it cannot reach that."""
    if "pg_data" in stack.state:
        return Path(stack.state["pg_data"])
    data = stack.dir / "postgres"
    if os.geteuid() == 0:
        reachable = subprocess.run(as_postgres_user(["test", "-x", str(stack.dir)]), capture_output=True)
        if reachable.returncode != 0:
            data = Path("/var/tmp") / f"mlci-stack-{secrets.token_hex(6)}" / "postgres"
    stack.state["pg_data"] = str(data)
    stack.save()
    return data


def start_postgres(stack: Stack) -> None:
    binaries, data = pg_bin(), pg_data_dir(stack)
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        pwfile = data.parent / ".pg-admin-password"
        pwfile.write_text(stack.secrets["pg_admin"] + "\n")
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        pwfile.chmod(0o600)
        done = subprocess.run(as_postgres_user([
            str(binaries / "initdb"), "-D", str(data), "-U", "mlci_admin", f"--pwfile={pwfile}",
            "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-instructions",
        ]), capture_output=True, text=True)
        pwfile.unlink()
        if done.returncode != 0:
            raise StackError(f"initdb failed: {done.stderr.strip().splitlines()[-1]}")
    # TCP on loopback only, no Unix socket: nothing else on the machine shares this server.
    pid = spawn(stack, "postgres", as_postgres_user([
        str(binaries / "postgres"), "-D", str(data), "-h", HOST, "-p", str(stack.port("postgres")),
        "-c", "unix_socket_directories=", "-c", "max_connections=200",
    ]), stack.service_env("postgres"))
    stack.state["pids"]["postgres"] = [pid]
    stack.save()
    wait_until("PostgreSQL", lambda: psql(stack, "SELECT 1") == "1", 60, stack, "postgres")
    for db in ("mlflow", "prefect"):
        if psql(stack, f"SELECT 1 FROM pg_roles WHERE rolname = '{db}'") != "1":
            psql(stack, f"CREATE ROLE {db} LOGIN PASSWORD '{stack.secrets['pg_' + db]}'")
        if psql(stack, f"SELECT 1 FROM pg_database WHERE datname = '{db}'") != "1":
            psql(stack, f"CREATE DATABASE {db} OWNER {db}")


def psql(stack: Stack, sql: str) -> str:
    done = subprocess.run(
        [str(pg_bin() / "psql"), "-h", HOST, "-p", str(stack.port("postgres")), "-U", "mlci_admin",
         "-d", "postgres", "-tAq", "-v", "ON_ERROR_STOP=1", "-c", sql],
        env={**os.environ, "PGPASSWORD": stack.secrets["pg_admin"], "PGCONNECT_TIMEOUT": "3"},
        capture_output=True, text=True,
    )
    if done.returncode != 0:
        raise StackError(f"psql: {done.stderr.strip()}")
    return done.stdout.strip()


# --- the other services -------------------------------------------------------------------------


def start_s3(stack: Stack) -> None:
    env = stack.service_env("s3")
    stack.state["pids"]["s3"] = [spawn(stack, "s3", [str(BIN / "moto_server"), "-H", HOST, "-p",
                                                     str(stack.port("s3"))], env)]
    stack.save()
    wait_until("S3 (moto)", lambda: tcp_open(stack.port("s3")), 60, stack, "s3")
    import boto3

    s3 = boto3.client("s3", endpoint_url=stack.url("s3"), region_name="us-east-1",
                      aws_access_key_id=stack.secrets["s3_key_id"], aws_secret_access_key=stack.secrets["s3_secret"])
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for bucket in (STORE_BUCKET, ARTIFACT_BUCKET):
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket)


def start_mlflow(stack: Stack) -> None:
    env = stack.service_env(
        "mlflow",
        MLFLOW_BACKEND_STORE_URI=stack.pg_url("mlflow"),
        MLFLOW_ARTIFACTS_DESTINATION=f"s3://{ARTIFACT_BUCKET}/artifacts",
        MLFLOW_S3_ENDPOINT_URL=stack.url("s3"),
        AWS_ACCESS_KEY_ID=stack.secrets["s3_key_id"], AWS_SECRET_ACCESS_KEY=stack.secrets["s3_secret"],
        AWS_DEFAULT_REGION="us-east-1",
        # Its background job runner serves GenAI features mlci does not use: eight processes fewer.
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
    )
    argv = [str(BIN / "mlflow"), "server", "--host", HOST, "--port", str(stack.port("mlflow")),
            "--serve-artifacts", "--workers", "2"]
    stack.state["pids"]["mlflow"] = [spawn(stack, "mlflow", argv, env)]
    stack.save()


def start_prefect(stack: Stack) -> None:
    env = stack.service_env(
        "prefect",
        PREFECT_API_DATABASE_CONNECTION_URL=stack.pg_url("prefect", "postgresql+asyncpg"),
        # The UI and API on the same loopback address the clients use.
        PREFECT_UI_API_URL=stack.url("prefect") + "/api",
    )
    argv = [str(BIN / "prefect"), "server", "start", "--host", HOST, "--port", str(stack.port("prefect"))]
    stack.state["pids"]["prefect"] = [spawn(stack, "prefect", argv, env)]
    stack.save()


def tuning() -> dict[str, str]:
    """The caller's own ``MLCI_*`` (batch size, strategy, timeouts, ...): they configure the runs."""
    return {k: v for k, v in os.environ.items() if k.startswith("MLCI_")}


def start_dask(stack: Stack) -> None:
    # Dask workers run the tasks: they need what the flow's process has.
    env = stack.service_env("dask", **{**tuning(), **stack.client_env()})
    if not running(stack, "dask-scheduler"):
        argv = [str(BIN / "dask"), "scheduler", "--host", HOST, "--port", str(stack.port("dask-scheduler")),
                "--dashboard-address", f"{HOST}:{stack.port('dask-dashboard')}"]
        stack.state["pids"]["dask-scheduler"] = [spawn(stack, "dask-scheduler", argv, env, cwd=ROOT)]
        stack.save()
        wait_until("the Dask scheduler", lambda: tcp_open(stack.port("dask-scheduler")), 60, stack, "dask-scheduler")
    if not running(stack, "dask-workers"):
        kill_group(stack, stack.pids("dask-workers"))
        address = stack.client_env()["MLCI_DASK_ADDRESS"]
        pids = []
        for i in range(DASK_WORKERS):
            # Under a nanny (the default): a worker process that dies is restarted, its tasks rerun.
            argv = [str(BIN / "dask"), "worker", address, "--nthreads", "1", "--host", HOST,
                    "--dashboard-address", f"{HOST}:0", "--name", f"mlci-{i}"]
            pids.append(spawn(stack, f"dask-worker-{i}", argv, env, cwd=ROOT))
        stack.state["pids"]["dask-workers"] = pids
        stack.save()
    wait_until(f"{DASK_WORKERS} Dask workers", lambda: dask_worker_count(stack) >= DASK_WORKERS, 90, stack,
               "dask-worker-0")


def dask_worker_count(stack: Stack) -> int:
    from distributed import Client

    with Client(stack.client_env()["MLCI_DASK_ADDRESS"], timeout=5) as client:
        return len(client.scheduler_info()["workers"])


ZOMBIE_AUTOMATION = "mlci: crash flow runs that stopped beating"


def prepare_prefect(stack: Stack) -> None:
    """The work pool, and the automation that marks a flow run whose process died as Crashed
    (Prefect's documented zombie detection): a crashed run frees the deployment's concurrency slot."""
    api = stack.url("prefect") + "/api"
    status, body = http_json("POST", f"{api}/work_pools/", {"name": WORK_POOL, "type": "process"})
    if status not in (200, 201, 409):
        raise StackError(f"creating work pool {WORK_POOL}: HTTP {status} {body}")
    status, found = http_json("POST", f"{api}/automations/filter", {"limit": 200})
    if status == 200 and any(a["name"] == ZOMBIE_AUTOMATION for a in found):
        return
    automation = {
        "name": ZOMBIE_AUTOMATION,
        "description": "A flow run with no heartbeat for 90 s is marked Crashed.",
        "enabled": True,
        "trigger": {
            "type": "event",
            "posture": "Proactive",
            "after": ["prefect.flow-run.heartbeat"],
            "expect": ["prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                       "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"],
            "match": {"prefect.resource.id": ["prefect.flow-run.*"]},
            "for_each": ["prefect.resource.id"],
            "threshold": 1,
            "within": 90,
        },
        "actions": [{"type": "change-flow-run-state", "state": "CRASHED",
                     "message": "No heartbeat for 90 s: the process running this flow run is gone."}],
    }
    status, body = http_json("POST", f"{api}/automations/", automation)
    if status not in (200, 201):
        raise StackError(f"creating the zombie automation: HTTP {status} {body}")


def start_worker(stack: Stack) -> None:
    env = stack.service_env("worker", **{**tuning(), **stack.client_env()},
                            PREFECT_FLOWS_HEARTBEAT_FREQUENCY="30", PREFECT_WORKER_QUERY_SECONDS="2")
    argv = [str(BIN / "prefect"), "worker", "start", "--pool", WORK_POOL, "--name", "mlci-local"]
    stack.state["pids"]["worker"] = [spawn(stack, "worker", argv, env, cwd=ROOT)]
    stack.save()
    wait_until("the Prefect worker", lambda: worker_online(stack), 90, stack, "worker")


def worker_online(stack: Stack) -> bool:
    status, workers = http_json("POST", f"{stack.url('prefect')}/api/work_pools/{WORK_POOL}/workers/filter", {})
    return status == 200 and any(w["name"] == "mlci-local" and w["status"] == "ONLINE" for w in workers)


# --- commands -----------------------------------------------------------------------------------


def up(stack: Stack) -> None:
    stack.ensure_config()
    started = []

    def start(name, starter):
        if not running(stack, name):
            kill_group(stack, stack.pids(name))
            starter(stack)
            started.append(name)

    start("postgres", start_postgres)
    start("s3", start_s3)
    start("mlflow", start_mlflow)
    start("prefect", start_prefect)
    # Both servers migrate their database on a first start: wait for them together.
    wait_until("the MLflow server", lambda: http_ok(stack.url("mlflow") + "/health"), 180, stack, "mlflow")
    wait_until("the Prefect server", lambda: http_ok(stack.url("prefect") + "/api/health"), 180, stack, "prefect")
    if not (running(stack, "dask-scheduler") and running(stack, "dask-workers")):
        start_dask(stack)
        started.append("dask")
    prepare_prefect(stack)
    start("worker", start_worker)
    print(f"stack up in {stack.dir}: " + (f"started {', '.join(started)}" if started else "everything was running"))
    print(f"  Prefect UI  {stack.url('prefect')}\n  MLflow UI   {stack.url('mlflow')}\n"
          f"  Dask        {stack.url('dask-dashboard')}/status\n"
          f"  client env  {shlex.quote(sys.executable)} {Path(__file__).relative_to(ROOT)} env --dir {stack.dir}")


def kill_group(stack: Stack, pids: list[int], sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    """Signal each recorded process's session (its children with it); SIGKILL what outlives
    ``timeout``. A recorded pid that is no longer ours is left alone."""
    pids = [p for p in pids if ours(stack, p)]
    for pid in pids:
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids:
        if alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def strays(stack: Stack) -> list[int]:
    """Processes that still carry this stack's marker (a child that left its session)."""
    return [int(e.name) for e in Path("/proc").iterdir()
            if e.name.isdigit() and int(e.name) != os.getpid() and ours(stack, int(e.name))]


def down(stack: Stack, purge: bool) -> None:
    for name in reversed(SERVICES):
        pids = stack.pids(name)
        if name == "postgres":
            kill_group(stack, pids, signal.SIGINT, timeout=30)  # PostgreSQL's "fast" shutdown
        else:
            kill_group(stack, pids)
    left = strays(stack)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if stack.state:
        stack.state["pids"] = {}
        stack.save()
    if purge:
        if "pg_data" in stack.state and not Path(stack.state["pg_data"]).is_relative_to(stack.dir):
            shutil.rmtree(Path(stack.state["pg_data"]).parent, ignore_errors=True)
        for child in stack.dir.iterdir():  # the logs stay: they tell what happened
            if child != stack.logs:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    print(f"stack down: {stack.dir}" + (f" ({len(left)} stray processes killed)" if left else "")
          + (" and its data removed" if purge else ""))


def status(stack: Stack) -> int:
    if not stack.state:
        print(f"no stack in {stack.dir}: run `up` first")
        return 1
    ports = stack.state["ports"]
    ok = True
    for name in SERVICES:
        pids = stack.pids(name)
        up_ = running(stack, name)
        ok &= up_
        port = f"{HOST}:{ports[name]}" if name in ports else ""
        print(f"{name:15} {'up  ' if up_ else 'DOWN'} {port:22} pid {','.join(map(str, pids)) or '-'}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "env", "status"])
    parser.add_argument("--dir", type=Path, default=ROOT / ".stack", help="state, logs and data (default: .stack)")
    parser.add_argument("--purge", action="store_true", help="down: also delete the databases and state (logs stay)")
    args = parser.parse_args(argv)
    stack = Stack(args.dir)
    try:
        if args.command == "up":
            up(stack)
        elif args.command == "down":
            down(stack, args.purge)
        elif args.command == "status":
            return status(stack)
        else:
            if not stack.state:
                raise StackError(f"no stack in {stack.dir}: run `up` first")
            for key, value in stack.client_env().items():
                print(f"export {key}={shlex.quote(value)}")
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
