"""The composition root: builds the store, adapters, notifier and engine from the settings.

Only this module and cli/ construct adapters and stores; everything else reaches them through ports.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from reconciler.adapters import registry
from reconciler.desired.source import DesiredSource
from reconciler.domain.breaker import ErrorBudget
from reconciler.domain.clock import SystemClock
from reconciler.domain.manifest import Target
from reconciler.domain.observed import Observed
from reconciler.engine import unsettled
from reconciler.engine.assembly import assemble
from reconciler.engine.backlog import Backlog
from reconciler.engine.guard import Guard
from reconciler.engine.parity_watch import ParityWatch
from reconciler.engine.rollout import Rollout
from reconciler.engine.run import Reconciler
from reconciler.errors import ReconcilerError
from reconciler.observe.metrics import Metrics
from reconciler.observe.notify import Event, EventKind, Notifier, Webhook
from reconciler.ports import Adapter, Watcher
from reconciler.remediate import safety
from reconciler.runtime import heap
from reconciler.runtime.retention import Pruner
from reconciler.runtime.retry import RetryingAdapter
from reconciler.settings import Settings
from reconciler.store import availability, migrate
from reconciler.store import engine as engines
from reconciler.store.approvals import SqlApprovalStore
from reconciler.store.batch import HistoryBatch
from reconciler.store.breakers import SqlBreakerStore
from reconciler.store.history import SqlHistoryStore
from reconciler.store.ids import SqlIds
from reconciler.store.leases import SqlLeaseStore
from reconciler.store.retention import SqlRetention
from reconciler.store.rollouts import SqlRolloutStore
from reconciler.store.timeline import SqlTimeline
from reconciler.store.window import SqlSafetyWindow


class Adapters:
    """Adapter instances by name, built on first use from the entry-point registry, with retries."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics | None = None,
        on_read: Callable[[Target, Observed], None] | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._on_read = on_read
        self._instances: dict[str, Adapter] = {}
        self._raw_instances: dict[str, Adapter] = {}
        self._lock = threading.RLock()

    def _retried(self, name: str) -> None:
        if self._metrics is not None:
            self._metrics.adapter_retries.labels(name).inc()

    def _raw(self, name: str) -> Adapter:
        """The adapter itself, without retries: what composite adapters (layered) call, so that retries
        happen once, around the composite's call."""
        if name not in self._raw_instances:
            cls: Any = registry.adapter_class(name)
            instance = cls.from_settings(self._settings)
            if hasattr(instance, "bind"):
                instance.bind(self._raw_locked)
            self._raw_instances[name] = instance
        return self._raw_instances[name]

    def _raw_locked(self, name: str) -> Adapter:
        with self._lock:
            return self._raw(name)

    def watcher(self, name: str) -> Watcher | None:
        """The adapter `name` as a watcher, if it can watch; None otherwise (or if there is no such adapter:
        the passes of its targets report that)."""
        try:
            with self._lock:
                raw = self._raw(name)
        except ReconcilerError:
            return None
        if raw.capabilities.watch and isinstance(raw, Watcher):
            return raw
        return None

    def __call__(self, name: str) -> Adapter:
        with self._lock:
            if name not in self._instances:
                retry = self._settings.retry
                self._instances[name] = RetryingAdapter(
                    name,
                    self._raw(name),
                    attempts=retry.attempts,
                    initial_s=retry.initial_s,
                    max_s=retry.max_s,
                    on_retry=self._retried,
                    call_timeout_s=retry.call_timeout_s,
                    on_read=self._on_read,
                )
            return self._instances[name]


@dataclass
class Components:
    """Everything a pass needs, built once from settings."""

    settings: Settings
    adapters: Adapters
    store: SqlHistoryStore
    approvals: SqlApprovalStore
    breaker: SqlBreakerStore
    desired: DesiredSource
    metrics: Metrics
    reconciler: Reconciler
    notifier: Notifier
    leases: SqlLeaseStore
    parity: ParityWatch | None = None  # the daemon's environment parity, unless RECONCILER_PARITY__ENABLED=false

    def lock(self) -> engines.DaemonLock:
        """The lock that keeps a second daemon off this database, where it serves only one (SQLite)."""
        return engines.DaemonLock(self.settings.database_url)

    def probing(self) -> AbstractContextManager[None]:
        """Marks the calling thread as the store's prober: while the store is unreachable every other use of it
        fails at once, and only the prober's connections try it again (store/availability.py)."""
        health = availability.health_of(self.store.engine)
        return health.probing() if health is not None else contextlib.nullcontext()


def build_notifier(settings: Settings) -> Notifier:
    """The webhooks of the settings, sending in the background (call stop() to deliver what is queued)."""
    notifier = Notifier(
        [
            Webhook(h.url.get_secret_value(), h.kind, tuple(EventKind(e) for e in h.events), h.timeout_s)
            for h in settings.notify.webhooks
        ],
        dedup_s=settings.notify.dedup_s,
    )
    notifier.start()
    return notifier


def build_offline(settings: Settings) -> tuple[DesiredSource, Adapters]:
    """The desired state and adapters only, for commands that need no history (explain, exceptions, compare)."""
    desired = DesiredSource(settings.desired_dir)
    desired.current()
    return desired, Adapters(settings)


def build_store(settings: Settings, *, check_migrated: bool = True) -> SqlHistoryStore:
    bounds = settings.store
    engine = engines.create_engine(
        settings.database_url,
        connect_timeout_s=bounds.connect_timeout_s,
        statement_timeout_s=bounds.statement_timeout_s,
    )
    if check_migrated:
        migrate.check(engine)
    return SqlHistoryStore(engine, settings.hmac_key())


def build_timeline(store: SqlHistoryStore) -> SqlTimeline:
    """A key's timeline from the history store, for the web UI (the CLI builds its own)."""
    return SqlTimeline(store.engine)


def rollout_versions(store: SqlHistoryStore) -> Callable[[str], list[str]]:
    """The desired versions in history that start with a prefix, for a rollout release from the web UI."""
    return SqlRolloutStore(store.engine).versions


def undone_by(store: SqlHistoryStore) -> Callable[[Sequence[str]], dict[str, str]]:
    """Which rollback run undid each of some actions: what a refused repeat rollback names (CLI and web UI)."""
    return SqlIds(store.engine).undone_by


def start_pruner(components: Components, stop: threading.Event) -> Pruner:
    """The daemon's background pruning of history (RECONCILER_HISTORY__*), started; it ends when `stop` is set."""
    pruner = Pruner(
        SqlRetention(components.store.engine), components.settings.history, components.desired.loaded_state, stop
    )
    pruner.start()
    return pruner


def build_rollout(
    settings: Settings, store: SqlHistoryStore, metrics: Metrics, notify: Callable[[Event], None]
) -> Rollout:
    """The rollout of desired versions in waves, kept in the history database."""
    r = settings.rollout
    return Rollout(SqlRolloutStore(store.engine), SystemClock(), metrics, notify, bake_s=r.bake_s, check_s=r.check_s)


def build(settings: Settings, *, daemon: bool = False) -> Components:
    """Store (checked to be migrated), desired state (loaded and valid; the daemon's is loaded by Daemon.run, so
    that /readyz answers during a long first load), adapters and the engine. The daemon's gate also holds the
    rolling blast-radius window, the rollout of new desired versions and the backlog of history kept while the
    store is unreachable."""
    store = build_store(settings)
    approvals = SqlApprovalStore(store.engine)
    breaker = SqlBreakerStore(store.engine)
    desired = DesiredSource(settings.desired_dir)
    if not daemon:  # refuse to go on with an invalid desired state; the daemon loads it once it listens
        desired.current()
    metrics = Metrics(per_target=settings.metrics.per_target)
    if daemon and (policy := heap.installed()) is not None:
        metrics.export_gc(policy.figures)
    notifier = build_notifier(settings)
    clock = SystemClock()
    watch = build_parity(settings, metrics, notifier.notify) if daemon else None
    adapters = Adapters(settings, metrics, on_read=watch.read if watch else None)
    rollout = build_rollout(settings, store, metrics, notifier.notify) if daemon else None
    # The daemon keeps what passes find while the store is away, and writes it when the store is back.
    kept = settings.store
    backlog = None
    if daemon:  # a batch of passes' history goes to the store in one transaction (store/batch.py)
        key = settings.hmac_key()
        batch = functools.partial(HistoryBatch, store, key)
        backlog = Backlog(
            store, metrics, max_passes=kept.backlog_passes, max_rows=kept.backlog_rows, batch=batch, clock=clock
        )
    leases = SqlLeaseStore(store.engine)
    engine = assemble(
        # Passes use the version in force without walking the folder each time; the refresh job
        # (RECONCILER_SCHEDULER__DESIRED_POLL_S) looks for edits and reloads.
        desired.loaded_state,
        store,
        adapters,
        metrics,
        clock,
        hmac_key=settings.hmac_key(),
        secret_file_roots=settings.secrets.file_roots,
        guard=Guard(settings.mode, settings.guard.apply_environments, settings.guard.dry_run_file),
        approvals=approvals,
        limits=safety.Limits(**settings.safety.model_dump()),
        breaker=breaker,
        error_budget=ErrorBudget(**settings.breaker.model_dump()),
        notify=notifier.notify,
        window=SqlSafetyWindow(store.engine) if daemon else None,
        rollout=rollout,
        backlog=backlog,
        accounted=unsettled.accounted_by(leases),  # whose writes in flight hold a target's writes
    )
    if watch is not None:
        engine.engine.effects.add(watch)
    return Components(settings, adapters, store, approvals, breaker, desired, metrics, engine, notifier, leases, watch)


def build_parity(settings: Settings, metrics: Metrics, notify: Callable[[Event], None]) -> ParityWatch | None:
    """The daemon's environment parity (RECONCILER_PARITY__*), or None when it is turned off."""
    if not settings.parity.enabled:
        return None
    horizon = timedelta(seconds=settings.policy.expiry_warning_s)
    return ParityWatch(
        metrics.parity,
        notify,
        SystemClock(),
        baseline=settings.parity.baseline,
        horizon=horizon,
        hmac_key=settings.hmac_key(),
    )
