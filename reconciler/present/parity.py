"""Environment parity for people and programs: pairs (batch) or the baseline matrix, with the allowlist's
expired and stale entries, as a table, JSON or Markdown. Every count is a leaf count."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.diff import allowlist, matrix, significance
from reconciler.diff.parity import PairResult, ParityItem
from reconciler.domain.paths import MISSING
from reconciler.domain.values import render
from reconciler.present.report import indented_table, json_value, markdown_table, short


@dataclass(frozen=True)
class ParityReport:
    """What one `reconciler compare` found, ready to render."""

    source: str  # "live state" or "desired state"
    environments: Sequence[str]
    results: Sequence[PairResult]
    findings: Sequence[allowlist.Finding] = ()
    errors: dict[str, str] = field(default_factory=dict)
    baseline: str | None = None
    fail_on: str = "unexpected"  # or "significant"

    @property
    def failed(self) -> bool:
        """Whether the gate fails (exit 2): an unexpected difference, and with fail_on significant, in a pair
        whose drift is above the threshold."""
        if self.fail_on == "significant":
            return any(r.unexpected and r.significant for r in self.results)
        return any(r.unexpected for r in self.results)


def render_parity(report: ParityReport, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(_report_dict(report), indent=2)
    if fmt == "html":
        from reconciler.present import web  # noqa: PLC0415 (Jinja2 is loaded for an html report only)

        title = f"Environment parity on {report.source}"
        return web.standalone("report_parity.html", title=title, parity=_report_dict(report))
    md = fmt == "markdown"
    against = f", baseline {report.baseline}" if report.baseline else ""
    title = f"Environment parity on {report.source}{against}: {', '.join(report.environments)}"
    out = [f"**{title}**" if md else title]
    out += [f"error: {name}: {error}" for name, error in sorted(report.errors.items())]
    if not report.results and not report.errors:
        out.append("no app has targets in two of these environments")
    if report.baseline is None:
        for r in report.results:
            out += ["", f"### {_title(r)}" if md else _title(r), *_pair_table(r, md)]
    else:
        out += ["", *(f"- {_title(r)}" if md else _title(r) for r in report.results)]
        out += _matrix_lines(report, md)
    if report.findings:
        out += ["", "**Allowlist**" if md else "allowlist:"]
        out += [f"- {f.state}: {f.message}" if md else f"  {f.state}: {f.message}" for f in report.findings]
    return "\n".join(out)


def _title(r: PairResult) -> str:
    """One pair's verdict, in leaf counts that agree with its percentage."""
    verdict = "significant: above" if r.significant else "within"
    return (
        f"{r.app}: {r.a.environment} ({r.a.name}) vs {r.b.environment} ({r.b.name}): "
        f"{_percent(r)} drift ({r.differing} of {r.leaves} leaves), {verdict} {significance.show(r.threshold)}; "
        f"{r.differing} unexpected, {r.expected_leaves} expected"
    )


def _percent(r: PairResult) -> str:
    return f"{float(round(r.drift_fraction * 100, 2)):g}%"


def _side(value: Any) -> str:
    return "(absent)" if value is MISSING else short(render(value))


def _verdict(item: ParityItem) -> str:
    return ("yes: " + item.note) if item.expected else (item.note or "no")


def _pair_table(r: PairResult, md: bool) -> list[str]:
    if not r.items:
        return ["  no differences"]
    headers = ("key", r.a.environment, r.b.environment, "kind", "expected")
    rows = [(i.pointer, _side(i.a), _side(i.b), i.kind, _verdict(i)) for i in r.items]
    if md:  # the environments' names stay as they are spelt
        return markdown_table([h.title() if h in ("key", "kind", "expected") else h for h in headers], rows)
    return [indented_table(headers, rows)]


def _matrix_lines(report: ParityReport, md: bool) -> list[str]:
    """Per app, one row per drifted key: the baseline's value, then each environment's (`=` where it equals
    the baseline), then what the allowlist says."""
    out: list[str] = []
    rows = matrix.rows(report.results)
    for app in dict.fromkeys(r.app for r in report.results):
        mine = [r for r in rows if r.app == app]
        others = list(dict.fromkeys(r.b.environment for r in report.results if r.app == app))
        out += ["", f"### {app}" if md else app]
        if not mine:
            out.append("  no differences")
            continue
        headers = ["key", f"{report.baseline} (baseline)", *others, "allowlist"]
        table_rows = [_matrix_row(row, others) for row in mine]
        out += markdown_table(headers, table_rows) if md else [indented_table(headers, table_rows)]
    return out


def _matrix_row(row: matrix.Row, environments: Sequence[str]) -> list[str]:
    by_env = {c.environment: c for c in row.cells}
    cells = [
        (_side(c.value) + (" (expected)" if c.expected else "")) if (c := by_env.get(e)) else "=" for e in environments
    ]
    by_note: dict[str, list[str]] = {}
    for c in row.cells:
        if c.note:
            by_note.setdefault(c.note, []).append(c.environment)
    notes = "; ".join(f"{', '.join(envs)}: {note}" for note, envs in by_note.items())
    return [row.pointer, _side(row.baseline), *cells, notes]


def _report_dict(report: ParityReport) -> dict[str, Any]:
    data: dict[str, Any] = {
        "source": report.source,
        "environments": list(report.environments),
        "baseline": report.baseline,
        "fail_on": report.fail_on,
        "failed": report.failed,
        "errors": report.errors,
        "pairs": [_pair_dict(r, with_items=report.baseline is None) for r in report.results],
    }
    if report.baseline is not None:
        data["keys"] = [_row_dict(row) for row in matrix.rows(report.results)]
    data["allowlist"] = [{"id": f.id, "state": f.state, "message": f.message} for f in report.findings]
    return data


def _pair_dict(r: PairResult, *, with_items: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "app": r.app,
        "a": {"target": r.a.name, "environment": r.a.environment},
        "b": {"target": r.b.name, "environment": r.b.environment},
        "differing_leaves": r.differing,
        "expected_leaves": r.expected_leaves,
        "total_leaves": r.leaves,
        "drift_percent": r.drift_percent,
        "drift_fraction": str(r.drift_fraction),
        "threshold": float(r.threshold),
        "significant": r.significant,
        "unexpected": r.differing,
    }
    if with_items:
        data["differences"] = [
            {
                "path": i.pointer,
                "kind": i.kind,
                "expected": i.expected,
                "note": i.note,
                "allowlist": i.entry,
                "leaves": i.leaves,
                "a": json_value(i.a),
                "a_absent": i.a is MISSING,
                "b": json_value(i.b),
                "b_absent": i.b is MISSING,
            }
            for i in r.items
        ]
    return data


def _row_dict(row: matrix.Row) -> dict[str, Any]:
    return {
        "app": row.app,
        "path": row.pointer,
        "unexpected": row.unexpected,
        "baseline": {
            "environment": row.baseline_environment,
            "target": row.baseline_target,
            "value": json_value(row.baseline),
            "absent": row.baseline is MISSING,
        },
        "environments": {
            c.environment: {
                "target": c.target,
                "value": json_value(c.value),
                "absent": c.value is MISSING,
                "kind": c.kind,
                "expected": c.expected,
                "note": c.note,
                "allowlist": c.entry,
                "leaves": c.leaves,
            }
            for c in row.cells
        },
    }
