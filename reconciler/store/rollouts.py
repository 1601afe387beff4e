"""SqlRolloutStore: where each target is in a desired version's rollout, and the version's hold."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from reconciler.domain.rollout import Hold, Progress, TargetProgress
from reconciler.store import tables as t
from reconciler.store.base import SqlStore


class SqlRolloutStore(SqlStore):
    def progress(self, version: str) -> list[TargetProgress]:
        """Every target recorded for `version`, in wave order."""
        r = t.rollout_targets.c
        query = (
            sa.select(r.target, r.wave, r.state, r.at, r.error).where(r.version == version).order_by(r.wave, r.target)
        )
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None
        return [TargetProgress(target, wave, Progress(state), at, error) for target, wave, state, at, error in rows]

    def mark(self, version: str, progress: Sequence[TargetProgress]) -> None:
        """Record where targets are in `version`'s rollout (an upsert per target)."""
        if not progress:
            return
        r = t.rollout_targets
        try:
            with self.engine.begin() as conn:
                for p in progress:
                    values = {"wave": p.wave, "state": p.state.value, "at": p.at, "error": p.error}
                    key = (r.c.version == version) & (r.c.target == p.target)
                    if conn.execute(r.update().where(key).values(**values)).rowcount == 0:
                        conn.execute(r.insert().values(version=version, target=p.target, **values))
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
        try:
            with self.engine.begin() as conn:
                row = conn.execute(sa.select(r.c.held_wave).where(r.c.version == hold.version)).first()
                if row is None:
                    conn.execute(r.insert().values(version=hold.version, **values))
                    return True
                if row.held_wave is not None and row.held_wave <= hold.wave:
                    return False
                conn.execute(r.update().where(r.c.version == hold.version).values(**values))
                return True
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None

    def release(self, version: str, actor: str, reason: str, now: datetime) -> int:
        """Lift the version's hold; its failed targets count as done. Returns how many targets were failed."""
        r, p = t.rollouts, t.rollout_targets
        values = {"held_wave": None, "released_by": actor, "released_at": now, "release_reason": reason}
        try:
            with self.engine.begin() as conn:
                if conn.execute(r.update().where(r.c.version == version).values(**values)).rowcount == 0:
                    conn.execute(r.insert().values(version=version, **values))
                failed = (p.c.version == version) & (p.c.state == Progress.FAILED.value)
                return conn.execute(p.update().where(failed).values(state=Progress.RELEASED.value)).rowcount
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None
