"""The daemon's JSON API.

Read-only, for dashboards and scripts (no token, like /metrics):
  GET  /api/v1/status            version, mode, remediation, per-status counts, watches, each target's last pass
  GET  /api/v1/drift[?target=N]  every target's drift from its last pass (secret values only as a keyed hash)
  GET  /api/v1/parity[?app=A]    each app's environments against its baseline, as `compare --baseline` JSON

State-changing, off unless RECONCILER_HTTP__API_TOKEN is set, and then only with `Authorization: Bearer <token>`:
  POST /api/v1/approvals/<id>/approve   {"actor": "...", "comment": "..."}
  POST /api/v1/approvals/<id>/reject    {"actor": "...", "comment": "..."}
  POST /api/v1/mode                     {"mode": "dry-run"} holds the daemon in dry-run; {"mode": "apply"} lifts
                                        that hold (never beyond the configured mode), as SIGUSR1/SIGUSR2 do
"""

from __future__ import annotations

import hmac
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from reconciler.engine.guard import Guard
from reconciler.engine.outcome import PassOutcome
from reconciler.errors import ConfigurationError, ReconcilerError
from reconciler.observe import logging as logs
from reconciler.ports import ApprovalDecisions

log = logs.get_logger("reconciler.api")
DECISION = re.compile(r"^/api/v1/approvals/([0-9a-fA-F-]{1,64})/(approve|reject)$")
STATUS = "/api/v1/status"
SUMMARY = ("target", "environment", "mode", "status", "drift_percent", "error")


def summary_of(shown: dict[str, Any]) -> dict[str, Any]:
    """A target as /status shows it, from its rendering (report.target_summary does this for a pass outcome
    without rendering it)."""
    return {k: shown[k] for k in SUMMARY} | {"drift": len(shown["drift"])}


@dataclass(slots=True)
class _Last:
    """A target's last pass, when it ended (Unix seconds), and its rendering once asked for if it shows drift or
    actions (a clean pass's rendering would cost a fleet's UI visit ~0.6 KB a target, kept)."""

    last: PassOutcome | dict[str, Any]
    at: float
    rendered: dict[str, Any] | None = None


def _shows_the_same(kept: object, new: object) -> bool:
    """Whether an unchanged pass shows what the kept unchanged pass showed: its memo's findings, in the same
    mode and status (its rendering can be kept)."""
    return (
        isinstance(kept, PassOutcome)
        and isinstance(new, PassOutcome)
        and kept.unchanged
        and new.unchanged
        and kept.target is new.target
        and kept.comparison is new.comparison
        and kept.status is new.status
        and kept.decision == new.decision
        and kept.fingerprint == new.fingerprint
    )


@dataclass
class Api:
    """What the daemon knows, served as JSON; decisions written through the same stores the CLI uses."""

    version: Callable[[], dict[str, Any]]
    guard: Guard
    approvals: ApprovalDecisions
    approval_ttl_s: float
    readiness: Callable[[], dict[str, Any]]
    watches: Callable[[], dict[str, int]]
    token: str | None = None
    parity: Callable[[str | None], tuple[int, dict[str, Any]]] | None = None  # runtime/parity_api.py
    # A pass outcome as /status and /drift show it (report.target_dict); a dict is taken as it is.
    render: Callable[[Any], dict[str, Any]] = dict
    summarize: Callable[[Any], dict[str, Any]] = summary_of  # /status's summary of a pass: report.target_summary
    _latest: dict[str, _Last] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, name: str, last: PassOutcome | dict[str, Any]) -> None:
        """Keep a target's last pass, for /status, /drift and the web UI. It is rendered when first asked for,
        not per pass: most passes are unchanged, and one that shows what the last one showed keeps the pass
        kept and its rendering (only its time moves). Keeping the new one instead left a new object (and its
        mode decision) per target and interval for the collector: a steady state's full collection walked
        them all, 100,000 targets' worth, with every thread stopped."""
        self.record_each(((name, last),))

    def record_each(self, passes: Iterable[tuple[str, PassOutcome | dict[str, Any]]]) -> None:
        """record() of each (target, last pass), at one reading of the clock and under one lock (a batch)."""
        now = time.time()
        latest = self._latest
        with self._lock:
            for name, last in passes:
                kept = latest.get(name)
                if kept is not None and (kept.last is last or _shows_the_same(kept.last, last)):
                    kept.at = now
                else:
                    latest[name] = _Last(last, now)

    def forget(self, names: set[str]) -> None:
        with self._lock:
            for name in names:
                self._latest.pop(name, None)

    def latest(self, names: Collection[str] | None = None) -> dict[str, dict[str, Any]]:
        """Each target's last pass (of `names`, when given), by name (report.target_dict, with `at`): what
        /drift and the UI show."""
        with self._lock:
            if names is None:
                kept = list(self._latest.items())
            else:
                kept = [(name, self._latest[name]) for name in names if name in self._latest]
        shown: dict[str, dict[str, Any]] = {}
        for name, last in kept:
            rendered = last.rendered
            if rendered is None:  # rendered outside the lock; two readers at once may both render it, harmlessly
                rendered = self.render(last.last)
                if rendered.get("drift") or rendered.get("actions"):  # a clean pass is rendered again, in microseconds
                    last.rendered = rendered
            shown[name] = {**rendered, "at": _iso(last.at)}
        return shown

    def status(self) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
        """/api/v1/status: its head (version, mode, readiness, targets by status, watches), and each target's
        summary by name, made as it is taken: an answer of 100,000 targets is sent a piece at a time (asgi.py),
        never held whole, and no target's pass is rendered for it."""
        with self._lock:
            # In name order, as one list of the kept passes: a (name, pass) pair each was 100,000 objects more for
            # the collector to walk while the answer is made, and the full collections they brought on stop every
            # thread, /readyz and /metrics included.
            latest = self._latest
            kept = [latest[name] for name in sorted(latest)]
        counts: dict[str, int] = {}
        for last in kept:
            status = last.last.status.value if isinstance(last.last, PassOutcome) else last.last["status"]
            counts[status] = counts.get(status, 0) + 1
        ready = self.readiness()
        head = {
            "desired_version": self.version(),
            "mode": self.guard.mode().value,
            "remediation": ready.get("remediation"),
            "ready": ready.get("ready"),
            "targets_by_status": counts,
            "watches": self.watches(),
        }
        summarize = self.summarize
        rows = (summarize(last.last) | {"at": _iso(last.at)} for last in kept)
        return head, rows

    def _drifting(self) -> list[str]:
        """The targets whose last pass found drift: the only ones /drift renders."""
        with self._lock:
            kept = list(self._latest.items())
        return [name for name, last in kept if self.summarize(last.last)["drift"]]

    def get(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if path == STATUS:
            head, rows = self.status()
            return 200, {**head, "targets": list(rows)}
        if path == "/api/v1/drift":
            wanted = query.get("target")
            latest = self.latest(self._drifting() if wanted is None else [wanted])
            if wanted is not None and wanted not in latest:
                return 404, {"error": f"no pass of a target named {wanted} yet"}
            chosen = [latest[wanted]] if wanted else sorted(latest.values(), key=lambda t: t["target"])
            return 200, {
                "targets": [
                    {k: t[k] for k in ("target", "environment", "status", "drift", "at")} for t in chosen if t["drift"]
                ]
            }
        if path == "/api/v1/parity":
            if self.parity is None:
                return 404, {"error": "the daemon keeps no environment parity (RECONCILER_PARITY__ENABLED=false)"}
            return self.parity(query.get("app"))
        return 404, {"error": "not found"}

    def post(self, path: str, body: dict[str, Any], authorization: str | None) -> tuple[int, dict[str, Any]]:
        if self.token is None:
            return 403, {"error": "the state-changing API is off (set RECONCILER_HTTP__API_TOKEN to turn it on)"}
        given = (authorization or "").removeprefix("Bearer ").strip()
        # Header values arrive decoded as Latin-1, so this gives back the bytes sent; the token is UTF-8.
        if (
            not authorization
            or not authorization.startswith("Bearer ")
            or not token_matches(self.token, given.encode("latin-1", "replace"))
        ):
            return 401, {"error": "a valid `Authorization: Bearer <token>` header is required"}
        if path == "/api/v1/mode":
            mode = body.get("mode")
            if mode not in ("dry-run", "apply"):
                return 400, {"error": 'body must be {"mode": "dry-run"} or {"mode": "apply"}'}
            self.guard.force_dry_run(mode == "dry-run")
            log.warning("mode changed over the API", requested=mode, mode=self.guard.mode().value)
            return 200, {"mode": self.guard.mode().value}
        if (match := DECISION.match(path)) is not None:
            actor, comment = body.get("actor"), body.get("comment")
            if not isinstance(actor, str) or not actor.strip():
                return 400, {"error": 'body must name the deciding person: {"actor": "..."}'}
            if comment is not None and not isinstance(comment, str):
                return 400, {"error": "comment must be a string"}
            return self.decide(match.group(1), approve=match.group(2) == "approve", actor=actor, comment=comment)
        return 404, {"error": "not found"}

    def decide(self, approval_id: str, *, approve: bool, actor: str, comment: str | None) -> tuple[int, dict[str, Any]]:
        """Approve or reject a pending approval as `actor`: what POST /api/v1/approvals/... and the web UI do."""
        try:
            decided = self.approvals.decide(
                approval_id,
                approve=approve,
                actor=actor,
                comment=comment,
                now=datetime.now(UTC),
                ttl=timedelta(seconds=self.approval_ttl_s),
            )
        except ConfigurationError as exc:
            return 409 if "only pending" in str(exc) else 404, {"error": str(exc)}
        except ReconcilerError as exc:
            return 503, {"error": str(exc)}
        log.warning("approval decided", approval=decided.id, state=decided.state.value, actor=actor)
        return 200, {
            "id": decided.id,
            "state": decided.state.value,
            "target": decided.target,
            "path": decided.pointer,
            "actor": decided.actor,
            "expires_at": decided.expires_at.isoformat() if decided.expires_at else None,
        }


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def token_matches(token: str, given: bytes) -> bool:
    """Whether `given` is the API token, in constant time. Bytes, not str: compare_digest refuses non-ASCII str
    (a TypeError per request for any client to send)."""
    return hmac.compare_digest(given, token.encode("utf-8"))
