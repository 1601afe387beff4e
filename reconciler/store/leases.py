"""SqlLeaseStore: how several daemons on one PostgreSQL database share the targets.

Every replica heartbeats a row in `replicas`. A target's lease is held by one replica and lives as long as
that replica heartbeats (within `ttl`): renewing all of a replica's leases is its heartbeat, one row, however
many targets it holds. Each claim gives back the leases above the replica's fair share (targets / live
replicas, rounded up) so that a replica that joins gets work, and takes free leases, or those of replicas
whose heartbeat stopped, up to that share. A replica that dies stops heartbeating; its leases lapse and the
others take them at their next claim. A replica heartbeats as `joining` while it loads the desired state: the
others count it when they take free leases, not when they give theirs back, so that at a start the first
replica loaded takes its share rather than every target (to pass some and hand them over), and a replica that
loads while the others run leaves them theirs until it can pass its own. A replica joining for longer than
JOINING_AT_MOST is no longer waited for. On top of the lease, a pass holds a PostgreSQL advisory lock on its
target (`exclusive`), so even a pass that outlives its lease is never run by two replicas at once. The
housekeeping lease alone lives by its own `expires_at`, renewed by its holder.

A replica that dies need not be waited for until its heartbeat lapses. Each replica keeps a session of its
own that holds an advisory lock (`session_lock` in its row, with `session_seen`, the server's time at its last
heartbeat); PostgreSQL releases the lock the moment that session ends, as it does when the process is killed
and the kernel closes its socket. A replica whose row names a lock that no session holds is *departed*, as seen
by a replica whose own session holds its lock and began before that row's last heartbeat: its leases count as
lapsed from then on, so the others take its targets at their next claim. A departed replica is not dead: what it
left in flight is settled only once its heartbeat lapses (a session can also end under a live process, which
takes its lock again on a new session at its next heartbeat). Where the lock cannot tell (a row of an older
release, a lock another session holds, every session ended at once by a restart or a failover), the heartbeat
alone decides, as before."""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence, Set
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from reconciler.store import tables as t
from reconciler.store.base import SqlStore
from reconciler.store.sessions import SessionLocks

HOUSEKEEPING = "housekeeping"  # the lease of the one replica that settles dead replicas' runs
READS = 3  # readings of the free leases a claim makes at most; the next tick claims again
CHUNK = 5000  # leases a statement: given back by name (PostgreSQL takes at most 65,535 parameters), or taken
ADVISORY_CLASS = 0x7265  # first key of the two-int advisory lock: "re", so other users' locks do not collide
JOINING_AT_MOST = timedelta(minutes=10)  # a desired state of 300,000 targets loads in ~1.5 min on 2 cores


class SqlLeaseStore(SqlStore):
    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        # Each owner's leases as its last claim left them. Between two of its claims only other replicas change
        # an owner's leases, and only by taking them (its heartbeat lapsed) or dropping them (the housekeeper
        # found it dead): either way they become fewer, so a count that matches says the names are these. With
        # them, the targets they were claimed from: the same collection again means none of them went away.
        self._known: dict[str, tuple[Collection[str], frozenset[str]]] = {}
        self._sessions = SessionLocks(engine)  # PostgreSQL: each replica's own session, holding its lock

    @property
    def shared(self) -> bool:
        """Whether replicas can share this database (PostgreSQL); SQLite serves one daemon."""
        return self.engine.dialect.name == "postgresql"

    def _insert(self) -> Any:
        """INSERT ... ON CONFLICT, which PostgreSQL and SQLite both have (each its own construct)."""
        dialect: Any = postgresql if self.shared else sqlite
        return dialect.insert(t.leases)

    def heartbeat(self, owner: str, now: datetime, ttl: timedelta, *, joining: bool = False) -> int:
        """Record that `owner` is alive, which keeps its leases, and whether it is still `joining` (loading the
        desired state); returns how many replicas are alive and not joining (itself included, once it is not).
        On PostgreSQL its row also names the session lock it holds, taken again first if its session ended."""
        key = self._sessions.lock(owner) if self.shared else None
        try:
            with self.engine.begin() as conn:
                return self._beat(conn, owner, now, ttl, joining, key)
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None

    def _beat(
        self, conn: sa.Connection, owner: str, now: datetime, ttl: timedelta, joining: bool, key: int | None
    ) -> int:
        replicas = t.replicas.c
        seen = sa.func.now() if key is not None else None  # the server's clock, as the sessions' start is read
        values = {"heartbeat_at": now, "joining": joining, "session_lock": key, "session_seen": seen}
        updated = conn.execute(t.replicas.update().where(replicas.id == owner).values(**values)).rowcount
        if not updated:
            conn.execute(t.replicas.insert().values(id=owner, started_at=now, **values))
        gone = self._departed(conn, owner, now - ttl)
        alive = conn.execute(
            sa.select(sa.func.count()).where(
                replicas.heartbeat_at >= now - ttl, replicas.joining.is_(False), replicas.id.notin_(gone)
            )
        ).scalar_one()
        return int(alive)

    def _departed(self, conn: sa.Connection, owner: str, alive_since: datetime) -> list[str]:
        return self._sessions.departed(conn, owner, alive_since) if self.shared else []

    def departed(self, owner: str, now: datetime, ttl: timedelta) -> list[str]:
        """Replicas alive by their heartbeat whose session has ended, as `owner` sees them (none while its own
        session is not known to hold its lock): taken for dead when leases are shared out, not yet when what they
        left in flight is settled."""
        try:
            with self.engine.connect() as conn:
                return self._departed(conn, owner, now - ttl)
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None

    def joining(self, owner: str, now: datetime, ttl: timedelta) -> int:
        """How many replicas are alive and joining, since at most JOINING_AT_MOST, as `owner` sees them: one killed
        while it loads is departed (its session ended) and no longer waited for."""
        replicas = t.replicas.c
        try:
            with self.engine.connect() as conn:
                gone = self._departed(conn, owner, now - ttl)
                query = sa.select(sa.func.count()).where(
                    replicas.heartbeat_at >= now - ttl,
                    replicas.joining.is_(True),
                    replicas.started_at >= now - JOINING_AT_MOST,
                    replicas.id.notin_(gone),
                )
                return int(conn.execute(query).scalar_one())
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None

    def next_lapse(self, owner: str, now: datetime, ttl: timedelta) -> datetime | None:
        """When the first of the other live replicas' leases lapse should it heartbeat no more: its last heartbeat
        plus `ttl`; None when no other replica lives. A replica claims again just then, so that a dead one's
        targets are taken within one lease time of its death rather than at some later tick."""
        try:
            with self.engine.connect() as conn:
                last = conn.execute(
                    sa.select(sa.func.min(t.replicas.c.heartbeat_at)).where(
                        t.replicas.c.id != owner, t.replicas.c.heartbeat_at >= now - ttl
                    )
                ).scalar_one()
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None
        return None if last is None else last + ttl

    def claim(
        self, owner: str, targets: Collection[str], now: datetime, ttl: timedelta, replicas: int, joining: int = 0
    ) -> set[str]:
        """Give back and take leases so that `owner` holds its fair share among `replicas` (alive and not joining),
        taking free ones only up to its share among those and the `joining` replicas; returns the targets it
        holds. Its heartbeat (heartbeat()) is what keeps them: call that first.

        Set-based, whatever the fleet's size: the target list itself never goes to the database (PostgreSQL
        takes at most 65,535 parameters a statement), and free leases are taken in chunks, each in a
        transaction of its own that locks its names in order, so that two replicas taking leases at once cannot
        deadlock."""
        share = math.ceil(len(targets) / max(replicas, 1))
        taken_up_to = math.ceil(len(targets) / max(replicas + joining, 1))
        wanted: Set[str] = (  # a mapping's keys, or a set, are taken as they are
            targets.keys() if isinstance(targets, Mapping) else targets if isinstance(targets, Set) else set(targets)
        )
        leases = t.leases
        known = self._known.pop(owner, None)  # until this claim ends well
        try:
            with self.engine.begin() as conn:
                lapsed = _lapsed(now - ttl, self._departed(conn, owner, now - ttl))  # the same for the whole claim
                own = (leases.c.owner == owner, leases.c.name != HOUSEKEEPING)
                count = conn.execute(sa.select(sa.func.count()).select_from(leases).where(*own)).scalar_one()
                if known is not None and count == len(known[1]):  # a replica's 100,000 names are not read again
                    mine = set(known[1])
                else:
                    mine = set(conn.execute(sa.select(leases.c.name).where(*own)).scalars().all())
                kept = mine if known is not None and known[0] is targets else mine.intersection(wanted)
                surplus = sorted(kept)[share:] if len(kept) > share else []  # so that a replica that joined gets work
                _delete(conn, owner, [*(mine - kept), *surplus])
                mine = kept.difference(surplus)
            for _ in range(READS):  # a name another replica took meanwhile makes the list stale: read it again
                need = taken_up_to - len(mine)
                free = self._free(wanted, mine, lapsed) if need > 0 else []
                free.sort(key=lambda name: zlib.crc32(f"{owner}/{name}".encode()))  # replicas try different ones first
                if not self._take_some(owner, free, need, mine, now, ttl, lapsed):
                    break
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None
        self._known[owner] = (targets, frozenset(mine))
        return mine

    def _free(self, wanted: Set[str], mine: set[str], lapsed: Any) -> list[str]:
        """The wanted targets no live replica holds. The live leases are counted first: when there are as many
        as targets, none is free (leases of targets gone from the desired state are given back by their holders
        at their next tick), and the names are not read."""
        leases = t.leases
        live = sa.not_(lapsed)
        with self.engine.connect() as conn:
            held = conn.execute(
                sa.select(sa.func.count()).select_from(leases).where(live, leases.c.name != HOUSEKEEPING)
            ).scalar_one()
            if held >= len(wanted):
                return []
            names = set(conn.execute(sa.select(leases.c.name).where(live)).scalars())
        return list(wanted - names - mine)

    def _take_some(
        self, owner: str, free: list[str], need: int, mine: set[str], now: datetime, ttl: timedelta, lapsed: Any
    ) -> bool:
        """Take up to `need` of `free` into `mine`, a chunk at a time; whether a chunk came back short (another
        replica took some of its names), so that the free list is worth reading again."""
        tried = 0
        while need > 0 and tried < len(free):
            chunk = sorted(free[tried : tried + min(need, CHUNK)])
            tried += len(chunk)
            with self.engine.begin() as conn:
                taken = set(conn.execute(self._upsert(owner, chunk, now, now + ttl, lapsed)).scalars())
            mine |= taken
            need -= len(taken)
            if len(taken) < len(chunk):
                return need > 0
        return False

    def _upsert(self, owner: str, names: list[str], now: datetime, until: datetime, lapsed: Any) -> Any:
        """INSERT the leases of `names` for `owner`, or take over those `lapsed`; returns the names taken. The
        names travel as one array (PostgreSQL) or JSON (SQLite) parameter: the statement is the same for any
        number of names, so it is compiled once."""
        if self.shared:
            array = sa.bindparam("names", names, type_=postgresql.ARRAY(sa.Text))
            source = sa.func.unnest(array).table_valued("value").render_derived()
        else:
            source = sa.func.json_each(sa.bindparam("names", json.dumps(names))).table_valued("value")
        rows = sa.select(
            source.c.value,
            sa.bindparam("owner", owner, type_=sa.String),
            sa.bindparam("now", now, type_=t.UtcDateTime),
            sa.bindparam("until", until, type_=t.UtcDateTime),
        ).where(sa.true())  # SQLite reads an ON CONFLICT after a bare FROM as a join's ON
        insert = self._insert().from_select(["name", "owner", "acquired_at", "expires_at"], rows)
        return insert.on_conflict_do_update(
            index_elements=[t.leases.c.name],
            set_={"owner": insert.excluded.owner, "acquired_at": insert.excluded.acquired_at, "expires_at": until},
            where=lapsed,
        ).returning(t.leases.c.name)

    def housekeeper(self, owner: str, now: datetime, ttl: timedelta) -> bool:
        """Hold (take or renew) the housekeeping lease if free; whether `owner` is the housekeeper now."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    t.leases.update()
                    .where(t.leases.c.name == HOUSEKEEPING, t.leases.c.owner == owner)
                    .values(expires_at=now + ttl)
                )
                conn.execute(self._upsert(owner, [HOUSEKEEPING], now, now + ttl, t.leases.c.expires_at < now)).all()
                holder = conn.execute(sa.select(t.leases.c.owner).where(t.leases.c.name == HOUSEKEEPING))
                return bool(holder.scalar_one() == owner)
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

    def replica(self, owner: str) -> bool:
        if not self.shared:
            return False
        try:
            with self.engine.connect() as conn:
                query = sa.select(sa.func.count()).select_from(t.replicas).where(t.replicas.c.id == owner)
                return bool(conn.execute(query).scalar())
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None

    def forget_replica(self, owner: str) -> None:
        """Drop a replica and its leases: at a clean shutdown (so others take over at once), or once a dead
        one's runs are settled."""
        self._known.pop(owner, None)
        try:
            with self.engine.begin() as conn:
                conn.execute(t.leases.delete().where(t.leases.c.owner == owner))
                conn.execute(t.replicas.delete().where(t.replicas.c.id == owner))
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None
        finally:
            self._sessions.end(owner)  # its own: the session lock goes with the row (and, on failure, the process)

    @contextmanager
    def exclusive(self, target: str) -> Iterator[bool]:
        """Hold a PostgreSQL advisory lock on `target` for the block; yields whether it was free. SQLite
        (one daemon) always yields True."""
        if not self.shared:
            yield True
            return
        key = _key(target)
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
                    _unlock(conn, [key])
        finally:
            conn.close()

    @contextmanager
    def exclusive_all(self, targets: Sequence[str]) -> Iterator[tuple[set[str], Callable[[str], None]]]:
        """exclusive() for a batch of passes: one statement on one connection (in autocommit) takes the advisory
        locks of all of `targets`; yields the targets whose lock was free, and a function that gives one target's
        lock back as its pass ends (one statement); the block's end gives back any still held. Two targets whose
        keys are alike are both taken (PostgreSQL counts a session's locks of one key) and both given back. A
        statement that fails part-way may leave some locks taken: the connection is then discarded, not pooled,
        and its locks go with its session. SQLite (one daemon) yields them all."""
        if not self.shared or not targets:
            yield set(targets), lambda _: None
            return
        try:
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None
        try:
            keys = [_key(target) for target in targets]
            try:
                rows = conn.execute(
                    sa.text(
                        "SELECT u.i, pg_try_advisory_lock(:c, u.k)"
                        " FROM unnest(CAST(:keys AS integer[])) WITH ORDINALITY AS u(k, i)"
                    ),
                    {"c": ADVISORY_CLASS, "keys": keys},
                ).all()
            except SQLAlchemyError as exc:
                conn.invalidate()
                raise self._fail(exc) from None
            owed = {targets[int(i) - 1]: keys[int(i) - 1] for i, free in rows if free}

            def release(target: str) -> None:
                key = owed.pop(target, None)
                if key is not None and not _unlock(conn, [key]):
                    owed.clear()  # the connection is gone, and its locks with it

            try:
                yield set(owed), release
            finally:
                if owed:
                    _unlock(conn, list(owed.values()))
        finally:
            conn.close()


def _key(target: str) -> int:
    """A target's advisory lock key: a signed 32-bit int, as pg_try_advisory_lock(int, int) takes."""
    return zlib.crc32(target.encode()) - 2**31


def _lapsed(alive_since: datetime, departed: list[str]) -> sa.ColumnElement[bool]:
    """Whether a lease lapsed: its owner's heartbeat is older than `alive_since`, or its owner departed."""
    alive = sa.select(t.replicas.c.id).where(t.replicas.c.heartbeat_at >= alive_since, t.replicas.c.id.notin_(departed))
    return t.leases.c.owner.notin_(alive)


def _delete(conn: sa.Connection, owner: str, names: list[str]) -> None:
    """Give back `owner`'s leases of `names`, a chunk of names a statement."""
    for start in range(0, len(names), CHUNK):
        chunk = names[start : start + CHUNK]
        conn.execute(t.leases.delete().where(t.leases.c.owner == owner, t.leases.c.name.in_(chunk)))


def _unlock(conn: sa.Connection, keys: list[int]) -> bool:
    """Release targets' advisory locks, one statement for them all; whether it could. If the connection is gone,
    so are the locks: PostgreSQL releases a session's advisory locks when the session ends."""
    try:
        conn.execute(
            sa.text("SELECT pg_advisory_unlock(:c, k) FROM unnest(CAST(:keys AS integer[])) AS k"),
            {"c": ADVISORY_CLASS, "keys": keys},
        )
        conn.commit()
    except SQLAlchemyError:
        conn.invalidate()
        return False
    return True
