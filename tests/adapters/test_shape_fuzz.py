"""The shape-keeping editors on generated documents and edits: the result reads back as the new document, or
the editor says it cannot (None) and the adapter renders the whole file; nothing else escapes. Seeded."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.adapters import fileshape, formats, yamledit
from reconciler.adapters.shape import Unshaped
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


PLAIN_KEYS = st.sampled_from(["a", "b", "db", "host", "port", "x-y", "on", "1x", "a.b"])
ASCII = st.text(alphabet=st.characters(codec="ascii", exclude_categories=("Cc",)), max_size=12)
ASCII_SCALARS = st.one_of(st.integers(-(10**6), 10**6), st.booleans(), ASCII, st.floats(allow_nan=False), st.none())
NESTED = st.recursive(
    ASCII_SCALARS, lambda inner: st.dictionaries(PLAIN_KEYS, inner, min_size=1, max_size=3), max_leaves=8
)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.dictionaries(PLAIN_KEYS, NESTED, min_size=1, max_size=5), st.data())
def test_scalar_fixes_spliced_by_lines_are_the_composed_splice(current: dict[str, Any], data: st.DataObject) -> None:
    """A fix of one-line scalars in a file of the simple shape is spliced without composing the file, to the
    very text the composed splice gives (comments and quotes kept alike); what it declines, the other takes."""
    text = formats.FORMATS["yaml"].render(current).replace(": ", ":  ", 1) + "# kept\n"
    leaves = [(path, value) for path, value in _leaves(current) if not isinstance(value, dict)]
    chosen = data.draw(st.lists(st.sampled_from(leaves), min_size=1, max_size=3, unique_by=lambda leaf: leaf[0]))
    changes = [yamledit.Edit(path, data.draw(st.one_of(ASCII_SCALARS, SCALARS))) for path, _ in chosen]
    by_lines = yamledit._splice_lines(text, changes)
    if by_lines is not None:
        assert by_lines == yamledit._splice(text, changes)


def _leaves(doc: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out = []
    for key, value in doc.items():
        out.append(((*path, key), value))
        if isinstance(value, dict):
            out.extend(_leaves(value, (*path, key)))
    return out


def test_a_usual_fix_is_spliced_without_composing_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """The usual configuration file and the usual fix (a value or two changed) never reach libyaml's
    composer; a fix that adds a key does."""
    text = "# service\nserver:\n  port: 8080  # listener\n  host: 'a.example'\nlevel: DEBUG\n"
    current = formats.FORMATS["yaml"].parse(text)
    composed: list[str] = []
    real = yamledit.yamlload.compose
    monkeypatch.setattr(yamledit.yamlload, "compose", lambda t: composed.append(t) or real(t))
    fixed = yamledit.edit_yaml(text, current, {"server": {"port": 9090, "host": "b.example"}, "level": "INFO"})
    assert fixed == "# service\nserver:\n  port: 9090  # listener\n  host: 'b.example'\nlevel: INFO\n"
    assert composed == []
    added = yamledit.edit_yaml(text, current, {**current, "new": 1})
    assert added.endswith("level: DEBUG\nnew: 1\n") and composed == [text]
    twice = "a: 1\nb: x\na: 2\n"  # a key named twice: refused, as before the line splice
    with pytest.raises(Unshaped):
        yamledit.edit_yaml(twice, {"a": 2, "b": "x"}, {"a": 3, "b": "x"})
