"""What history says about a target for the report of what runs where: its last passes, and since when each
drifting key has drifted."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from reconciler.domain.inventory import TargetHistory
from reconciler.domain.run import RunKind, RunStatus
from reconciler.store import tables as t
from reconciler.store.base import SqlStore

CLEAN = (RunStatus.CLEAN.value, RunStatus.FIXED.value)


class SqlInventoryReader(SqlStore):
    def target_history(self, target: str, drifting: Collection[str]) -> TargetHistory:
        """`target`'s newest recorded pass, its newest clean one, and for each pointer in `drifting` the time of
        the first recorded pass of its current streak (walking back from the newest pass until one without it)."""
        p, r, d, v = t.passes.c, t.runs.c, t.drifts.c, t.desired_versions.c
        looked = (p.target == target, r.kind != RunKind.ROLLBACK.value, p.status != RunStatus.FAILED.value)
        try:
            with self.engine.connect() as conn:
                passes = conn.execute(
                    sa.select(p.run_id, p.status, r.started_at, r.desired_version, v.git_commit)
                    .select_from(
                        t.passes.join(t.runs, r.id == p.run_id).outerjoin(
                            t.desired_versions, v.digest == r.desired_version
                        )
                    )
                    .where(*looked)
                    .order_by(r.started_at.desc(), p.id.desc())
                ).all()
                wanted = set(drifting)
                seen: dict[str, set[str]] = {}
                if wanted:
                    for run_id, path in conn.execute(sa.select(d.run_id, d.path).where(d.target == target)):
                        if path in wanted:
                            seen.setdefault(run_id, set()).add(path)
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None
        if not passes:
            return TargetHistory(None, None, None, None, {})
        newest = passes[0]
        clean = next((row.started_at for row in passes if row.status in CLEAN), None)
        since: dict[str, datetime] = {}
        open_ = set(wanted)
        for row in passes:
            here = seen.get(row.run_id, set())
            for path in list(open_):
                if path in here:
                    since[path] = row.started_at
                else:
                    open_.discard(path)
            if not open_:
                break
        return TargetHistory(newest.started_at, clean, newest.desired_version, newest.git_commit, since)
