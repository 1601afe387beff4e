"""The daemon's background pruning: it prunes with the settings' retention and stops when the daemon does."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from reconciler.desired import loader
from reconciler.runtime.retention import Pruner, active_exceptions, cutoff
from reconciler.settings import HistorySettings
from reconciler.store import tables as t
from reconciler.store.history import SqlHistoryStore
from reconciler.store.retention import SqlRetention
from tests.store.history_builder import drift, run_at

NOW = datetime.now(UTC)


def test_the_pruner_prunes_in_the_background_and_stops_with_the_daemon(store: SqlHistoryStore, example: Path) -> None:
    """With a retention of 30 days, the background thread deletes a superseded 40-day-old run and keeps the
    target's newest pass; setting the stop event ends the thread."""
    old = run_at(store, NOW - timedelta(days=40), "a", [drift("/x")])
    newest = run_at(store, NOW - timedelta(days=1), "a", [drift("/x")])
    state = loader.load(example / "desired")
    stop = threading.Event()
    settings = HistorySettings(retain_days=30, prune_batch_rows=100, prune_pause_s=0)
    pruner = Pruner(SqlRetention(store.engine), settings, lambda: state, stop, first_delay_s=0.01)
    pruner.start()
    assert pruner.thread is not None
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while pruner.last is None and datetime.now(UTC) < deadline:
        stop.wait(0.05)
    stop.set()
    pruner.thread.join(10)
    assert not pruner.thread.is_alive()
    assert pruner.last is not None and pruner.last.deleted["runs"] == 1
    with store.engine.connect() as conn:
        assert set(conn.execute(sa.select(t.runs.c.id)).scalars()) == {newest} and old != newest


def test_retention_zero_keeps_everything_and_active_exceptions_are_named(example: Path) -> None:
    """retain_days 0 turns pruning off (no thread); the exceptions in force are named as drift records them."""
    off = HistorySettings(retain_days=0)
    assert cutoff(off, NOW) is None
    pruner = Pruner(
        SqlRetention(sa.create_engine("sqlite://")), off, lambda: loader.load(example / "desired"), threading.Event()
    )
    pruner.start()
    assert pruner.thread is None
    assert cutoff(HistorySettings(), NOW) == NOW - timedelta(days=90)
    state = loader.load(example / "desired")
    assert active_exceptions(state, NOW) == ["exception default/0"]
    assert active_exceptions(state, datetime(2100, 1, 1, tzinfo=UTC)) == []
