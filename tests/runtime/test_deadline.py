from __future__ import annotations

import threading
import time

import pytest

from reconciler.errors import DiscoveryError
from reconciler.runtime import deadline as deadline_module
from reconciler.runtime.deadline import Deadline


def test_a_read_past_its_deadline_fails_its_caller_at_the_deadline() -> None:
    """A read that blocks is abandoned at the deadline with a DiscoveryError naming the adapter and the call;
    its thread finishes on its own when the read returns."""
    release = threading.Event()
    deadline = Deadline("file", 0.2)
    started = time.monotonic()
    with pytest.raises(DiscoveryError, match=r"adapter file: discover did not return within 0\.2 s"):
        deadline.run("discover", lambda: release.wait(30))
    assert time.monotonic() - started < 2
    assert deadline.abandoned == 1
    release.set()
    for _ in range(100):
        if deadline.abandoned == 0:
            break
        time.sleep(0.01)
    assert deadline.abandoned == 0
    assert deadline.run("discover", lambda: "read") == "read"


def test_values_and_errors_come_back_to_the_caller() -> None:
    """Within the deadline a read's value, or its error, is the caller's as if it had run on its own thread."""
    deadline = Deadline("etcd", 5)
    assert deadline.run("discover", lambda: {"a": 1}) == {"a": 1}

    def fail() -> None:
        raise DiscoveryError("refused")

    with pytest.raises(DiscoveryError, match="refused"):
        deadline.run("discover", fail)


def test_abandoned_reads_are_bounded() -> None:
    """While `max_abandoned` reads still hang, further reads fail at once instead of starting more threads."""
    release = threading.Event()
    deadline = Deadline("redis", 0.05, max_abandoned=2)
    for _ in range(2):
        with pytest.raises(DiscoveryError, match="did not return"):
            deadline.run("discover", lambda: release.wait(30))
    before = threading.active_count()
    started = time.monotonic()
    with pytest.raises(DiscoveryError, match="2 earlier reads are still running"):
        deadline.run("discover", lambda: "never run")
    assert time.monotonic() - started < 0.05
    assert threading.active_count() == before
    release.set()


def test_idle_threads_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread left idle for IDLE_S ends, so that short-lived adapters (one per CLI command) leave none behind;
    the next read starts a new one."""
    monkeypatch.setattr(deadline_module, "IDLE_S", 0.05)
    deadline = Deadline("idle-probe", 5)
    assert deadline.run("discover", lambda: threading.current_thread().name) == "read-idle-probe"
    for _ in range(100):
        if not any(t.name == "read-idle-probe" for t in threading.enumerate()):
            break
        time.sleep(0.02)
    assert not any(t.name == "read-idle-probe" for t in threading.enumerate())
    assert deadline.run("discover", lambda: 1) == 1
