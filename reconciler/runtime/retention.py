"""Retention in the daemon: history older than RECONCILER_HISTORY__RETAIN_DAYS is pruned in the background.

A thread of its own, so that a long prune never delays the scheduler's jobs; small transactions with a pause
between them, so that a pass waiting for the database waits for one batch at most. With PostgreSQL, the store
lets one replica prune at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from reconciler.domain.audit import PruneStats
from reconciler.domain.state import DesiredState
from reconciler.errors import ReconcilerError
from reconciler.observe import logging as logs
from reconciler.ports import HistoryPruner
from reconciler.settings import HistorySettings

log = logs.get_logger("reconciler.retention")
FIRST_DELAY_S = 60.0  # the first prune waits for start-up (recovery, first passes) to settle


def active_exceptions(state: DesiredState, now: datetime) -> list[str]:
    """The `decided_by` of every exception in force: their first drift is kept however old."""
    return [f"exception {policy}/{index}" for policy, index, exc in state.exceptions() if exc.expires > now]


def cutoff(settings: HistorySettings, now: datetime) -> datetime | None:
    """The oldest time history is kept from, or None when it is kept for ever (retain_days 0)."""
    if settings.retain_days <= 0:
        return None
    return now - timedelta(days=settings.retain_days)


class Pruner:
    """Prunes history every `prune_interval_s` until `stop` is set."""

    def __init__(
        self,
        store: HistoryPruner,
        settings: HistorySettings,
        desired: Callable[[], DesiredState],
        stop: threading.Event,
        first_delay_s: float = FIRST_DELAY_S,
    ) -> None:
        self._store = store
        self._settings = settings
        self._desired = desired
        self._stop = stop
        self._first_delay_s = first_delay_s
        self.thread: threading.Thread | None = None
        self.last: PruneStats | None = None

    def start(self) -> None:
        """Start the background thread; nothing when history is kept for ever."""
        if self._settings.retain_days <= 0:
            log.info("history retention off: history is kept for ever")
            return
        self.thread = threading.Thread(target=self._loop, name="history-prune", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        delay = self._first_delay_s
        while not self._stop.wait(delay):
            delay = self._settings.prune_interval_s
            try:
                self.prune_once(datetime.now(UTC))
            except ReconcilerError as exc:
                log.warning("history prune failed; trying again at the next interval", error=str(exc))
            except Exception:  # a bug: the daemon goes on, history is pruned at the next interval
                log.exception("history prune crashed; trying again at the next interval")

    def prune_once(self, now: datetime) -> PruneStats | None:
        """One prune, in the daemon's small batches."""
        oldest = cutoff(self._settings, now)
        if oldest is None:
            return None
        stats = self._store.prune(
            oldest,
            active_exceptions=active_exceptions(self._desired(), now),
            batch_rows=self._settings.prune_batch_rows,
            pause_s=self._settings.prune_pause_s,
            stop=self._stop,
        )
        self.last = stats
        if stats.skipped:
            log.info("history prune skipped", reason=stats.skipped)
        else:
            log.info(
                "history pruned",
                older_than=oldest.isoformat(),
                rows=stats.rows,
                deleted=stats.deleted,
                kept_runs=stats.kept_runs,
                seconds=round(stats.seconds, 3),
                longest_lock_s=round(stats.longest_lock_s, 4),
            )
        return stats
