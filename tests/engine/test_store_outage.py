"""The history store goes away (a real PostgreSQL behind a proxy that refuses, then drops): passes go on
reading, comparing and classifying, write nothing, keep what they found in the backlog, and history is
complete once the store is back. Remediation resumes only after that."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reconciler.domain.approval import ApprovalState
from reconciler.domain.plan import ActionState
from reconciler.domain.run import Mode, RunKind, RunStatus
from reconciler.engine.backlog import Backlog
from reconciler.engine.gate import Hold
from reconciler.errors import StoreUnavailable
from reconciler.observe.metrics import Metrics
from reconciler.settings import Settings
from reconciler.store import availability, migrate
from reconciler.store import engine as engines
from reconciler.store import tables as t
from reconciler.store.approvals import SqlApprovalStore
from reconciler.store.batch import HistoryBatch
from reconciler.store.breakers import SqlBreakerStore
from reconciler.store.history import SqlHistoryStore
from reconciler.testing import MemoryHistory
from tests.conftest import HMAC_KEY
from tests.engine.helpers import make
from tests.proxy import PausingProxy, pausing_proxy

STAGING, PROD = "checkout-staging", "payments-api-prod"  # reversible drift; reversible drift and an escalation


@pytest.fixture
def outage(postgres_url: str) -> Iterator[tuple[sa.Engine, PausingProxy]]:
    url = sa.engine.make_url(postgres_url)
    migrate.upgrade(engines.create_engine(postgres_url, statement_timeout_s=0))
    with pausing_proxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        engine = engines.create_engine(
            url.set(port=proxy.port).render_as_string(hide_password=False), connect_timeout_s=2
        )
        yield engine, proxy
        engine.dispose()


def _build(
    settings: Settings, engine: sa.Engine, max_passes: int = 100, **options: Any
) -> tuple[Any, Backlog, Metrics]:
    store, metrics = SqlHistoryStore(engine, HMAC_KEY), Metrics()
    kept = Backlog(store, metrics, max_passes=max_passes, max_rows=10_000)
    reconciler, _ = make(
        settings,
        store,
        **options,
        metrics=metrics,
        approvals=SqlApprovalStore(engine),
        breaker=SqlBreakerStore(engine),
        backlog=kept,
    )
    return reconciler, kept, metrics


def _back(proxy: PausingProxy, kept: Backlog) -> None:
    proxy.set("pass")
    time.sleep(availability.RETRY_S + 0.1)
    assert kept.flush()


def test_passes_detect_and_keep_their_history_while_the_store_is_away(
    settings: Settings, example: Path, outage: tuple[sa.Engine, PausingProxy]
) -> None:
    engine, proxy = outage
    reconciler, kept, metrics = _build(settings, engine)
    live = example / "live" / "checkout" / "staging.env"
    before = live.read_text()

    proxy.set("refuse")
    outcomes = [reconciler.reconcile([name]).targets[0] for name in (STAGING, PROD)]
    proxy.set("drop")  # now any connection would hang: every use of the store must fail at once
    started, wall = time.monotonic(), time.time()
    again = reconciler.reconcile([STAGING]).targets[0]
    assert time.monotonic() - started < 1.0

    for outcome in (*outcomes, again):
        assert outcome.mode is Mode.DRY_RUN and outcome.decision.held_by is Hold.STORE
        assert outcome.status is RunStatus.DRIFT and outcome.classified
        assert "remediation paused" in (outcome.note or "")
    assert outcomes[1].degraded and outcomes[1].approvals == {}  # approvals could not be asked
    assert live.read_text() == before  # nothing written
    assert kept.pending == 2  # the third pass found nothing new
    assert metrics.registry.get_sample_value("reconciler_history_backlog") == 2

    _back(proxy, kept)
    with engine.connect() as conn:
        runs = conn.execute(sa.select(t.runs).order_by(t.runs.c.started_at)).mappings().all()
        passes = conn.execute(sa.select(t.passes.c.target, t.passes.c.drift_count)).all()
        actions = conn.execute(sa.select(t.actions.c.target, t.actions.c.state)).all()
    assert [r["status"] for r in runs] == ["drift", "drift"] and all(r["finished_at"] for r in runs)
    assert runs[0]["started_at"].timestamp() < wall  # kept with the time it happened, not the time written
    assert sorted(p[0] for p in passes) == [STAGING, PROD]
    assert {a[1] for a in actions} == {ActionState.DRY_RUN.value}
    assert metrics.registry.get_sample_value("reconciler_history_backlog") == 0

    # Back: the pass that could not ask for approvals is made in full, and writes resume.
    prod = reconciler.reconcile([PROD]).targets[0]
    assert prod.mode is Mode.APPLY and not prod.degraded
    assert [a.state for a in prod.approvals.values()] == [ApprovalState.PENDING]
    assert reconciler.reconcile([STAGING]).targets[0].status is RunStatus.FIXED


def test_in_dry_run_a_pass_made_without_the_store_is_made_in_full_once_it_is_back(
    settings: Settings, outage: tuple[sa.Engine, PausingProxy]
) -> None:
    engine, proxy = outage
    reconciler, kept, _ = _build(settings, engine, global_mode=Mode.DRY_RUN)
    proxy.set("refuse")
    blind = reconciler.reconcile([PROD]).targets[0]
    assert blind.degraded and blind.approvals == {} and blind.decision.held_by is Hold.CONFIGURED
    assert reconciler.reconcile([PROD]).targets[0].unchanged  # nothing new while the store is away
    _back(proxy, kept)
    run, rest = reconciler.unchanged_passes([PROD], {PROD: Mode.DRY_RUN})  # the daemon's batch of unchanged passes
    assert run.targets == () and rest == [PROD]  # ... leaves it to a pass of its own
    full = reconciler.reconcile([PROD]).targets[0]
    assert not full.unchanged and not full.degraded
    assert [a.state for a in full.approvals.values()] == [ApprovalState.PENDING]
    assert reconciler.reconcile([PROD]).targets[0].unchanged
    run, rest = reconciler.unchanged_passes([PROD], {PROD: Mode.DRY_RUN})
    assert [o.target.name for o in run.targets] == [PROD] and rest == []


def test_a_full_backlog_drops_whole_runs_and_counts_them(
    settings: Settings, outage: tuple[sa.Engine, PausingProxy]
) -> None:
    engine, proxy = outage
    reconciler, kept, metrics = _build(settings, engine, max_passes=1)
    proxy.set("refuse")
    reconciler.reconcile([STAGING])
    reconciler.reconcile([PROD])  # the backlog is full: this run is dropped whole
    assert kept.pending == 1
    assert metrics.registry.get_sample_value("reconciler_history_backlog_dropped_total") == 1
    _back(proxy, kept)
    with engine.connect() as conn:
        runs = conn.execute(sa.select(t.runs.c.id, t.runs.c.status)).all()
        passes = conn.execute(sa.select(t.passes.c.target)).all()
    assert [r[1] for r in runs] == ["drift"] and [p[0] for p in passes] == [STAGING]


def test_an_entry_the_store_refuses_while_it_answers_is_dropped_not_retried_forever() -> None:
    class Refusing(MemoryHistory):
        down = True

        def ping(self) -> None:
            if self.down:
                raise StoreUnavailable("history store: unreachable")

        def start_run(self, *args: Any, **kwargs: Any) -> str:
            if self.down:
                raise StoreUnavailable("history store: unreachable")
            if args[1] == "poison":
                raise StoreUnavailable("history store: DataError: value too long")
            return super().start_run(*args, **kwargs)

    store, metrics = Refusing(), Metrics()
    kept = Backlog(store, metrics, max_passes=10, max_rows=100)
    kept.start_run(RunKind.DRY_RUN, "poison", None, run_id="r1", owner=None)
    kept.start_run(RunKind.DRY_RUN, "schedule", None, run_id="r2", owner=None)
    assert kept.waiting and not kept.flush()  # still away: everything stays, in order
    store.down = False
    assert kept.flush() and not kept.waiting
    assert list(store.run_rows) == ["r2"]  # the refused one is dropped, the rest written


def test_a_gathered_batch_made_while_the_store_is_away_is_kept_whole(
    settings: Settings, outage: tuple[sa.Engine, PausingProxy]
) -> None:
    """A daemon's batch of dry-run passes whose one transaction the store refuses is kept, every entry in
    order, and written in full once the store is back."""
    engine, proxy = outage
    store, metrics = SqlHistoryStore(engine, HMAC_KEY), Metrics()
    kept = Backlog(
        store, metrics, max_passes=100, max_rows=10_000, batch=functools.partial(HistoryBatch, store, HMAC_KEY)
    )
    reconciler, _ = make(settings, store, metrics=metrics, backlog=kept, global_mode=Mode.DRY_RUN)
    with reconciler.gathering():
        reconciler.reconcile([STAGING])
        proxy.set("refuse")
        reconciler.reconcile([PROD])
    assert kept.pending == 2
    _back(proxy, kept)
    with engine.connect() as conn:
        runs = conn.execute(sa.select(t.runs.c.status, t.runs.c.finished_at)).all()
        passes = conn.execute(sa.select(t.passes.c.target)).scalars().all()
    assert sorted(passes) == sorted([STAGING, PROD])
    assert [r[0] for r in runs] == ["drift", "drift"] and all(r[1] for r in runs)
