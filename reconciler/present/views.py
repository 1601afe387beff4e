"""Reports for people and programs beyond runs: explain, exceptions, parity, approvals."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from reconciler.classify.exceptions import ExceptionStatus
from reconciler.diff.parity import PairResult
from reconciler.domain.approval import Approval
from reconciler.domain.paths import MISSING
from reconciler.domain.values import render
from reconciler.engine.explain import Explanation
from reconciler.present.report import indented_table, json_value, markdown_table, short, table


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
    if fmt == "json":
        return json.dumps(
            [
                {
                    "id": s.id,
                    "state": s.state.value,
                    "expires": s.exception.expires.isoformat(),
                    "remaining_s": int(s.remaining.total_seconds()),
                    "targets": s.exception.targets,
                    "paths": [str(p) for p in s.exception.paths],
                    "reason": s.exception.reason,
                    "owner": s.exception.owner,
                    "ticket": s.exception.ticket,
                    "purpose": s.exception.purpose,
                    "stakeholders": s.exception.stakeholders,
                }
                for s in statuses
            ],
            indent=2,
        )
    if not statuses:
        return "no exceptions"
    rows = [
        (
            s.id,
            s.state.value,
            s.exception.expires.strftime("%Y-%m-%d %H:%M"),
            _days(s.remaining.total_seconds()),
            ",".join(s.exception.targets),
            ",".join(str(p) for p in s.exception.paths),
            s.exception.owner,
            s.exception.ticket or "",
            short(s.exception.reason, 50),
        )
        for s in statuses
    ]
    return table(("id", "state", "expires (utc)", "left", "targets", "paths", "owner", "ticket", "reason"), rows)


def _days(seconds: float) -> str:
    days = seconds / 86400
    return f"{days:.1f}d" if days >= 0 else f"{-days:.1f}d ago"


def _side(value: Any) -> str:
    return "(absent)" if value is MISSING else short(render(value))


def render_parity(
    results: Sequence[PairResult], errors: dict[str, str], environments: Sequence[str], source: str, fmt: str
) -> str:
    if fmt == "json":
        return json.dumps(
            {
                "source": source,
                "environments": list(environments),
                "errors": errors,
                "pairs": [_pair_dict(r) for r in results],
            },
            indent=2,
        )
    md = fmt == "markdown"
    out = [f"{'**' if md else ''}Environment parity on {source}: {', '.join(environments)}{'**' if md else ''}"]
    for name, error in sorted(errors.items()):
        out.append(f"error: {name}: {error}")
    if not results and not errors:
        out.append("no app has targets in two of these environments")
    for r in results:
        out += _pair_lines(r, md)
    return "\n".join(out)


def _pair_dict(r: PairResult) -> dict[str, Any]:
    return {
        "app": r.app,
        "a": {"target": r.a.name, "environment": r.a.environment},
        "b": {"target": r.b.name, "environment": r.b.environment},
        "drift_percent": round(r.drift_percent, 3),
        "threshold": r.threshold,
        "significant": r.significant,
        "unexpected": len(r.unexpected),
        "differences": [
            {
                "path": i.pointer,
                "kind": i.kind,
                "expected": i.expected,
                "note": i.note,
                "a": json_value(i.a),
                "a_absent": i.a is MISSING,
                "b": json_value(i.b),
                "b_absent": i.b is MISSING,
            }
            for i in r.items
        ],
    }


def _pair_lines(r: PairResult, md: bool) -> list[str]:
    """One pair of environments: its verdict as a title, then its differences as a table."""
    verdict = "significant" if r.significant else "within threshold"
    title = (
        f"{r.app}: {r.a.environment} ({r.a.name}) vs {r.b.environment} ({r.b.name}): "
        f"{r.drift_percent:.1f}% drift, {verdict} ({r.threshold:.0%}); "
        f"{len(r.unexpected)} unexpected, {len(r.items) - len(r.unexpected)} expected"
    )
    out = ["", f"### {title}" if md else title]
    if not r.items:
        out.append("  no differences")
        return out
    headers = ("key", r.a.environment, r.b.environment, "kind", "expected")
    rows = [
        (i.pointer, _side(i.a), _side(i.b), i.kind, ("yes: " + i.note) if i.expected else (i.note or "no"))
        for i in r.items
    ]
    if md:  # the environments' names stay as they are spelt
        out += markdown_table([h.title() if h in ("key", "kind", "expected") else h for h in headers], rows)
    else:
        out.append(indented_table(headers, rows))
    return out


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
