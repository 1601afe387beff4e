"""SqlSafetyWindow: the daemon's rolling blast-radius window, shared by every replica through the database.

A pass enters the writes it is about to make before it makes them. The check of the window's spend and the
entry happen in one transaction under a lock (a PostgreSQL transaction-level advisory lock; SQLite's write
lock, taken by the first statement), so two replicas can never both take the last room in the window.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from reconciler.domain.window import Reservation, Spend
from reconciler.store import tables as t
from reconciler.store.base import SqlStore
from reconciler.store.leases import ADVISORY_CLASS

LOCK = 0x77696E  # second key of the window's advisory lock ("win")
Check = Callable[[Spend], str | None]


class SqlSafetyWindow(SqlStore):
    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self._local = threading.Lock()  # this process's workers queue here rather than in the database

    def reserve(self, entry: Reservation, since: datetime, check: Check) -> str | None:
        """Enter `entry` in the window if `check` (given what the window since `since` has spent) finds no
        limit passed; returns the refusal otherwise, and enters nothing."""
        try:
            with self._local, self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:c, :k)"), {"c": ADVISORY_CLASS, "k": LOCK})
                # What fell out of the window goes; on SQLite this first write also takes the write lock, so
                # the read below is serialised with every other reservation.
                conn.execute(t.safety_window.delete().where(t.safety_window.c.at < since))
                refused = check(self._spent(conn, entry, since))
                if refused is None:
                    conn.execute(t.safety_window.insert().values(**entry._asdict()))
                return refused
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None

    def spent(self, entry: Reservation, since: datetime) -> Spend:
        """What the window since `since` has spent, as seen by `entry`'s target and wave."""
        try:
            with self.engine.connect() as conn:
                return self._spent(conn, entry, since)
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None

    def _spent(self, conn: sa.Connection, entry: Reservation, since: datetime) -> Spend:
        w = t.safety_window.c
        rows = conn.execute(
            sa.select(w.target, w.wave, sa.func.sum(w.actions)).where(w.at >= since).group_by(w.target, w.wave)
        ).all()
        targets = {target for target, _, _ in rows}
        wave_targets = {target for target, wave, _ in rows if wave == entry.wave}
        return Spend(
            actions=sum(int(n) for _, _, n in rows),
            targets=len(targets),
            wave_actions=sum(int(n) for _, wave, n in rows if wave == entry.wave),
            wave_targets=len(wave_targets),
            counted=entry.target in targets,
        )
