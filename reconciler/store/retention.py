"""SqlRetention: history older than the retention deleted in small batches, keeping what is still needed.

What a prune keeps, however old: the newest pass of every target (with its run, drift and actions), the runs
of approvals still open (pending, approved, rejected), the newest write of every key (what a rollback would
undo; older writes of a key can no longer be undone, live no longer holds them), the first drift recorded under
each active exception (how long it has been accepted), runs still running, and every desired version a kept
row refers to. Everything else older than the cutoff goes, children first, a few thousand rows per transaction,
so that a pass waiting for the database waits for one small batch at most.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from reconciler.domain.approval import ApprovalState
from reconciler.domain.audit import PruneStats
from reconciler.domain.plan import ActionState
from reconciler.domain.run import RunStatus
from reconciler.store import tables as t
from reconciler.store.base import SqlStore
from reconciler.store.leases import ADVISORY_CLASS

LOCK = 0x7072756E  # second key of the prune's advisory lock ("prun"): one replica prunes at a time
RUNS_PER_BATCH = 500  # run ids bound in one statement (below SQLite's oldest limit of 999 variables)
OPEN_APPROVALS = (ApprovalState.PENDING.value, ApprovalState.APPROVED.value, ApprovalState.REJECTED.value)
WROTE = tuple(s.value for s in ActionState if s.wrote)


class _Tally:
    """Counts rows and times each deleting transaction, for PruneStats."""

    def __init__(self) -> None:
        self.deleted: dict[str, int] = {}
        self.longest_s = 0.0
        self.batches = 0

    def add(self, table: str, rows: int, seconds: float) -> None:
        self.deleted[table] = self.deleted.get(table, 0) + rows
        self.longest_s = max(self.longest_s, seconds)
        self.batches += 1


class SqlRetention(SqlStore):
    def prune(
        self,
        cutoff: datetime,
        *,
        active_exceptions: Collection[str] = (),
        batch_rows: int = 5000,
        pause_s: float = 0.0,
        dry_run: bool = False,
        stop: threading.Event | None = None,
    ) -> PruneStats:
        """Delete (dry: count) history older than `cutoff` that nothing needs any more. `active_exceptions` are
        the `decided_by` of the exceptions in force ("exception default/0"). At most `batch_rows` rows go per
        transaction, with `pause_s` between transactions; `stop` ends the prune between batches."""
        started = time.perf_counter()
        tally = _Tally()
        try:
            with self._exclusive() as mine:
                if not mine:
                    return PruneStats(cutoff, dry_run, {}, 0, 0.0, 0.0, 0, skipped="another replica is pruning")
                keep = self.needed(cutoff, active_exceptions)
                kept = self._runs(cutoff, keep, tally, batch_rows, pause_s, dry_run, stop)
                if stop is None or not stop.is_set():
                    self._rest(cutoff, tally, batch_rows, dry_run)
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None
        return PruneStats(
            cutoff, dry_run, tally.deleted, kept, time.perf_counter() - started, tally.longest_s, tally.batches
        )

    @contextmanager
    def _exclusive(self) -> Iterator[bool]:
        """On PostgreSQL, one replica prunes at a time (a session advisory lock); SQLite serves one daemon."""
        if self.engine.dialect.name != "postgresql":
            yield True
            return
        with self.engine.connect() as conn:
            args = {"c": ADVISORY_CLASS, "k": LOCK}
            got = bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:c, :k)"), args).scalar())
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:c, :k)"), args)
                    conn.commit()

    def needed(self, cutoff: datetime, active_exceptions: Collection[str] = ()) -> set[str]:
        """The ids of runs older than `cutoff` that must stay (see the module's docstring)."""
        p, a, d, r = t.passes.c, t.actions.c, t.drifts.c, t.runs.c
        newest_pass = sa.select(sa.func.max(p.id)).group_by(p.target)
        ranked = (
            sa.select(
                a.run_id,
                sa.func.row_number()
                .over(partition_by=(a.target, a.path), order_by=(a.updated_at.desc(), a.id.desc()))
                .label("n"),
            )
            .where(a.state.in_(WROTE))
            .subquery()
        )
        ap = t.approvals.c
        queries: list[sa.Select[Any]] = [
            sa.select(p.run_id).where(p.id.in_(newest_pass)),
            sa.select(ranked.c.run_id).where(ranked.c.n == 1),
            sa.select(ap.run_id).where(ap.state.in_(OPEN_APPROVALS), ap.run_id.is_not(None)),
            sa.select(a.run_id).where(
                a.id.in_(sa.select(ap.action_id).where(ap.state.in_(OPEN_APPROVALS), ap.action_id.is_not(None)))
            ),
        ]
        if active_exceptions:
            first = sa.select(sa.func.min(d.id)).where(d.decided_by.in_(list(active_exceptions)))
            queries.append(sa.select(d.run_id).where(d.id.in_(first.group_by(d.target, d.path, d.decided_by))))
        # One statement: the needed runs' ids never travel to be sent back in chunks (300,000 targets' newest
        # passes were 600 statements of 500 bound ids each, most of an hourly prune's time).
        needed = sa.union(*queries).subquery()
        old = sa.select(r.id).where(r.id.in_(sa.select(needed.c[0])), r.started_at < cutoff)
        with self.engine.connect() as conn:
            return {row[0] for row in conn.execute(old)}

    def _runs(
        self,
        cutoff: datetime,
        keep: set[str],
        tally: _Tally,
        batch_rows: int,
        pause_s: float,
        dry_run: bool,
        stop: threading.Event | None,
    ) -> int:
        """Delete the old runs not in `keep`, oldest first, and their passes, drift and actions; the number
        of old runs kept."""
        r = t.runs.c
        kept: set[str] = set()
        after: tuple[datetime, str] | None = None
        while stop is None or not stop.is_set():
            query = sa.select(r.id, r.started_at).where(r.started_at < cutoff, r.status != RunStatus.RUNNING.value)
            if after is not None:
                query = query.where(sa.or_(r.started_at > after[0], (r.started_at == after[0]) & (r.id > after[1])))
            with self.engine.connect() as conn:
                rows = conn.execute(query.order_by(r.started_at, r.id).limit(RUNS_PER_BATCH)).all()
            if not rows:
                break
            after = (rows[-1][1], rows[-1][0])
            doomed = [run_id for run_id, _ in rows if run_id not in keep]
            kept.update(run_id for run_id, _ in rows if run_id in keep)
            if not doomed:
                # Every run of the page is still needed: each target's newest pass, mostly, which an hourly
                # prune pages over every time (300,000 targets: 600 pages). No transaction, so no pause.
                continue
            for table in (t.drifts, t.passes, t.actions):
                self._children(table, doomed, tally, batch_rows, pause_s, dry_run, stop)
            self._delete(t.runs, t.runs.c.id.in_(doomed), tally, dry_run)
            if pause_s and not dry_run:
                time.sleep(pause_s)
        return len(kept)

    def _children(
        self,
        table: sa.Table,
        run_ids: list[str],
        tally: _Tally,
        batch_rows: int,
        pause_s: float,
        dry_run: bool,
        stop: threading.Event | None,
    ) -> None:
        """Delete the rows of `table` that belong to `run_ids`, at most `batch_rows` per transaction."""
        if not run_ids:
            return
        of_runs = table.c.run_id.in_(run_ids)
        if dry_run:
            self._delete(table, of_runs, tally, dry_run=True)
            return
        batch = sa.select(table.c.id).where(of_runs).limit(batch_rows).scalar_subquery()
        while stop is None or not stop.is_set():
            if self._delete(table, table.c.id.in_(batch), tally, dry_run=False) < batch_rows:
                return
            if pause_s:
                time.sleep(pause_s)

    def _delete(self, table: sa.Table, where: sa.ColumnElement[bool], tally: _Tally, dry_run: bool) -> int:
        """One transaction: delete (dry: count) the rows of `table` matching `where`."""
        started = time.perf_counter()
        if dry_run:
            with self.engine.connect() as conn:
                n = int(conn.execute(sa.select(sa.func.count()).select_from(table).where(where)).scalar_one())
        else:
            with self.engine.begin() as conn:
                n = conn.execute(table.delete().where(where)).rowcount
        if n:
            tally.add(table.name, n, time.perf_counter() - started)
        return n

    def _rest(self, cutoff: datetime, tally: _Tally, batch_rows: int, dry_run: bool) -> None:
        """The smaller tables: decided approvals, adoptions, breaker changes and desired versions nothing
        refers to any more."""
        ap, ad, be, v = t.approvals.c, t.adoptions.c, t.breaker_events.c, t.desired_versions.c
        closed = ap.state.not_in(OPEN_APPROVALS) & (sa.func.coalesce(ap.decided_at, ap.created_at) < cutoff)
        self._batched(t.approvals, ap.id, closed, tally, batch_rows, dry_run)
        self._batched(t.adoptions, ad.id, ad.at < cutoff, tally, batch_rows, dry_run)
        self._batched(t.breaker_events, be.id, be.at < cutoff, tally, batch_rows, dry_run)
        referenced = (
            sa.select(t.runs.c.desired_version)
            .where(t.runs.c.desired_version.is_not(None))
            .union(sa.select(t.actions.c.desired_version), sa.select(t.rollouts.c.version))
        )
        unused = (v.first_seen_at < cutoff) & v.digest.not_in(referenced.scalar_subquery())
        self._batched(t.desired_versions, v.digest, unused, tally, batch_rows, dry_run)

    def _batched(
        self,
        table: sa.Table,
        key: sa.Column[object],
        where: sa.ColumnElement[bool],
        tally: _Tally,
        batch_rows: int,
        dry_run: bool,
    ) -> None:
        if dry_run:
            self._delete(table, where, tally, dry_run=True)
            return
        batch = sa.select(key).where(where).limit(batch_rows).scalar_subquery()
        while self._delete(table, key.in_(batch), tally, dry_run=False) >= batch_rows:
            pass
