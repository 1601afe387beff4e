"""Reports of runs for people and programs: JSON-ready dicts, tables and Markdown."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.domain.approval import Approval
from reconciler.domain.drift import Classified
from reconciler.domain.paths import MISSING
from reconciler.domain.plan import Action
from reconciler.domain.run import RunStatus
from reconciler.domain.values import render, to_json
from reconciler.engine.outcome import PassOutcome, RunOutcome
from reconciler.remediate.planner import TargetPlan

FORMATS = ("table", "json", "markdown")
PAGE_FORMATS = (*FORMATS, "html")  # a run or a parity report can also be one self-contained page


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


def action_dict(action: Action, key: bytes) -> dict[str, Any]:
    return {
        "id": action.id,
        "target": action.target,
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


def target_dict(report: PassOutcome, key: bytes) -> dict[str, Any]:
    actions = report.execution.actions if report.execution else []
    by_path = {a.pointer: a for a in actions if a.rollback_of is None}
    left_alone = _left_alone(report.plan)
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
                "action": action.state.value if action else left_alone.get(c.item.pointer, "none"),
                "approval": _approval_dict(report.approvals.get(c.item.pointer)),
                "layers": _layers(report, c),
            }
        )
    return {
        **_head(report),
        "note": report.note,
        "drift": drift,
        "actions": [_with_live_now(action_dict(a, key), report.live_now) for a in actions],
    }


def target_summary(report: PassOutcome) -> dict[str, Any]:
    """What the daemon's /api/v1/status shows of a target's last pass: target_dict's head, and how many paths
    drifted rather than which (rendering those is what a status of 100,000 targets cannot afford)."""
    return {**_head(report), "drift": len(report.classified)}


def _head(report: PassOutcome) -> dict[str, Any]:
    return {
        "target": report.target.name,
        "environment": report.target.environment,
        "mode": report.mode.value,
        "status": report.status.value,
        "drift_percent": round(report.comparison.drift_percent, 3) if report.comparison else None,
        "error": report.error,
    }


def _with_live_now(action: dict[str, Any], live_now: Mapping[str, Any] | None) -> dict[str, Any]:
    """A rollback's action with what live holds at its path now (read after the rollback; secrets as keyed
    hashes); `live_now_read` is false when live could not be read again."""
    if live_now is None:
        return action
    if action["path"] not in live_now:
        return {**action, "live_now": None, "live_now_missing": False, "live_now_read": False}
    value = live_now[action["path"]]
    return {**action, "live_now": json_value(value), "live_now_missing": value is MISSING, "live_now_read": True}


def _layers(report: PassOutcome, drift: Classified) -> list[dict[str, Any]] | None:
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


def _left_alone(plan: TargetPlan | None) -> dict[str, str]:
    """What the plan leaves alone, by pointer, and why; built once per report (a search per drift item made
    reports of 20k live-only keys take minutes). Escalated wins over unpruned, unpruned over accepted."""
    if plan is None:
        return {}
    index: dict[str, str] = {}
    for words, items in (("accepted", plan.accepted), ("reported (prune: false)", plan.unpruned)):
        index.update((c.item.pointer, words) for c in items)
    index.update((c.item.pointer, "escalated") for c in plan.escalations)
    return index


def run_dict(report: RunOutcome, key: bytes) -> dict[str, Any]:
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
        "notes": list(report.notes),
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def indented_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table set in by two spaces, under the title of what it belongs to."""
    return "  " + table(headers, rows).replace("\n", "\n  ")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table's lines, headers as given; a `|` in a cell is escaped."""
    return [
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
        *("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows),
    ]


def short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _state_words(state: str) -> str:
    return {"dry_run": "would fix (dry run)", "verified": "fixed", "noop": "already fixed"}.get(state, state)


def render_run(report: RunOutcome, fmt: str, key: bytes) -> str:
    data = run_dict(report, key)
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False)
    if fmt == "html":
        from reconciler.present import web  # noqa: PLC0415 (Jinja2 is loaded for an html report only)

        return web.standalone("report_run.html", title=f"{data['kind']} run: {data['status']}", run=data)
    md = fmt == "markdown"
    kind = (
        f"{data['kind']}, a dry run: not recorded"
        if data["kind"] == "rollback" and not report.recorded
        else data["kind"]
    )
    head = f"run {data['run_id']} ({kind}) against desired version {data['desired_version'][:12]}: "
    out = [("**" + head + data["status"] + "**") if md else head + data["status"]]
    for t in data["targets"]:
        out += _target_lines(t, data["kind"], md)
    out += [f"refused: {r['target']} {r['path']}: {r['reason']}" for r in data["refused"]]
    out += [f"note: {n}" for n in data["notes"]]
    if not data["targets"] and not data["refused"]:
        out.append("nothing to do")
    return "\n".join(_as_markdown(out) if md else out)


def _as_markdown(lines: list[str]) -> list[str]:
    """A report's lines as Markdown: set-in and `refused:` lines become list items (indented, they would run
    into one paragraph, or past four spaces into a code block)."""
    return [f"- {line.strip()}" if line.startswith(" ") or line.startswith("refused: ") else line for line in lines]


def _target_lines(t: dict[str, Any], kind: str, md: bool) -> list[str]:
    """One target's part of a run report: its title, error and note, then what was undone or what drifted."""
    pct = "" if t["drift_percent"] is None else f", {t['drift_percent']:.1f}% drift"
    title = f"{t['target']} ({t['environment']}, {t['mode']}): {t['status']}{pct}"
    out = ["", f"### {title}" if md else title]
    if t["error"]:
        out.append(f"  error: {t['error']}")
    if t["note"]:
        out.append(f"  note: {t['note']}")
    if kind == "rollback":
        headers, rows = ("path", "live now", "put back", "state", "note"), _undo_rows(t["actions"])
        out += markdown_table([h.title() for h in headers], rows) if md else [indented_table(headers, rows)]
        return out
    if not t["drift"]:
        if t["status"] != "failed":
            out.append("  no drift: live matches desired" + (", nothing written" if kind == "apply" else ""))
        return out
    out += _drift_table(t["drift"], md)
    layered = [d for d in t["drift"] if d["layers"] is not None]
    if layered:
        out.append("  where the values come from (highest precedence first):")
        out += [f"    {_layer_words(d)}" for d in layered]
    if kind == "apply" and not any(a["state"] in ("verified",) for a in t["actions"]):
        out.append("  nothing written")
    return out


def _undo_rows(actions: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    return [
        (
            a["path"],
            short(_side_text(a, "live_now") if a.get("live_now_read") else "(not read)"),
            short(_side_text(a, "after")),
            _state_words(a["state"]),
            short(a["error"] or "", 60),
        )
        for a in actions
    ]


def _drift_table(drift: list[dict[str, Any]], md: bool) -> list[str]:
    headers = ("path", "op", "class", "desired", "live", "action", "reason")
    rows = [
        (
            d["path"],
            d["op"],
            d["class"],
            short(_side_text(d, "desired")),
            short(_side_text(d, "observed")),
            _action_words(d),
            short(d["reason"], 60),
        )
        for d in drift
    ]
    if md:
        return markdown_table([h.title() for h in headers], rows)
    return [indented_table(headers, rows)]


def _side_text(data: dict[str, Any], side: str) -> str:
    """One side of a drift or action dict (desired, observed, before, after) as text, MISSING if it is absent."""
    return render(MISSING) if data[f"{side}_missing"] else render(data[side])
