"""The daemon's reconciler_exceptions gauge counts policy exceptions and expected differences by state."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from reconciler.runtime import expiries
from reconciler.runtime.compose import build
from reconciler.runtime.daemon import Daemon
from reconciler.settings import Settings
from reconciler.store import engine as engines
from reconciler.store import migrate

EXPIRED = """    - apps: [payments-api]
      paths: ["/log_level"]
      reason: "verbose logs in staging during the migration"
      owner: payments-team
      expires: 2020-01-31
"""


def gauge(text: str, state: str) -> float:
    (value,) = re.findall(rf'^reconciler_exceptions{{state="{state}"}} (\S+)$', text, flags=re.M)
    return float(value)


def test_exceptions_gauge_counts_expected_differences(settings: Settings, sqlite_url: str, example: Path) -> None:
    """The example's exception and expected difference are active; an expired expected difference counts as
    expired, and expiring stays at zero (every state is exported from the first scrape)."""
    policy = example / "desired" / "policy.yaml"
    policy.write_text(policy.read_text() + EXPIRED)
    engine = engines.create_engine(sqlite_url)
    migrate.upgrade(engine)
    engine.dispose()
    components = build(settings.model_copy(update={"http": settings.http.model_copy(update={"port": 0})}))
    Daemon(components).expiries.look(components.desired.current())
    text = components.metrics.render()[0].decode()
    assert (gauge(text, "active"), gauge(text, "expiring"), gauge(text, "expired")) == (2.0, 0.0, 1.0)


def test_an_expired_exception_is_logged_once(
    settings: Settings, sqlite_url: str, example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each look at the desired state counts again; the log says an exception expired once, not at every look."""
    policy = example / "desired" / "policy.yaml"
    policy.write_text(policy.read_text() + EXPIRED)
    logged: list[tuple[str, dict[str, Any]]] = []

    class Recording:
        def warning(self, event: str, **fields: Any) -> None:
            logged.append((event, fields))

    monkeypatch.setattr(expiries, "log", Recording())
    engine = engines.create_engine(sqlite_url)
    migrate.upgrade(engine)
    engine.dispose()
    components = build(settings.model_copy(update={"http": settings.http.model_copy(update={"port": 0})}))
    daemon = Daemon(components)
    for _ in range(2):
        daemon.expiries.look(components.desired.current())
    assert [(event, fields["owner"]) for event, fields in logged] == [("exception expired", "payments-team")]
