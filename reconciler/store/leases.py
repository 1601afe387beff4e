"""SqlLeaseStore: how several daemons on one PostgreSQL database share the targets.

Every replica heartbeats a row in `replicas`. Targets are leased for a short time (`ttl`): each claim renews
the replica's own leases, gives back those above its fair share (targets / live replicas, rounded up) so
that a replica that joins gets work, and takes free or expired leases up to that share. A replica that dies
stops renewing; its leases expire and the others take them at their next claim. On top of the lease, a pass
holds a PostgreSQL advisory lock on its target (`exclusive`), so even a pass that outlives its lease is never
run by two replicas at once.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from reconciler.store import tables as t
from reconciler.store.base import SqlStore

HOUSEKEEPING = "housekeeping"  # the lease of the one replica that settles dead replicas' runs
ADVISORY_CLASS = 0x7265  # first key of the two-int advisory lock: "re", so other users' locks do not collide


class SqlLeaseStore(SqlStore):
    @property
    def shared(self) -> bool:
        """Whether replicas can share this database (PostgreSQL); SQLite serves one daemon."""
        return self.engine.dialect.name == "postgresql"

    def _insert(self) -> Any:
        """INSERT ... ON CONFLICT, which PostgreSQL and SQLite both have (each its own construct)."""
        dialect: Any = postgresql if self.shared else sqlite
        return dialect.insert(t.leases)

    def heartbeat(self, owner: str, now: datetime, ttl: timedelta) -> int:
        """Record that `owner` is alive; returns how many replicas are alive (itself included)."""
        try:
            with self.engine.begin() as conn:
                updated = conn.execute(
                    t.replicas.update().where(t.replicas.c.id == owner).values(heartbeat_at=now)
                ).rowcount
                if not updated:
                    conn.execute(t.replicas.insert().values(id=owner, started_at=now, heartbeat_at=now))
                alive = conn.execute(
                    sa.select(sa.func.count()).select_from(t.replicas).where(t.replicas.c.heartbeat_at >= now - ttl)
                ).scalar_one()
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None
        return int(alive)

    def claim(self, owner: str, targets: Sequence[str], now: datetime, ttl: timedelta, replicas: int) -> set[str]:
        """Renew, give back and take leases so that `owner` holds its fair share; returns the targets it holds."""
        share = math.ceil(len(targets) / max(replicas, 1))
        until = now + ttl
        wanted = set(targets)
        try:
            with self.engine.begin() as conn:
                leases = t.leases
                conn.execute(
                    leases.delete().where(leases.c.owner == owner, leases.c.name.notin_([*wanted, HOUSEKEEPING]))
                )
                conn.execute(
                    leases.update()
                    .where(leases.c.owner == owner, leases.c.name != HOUSEKEEPING)
                    .values(expires_at=until)
                )
                mine = set(
                    conn.execute(
                        sa.select(leases.c.name).where(leases.c.owner == owner, leases.c.name != HOUSEKEEPING)
                    ).scalars()
                )
                if len(mine) > share:  # give back the surplus, so that a replica that joined gets work
                    surplus = sorted(mine)[share:]
                    conn.execute(leases.delete().where(leases.c.owner == owner, leases.c.name.in_(surplus)))
                    mine -= set(surplus)
                held = set(
                    conn.execute(
                        sa.select(leases.c.name).where(leases.c.expires_at >= now, leases.c.name.in_(wanted))
                    ).scalars()
                )
                free = sorted(wanted - held - mine, key=lambda name: zlib.crc32(f"{owner}/{name}".encode()))
                for name in free[: max(share - len(mine), 0)]:
                    if self._take(conn, owner, name, now, until):
                        mine.add(name)
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None
        return mine

    def _take(self, conn: sa.Connection, owner: str, name: str, now: datetime, until: datetime) -> bool:
        """Take lease `name` if it is free or expired, atomically; whether `owner` holds it now."""
        insert = self._insert().values(name=name, owner=owner, acquired_at=now, expires_at=until)
        statement = insert.on_conflict_do_update(
            index_elements=[t.leases.c.name],
            set_={"owner": owner, "acquired_at": now, "expires_at": until},
            where=t.leases.c.expires_at < now,
        )
        conn.execute(statement)
        holder = conn.execute(sa.select(t.leases.c.owner).where(t.leases.c.name == name)).scalar_one()
        return bool(holder == owner)

    def housekeeper(self, owner: str, now: datetime, ttl: timedelta) -> bool:
        """Hold (take or renew) the housekeeping lease if free; whether `owner` is the housekeeper now."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    t.leases.update()
                    .where(t.leases.c.name == HOUSEKEEPING, t.leases.c.owner == owner)
                    .values(expires_at=now + ttl)
                )
                return self._take(conn, owner, HOUSEKEEPING, now, now + ttl)
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None

    def dead_replicas(self, now: datetime, ttl: timedelta) -> list[str]:
        """Replicas whose heartbeat stopped more than `ttl` ago."""
        try:
            with self.engine.connect() as conn:
                query = sa.select(t.replicas.c.id).where(t.replicas.c.heartbeat_at < now - ttl)
                return list(conn.execute(query).scalars())
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None

    def forget_replica(self, owner: str) -> None:
        """Drop a replica and its leases: at a clean shutdown (so others take over at once), or once a dead
        one's runs are settled."""
        try:
            with self.engine.begin() as conn:
                conn.execute(t.leases.delete().where(t.leases.c.owner == owner))
                conn.execute(t.replicas.delete().where(t.replicas.c.id == owner))
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None

    @contextmanager
    def exclusive(self, target: str) -> Iterator[bool]:
        """Hold a PostgreSQL advisory lock on `target` for the block; yields whether it was free. SQLite
        (one daemon) always yields True."""
        if not self.shared:
            yield True
            return
        key = zlib.crc32(target.encode()) - 2**31  # a signed 32-bit int, as pg_try_advisory_lock(int, int) takes
        try:
            conn = self.engine.connect()
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None
        try:
            got = bool(
                conn.execute(sa.text("SELECT pg_try_advisory_lock(:c, :k)"), {"c": ADVISORY_CLASS, "k": key}).scalar()
            )
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    _unlock(conn, key)
        finally:
            conn.close()


def _unlock(conn: sa.Connection, key: int) -> None:
    """Release a target's advisory lock. If the connection is gone, so is the lock: PostgreSQL releases a
    session's advisory locks when the session ends."""
    try:
        conn.execute(sa.text("SELECT pg_advisory_unlock(:c, :k)"), {"c": ADVISORY_CLASS, "k": key})
        conn.commit()
    except SQLAlchemyError:
        conn.invalidate()
