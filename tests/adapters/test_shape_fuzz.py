"""The shape-keeping editors on generated documents and edits: the result reads back as the new document, or
the editor says it cannot (None) and the adapter renders the whole file; nothing else escapes. Seeded."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.adapters import fileshape, formats
from reconciler.domain.values import strict_equal

KEYS = st.sampled_from(["a", "b", "db", "host", "port", "x-y", "on", "1x", "with space"])
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)
SCALARS = st.one_of(st.integers(-(10**6), 10**6), st.booleans(), TEXT, st.floats(allow_nan=False, allow_infinity=False))
TYPED = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3)),
    max_leaves=8,
)
FLAT = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)
STRINGS = st.text(alphabet=st.characters(codec="ascii", exclude_categories=("Cc",)), max_size=10).map(str.strip)


def documents(name: str) -> st.SearchStrategy[dict[str, Any]]:
    if name == "env":
        return st.dictionaries(FLAT, STRINGS, max_size=5)
    if name == "ini":
        section = st.dictionaries(FLAT, STRINGS.filter(lambda s: not s.startswith(("#", ";"))), max_size=3)
        return st.dictionaries(FLAT, section, min_size=1, max_size=3)
    values = TYPED if name != "toml" else TYPED.filter(lambda v: not isinstance(v, list) or len(v) > 0)
    return st.dictionaries(KEYS, values, min_size=1, max_size=5)


@settings(derandomize=True, max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(fileshape.EDITORS)), st.data())
def test_edits_read_back_as_the_new_document(name: str, data: st.DataObject) -> None:
    """Any edit of any document: the edited text parses as the new document, or the editor declines."""
    fmt = formats.FORMATS[name]
    current = data.draw(documents(name))
    try:
        text = fmt.render(current)
        current = fmt.parse(text)
    except formats.FormatError:
        return  # not writable in this format to begin with (TOML has no null)
    updated = copy.deepcopy(current)
    for key, value in data.draw(documents(name)).items():
        updated[key] = value
    for key in data.draw(st.lists(st.sampled_from(sorted(current)), max_size=2)) if current else []:
        updated.pop(key, None)
    edited = fileshape.rewrite(fmt, text, current, updated)
    assert edited is None or strict_equal(fmt.parse(edited), updated), (text, edited)
    if name == "yaml" and edited is not None:  # what the edit did not touch is still there, byte for byte
        kept = [line for line in text.splitlines() if line.split(":", 1)[0].strip("'\" -") in current]
        assert all(line in edited.splitlines() for line in kept if _untouched(line, current, updated))


def _untouched(line: str, current: dict[str, Any], updated: dict[str, Any]) -> bool:
    key = line.split(":", 1)[0].strip("'\" ")
    return line.startswith(key) and key in updated and strict_equal(current[key], updated[key])
