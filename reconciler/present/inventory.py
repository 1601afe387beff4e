"""The report of what runs where, as Markdown for people (a weekly job posts it) or JSON for programs.
Secrets appear only as their keyed hash."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any

from reconciler.domain.inventory import Inventory, KeyState, TargetInventory
from reconciler.domain.paths import MISSING
from reconciler.domain.values import render
from reconciler.present.audit import plain
from reconciler.present.report import markdown_table, short

FORMATS = ("markdown", "json", "html")


def render_inventory(report: Inventory, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(inventory_dict(report), indent=2, ensure_ascii=False, default=str)
    if fmt == "html":
        from reconciler.present import web  # noqa: PLC0415 (Jinja2 is loaded for an html report only)

        data = json.loads(json.dumps(inventory_dict(report), default=str))  # what the json format holds
        return web.standalone("report_inventory.html", title="What runs where", inventory=data)
    return "\n".join(_markdown(report))


def inventory_dict(report: Inventory) -> dict[str, Any]:
    return {
        "at": report.at.isoformat(),
        "desired_version": report.desired_version,
        "git_commit": report.git_commit,
        "git_dirty": report.git_dirty,
        "targets": [_target_dict(t, report.at) for t in report.targets],
    }


def _target_dict(t: TargetInventory, now: datetime) -> dict[str, Any]:
    return {
        "target": t.target,
        "app": t.app,
        "environment": t.environment,
        "location": t.location,
        "error": t.error,
        "last_pass_at": _iso(t.last_pass_at),
        "last_clean_at": _iso(t.last_clean_at),
        "last_desired_version": t.last_version,
        "last_git_commit": t.last_git_commit,
        "drifting": t.drifting,
        "keys": [_key_dict(k, now) for k in t.keys],
        "exceptions": [
            {
                "id": e.id,
                "paths": list(e.paths),
                "owner": e.owner,
                "reason": e.reason,
                "expires": e.expires.isoformat(),
                "ticket": e.ticket,
            }
            for e in t.exceptions
        ],
    }


def _key_dict(k: KeyState, now: datetime) -> dict[str, Any]:
    return {
        "path": k.pointer,
        "live": plain(k.live),
        "live_missing": k.live is MISSING,
        "desired": plain(k.desired),
        "desired_missing": k.desired is MISSING,
        "matches": k.matches,
        "secret": k.secret,
        "layer": k.layer,
        "class": k.drift_class,
        "decided_by": k.decided_by,
        "drifting_since": _iso(k.drifting_since),
        "drift_age_s": round((now - k.drifting_since).total_seconds()) if k.drifting_since else None,
    }


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _markdown(report: Inventory) -> list[str]:
    commit = f", git {report.git_commit[:12]}{' (dirty)' if report.git_dirty else ''}" if report.git_commit else ""
    out = [
        "# What runs where",
        "",
        f"At {report.at:%Y-%m-%d %H:%M} UTC, against desired version {report.desired_version[:12]}{commit}.",
    ]
    if not report.targets:
        out += ["", "No target matches."]
    for app, targets in groupby(report.targets, key=lambda t: t.app):
        out += ["", f"## {app}"]
        for t in targets:
            out += ["", *_target_lines(t, report.at)]
    return out


def _target_lines(t: TargetInventory, now: datetime) -> list[str]:
    state = f"**error**: {t.error}" if t.error else f"{t.drifting} of {len(t.keys)} keys drift"
    out = [f"### {t.environment}: {t.target}", "", f"{state}. Read from `{t.location or '?'}`."]
    commit = f" (git {t.last_git_commit[:12]})" if t.last_git_commit else ""
    version = f" against {t.last_version[:12]}{commit}" if t.last_version else ""
    out.append(
        f"Last recorded pass {_when(t.last_pass_at, now)}{version}; "
        f"last seen equal to desired {_when(t.last_clean_at, now)}."
    )
    if t.keys:
        layered = any(k.layer for k in t.keys)
        headers = ["key", "live", *(["layer"] if layered else []), "desired", "matches", "drift"]
        rows = [
            [
                f"`{k.pointer}`",
                short(render(k.live), 48),
                *([k.layer or ""] if layered else []),
                short(render(k.desired), 48),
                "yes" if k.matches else "**no**",
                _drift(k, now),
            ]
            for k in t.keys
        ]
        out += ["", *markdown_table(headers, rows)]
    if t.exceptions:
        out += ["", "Exceptions in force:", ""]
        out += [
            f"- `{e.id}` on {', '.join(f'`{p}`' for p in e.paths)}: {e.reason} — owner {e.owner}, "
            f"expires {e.expires:%Y-%m-%d}{f', ticket {e.ticket}' if e.ticket else ''}"
            for e in t.exceptions
        ]
    return out


def _drift(k: KeyState, now: datetime) -> str:
    if k.matches:
        return ""
    since = f", for {_age(now - k.drifting_since)}" if k.drifting_since else ""
    return f"{k.drift_class} ({k.decided_by}){since}"


def _when(at: datetime | None, now: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC ({_age(now - at)} ago)" if at else "never"


def _age(delta: timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {rest // 60}m" if hours else f"{rest // 60}m"
