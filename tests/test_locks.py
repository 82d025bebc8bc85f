"""The store lock: one holder at a time, stale locks expire, history is kept."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from mlci.locks import LockHeldError, StoreLock


def test_one_holder_then_release(store):
    first = StoreLock(store, "nightly", owner="run-1")
    first.acquire()
    with pytest.raises(LockHeldError, match="run-1"):
        StoreLock(store, "nightly", owner="run-2").acquire()
    first.release()
    with StoreLock(store, "nightly", owner="run-3") as third:
        assert third.generation_ == 1
    assert store.list("locks/nightly/") == [
        "locks/nightly/0000000000.json",
        "locks/nightly/0000000000.released",
        "locks/nightly/0000000001.json",
        "locks/nightly/0000000001.released",
    ]


def test_stale_lock_of_a_crashed_run_expires(store):
    crashed = StoreLock(store, "nightly", ttl=timedelta(hours=1), owner="crashed")
    crashed.acquire(now=datetime(2026, 1, 1, 2, 0, tzinfo=timezone.utc))
    with pytest.raises(LockHeldError):
        StoreLock(store, "nightly").acquire(now=datetime(2026, 1, 1, 2, 30, tzinfo=timezone.utc))
    next_night = StoreLock(store, "nightly")
    next_night.acquire(now=datetime(2026, 1, 2, 2, 0, tzinfo=timezone.utc))
    assert next_night.generation_ == 1


def test_two_contenders_exactly_one_wins(store):
    barrier = threading.Barrier(2)
    results = []

    def contend(name):
        lock = StoreLock(store, "race", owner=name)
        barrier.wait()
        try:
            lock.acquire()
            results.append(name)
        except LockHeldError:
            pass

    threads = [threading.Thread(target=contend, args=(f"run-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 1
