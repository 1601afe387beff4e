"""Reports of runs for people and programs: JSON-ready dicts, tables and Markdown."""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from reconciler.domain.approval import Approval
from reconciler.domain.drift import Classified
from reconciler.domain.history import PassRecord, RunRecord
from reconciler.domain.paths import MISSING
from reconciler.domain.plan import Action
from reconciler.domain.run import RunStatus
from reconciler.domain.values import render, to_json
from reconciler.runtime.loop import RunReport, TargetReport

FORMATS = ("table", "json", "markdown")


def exit_code(status: RunStatus) -> int:
    """0: live matches desired (apart from acceptable drift); 2: drift remains; 1: an error."""
    if status is RunStatus.FAILED:
        return 1
    if status is RunStatus.DRIFT:
        return 2
    return 0


def json_value(value: Any) -> Any:
    text = to_json(value)
    return None if text is None else json.loads(text)


def _action_dict(action: Action, key: bytes) -> dict[str, Any]:
    return {
        "id": action.id,
        "path": action.pointer,
        "verb": action.verb,
        "before": json_value(action.journal_before(key)),
        "before_missing": action.before is MISSING,
        "after": json_value(action.journal_after(key)),
        "after_missing": action.after is MISSING,
        "state": action.state.value,
        "reason": action.reason,
        "desired_version": action.desired_version,
        "error": action.error,
        "rollback_of": action.rollback_of,
        "idempotency_key": action.idempotency_key,
    }


def target_dict(report: TargetReport, key: bytes) -> dict[str, Any]:
    actions = report.execution.actions if report.execution else []
    by_path = {a.pointer: a for a in actions if a.rollback_of is None}
    drift = []
    for c in report.classified:
        action = by_path.get(c.item.pointer)
        drift.append(
            {
                "path": c.item.pointer,
                "op": c.item.op.value,
                "class": c.class_.value,
                "reason": c.reason,
                "decided_by": c.decided_by,
                "desired": json_value(c.item.desired),
                "desired_missing": c.item.desired is MISSING,
                "observed": json_value(c.item.observed),
                "observed_missing": c.item.observed is MISSING,
                "secret": c.item.secret,
                "action": action.state.value if action else _left_alone(report, c.item.pointer),
                "approval": _approval_dict(report.approvals.get(c.item.pointer)),
                "layers": _layers(report, c),
            }
        )
    return {
        "target": report.target.name,
        "environment": report.target.environment,
        "mode": report.mode.value,
        "status": report.status.value,
        "drift_percent": round(report.comparison.drift_percent, 3) if report.comparison else None,
        "error": report.error,
        "note": report.note,
        "drift": drift,
        "actions": [_action_dict(a, key) for a in actions],
    }


def _layers(report: TargetReport, drift: Classified) -> list[dict[str, Any]] | None:
    """For a layered source: every layer that sets the drifted key, the winner last; secrets redacted."""
    if report.layers is None:
        return None
    holders = report.layers.get(drift.item.pointer, [])
    return [
        {
            "layer": name,
            "value": "<redacted>" if drift.item.secret else json_value(value),
            "wins": i == len(holders) - 1,
        }
        for i, (name, value) in enumerate(holders)
    ]


def _layer_words(drift: dict[str, Any]) -> str:
    said = [
        f"{h['layer']} = {render(h['value'])}" + (" (wins)" if h["wins"] else "") for h in reversed(drift["layers"])
    ]
    return f"{drift['path']}: " + ("; ".join(said) if said else "set by no layer")


def _approval_dict(approval: Approval | None) -> dict[str, Any] | None:
    if approval is None:
        return None
    return {"id": approval.id, "state": approval.state.value, "actor": approval.actor, "comment": approval.comment}


def _action_words(drift: dict[str, Any]) -> str:
    words = _state_words(drift["action"])
    approval = drift["approval"]
    if approval and drift["action"] == "escalated":
        words += f" ({approval['state']} approval {approval['id'][:8]})"
    elif approval and approval["state"] in ("approved", "used"):
        words += f" (approved by {approval['actor']})"
    return words


_LEFT_ALONE = threading.local()  # per thread: the last plan seen (weakly), and what it leaves alone by pointer


def _left_alone(report: TargetReport, pointer: str) -> str:
    plan = report.plan
    if plan is None:
        return "none"
    # Called once per drift item of a report: the plan's lists are indexed once per plan (and again if they
    # grew), not searched per item, which made reports of 20k live-only keys take minutes.
    sizes = (len(plan.escalations), len(plan.unpruned), len(plan.accepted))
    cached = getattr(_LEFT_ALONE, "last", None)
    if cached is None or cached[0]() is not plan or cached[1] != sizes:
        index: dict[str, str] = {}
        for words, items in (("accepted", plan.accepted), ("reported (prune: false)", plan.unpruned)):
            index.update((c.item.pointer, words) for c in items)
        index.update((c.item.pointer, "escalated") for c in plan.escalations)  # first in the order of precedence
        cached = _LEFT_ALONE.last = (weakref.ref(plan), sizes, index)
    return cached[2].get(pointer, "none")


def run_dict(report: RunReport, key: bytes) -> dict[str, Any]:
    return {
        "run_id": report.run_id,
        "kind": report.kind.value,
        "desired_version": report.desired_version,
        "status": report.status.value,
        "exit_code": exit_code(report.status),
        "targets": [target_dict(t, key) for t in report.targets],
        "refused": [
            {"action": r.action.id, "target": r.action.target, "path": r.action.pointer, "reason": r.reason}
            for r in report.refused
        ],
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _state_words(state: str) -> str:
    return {"dry_run": "would fix (dry run)", "verified": "fixed", "noop": "already fixed"}.get(state, state)


def render_run(report: RunReport, fmt: str, key: bytes) -> str:
    data = run_dict(report, key)
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False)
    md = fmt == "markdown"
    out = []
    head = f"run {data['run_id']} ({data['kind']}) against desired version {data['desired_version'][:12]}: "
    out.append(("**" + head + data["status"] + "**") if md else head + data["status"])
    for t in data["targets"]:
        pct = "" if t["drift_percent"] is None else f", {t['drift_percent']:.1f}% drift"
        title = f"{t['target']} ({t['environment']}, {t['mode']}): {t['status']}{pct}"
        out.append("")
        out.append(f"### {title}" if md else title)
        if t["error"]:
            out.append(f"  error: {t['error']}")
        if t["note"]:
            out.append(f"  note: {t['note']}")
        if data["kind"] == "rollback":
            undo = [
                (
                    a["path"],
                    short(_before_after(a, "before")),
                    short(_before_after(a, "after")),
                    _state_words(a["state"]),
                    short(a["error"] or "", 60),
                )
                for a in t["actions"]
            ]
            out.append("  " + table(("path", "live now", "put back", "state", "note"), undo).replace("\n", "\n  "))
            continue
        if not t["drift"]:
            if t["status"] != "failed":
                out.append(
                    "  no drift: live matches desired" + (", nothing written" if data["kind"] == "apply" else "")
                )
            continue
        headers = ("path", "op", "class", "desired", "live", "action", "reason")
        rows = [
            (
                d["path"],
                d["op"],
                d["class"],
                short(render(MISSING) if d["desired_missing"] else render(d["desired"])),
                short(render(MISSING) if d["observed_missing"] else render(d["observed"])),
                _action_words(d),
                short(d["reason"], 60),
            )
            for d in t["drift"]
        ]
        if md:
            out.append("| " + " | ".join(h.title() for h in headers) + " |")
            out.append("|" + "---|" * len(headers))
            out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
        else:
            out.append("  " + table(headers, rows).replace("\n", "\n  "))
        layered = [d for d in t["drift"] if d["layers"] is not None]
        if layered:
            out.append("  where the values come from (highest precedence first):")
            out += [f"    {_layer_words(d)}" for d in layered]
        if data["kind"] == "apply" and not any(a["state"] in ("verified",) for a in t["actions"]):
            out.append("  nothing written")
    for refusal in data["refused"]:
        out.append(f"refused: {refusal['target']} {refusal['path']}: {refusal['reason']}")
    if not data["targets"] and not data["refused"]:
        out.append("nothing to do")
    return "\n".join(out)


def _before_after(action: dict[str, Any], side: str) -> str:
    return render(MISSING) if action[f"{side}_missing"] else render(action[side])


def render_runs(runs: Sequence[RunRecord], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([_run_record_dict(r) for r in runs], indent=2)
    rows = [
        (
            r.id,
            r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            r.kind.value,
            r.trigger,
            r.status.value,
            str(r.targets),
            str(r.drift_count),
            ", ".join(f"{k} {v}" for k, v in sorted(r.action_counts.items())) or "-",
        )
        for r in runs
    ]
    if not rows:
        return "no runs recorded yet"
    return table(("run", "started (utc)", "kind", "trigger", "status", "targets", "drift", "actions"), rows)


def _run_record_dict(r: RunRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "kind": r.kind.value,
        "trigger": r.trigger,
        "status": r.status.value,
        "started_at": r.started_at.isoformat(),
        "finished_at": r.finished_at.isoformat() if r.finished_at else None,
        "desired_version": r.desired_version,
        "rollback_of": r.rollback_of,
        "error": r.error,
        "targets": r.targets,
        "drift": r.drift_count,
        "actions": r.action_counts,
    }


def render_run_detail(
    run: RunRecord,
    passes: Sequence[PassRecord],
    actions: Sequence[Action],
    fmt: str,
    drifts: Sequence[dict[str, Any]] = (),
) -> str:
    """A recorded run with its passes, drift (with the ids `reconciler adopt` takes) and actions; secrets are
    already redacted in history."""
    if fmt == "json":
        return json.dumps(
            {
                **_run_record_dict(run),
                "passes": [
                    {
                        "target": p.target,
                        "environment": p.environment,
                        "status": p.status.value,
                        "drift": p.drift_count,
                        "drift_percent": p.drift_percent,
                        "error": p.error,
                        "note": p.note,
                    }
                    for p in passes
                ],
                "drift": [
                    {
                        "id": d["id"],
                        "target": d["target"],
                        "path": d["path"],
                        "op": d["op"],
                        "class": d["class"],
                        "reason": d["reason"],
                        "decided_by": d["decided_by"],
                        "desired": json_value(d["desired"]),
                        "desired_missing": d["desired"] is MISSING,
                        "observed": json_value(d["observed"]),
                        "observed_missing": d["observed"] is MISSING,
                        "secret": d["secret"],
                    }
                    for d in drifts
                ],
                "actions": [_action_dict(a, b"") for a in actions],
            },
            indent=2,
        )
    out = [render_runs([run], "table"), ""]
    if run.rollback_of:
        out.append(f"rolls back run {run.rollback_of}")
    if passes:
        out.append(
            table(
                ("target", "environment", "status", "drift", "error"),
                [
                    (p.target, p.environment, p.status.value, str(p.drift_count), p.error or p.note or "")
                    for p in passes
                ],
            )
        )
    if drifts:
        out.append("")
        out.append(
            table(
                ("drift", "target", "path", "op", "class", "desired", "live"),
                [
                    (
                        str(d["id"]),
                        d["target"],
                        d["path"],
                        d["op"],
                        d["class"],
                        short(render(d["desired"])),
                        short(render(d["observed"])),
                    )
                    for d in drifts
                ],
            )
        )
    if actions:
        out.append("")
        out.append(
            table(
                ("action", "target", "path", "before", "after", "state", "error"),
                [
                    (
                        a.id,
                        a.target,
                        a.pointer,
                        short(render(a.before)),
                        short(render(a.after)),
                        a.state.value,
                        short(a.error or "", 60),
                    )
                    for a in actions
                ],
            )
        )
    return "\n".join(out)
