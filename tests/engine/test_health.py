"""Health gates against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from reconciler.domain.clock import SystemClock
from reconciler.domain.manifest import HealthSpec
from reconciler.domain.run import RunStatus
from reconciler.engine.health import gate_for
from reconciler.observe.notify import Event, EventKind
from reconciler.settings import Settings
from reconciler.store.history import SqlHistoryStore
from tests.engine.helpers import make


@pytest.fixture
def service() -> Iterator[dict[str, Any]]:
    """A tiny service whose /health answers whatever status the test sets."""
    state: dict[str, Any] = {"status": 200, "hits": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state["hits"] += 1
            self.send_response(state["status"])
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/health"
    yield state
    server.shutdown()
    server.server_close()


def spec(url: str, within: str = "0.3s") -> HealthSpec:
    return HealthSpec.model_validate({"http": {"url": url, "within": within, "interval": "50ms", "timeout": "1s"}})


def test_gate_passes_waits_and_fails(service: dict[str, Any]) -> None:
    """A healthy service passes at once; an unhealthy one fails after the window, saying what it answered;
    nothing listening is a failure that names the error."""
    gate = gate_for(spec(service["url"]))
    assert gate is not None and gate() is None
    service["status"] = 503
    why = gate()
    assert why is not None and "did not answer 200 within 0.3s (last: status 503)" in why and service["hits"] >= 3
    dead = gate_for(spec("http://127.0.0.1:9/health"))
    assert dead is not None and "Connection refused" in (dead() or "")
    assert gate_for(None) is None


def test_a_failing_health_gate_rolls_the_change_back(
    settings: Settings, store: SqlHistoryStore, example: Path, service: dict[str, Any]
) -> None:
    """A write whose service turns unhealthy is rolled back automatically, and history says why."""
    manifest = example / "desired" / "checkout.yaml"
    manifest.write_text(
        manifest.read_text() + f"  health:\n    http: {{url: '{service['url']}', within: 300ms, interval: 50ms}}\n"
    )
    service["status"] = 500
    engine, _ = make(settings, store, clock=SystemClock())
    report = engine.reconcile(["checkout-staging"]).targets[0]
    assert report.status is RunStatus.FAILED and report.execution is not None and report.execution.rolled_back
    assert "health gate:" in (report.error or "")
    assert "FEATURE_FAST_PAY=true" in (example / "live" / "checkout" / "staging.env").read_text()
    states = [a.state.value for a in report.execution.actions]
    assert states == ["rolled_back", "verified"]  # the change, then its automatic reverse
    service["status"] = 200
    assert engine.reconcile(["checkout-staging"]).targets[0].status is RunStatus.FIXED


def test_an_automatic_rollback_is_notified(
    settings: Settings, store: SqlHistoryStore, example: Path, service: dict[str, Any]
) -> None:
    """The rollback a failing health gate causes is sent as a notification, with no value in it."""
    manifest = example / "desired" / "checkout.yaml"
    manifest.write_text(
        manifest.read_text() + f"  health:\n    http: {{url: '{service['url']}', within: 200ms, interval: 50ms}}\n"
    )
    service["status"] = 500
    events: list[Event] = []
    engine, _ = make(settings, store, clock=SystemClock(), notify=events.append)
    engine.reconcile(["checkout-staging"])
    (event,) = events
    assert event.kind is EventKind.ROLLBACK and event.details["target"] == "checkout-staging"
    assert "health gate" in event.details["error"] and "false" not in json.dumps(event.payload()).lower()


@pytest.mark.integration
def test_prometheus_gate_against_a_real_prometheus(prometheus_url: str) -> None:
    """A query that holds for the whole window passes; one that returns nothing or 0 fails and says so;
    an unreachable Prometheus fails the gate."""

    def gate(query: str, url: str = prometheus_url) -> str | None:
        spec = HealthSpec.model_validate(
            {"prometheus": {"url": url, "query": query, "for": "0.6s", "interval": "0.2s"}}
        )
        check = gate_for(spec)
        assert check is not None
        return check()

    assert gate("vector(1) > 0") is None
    assert "did not hold: the query returned nothing" in (gate("vector(0) > 0") or "")
    assert "did not hold: the query returned 0" in (gate("vector(0)") or "")
    assert "Prometheus answered 400" in (gate("this is not promql(") or "")
    assert "could not be asked" in (gate("vector(1)", "http://127.0.0.1:9") or "")
    with pytest.raises(ValueError, match="a health gate needs http or prometheus"):
        HealthSpec.model_validate({})
