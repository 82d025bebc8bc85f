"""A run lock kept in the store, for flows running without a Prefect server to enforce concurrency.

The lock is a sequence of generation objects ``locks/<name>/<generation>.json``. Taking the lock
means creating the next generation with write-if-absent, so of two contenders exactly one wins,
even when both found the previous holder's lock stale. Releasing writes a ``.released`` marker next
to the generation; nothing is ever deleted, so the history of runs stays readable.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from mlci.storage import ObjectNotFoundError, Store

__all__ = ["StoreLock", "LockHeldError"]


class LockHeldError(RuntimeError):
    """Another run holds the lock and it has not expired."""


@dataclass
class _Generation:
    number: int
    owner: str
    expires_at: datetime
    released: bool


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

    def _prefix(self) -> str:
        return f"locks/{self.name}/"

    def _latest(self) -> _Generation | None:
        keys = [k for k in self.store.list(self._prefix()) if k.endswith(".json")]
        if not keys:
            return None
        key = max(keys)
        record = json.loads(self.store.read_text(key))
        released = self.store.exists(key[: -len(".json")] + ".released")
        return _Generation(
            number=int(key.rsplit("/", 1)[1][: -len(".json")]),
            owner=record["owner"],
            expires_at=datetime.fromisoformat(record["expires_at"]),
            released=released,
        )

    def acquire(self, *, now: datetime | None = None) -> None:
        """Take the lock or raise :class:`LockHeldError` naming the holder and its expiry."""
        now = now or datetime.now(timezone.utc)
        latest = self._latest()
        if latest is not None and not latest.released and latest.expires_at > now:
            raise LockHeldError(
                f"lock {self.name!r} is held by {latest.owner} until {latest.expires_at.isoformat()}"
            )
        number = 0 if latest is None else latest.number + 1
        record = {
            "owner": self.owner,
            "acquired_at": now.isoformat(),
            "expires_at": (now + self.ttl).isoformat(),
            "replaces_stale": latest is not None and not latest.released,
        }
        if not self.store.write_if_absent(f"{self._prefix()}{number:010d}.json", json.dumps(record).encode()):
            raise LockHeldError(f"lock {self.name!r} was taken by another run at the same moment")
        self.generation_ = number

    def release(self) -> None:
        """Release the lock this object holds (a no-op when it holds none)."""
        if self.generation_ is None:
            return
        key = f"{self._prefix()}{self.generation_:010d}.released"
        try:
            self.store.write_if_absent(key, self.owner.encode())
        except ObjectNotFoundError:  # pragma: no cover - store vanished; nothing left to release
            pass
        self.generation_ = None

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"StoreLock(store={self.store!r}, name={self.name!r}, ttl={self.ttl})"
