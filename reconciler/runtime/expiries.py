"""Policy exceptions and expected differences by state, for the daemon: counted at each look at the desired
state (reconciler_exceptions), and each one logged once when it starts expiring and once when it has expired."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from reconciler.classify import exceptions
from reconciler.domain.state import DesiredState
from reconciler.observe import logging as logs
from reconciler.observe.metrics import Metrics

log = logs.get_logger("reconciler.daemon")


class Expiries:
    def __init__(self, metrics: Metrics, warning_s: float) -> None:
        self.metrics = metrics
        self.horizon = timedelta(seconds=warning_s)
        self._announced: set[tuple[str, datetime, exceptions.ExceptionState]] = set()

    def look(self, state: DesiredState) -> None:
        statuses = exceptions.inventory(state, datetime.now(UTC), self.horizon)
        counts = Counter(s.state.value for s in statuses)
        for name in ("active", "expiring", "expired"):
            self.metrics.exceptions.labels(name).set(counts.get(name, 0))
        for status in statuses:
            key = (status.id, status.exception.expires, status.state)
            if status.state is exceptions.ExceptionState.ACTIVE or key in self._announced:
                continue
            self._announced.add(key)
            exc = status.exception
            log.warning(
                "exception expires soon" if status.state is exceptions.ExceptionState.EXPIRING else "exception expired",
                exception=status.id,
                kind=status.kind.value,
                owner=exc.owner,
                reason=exc.reason,
                ticket=status.ticket,
                expires=exc.expires_text,
                covers=status.scope,
                paths=[str(p) for p in exc.paths],
            )
