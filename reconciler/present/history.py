"""Recorded history for people and programs: the list of runs, and one run with its passes, drift and actions.
Secrets are already redacted in history."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from reconciler.domain.history import PassRecord, RunRecord
from reconciler.domain.paths import MISSING
from reconciler.domain.plan import Action
from reconciler.domain.values import render
from reconciler.present.report import action_dict, json_value, markdown_table, short, table


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
    headers = ("run", "started (utc)", "kind", "trigger", "status", "targets", "drift", "actions")
    return "\n".join(markdown_table(headers, rows)) if fmt == "markdown" else table(headers, rows)


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
                "passes": [_pass_record_dict(p) for p in passes],
                "drift": [_recorded_drift_dict(d) for d in drifts],
                "actions": [action_dict(a, b"") for a in actions],
            },
            indent=2,
        )
    md = fmt == "markdown"
    out = ([f"## Run {run.id}"] if md else []) + [render_runs([run], fmt), ""]
    if run.rollback_of:
        out += [f"rolls back run {run.rollback_of}", ""] if md else [f"rolls back run {run.rollback_of}"]
    sections = (
        ("Passes", passes and _passes_table(passes, md)),
        ("Drift", drifts and _recorded_drift_table(drifts, md)),
        ("Actions", actions and _actions_table(actions, md)),
    )
    shown = [([f"### {title}"] if md else []) + [text] for title, text in sections if text]
    return "\n".join([*out, "\n\n".join("\n".join(s) for s in shown)]).rstrip("\n")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], md: bool) -> str:
    return "\n".join(markdown_table(headers, rows)) if md else table(headers, rows)


def _pass_record_dict(p: PassRecord) -> dict[str, Any]:
    return {
        "target": p.target,
        "environment": p.environment,
        "status": p.status.value,
        "drift": p.drift_count,
        "drift_percent": p.drift_percent,
        "error": p.error,
        "note": p.note,
    }


def _recorded_drift_dict(d: dict[str, Any]) -> dict[str, Any]:
    return {
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


def _passes_table(passes: Sequence[PassRecord], md: bool) -> str:
    return _table(
        ("target", "environment", "status", "drift", "error"),
        [(p.target, p.environment, p.status.value, str(p.drift_count), p.error or p.note or "") for p in passes],
        md,
    )


def _recorded_drift_table(drifts: Sequence[dict[str, Any]], md: bool) -> str:
    return _table(
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
        md,
    )


def _actions_table(actions: Sequence[Action], md: bool) -> str:
    return _table(
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
        md,
    )
