"""SessionLocks: each replica's own PostgreSQL session, holding an advisory lock for as long as it lives.

The server releases a session's advisory locks the moment the session ends, as it does when the process is killed
and the kernel closes its socket: a replica whose row names a lock that no session holds has *departed*, and the
others need not wait for its heartbeat to lapse (store/leases.py). A session is looked at through pg_locks, never
by a statement on it, so one that ended is replaced without an error that the store's fail-fast layer
(store/availability.py) would take for an outage."""

from __future__ import annotations

import threading
import zlib
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from reconciler.store import tables as t

SESSION_CLASS = 0x7273  # first key of a replica's session lock: "rs", apart from the targets' locks ("re")

_HELD = sa.text(  # whether the session of server process :p holds the session lock :k
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = :c AND objid = :k"
    " AND objsubid = 2 AND pid = :p"
)
_DEPARTED = sa.text(
    "SELECT r.id FROM replicas r"
    " WHERE r.heartbeat_at >= :since AND r.session_lock IS NOT NULL AND r.session_seen > :opened"
    " AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
    " AND l.classid = :c AND l.objid = :k AND l.objsubid = 2 AND l.pid = :p)"
    " AND NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND l.classid = :c AND l.objid = r.session_lock AND l.objsubid = 2)"
).bindparams(sa.bindparam("since", type_=t.UtcDateTime), sa.bindparam("opened", type_=t.UtcDateTime))


class SessionLocks:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        # Each owner's session: the connection, its server pid, the lock's key, and when it began (server's clock)
        self._sessions: dict[str, tuple[sa.Connection, int, int, datetime]] = {}
        self._lock = threading.Lock()

    def lock(self, owner: str) -> int | None:
        """The key of the session lock that `owner`'s own session holds, as pg_locks shows it. A session whose
        lock is gone (it ended) is dropped without a statement on it, and a new one takes the lock. None while
        another session holds the key (a name that hashes alike, or this owner's previous session that the server
        has not seen end yet), or while no session can be had (the pool is exhausted, the store is down): then
        its heartbeat alone says whether it lives, and the next heartbeat tries again. Each step holds one pooled
        connection at most, never one while it waits for another."""
        with self._lock:
            try:
                if owner in self._sessions:
                    _, pid, key, _ = self._sessions[owner]
                    with self.engine.connect() as conn:
                        if conn.execute(_HELD, {"c": SESSION_CLASS, "k": key, "p": pid}).scalar():
                            return key
                    self._end(owner)
                return self._open(owner)
            except SQLAlchemyError:
                return None

    def _open(self, owner: str) -> int | None:
        key = zlib.crc32(owner.encode()) & 0x7FFFFFFF  # an oid in pg_locks, so not negative
        session = self.engine.connect()
        try:
            pid, got, opened = session.execute(
                sa.text("SELECT pg_backend_pid(), pg_try_advisory_lock(:c, :k), now()"), {"c": SESSION_CLASS, "k": key}
            ).one()
            session.commit()
            if not got:
                session.close()  # it holds nothing, and was changed in nothing: back to the pool
                return None
            # A session that only holds its lock is idle: a server's idle_session_timeout (PostgreSQL 14 on) would
            # end it, and the others would take this replica's leases each time. Set on this session alone, which
            # is never pooled again (_end discards it).
            session.execute(
                sa.text(
                    "SELECT set_config('idle_session_timeout', '0', false)"
                    " WHERE current_setting('server_version_num')::int >= 140000"
                )
            )
            session.commit()
        except SQLAlchemyError:
            session.invalidate()
            session.close()
            raise
        self._sessions[owner] = (session, int(pid), key, opened)
        return key

    def end(self, owner: str) -> None:
        """End `owner`'s session, and with it its session lock."""
        with self._lock:
            self._end(owner)

    def _end(self, owner: str) -> None:
        """The connection is discarded, not pooled: a pooled one would keep the session, and the lock, alive."""
        ended = self._sessions.pop(owner, None)
        if ended is None:
            return
        try:
            ended[0].invalidate()
            ended[0].close()
        except SQLAlchemyError:
            pass  # the connection is gone already, and its session with it

    def departed(self, conn: sa.Connection, owner: str, alive_since: datetime) -> list[str]:
        """The replicas whose heartbeat lives (since `alive_since`) but whose session lock no session holds: their
        process is gone (or its session ended). Judged only by a replica (`owner`) whose own session still holds
        its lock, and only of replicas that heartbeat since that session began: when every session ends at once
        (a server that restarted, crashed backends, a pooler's restart, a failover), the others are not taken for
        departed before they could take their locks again."""
        session = self._sessions.get(owner)
        if session is None:
            return []
        _, pid, key, opened = session
        values = {"since": alive_since, "opened": opened, "c": SESSION_CLASS, "k": key, "p": pid}
        return list(conn.execute(_DEPARTED, values).scalars())
