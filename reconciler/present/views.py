"""Reports for people and programs beyond runs: explain, exceptions, approvals."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from reconciler.classify.exceptions import EntryKind, ExceptionStatus
from reconciler.domain.approval import Approval
from reconciler.domain.paths import MISSING
from reconciler.domain.policy import PolicyException
from reconciler.domain.values import render
from reconciler.engine.explain import Explanation
from reconciler.present.report import json_value, short, table


def render_explanation(result: Explanation) -> str:
    lines = [f"{result.target.name} {result.pointer}"]
    if result.item is None:
        lines.append(f"  {result.note}")
        return "\n".join(lines)
    item = result.item
    lines.append(f"  {item.op.value}: desired {render(item.desired)}, live {render(item.observed)}")
    decision = result.steps[-1]
    lines.append(f"  class: {decision.class_.value if decision.class_ else '?'}, decided by {decision.candidate}")
    lines.append("  considered, in order:")
    for step in result.steps:
        mark = "=>" if step.matched else "  "
        lines.append(f"   {mark} {step.candidate}: {step.why}")
    return "\n".join(lines)


def render_exceptions(statuses: Sequence[ExceptionStatus], fmt: str) -> str:
    """Exceptions and expected differences; expiry dates as written (a date holds through that day, UTC)."""
    if fmt == "json":
        return json.dumps([_exception_dict(s) for s in statuses], indent=2)
    if not statuses:
        return "no exceptions or expected differences"
    rows = [
        (
            s.id,
            "exception" if s.kind is EntryKind.EXCEPTION else "expected",
            s.state.value,
            s.exception.expires_text,
            _days(s.remaining.total_seconds()),
            s.scope,
            ",".join(str(p) for p in s.exception.paths),
            s.exception.owner,
            s.ticket or "",
            short(s.exception.reason, 50),
        )
        for s in statuses
    ]
    headers = ("id", "kind", "state", "expires", "left", "covers", "paths", "owner", "ticket", "reason")
    return table(headers, rows)


def _exception_dict(s: ExceptionStatus) -> dict[str, Any]:
    entry = s.exception
    data: dict[str, Any] = {
        "id": s.id,
        "kind": s.kind.value,
        "state": s.state.value,
        "expires": entry.expires_text,
        "ends_at": entry.expires.isoformat(),
        "remaining_s": int(s.remaining.total_seconds()),
    }
    if isinstance(entry, PolicyException):
        data |= {"targets": entry.targets}
    else:
        data |= {"apps": entry.apps, "environments": entry.environments}
    data |= {"paths": [str(p) for p in entry.paths], "reason": entry.reason, "owner": entry.owner}
    if isinstance(entry, PolicyException):
        data |= {"ticket": entry.ticket, "purpose": entry.purpose, "stakeholders": entry.stakeholders}
    return data


def _days(seconds: float) -> str:
    days = seconds / 86400
    return f"{days:.1f}d" if days >= 0 else f"{-days:.1f}d ago"


def render_approvals(approvals: Sequence[Approval], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(
            [
                {
                    "id": a.id,
                    "state": a.state.value,
                    "target": a.target,
                    "environment": a.environment,
                    "path": a.pointer,
                    "op": a.op,
                    "desired": json_value(a.desired),
                    "desired_missing": a.desired is MISSING,
                    "observed": json_value(a.observed),
                    "observed_missing": a.observed is MISSING,
                    "reason": a.reason,
                    "created_at": a.created_at.isoformat(),
                    "actor": a.actor,
                    "comment": a.comment,
                    "decided_at": a.decided_at.isoformat() if a.decided_at else None,
                    "expires_at": a.expires_at.isoformat() if a.expires_at else None,
                    "action": a.action_id,
                }
                for a in approvals
            ],
            indent=2,
        )
    if not approvals:
        return "no approvals waiting"
    rows = [
        (
            a.id,
            a.state.value,
            a.target,
            a.pointer,
            a.op,
            short(render(a.desired)),
            short(render(a.observed)),
            a.actor or "",
            short(a.reason, 50),
        )
        for a in approvals
    ]
    return table(("approval", "state", "target", "path", "op", "desired", "live", "actor", "reason"), rows)
