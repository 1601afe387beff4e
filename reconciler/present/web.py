"""The web UI's rendering: Jinja2 templates (autoescaped) and the filters they share.

Secret values never reach a page: a value the comparison marked secret is shown as a mask, and only whether it
equals or differs (by keyed hash) is said.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from reconciler.domain.values import Redacted, render
from reconciler.present.report import short

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
MASK = "••••••"
ABSENT = "(absent)"

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def side(data: dict[str, Any], name: str, limit: int = 80) -> str:
    """One side of a drift or action dict (desired, observed, before, after) for a page: a mask for a secret,
    (absent) for a key that is not there, else the value as short JSON."""
    if data.get("secret"):
        return MASK
    return shown(data[name], bool(data.get(f"{name}_missing")), limit)


def shown(value: Any, absent: bool = False, limit: int = 80) -> str:
    """A JSON value for a page: (absent), a mask for a redacted secret (its keyed hash), else short JSON."""
    if absent:
        return ABSENT
    if isinstance(value, dict) and set(value) == {Redacted.JSON_KEY}:  # a journaled or compared secret
        return MASK
    return short(render(value), limit)


def age(seconds: float | None) -> str:
    """A duration for people: 45s, 3m 20s, 5h 2m, 3d 4h."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


_ENV.filters["side"] = side
_ENV.filters["age"] = age
_ENV.filters["short"] = short
_ENV.filters["shown"] = shown


def page(template: str, **context: Any) -> str:
    """A template rendered with `context` (every value escaped unless the template says otherwise)."""
    return _ENV.get_template(template).render(**context)


def fragment(template: str, block: str, **context: Any) -> str:
    """One block of a template (what htmx swaps in when it refreshes part of a page)."""
    tpl = _ENV.get_template(template)
    ctx = tpl.new_context(context)
    return "".join(tpl.blocks[block](ctx))


@cache
def _css() -> str:
    return (STATIC / "ui.css").read_text(encoding="utf-8")


def standalone(template: str, **context: Any) -> str:
    """A report as one self-contained page (`--format html`: CI artifacts, e-mail): the UI's templates with its
    styles inline, no script and nothing fetched from anywhere, no links into the UI."""
    return page(template, css=_css(), standalone=True, **context)
