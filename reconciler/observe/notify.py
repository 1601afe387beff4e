"""Notifications: webhooks (plain JSON or Slack-compatible) on escalations, failed fixes, automatic
rollbacks and circuit-breaker changes.

Sent from one background thread, so a slow or dead webhook never holds up a pass; retried with exponential
backoff; the same event (kind and subject) is sent once per de-duplication window. Payloads carry target,
path and reason, never a value. Webhook URLs often hold a token, so logs name only their host.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from reconciler.observe import logging as logs

log = logs.get_logger("reconciler.notify")
SWEEP_AT = 4096  # de-duplication entries kept before the first sweep of those too old to matter


class EventKind(StrEnum):
    ESCALATION = "escalation"
    FAILED_FIX = "failed_fix"
    ROLLBACK = "rollback"
    BREAKER = "breaker"
    WAVE_HELD = "wave_held"
    ADOPTION = "adoption"  # a live value proposed or committed back to the manifests, on a branch
    PARITY_DIVERGED = "parity_diverged"  # an app's environments began to differ where no allowlist entry lets them
    PARITY_CONVERGED = "parity_converged"  # ... and no longer do


@dataclass(frozen=True)
class Event:
    kind: EventKind
    subject: str  # what the event is about, for de-duplication: a target and path, a run, "remediation"
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def payload(self) -> dict[str, Any]:
        return {
            "event": self.kind.value,
            "subject": self.subject,
            "summary": self.summary,
            "details": self.details,
            "at": self.at.isoformat(),
        }


@dataclass(frozen=True)
class Webhook:
    url: str
    kind: str = "json"  # json or slack
    events: tuple[EventKind, ...] = tuple(EventKind)
    timeout_s: float = 5.0

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc or "?"


class _SendError(Exception):
    pass


class Notifier:
    """Queues events and sends them to every webhook that wants them, in the background."""

    def __init__(
        self,
        webhooks: Sequence[Webhook],
        *,
        dedup_s: float = 3600.0,
        attempts: int = 5,
        initial_s: float = 0.5,
        max_s: float = 30.0,
        capacity: int = 1000,
    ) -> None:
        self.webhooks = list(webhooks)
        self.dedup_s = dedup_s
        self._attempts, self._initial_s, self._max_s = attempts, initial_s, max_s
        self._queue: queue.Queue[Event | None] = queue.Queue(maxsize=capacity)
        self._seen: dict[tuple[str, str], float] = {}  # when each (kind, subject) was last queued
        self._sweep_at = SWEEP_AT  # past this many, those out of the de-duplication window are dropped
        self._lock = threading.Lock()
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.webhooks and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
            self._thread.start()

    def notify(self, event: Event) -> None:
        """Queue `event` unless the same one was queued within the de-duplication window. Never blocks."""
        if not self.webhooks:
            return
        key = (event.kind.value, event.subject)
        now = time.monotonic()
        with self._lock:
            if now - self._seen.get(key, -1e18) < self.dedup_s:
                return
            self._seen[key] = now
            if len(self._seen) > self._sweep_at:  # subjects come and go (targets, approvals): keep the recent
                self._seen = {k: at for k, at in self._seen.items() if now - at < self.dedup_s}
                self._sweep_at = max(SWEEP_AT, 2 * len(self._seen))
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            log.error("notification dropped: queue full", kind=event.kind.value, subject=event.subject)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (for up to timeout_s), then stop the thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout_s)
        self._thread = None

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            for hook in self.webhooks:
                if event.kind not in hook.events:
                    continue
                try:
                    self._send(hook, event)
                except Exception:  # the sender must outlive any one bad delivery
                    self.failed += 1
                    log.exception("notification failed", webhook_host=hook.host, kind=event.kind.value)

    def _send(self, hook: Webhook, event: Event) -> None:
        body = _slack(event) if hook.kind == "slack" else event.payload()
        data = json.dumps(body).encode()

        def post() -> None:
            request = urllib.request.Request(  # noqa: S310 - the operator's own webhook
                hook.url, data=data, headers={"Content-Type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=hook.timeout_s) as response:  # noqa: S310
                    if response.status >= 300:
                        raise _SendError(f"status {response.status}")
            except urllib.error.HTTPError as exc:
                raise _SendError(f"status {exc.code}") from None
            except (urllib.error.URLError, OSError) as exc:
                raise _SendError(type(exc).__name__) from None

        try:
            Retrying(
                retry=retry_if_exception_type(_SendError),
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential_jitter(multiplier=self._initial_s, max=self._max_s, jitter=self._initial_s),
                reraise=True,
            )(post)
            self.sent += 1
        except _SendError as exc:
            self.failed += 1
            log.error("notification not delivered", webhook_host=hook.host, kind=event.kind.value, error=str(exc))


def _slack(event: Event) -> dict[str, Any]:
    icon = {
        "escalation": ":raising_hand:",
        "failed_fix": ":x:",
        "rollback": ":leftwards_arrow_with_hook:",
        "breaker": ":rotating_light:",
        "adoption": ":twisted_rightwards_arrows:",
    }.get(event.kind.value, ":bell:")
    lines = [f"{icon} *reconciler {event.kind.value}*: {event.summary}"]
    lines += [f"• {key}: {value}" for key, value in event.details.items()]
    return {"text": "\n".join(lines)}
