"""A run lock kept in the store, for flows running without a Prefect server to enforce concurrency.

The lock is a sequence of generation objects ``locks/<name>/<generation>.json``. Taking the lock
means creating the next generation with write-if-absent, so of two contenders exactly one wins,
even when both found the previous holder's lock stale. Releasing writes a ``.released`` marker next
to the generation; nothing is ever deleted, so the history of runs stays readable.

A lock is free when it was released, when it expired (``ttl``), or at once when its holder is
provably dead: a process on this same host whose pid no longer runs, or runs a process started
after the lock was taken (the pid was reused). A holder on another host is never presumed dead.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from mlci.layout import lock_generation_key, lock_prefix, lock_released_key
from mlci.storage import ObjectNotFoundError, Store

__all__ = ["LockHeldError", "LockHolder", "StoreLock"]


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) a lock: generation, owner, process and times."""

    generation: int
    owner: str
    acquired_at: datetime | None
    expires_at: datetime
    released: bool
    host: str | None = None
    pid: int | None = None
    pid_started: int | None = None

    def describe(self) -> str:
        since = f" since {self.acquired_at:%Y-%m-%d %H:%M:%S %Z}" if self.acquired_at else ""
        return f"{self.owner}{since} (expires {self.expires_at:%Y-%m-%d %H:%M:%S %Z})"

    def is_dead(self) -> bool:
        """True only when the holder is a process on this host that has provably ended."""
        if self.host != socket.gethostname() or self.pid is None:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, owned by another user
            return False
        started = _process_start(self.pid)
        return self.pid_started is not None and started is not None and started != self.pid_started


class LockHeldError(RuntimeError):
    """Another run holds the lock: it has not expired and its holder is not known to be dead."""

    def __init__(self, name: str, holder: LockHolder | None, message: str | None = None):
        self.name = name
        self.holder = holder
        super().__init__(message or f"lock {name!r} is held by {holder.describe()}")


def _process_start(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count fields after its last ")".
    return int(stat.rsplit(b")", 1)[1].split()[19])


class StoreLock:
    """A lock named ``name`` in ``store`` that expires after ``ttl`` (so a crashed run cannot block forever).

    Parameters
    ----------
    store : Store
    name : str
        Lock name, e.g. ``"nightly"``.
    ttl : timedelta, default=6 hours
        How long a holder keeps the lock without releasing it before others may take it.
    owner : str, default=None
        Holder description recorded in the lock; host, pid and a random id when None.

    Attributes
    ----------
    generation_ : int or None
        The generation this object holds, None when it holds none.
    replaced_ : LockHolder or None
        The unreleased holder this object took the lock over from (expired or dead), if any.

    Examples
    --------
    >>> with StoreLock(store, "nightly"):          # doctest: +SKIP
    ...     run_the_round()
    """

    def __init__(self, store: Store, name: str, *, ttl: timedelta = timedelta(hours=6), owner: str | None = None):
        self.store = store
        self.name = name
        self.ttl = ttl
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.generation_: int | None = None
        self.replaced_: LockHolder | None = None

    def holder(self) -> LockHolder | None:
        """The latest generation of the lock (released or not); None when it was never taken."""
        keys = [k for k in self.store.list(lock_prefix(self.name)) if k.endswith(".json")]
        if not keys:
            return None
        key = max(keys)
        record = json.loads(self.store.read_text(key))
        return LockHolder(
            generation=int(key.rsplit("/", 1)[1][: -len(".json")]),
            owner=record["owner"],
            acquired_at=datetime.fromisoformat(record["acquired_at"]) if record.get("acquired_at") else None,
            expires_at=datetime.fromisoformat(record["expires_at"]),
            released=self.store.exists(key[: -len(".json")] + ".released"),
            host=record.get("host"),
            pid=record.get("pid"),
            pid_started=record.get("pid_started"),
        )

    def acquire(self, *, now: datetime | None = None) -> None:
        """Take the lock or raise :class:`LockHeldError` naming the holder, since when and its expiry."""
        now = now or datetime.now(timezone.utc)
        latest = self.holder()
        stale = None
        if latest is not None and not latest.released:
            if latest.expires_at > now and not latest.is_dead():
                raise LockHeldError(self.name, latest)
            stale = "expired" if latest.expires_at <= now else "holder process is gone"
        number = 0 if latest is None else latest.generation + 1
        record = {
            "owner": self.owner,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "pid_started": _process_start(os.getpid()),
            "acquired_at": now.isoformat(),
            "expires_at": (now + self.ttl).isoformat(),
            "replaces_stale": stale is not None,
        }
        if stale is not None:
            record["replaced"] = {"generation": latest.generation, "owner": latest.owner, "why": stale}
        if not self.store.write_if_absent(lock_generation_key(self.name, number), json.dumps(record).encode()):
            raise LockHeldError(self.name, None, f"lock {self.name!r} was taken by another run at the same moment")
        self.generation_ = number
        self.replaced_ = latest if stale is not None else None

    def release(self) -> None:
        """Release the lock this object holds (a no-op when it holds none)."""
        if self.generation_ is None:
            return
        self._mark_released(self.generation_, self.owner)
        self.generation_ = None

    def force_release(self, *, by: str) -> LockHolder | None:
        """Release the current holder's generation by hand; returns it (None when the lock is free)."""
        latest = self.holder()
        if latest is None or latest.released:
            return None
        self._mark_released(latest.generation, f"released by hand by {by}")
        return latest

    def _mark_released(self, generation: int, note: str) -> None:
        try:
            self.store.write_if_absent(lock_released_key(self.name, generation), note.encode())
        except ObjectNotFoundError:  # pragma: no cover - store vanished; nothing left to release
            pass

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"StoreLock(store={self.store!r}, name={self.name!r}, ttl={self.ttl})"
