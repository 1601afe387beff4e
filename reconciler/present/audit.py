"""History as an audit trail, for people and programs: a key's timeline, and the export of every event.

Values are as history keeps them; a secret is only ever its keyed hash ("hmac-sha256:…"), a missing key null
(JSON) or an empty cell (CSV), a JSON null the text null (CSV).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from reconciler.domain.audit import EXPORT_FIELDS, AuditEvent, EventKind, PruneStats
from reconciler.domain.paths import MISSING
from reconciler.domain.values import Redacted, canonical_json, render
from reconciler.present.report import markdown_table, short, table

EXPORT_FORMATS = ("jsonl", "csv")
VALUES = ("desired", "observed", "before", "after")


def plain(value: Any) -> Any:
    """A stored value as JSON: a secret as its keyed hash, a missing key as None."""
    if value is MISSING:
        return None
    if isinstance(value, Redacted):
        return value.digest
    return value


def event_dict(event: AuditEvent) -> dict[str, Any]:
    """The event with the export's stable field names, every field present, in the same order."""
    out: dict[str, Any] = {}
    for name in EXPORT_FIELDS:
        raw = getattr(event, "class_" if name == "class" else name)
        if name == "at":
            raw = raw.isoformat()
        elif name in VALUES:
            raw = plain(raw)
        out[name] = raw.value if isinstance(raw, EventKind) else raw
    return out


def write_export(events: Iterable[AuditEvent], fmt: str, write: Callable[[str], Any]) -> int:
    """Write every event as it comes (JSON lines, or CSV with a header); the number written."""
    n = 0
    if fmt == "jsonl":
        for n, event in enumerate(events, 1):  # noqa: B007 - the count is the last index
            write(json.dumps(event_dict(event), ensure_ascii=False, default=str) + "\n")
        return n
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXPORT_FIELDS)
    for n, event in enumerate(events, 1):
        writer.writerow([_cell(name, event) for name in EXPORT_FIELDS])
        if n % 500 == 0:
            write(buffer.getvalue())
            buffer.seek(0)
            buffer.truncate()
    write(buffer.getvalue())
    return n


def _cell(name: str, event: AuditEvent) -> str:
    raw = getattr(event, "class_" if name == "class" else name)
    if name in VALUES:
        if raw is MISSING or (raw is None and name not in _SET_VALUES.get(event.event, ())):
            return ""
        return canonical_json(plain(raw))
    if raw is None:
        return ""
    if name == "at":
        return str(raw.isoformat())
    if isinstance(raw, bool):
        return "true" if raw else "false"
    return str(raw.value if isinstance(raw, EventKind) else raw)


# The value fields each kind of event carries: there, None is a JSON null; elsewhere the field is empty.
_SET_VALUES: dict[EventKind, tuple[str, ...]] = {
    EventKind.DRIFT: ("desired", "observed"),
    EventKind.SEEN: ("desired", "observed"),
    EventKind.CHANGED: ("desired", "observed"),
    EventKind.ESCALATED: ("desired", "observed"),
    EventKind.ACTION: ("before", "after"),
    EventKind.WRITTEN: ("before", "after"),
    EventKind.VERIFIED: ("before", "after"),
    EventKind.FAILED: ("before", "after"),
    EventKind.CONFLICT: ("before", "after"),
    EventKind.ROLLED_BACK: ("before", "after"),
    EventKind.ADOPTED: ("after",),
}


def render_timeline(events: Sequence[AuditEvent], fmt: str, target: str, pointer: str) -> str:
    """A key's story, one line per event with time and actor: table, json or markdown."""
    if fmt == "json":
        return json.dumps([event_dict(e) for e in events], indent=2, ensure_ascii=False, default=str)
    if not events:
        return f"no history for {target} {pointer} in that time"
    headers = ("time (utc)", "event", "actor", "what")
    rows = [(e.at.strftime("%Y-%m-%d %H:%M:%S"), e.event.value, e.actor, what(e)) for e in events]
    if fmt == "markdown":
        lines = [f"## {target} `{pointer}`", ""]
        return "\n".join(lines + markdown_table(headers, [(a, b, c, d.replace("|", "\\|")) for a, b, c, d in rows]))
    return f"{target} {pointer}\n" + table(headers, [(a, b, c, short(d, 100)) for a, b, c, d in rows])


def what(e: AuditEvent) -> str:
    """The line's words: what happened, with the values, the reason and the version it happened under."""
    version = ""
    if e.desired_version:
        version = f" (desired {e.desired_version[:12]}{', git ' + e.git_commit[:12] if e.git_commit else ''})"
    words: dict[EventKind, Callable[[], str]] = {
        EventKind.SEEN: lambda: f"drifting: live {render(e.observed)}, desired {render(e.desired)}{version}",
        EventKind.CHANGED: lambda: f"still drifting, live now {render(e.observed)}{version}",
        EventKind.CLASSIFIED: lambda: f"{e.class_} by {e.decided_by}: {e.reason}",
        EventKind.GONE: lambda: f"no longer drifting{version}",
        EventKind.ESCALATED: lambda: f"asked for approval: {e.reason}",
        EventKind.APPROVED: lambda: f"approved{_said(e)} (now {e.state})",
        EventKind.REJECTED: lambda: f"rejected{_said(e)}",
        EventKind.SUPERSEDED: lambda: "approval superseded: the drift changed or went away",
        EventKind.EXPIRED: lambda: "approval expired unused",
        EventKind.WRITTEN: lambda: f"{render(e.before)} -> {render(e.after)} ({e.state}){version}",
        EventKind.ADOPTED: lambda: f"live value {render(e.after)} adopted: {e.reason}; {e.comment}",
        EventKind.BREAKER: lambda: f"breaker {e.state}: {e.reason or ''}",
    }
    if e.event in words:
        return words[e.event]()
    if e.event is EventKind.ROLLED_BACK and e.rollback_of:
        return f"rolled back to {render(e.after)} (undoes {e.rollback_of}): {e.reason}"
    return f"{e.event.value}: {e.reason or e.error or ''}".rstrip(": ")


def _said(e: AuditEvent) -> str:
    return f': "{e.comment}"' if e.comment else ""


def render_prune(stats: PruneStats) -> str:
    """What a prune deleted (or would delete), and the longest it held the database."""
    if stats.skipped:
        return f"nothing pruned: {stats.skipped}"
    verb = "would delete" if stats.dry_run else "deleted"
    counts = ", ".join(f"{table} {n}" for table, n in sorted(stats.deleted.items())) or "nothing"
    lines = [
        f"{verb} {stats.rows} rows older than {stats.cutoff:%Y-%m-%d %H:%M} UTC: {counts}",
        f"kept {stats.kept_runs} older runs still needed (newest passes, open approvals, last writes, exceptions)",
    ]
    if not stats.dry_run:
        lines.append(
            f"{stats.batches} transactions in {stats.seconds:.2f}s; longest {stats.longest_lock_s * 1000:.0f} ms"
        )
    return "\n".join(lines)
