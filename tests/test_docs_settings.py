"""docs/settings.md against the settings model: each variable's documented default is the model's; the
jitter bound the docs state is the scheduler's."""

from __future__ import annotations

import json
import re
from enum import Enum
from typing import Any

import pytest
from pydantic import BaseModel

from reconciler.desired.loader import load
from reconciler.runtime.scheduler import Scheduler, toward_slot
from reconciler.settings import Settings
from tests.conftest import REPO

ROW = re.compile(r"^\| `(RECONCILER_[A-Z0-9_]+)` \| ([^|]*) \|", re.M)
NONE_WORDS = {"none", "unset", "current", "—", "off", "derived", "random"}


def fields(model: type[BaseModel], prefix: str = "RECONCILER_") -> dict[str, Any]:
    """Every setting's variable name and its field."""
    found: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found |= fields(annotation, f"{prefix}{name.upper()}__")
        else:
            found[prefix + name.upper()] = field
    return found


def shown(value: Any) -> str:
    """A default as the docs write it: numbers without a needless `.0`, lists and mappings as JSON."""
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, dict, tuple, set, frozenset)):
        return json.dumps(list(value) if isinstance(value, (tuple, set, frozenset)) else value)
    return str(value)


def same(written: str, default: Any) -> bool:
    """Whether the docs' `written` is `default` (`1.0` and `1` are the same number)."""
    if written == shown(default):
        return True
    try:
        return isinstance(default, (int, float)) and not isinstance(default, bool) and float(written) == default
    except ValueError:
        return False


def default_of(field: Any) -> Any:
    return field.default_factory() if field.default_factory is not None else field.default


def documented_defaults() -> dict[str, str]:
    return dict(ROW.findall((REPO / "docs" / "settings.md").read_text()))


def contradictions(documented: dict[str, str], model: dict[str, Any]) -> list[str]:
    problems = []
    for name, cell in documented.items():
        if name not in model:
            continue
        default = default_of(model[name])
        code = re.match(r"`([^`]*)`", cell.strip())
        if code is None:
            if default not in (None, "", [], {}) and cell.strip().split()[0].lower() not in NONE_WORDS:
                problems.append(f"{name}: documented {cell.strip()!r}, the model's default is {shown(default)!r}")
            continue
        if not same(code.group(1), default) and not (default is None and code.group(1).lower() in NONE_WORDS):
            problems.append(f"{name}: documented `{code.group(1)}`, the model's default is {shown(default)!r}")
    return problems


def test_documented_defaults_are_the_models() -> None:
    """The default column of docs/settings.md is each field's default."""
    assert not contradictions(documented_defaults(), fields(Settings))


def test_the_check_catches_a_wrong_default() -> None:
    """A changed default in the page is reported."""
    wrong = {"RECONCILER_SCHEDULER__JITTER_S": "`10`", "RECONCILER_MODE": "`apply`"}
    assert len(contradictions(wrong, fields(Settings))) == 2


@pytest.mark.parametrize("doc", ["docs/settings.md", "README.md"])
def test_the_jitter_bound_the_docs_state_is_the_schedulers(doc: str) -> None:
    """Both pages say jitter is at most half the interval, and a scheduler with a large jitter never waits
    longer than one and a half intervals (plus the tick), nor less than half an interval (the slot up to that
    early); at some time of the interval it does wait more than a fifth of one more."""
    assert "half the interval" in (REPO / doc).read_text()
    scheduler = Scheduler(default_interval_s=10.0, jitter_s=1000.0)
    scheduler.sync(load(REPO / "examples" / "desired"))
    intervals = {t.name: t.spec.interval or 10.0 for t in load(REPO / "examples" / "desired").targets.values()}
    for name, interval in intervals.items():
        tick = min(1.0, interval / 10)
        delay = scheduler.next_delay(name)
        assert delay is not None and interval / 2 <= delay <= interval * 1.5 + tick
        delays = [toward_slot(name, interval, interval / 2, i * interval / 100) for i in range(100)]
        assert interval / 2 <= min(delays) and max(delays) <= interval * 1.5
        assert max(delays) > interval * 1.2  # the jitter is there, not cut to a tenth
