"""The store lock: one holder at a time, stale locks expire, history is kept."""

from __future__ import annotations

import os
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


def _holder(**kw):
    import socket

    from mlci.locks import LockHolder

    fields = dict(generation=0, owner="x", acquired_at=None, expires_at=datetime(2030, 1, 1, tzinfo=timezone.utc),
                  released=False, host=socket.gethostname(), pid=os.getpid(), pid_started=None)
    return LockHolder(**{**fields, **kw})


def test_only_a_provably_dead_holder_on_this_host_is_dead():
    import subprocess
    import sys

    from mlci.locks import _process_start

    assert not _holder().is_dead()  # this process
    assert not _holder(pid_started=_process_start(os.getpid())).is_dead()
    assert _holder(pid_started=_process_start(os.getpid()) + 1).is_dead()  # the pid now runs another process
    assert not _holder(host="another-host", pid=2**22 + 17).is_dead()  # never presumed dead elsewhere
    assert not _holder(pid=None).is_dead()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert _holder(pid=int(gone.stdout)).is_dead()


def test_a_holder_killed_with_sigkill_is_taken_over_at_once(store):
    import json
    import signal
    import subprocess
    import sys

    endpoint = getattr(store, "endpoint_url", None)
    code = (
        "import sys, time\n"
        "from mlci.storage import open_store\nfrom mlci.locks import StoreLock\n"
        f"StoreLock(open_store({store.uri!r}, endpoint_url={endpoint!r}), 'nightly').acquire()\n"
        "print('held', flush=True)\ntime.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeldError, match=rf":{holder.pid}:.* since 20.*expires"):
            StoreLock(store, "nightly").acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    successor = StoreLock(store, "nightly")
    successor.acquire()  # at once: no waiting for the 6-hour expiry
    assert successor.generation_ == 1 and f":{holder.pid}:" in successor.replaced_.owner
    record = json.loads(store.read_text("locks/nightly/0000000001.json"))
    assert record["replaced"]["why"] == "holder process is gone" and record["pid"] == os.getpid()


def test_unlock_asks_then_releases_by_hand_and_keeps_the_history(tmp_path):
    from typer.testing import CliRunner

    from cli import app
    from mlci.storage import open_store

    store = open_store(str(tmp_path / "store"))
    StoreLock(store, "nightly", owner="run-on-a-dead-host").acquire()
    args = ["unlock", "--store", str(tmp_path / "store")]
    refused = CliRunner().invoke(app, args, input="n\n")
    assert refused.exit_code == 1 and "held by run-on-a-dead-host since" in refused.output
    with pytest.raises(LockHeldError):
        StoreLock(store, "nightly").acquire()
    done = CliRunner().invoke(app, args, input="y\n")
    assert done.exit_code == 0 and "released lock 'nightly'" in done.output
    assert store.read_text("locks/nightly/0000000000.released").startswith("released by hand by ")
    StoreLock(store, "nightly").acquire()
    assert CliRunner().invoke(app, [*args[:1], "other", *args[1:]]).output.strip() == "lock 'other' is not held"
