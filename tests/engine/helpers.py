"""Building an engine for tests: the real file adapter over the example copy, apply mode unless told otherwise."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from reconciler.desired.source import DesiredSource
from reconciler.domain.clock import FixedClock
from reconciler.domain.run import Mode
from reconciler.engine.assembly import assemble
from reconciler.engine.guard import Guard
from reconciler.engine.run import Reconciler
from reconciler.observe.metrics import Metrics
from reconciler.runtime.compose import Adapters
from reconciler.settings import Settings
from reconciler.store.history import SqlHistoryStore
from tests.conftest import HMAC_KEY

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def make(
    settings: Settings,
    store: SqlHistoryStore,
    at: datetime = NOW,
    *,
    adapters: Any = None,
    clock: Any = None,
    metrics: Metrics | None = None,
    **options: Any,
) -> tuple[Reconciler, Metrics]:
    """A Reconciler over the example copy in apply mode, with the real file adapter unless told otherwise."""
    metrics = metrics or Metrics()
    source = DesiredSource(settings.desired_dir)
    mode = options.pop("global_mode", Mode.APPLY)
    engine = assemble(
        source.current,
        store,
        adapters or Adapters(settings),
        metrics,
        clock or FixedClock(at),
        hmac_key=HMAC_KEY,
        guard=options.pop("guard", None) or Guard(mode, ["*"]),
        **options,
    )
    return engine, metrics


class MovableClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at
