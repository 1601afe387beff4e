"""SqlRolloutStore: where each target is in the rollout of the desired version in force, and its hold.

A rollout starts when a version comes into force (`begin`); a version that comes back later (A → B → A)
starts afresh, so earlier progress never opens its waves. Writes are upserts, so replicas recording at the
same moment never collide.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from reconciler.domain.rollout import Hold, Progress, TargetProgress
from reconciler.store import tables as t
from reconciler.store.base import SqlStore

SETTLED = (Progress.DONE.value, Progress.RELEASED.value)


class SqlRolloutStore(SqlStore):
    def _insert(self, table: sa.Table) -> Any:
        """INSERT ... ON CONFLICT, which PostgreSQL and SQLite both have (each its own construct)."""
        dialect: Any = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    def begin(self, version: str, now: datetime) -> bool:
        """`version` is in force: if the latest rollout is another version's, start this one afresh (its old
        progress and hold are forgotten). Whether a rollout started."""
        r = t.rollouts.c
        try:
            with self.engine.begin() as conn:
                latest = conn.execute(sa.select(r.version).order_by(r.started_at.desc()).limit(1)).scalar()
                if latest == version:
                    return False
                conn.execute(t.rollout_targets.delete().where(t.rollout_targets.c.version == version))
                fresh = {"started_at": now, "completed_at": None, "held_wave": None, "held_reason": None}
                fresh |= {"held_at": None, "released_by": None, "released_at": None, "release_reason": None}
                insert = self._insert(t.rollouts).values(version=version, **fresh)
                conn.execute(insert.on_conflict_do_update(index_elements=["version"], set_=fresh))
                return True
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None

    def completed(self, version: str) -> bool:
        """Whether every wave of `version`'s rollout has opened: its later drift is fixed without waves."""
        query = sa.select(t.rollouts.c.completed_at).where(t.rollouts.c.version == version)
        try:
            with self.engine.connect() as conn:
                return conn.execute(query).scalar() is not None
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None

    def complete(self, version: str, now: datetime) -> None:
        r = t.rollouts
        query = r.update().where((r.c.version == version) & r.c.completed_at.is_(None)).values(completed_at=now)
        self._run(query)

    def progress(self, version: str) -> list[TargetProgress]:
        """Every target recorded for `version`, in wave order."""
        p = t.rollout_targets.c
        query = sa.select(p.target, p.wave, p.state, p.at, p.error).where(p.version == version)
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(query.order_by(p.wave, p.target)).all()
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None
        return [TargetProgress(target, wave, Progress(state), at, error) for target, wave, state, at, error in rows]

    def mark(self, version: str, progress: Sequence[TargetProgress]) -> None:
        """Record where targets are in `version`'s rollout. The time of the last verified write is never
        cleared by a later pass that had nothing to write: it is what the bake time counts from."""
        if not progress:
            return
        p = t.rollout_targets
        try:
            with self.engine.begin() as conn:
                for item in progress:
                    values = {"wave": item.wave, "state": item.state.value, "at": item.at, "error": item.error}
                    insert = self._insert(p).values(version=version, target=item.target, **values)
                    update = {**values, "at": sa.func.coalesce(insert.excluded.at, p.c.at)}
                    conn.execute(insert.on_conflict_do_update(index_elements=["version", "target"], set_=update))
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None

    def hold(self, version: str) -> Hold | None:
        """The version's hold, if a failed wave holds the later ones and nobody released it."""
        try:
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(t.rollouts).where(t.rollouts.c.version == version)).mappings().first()
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None
        if row is None or row["held_wave"] is None:
            return None
        return Hold(version, row["held_wave"], row["held_reason"] or "", row["held_at"])

    def set_hold(self, hold: Hold) -> bool:
        """Hold every wave after `hold.wave`; an earlier hold of the version stands. Whether this one is new."""
        r = t.rollouts
        values = {"held_wave": hold.wave, "held_reason": hold.reason, "held_at": hold.at}
        insert = self._insert(r).values(version=hold.version, started_at=hold.at, **values)
        later = r.c.held_wave.is_(None) | (r.c.held_wave > insert.excluded.held_wave)
        upsert = insert.on_conflict_do_update(index_elements=["version"], set_=values, where=later)
        try:
            with self.engine.begin() as conn:  # RETURNING: rowcount of an upsert is not reliable across drivers
                return conn.execute(upsert.returning(r.c.version)).first() is not None
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None

    def release(self, version: str, targets: Sequence[tuple[str, int]], actor: str, reason: str, now: datetime) -> int:
        """Lift the version's hold, and count the targets (of `targets`, name and wave) of the earliest wave
        that has not settled (failed, pending, never passed) as released, so that it no longer holds the next
        wave; the waves after it still go one by one. Returns how many were released."""
        r, p = t.rollouts, t.rollout_targets
        values = {"held_wave": None, "released_by": actor, "released_at": now, "release_reason": reason}
        try:
            with self.engine.begin() as conn:
                insert = self._insert(r).values(version=version, started_at=now, **values)
                conn.execute(insert.on_conflict_do_update(index_elements=["version"], set_=values))
                settled = set(
                    conn.execute(
                        sa.select(p.c.target).where((p.c.version == version) & p.c.state.in_(SETTLED))
                    ).scalars()
                )
                unsettled = [(name, wave) for name, wave in targets if name not in settled]
                first = min((wave for _, wave in unsettled), default=None)
                unsettled = [(name, wave) for name, wave in unsettled if wave == first]
                for name, wave in unsettled:
                    row = {"wave": wave, "state": Progress.RELEASED.value, "error": f"released by {actor}: {reason}"}
                    insert = self._insert(p).values(version=version, target=name, at=None, **row)
                    conn.execute(insert.on_conflict_do_update(index_elements=["version", "target"], set_=row))
                return len(unsettled)
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None

    def versions(self, prefix: str) -> list[str]:
        """The desired versions (full digests) that start with `prefix`, newest first."""
        v = t.desired_versions.c
        query = sa.select(v.digest).where(v.digest.startswith(prefix, autoescape=True)).order_by(v.first_seen_at.desc())
        try:
            with self.engine.connect() as conn:
                return [digest for (digest,) in conn.execute(query)]
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None

    def _run(self, statement: Any) -> int:
        try:
            with self.engine.begin() as conn:
                return int(conn.execute(statement).rowcount)
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None
