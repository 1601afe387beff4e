"""`reconciler diff` for people and programs: the differences of two documents with the leaf counts behind
the drift, as a table, JSON or Markdown."""

from __future__ import annotations

import json
from typing import Any

from reconciler.diff import significance
from reconciler.diff.configs import ConfigDiff, Difference
from reconciler.domain.paths import MISSING
from reconciler.domain.values import Redacted, render
from reconciler.present.report import indented_table, markdown_table, short

_OPS = {"add": "only in b", "remove": "only in a", "change": "differs", "type_change": "type differs"}


def render_diff(result: ConfigDiff, fmt: str) -> str:
    """The report; a lone surrogate in a key or value (JSON may hold `"\\ud800"`) is escaped, not an error."""
    return _printable(_render(result, fmt))


def _printable(text: str) -> str:
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _render(result: ConfigDiff, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(diff_dict(result), indent=2, ensure_ascii=False)
    md = fmt == "markdown"
    title = f"{result.a_name} vs {result.b_name}: {summary(result)}"
    out = [f"**{_md(title)}**" if md else title]
    if result.equal:
        return "\n".join(out)
    headers = ("path", "op", "a", "b")
    rows = [(d.pointer, _op(d), _side(d.a), _side(d.b)) for d in result.differences]
    if md:
        out += ["", *markdown_table(["Path", "Op", f"a: {_md(result.a_name)}", f"b: {_md(result.b_name)}"], rows)]
    else:
        out.append(indented_table(headers, rows))
    return "\n".join(out)


def summary(result: ConfigDiff) -> str:
    """`equal (125 leaves)` or `9 of 125 leaves differ (7.2%)`, with the verdict when a threshold was given."""
    if result.equal:
        return f"equal ({result.total_leaves} leaves)"
    percent = f"{float(round(result.drift_fraction * 100, 2)):g}%"
    text = f"{result.differing_leaves} of {result.total_leaves} leaves differ ({percent})"
    if result.threshold is not None:
        verdict = "significant: above" if result.significant else "within"
        text += f", {verdict} {significance.show(result.threshold)}"
    return text


def _op(d: Difference) -> str:
    if d.op.value == "type_change":
        return f"type: {d.a_type} -> {d.b_type}"
    return _OPS[d.op.value]


def _side(value: Any) -> str:
    return "(absent)" if value is MISSING else short(render(value), 60)


def _md(text: str) -> str:
    return text.replace("*", "\\*").replace("_", "\\_")


def _json(value: Any) -> Any:
    """A side as JSON: the parsed value itself (it came from JSON-able input), null when absent (a_type says
    which), a secret as its keyed hash."""
    if value is MISSING:
        return None
    if isinstance(value, Redacted):
        return value.to_json()
    return value


def diff_dict(result: ConfigDiff) -> dict[str, Any]:
    return {
        "a": result.a_name,
        "b": result.b_name,
        "equal": result.equal,
        "differing_leaves": result.differing_leaves,
        "total_leaves": result.total_leaves,
        "drift_percent": result.drift_percent,
        "drift_fraction": str(result.drift_fraction),
        "threshold": None if result.threshold is None else float(result.threshold),
        "significant": result.significant if result.threshold is not None else None,
        "differences": [
            {
                "path": d.pointer,
                "op": d.op.value,
                "a": _json(d.a),
                "a_type": d.a_type,
                "b": _json(d.b),
                "b_type": d.b_type,
                "secret": d.secret,
            }
            for d in result.differences
        ],
    }
