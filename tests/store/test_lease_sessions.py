"""Departed replicas on the real PostgreSQL: a replica keeps a session that holds an advisory lock, and the others
take its leases as soon as that session ends (its process killed), not a lease time later. Where the lock cannot
tell (an older release's row, a lock held elsewhere, every session ended at once), the heartbeat alone decides."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from reconciler.store import engine as engines
from reconciler.store import migrate
from reconciler.store.leases import SqlLeaseStore
from reconciler.store.sessions import SESSION_CLASS

TTL = timedelta(seconds=30)
TARGETS = [f"t{i:02}" for i in range(10)]


@pytest.fixture
def engine(postgres_url: str) -> Iterator[sa.Engine]:
    engine = engines.create_engine(postgres_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


def session_pid(engine: sa.Engine, owner: str) -> int | None:
    """The server process of the session that holds `owner`'s session lock, if one does."""
    key = zlib.crc32(owner.encode()) & 0x7FFFFFFF
    with engine.connect() as conn:
        pid = conn.execute(
            sa.text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = :c AND objid = :k"
                " AND objsubid = 2"
            ),
            {"c": SESSION_CLASS, "k": key},
        ).scalar()
    return None if pid is None else int(pid)


def end_session(engine: sa.Engine, owner: str) -> None:
    """End `owner`'s heartbeat session from the server's side, as when its process dies, and wait until its lock
    is gone (the backend exits just after it is told to)."""
    pid = session_pid(engine, owner)
    assert pid is not None, f"{owner} holds no session lock"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
    deadline = time.monotonic() + 10
    while session_pid(engine, owner) is not None:
        assert time.monotonic() < deadline, f"{owner}'s session lock outlived its session"
        time.sleep(0.05)


def test_a_replica_whose_session_ends_has_its_leases_taken_at_once(engine: sa.Engine) -> None:
    a, b = SqlLeaseStore(engine), SqlLeaseStore(engine)
    now = datetime.now(UTC)
    b.heartbeat("b", now, TTL)
    a.heartbeat("a", now, TTL)  # a heartbeats after b's session began: b can judge it
    assert len(a.claim("a", TARGETS, now, TTL, 2)) == 5 and len(b.claim("b", TARGETS, now, TTL, 2)) == 5
    assert b.departed("b", now, TTL) == []

    end_session(engine, "a")  # a is killed; its heartbeat is only a moment old
    later = now + timedelta(seconds=1)
    assert b.departed("b", later, TTL) == ["a"]
    assert b.dead_replicas(later, TTL) == []  # what it left in flight waits for its heartbeat to lapse
    assert b.heartbeat("b", later, TTL) == 1  # a no longer counts
    assert b.claim("b", TARGETS, later, TTL, 1) == set(TARGETS)  # a's five leases too, well within its lease time


def test_a_replica_whose_session_broke_takes_its_lock_again_at_its_next_heartbeat(engine: sa.Engine) -> None:
    """The session ends under a live process (an administrator ended it, a pooler restarted): the next heartbeat
    opens a new one, takes the lock again, and the replica counts again; the leases taken meanwhile stay taken
    and the replica's next claim reads that."""
    a, b = SqlLeaseStore(engine), SqlLeaseStore(engine)
    now = datetime.now(UTC)
    b.heartbeat("b", now, TTL)
    a.heartbeat("a", now, TTL)
    assert len(a.claim("a", TARGETS, now, TTL, 2)) == 5
    end_session(engine, "a")
    assert a.departed("a", now, TTL) == []  # a's own session ended: it judges nobody
    assert b.claim("b", TARGETS, now, TTL, 1) == set(TARGETS)

    later = now + timedelta(seconds=2)
    assert a.heartbeat("a", later, TTL) == 2  # a new session, and the lock
    assert session_pid(engine, "a") is not None and b.departed("b", later, TTL) == []
    assert a.claim("a", TARGETS, later, TTL, 2) == set()  # b's now, until b gives its surplus back
    assert len(b.claim("b", TARGETS, later, TTL, 2)) == 5


def test_when_every_session_ends_at_once_nobody_is_taken_for_departed(engine: sa.Engine) -> None:
    """A server restarted, its backends crashed, a pooler restarted, a failover: every lock is gone at once. The
    first replica back must not take the others for departed (and take every target) before they could take
    their locks again: it judges only replicas that heartbeat since its own session began. One that never comes
    back lapses with its heartbeat, as before."""
    stores = {owner: SqlLeaseStore(engine) for owner in ("a", "b", "c")}
    now = datetime.now(UTC)
    for owner, leases in stores.items():
        leases.heartbeat(owner, now, TTL)
    for owner in stores:
        end_session(engine, owner)
    assert stores["b"].heartbeat("b", now, TTL) == 3  # b is back first: a and c still count
    assert stores["b"].departed("b", now, TTL) == []
    stores["a"].heartbeat("a", now, TTL)  # a is back too; c never comes back
    assert stores["b"].departed("b", now, TTL) == []
    lapsed = now + TTL + timedelta(seconds=1)
    assert stores["b"].heartbeat("b", lapsed, TTL) == 1
    assert sorted(stores["b"].dead_replicas(lapsed, TTL)) == ["a", "c"]  # a stopped heartbeating at `now`


def test_a_row_of_an_older_release_is_judged_by_its_heartbeat_alone(engine: sa.Engine) -> None:
    a, b = SqlLeaseStore(engine), SqlLeaseStore(engine)
    now = datetime.now(UTC)
    b.heartbeat("b", now, TTL)
    a.heartbeat("old", now, TTL)
    end_session(engine, "old")
    assert b.departed("b", now, TTL) == ["old"]
    with engine.begin() as conn:  # as an older release writes it: no lock named
        conn.execute(sa.text("UPDATE replicas SET session_lock = NULL, session_seen = NULL WHERE id = 'old'"))
    assert b.departed("b", now, TTL) == []
    assert b.heartbeat("b", now, TTL) == 2


def test_a_session_lock_held_elsewhere_is_not_taken_for_a_replicas(engine: sa.Engine) -> None:
    """Another session holds a's key (a name that hashes alike): a heartbeats without a lock, and is judged by
    its heartbeat alone, never taken for departed; once the key is free, its next heartbeat takes it."""
    key = zlib.crc32(b"a") & 0x7FFFFFFF
    other = engine.connect()
    assert other.execute(sa.text("SELECT pg_try_advisory_lock(:c, :k)"), {"c": SESSION_CLASS, "k": key}).scalar()
    other.commit()
    a, b = SqlLeaseStore(engine), SqlLeaseStore(engine)
    now = datetime.now(UTC)
    b.heartbeat("b", now, TTL)
    a.heartbeat("a", now, TTL)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT session_lock FROM replicas WHERE id = 'a'")).scalar() is None
    other.invalidate()  # the other session ends: were a's row naming that key, a would now look departed
    deadline = time.monotonic() + 10
    while session_pid(engine, "a") is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert b.departed("b", now, TTL) == []
    a.heartbeat("a", now + timedelta(seconds=1), TTL)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT session_lock FROM replicas WHERE id = 'a'")).scalar() == key
    assert session_pid(engine, "a") is not None


def test_a_clean_leave_ends_the_session(engine: sa.Engine) -> None:
    a = SqlLeaseStore(engine)
    a.heartbeat("a", datetime.now(UTC), TTL)
    assert session_pid(engine, "a") is not None
    a.forget_replica("a")
    assert session_pid(engine, "a") is None


def test_a_killed_process_is_departed_within_moments(engine: sa.Engine) -> None:
    """The real case: a replica process heartbeats, then is SIGKILLed. Its kernel closes its socket, the server
    ends its session, and the lock goes: it is departed at once, though its heartbeat is fresh."""
    script = textwrap.dedent(
        """
        import sys, time
        from datetime import UTC, datetime, timedelta
        from reconciler.store import engine as engines
        from reconciler.store.leases import SqlLeaseStore
        leases = SqlLeaseStore(engines.create_engine(sys.argv[1]))
        leases.heartbeat("victim", datetime.now(UTC), timedelta(seconds=30))
        print("beating", flush=True)
        time.sleep(600)
        """
    )
    url = engine.url.render_as_string(hide_password=False)
    watcher = SqlLeaseStore(engine)
    watcher.heartbeat("watcher", datetime.now(UTC), TTL)  # its session begins before the victim's heartbeat
    child = subprocess.Popen([sys.executable, "-c", script, url], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "beating"
        assert watcher.departed("watcher", datetime.now(UTC), TTL) == []
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        killed = time.monotonic()
        while watcher.departed("watcher", datetime.now(UTC), TTL) != ["victim"]:
            assert time.monotonic() - killed < 5, "a killed replica was not departed within 5 s"
            time.sleep(0.05)
    finally:
        child.kill()
        child.wait(timeout=10)


def test_a_replica_killed_while_it_joins_is_no_longer_waited_for(engine: sa.Engine) -> None:
    """A replica heartbeats as joining while it loads the desired state, and the others leave it its share. Killed
    while it loads, its session ends: the others count it out at once and take its share, instead of keeping it
    free until its heartbeat lapses."""
    a, b = SqlLeaseStore(engine), SqlLeaseStore(engine)
    now = datetime.now(UTC)
    a.heartbeat("a", now, TTL)
    b.heartbeat("b", now, TTL, joining=True)  # after a's session began: a can judge it
    assert a.joining("a", now, TTL) == 1
    assert len(a.claim("a", TARGETS, now, TTL, 1, a.joining("a", now, TTL))) == 5  # b's half stays free

    end_session(engine, "b")
    later = now + timedelta(seconds=1)
    assert a.joining("a", later, TTL) == 0
    assert a.claim("a", TARGETS, later, TTL, 1, a.joining("a", later, TTL)) == set(TARGETS)
