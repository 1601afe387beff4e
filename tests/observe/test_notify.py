"""Webhooks against a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from reconciler.observe import logging as logs
from reconciler.observe import notify
from reconciler.observe.notify import Event, EventKind, Notifier, Webhook


def wait(check: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not check():
        time.sleep(0.01)


def test_delivered_retried_and_deduplicated(receiver: dict[str, Any]) -> None:
    """A failing webhook is retried until it takes the event; the same event twice is sent once."""
    receiver["fail"] = 2
    notifier = Notifier([Webhook(receiver["url"])], initial_s=0.01, max_s=0.05)
    notifier.start()
    event = Event(EventKind.ROLLBACK, "run-1:t", "t: change rolled back", {"error": "verify: live does not hold it"})
    notifier.notify(event)
    notifier.notify(event)
    wait(lambda: notifier.sent == 1)
    notifier.stop()
    assert receiver["attempts"] == 3 and notifier.sent == 1 and notifier.failed == 0
    (body,) = receiver["bodies"]
    assert (
        body["event"] == "rollback" and body["subject"] == "run-1:t" and body["details"]["error"].startswith("verify")
    )


def test_slack_format_event_filter_and_a_dead_webhook(receiver: dict[str, Any], capsys: Any) -> None:
    """Slack hooks get text; hooks get only the events they asked for; a dead hook is given up on without
    blocking anything, and the log never shows its token."""
    logs.configure("info", "json")
    dead = Webhook("http://127.0.0.1:9/hook/SECRET-TOKEN", timeout_s=0.5)
    slack = Webhook(receiver["url"], "slack", (EventKind.ESCALATION,))
    notifier = Notifier([slack, dead], attempts=2, initial_s=0.01, max_s=0.02)
    notifier.start()
    started = time.monotonic()
    notifier.notify(Event(EventKind.ESCALATION, "t:/db/pool", "t /db/pool needs a person", {"path": "/db/pool"}))
    notifier.notify(Event(EventKind.BREAKER, "remediation", "remediation paused"))
    assert time.monotonic() - started < 0.1  # notify never waits for the network
    wait(lambda: notifier.failed == 2)
    notifier.stop()
    (body,) = receiver["bodies"]
    assert body["text"].startswith(":raising_hand: *reconciler escalation*: t /db/pool needs a person")
    logged = capsys.readouterr().err
    assert "notification not delivered" in logged and "127.0.0.1:9" in logged and "SECRET-TOKEN" not in logged


def test_the_deduplication_keeps_only_subjects_within_its_window(monkeypatch: Any) -> None:
    """Subjects come and go (targets, paths, runs): a long-running daemon keeps only those queued within the
    de-duplication window, past a few thousand, and a subject seen again within the window is still sent once."""
    clock = [1000.0]
    monkeypatch.setattr(notify, "time", SimpleNamespace(monotonic=lambda: clock[0]))  # notify's clock only
    notifier = Notifier([Webhook("http://127.0.0.1:9/hook")], dedup_s=60, capacity=100_000)  # never started
    for i in range(10_000):
        clock[0] += 1.0  # one a second: the window holds the last 60
        notifier.notify(Event(EventKind.ESCALATION, f"t{i}:/a", "x"))
    assert len(notifier._seen) <= 2 * 4096
    notifier.notify(Event(EventKind.ESCALATION, "t9999:/a", "x"))  # within the window: not queued again
    assert notifier._queue.qsize() == 10_000
