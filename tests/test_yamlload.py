"""Hostile YAML is refused before it is built, the same way for manifests and live files."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler import yamlload
from reconciler.yamlload import LIVE, MANIFESTS, Limits, YamlError, lines, load, load_all


def alias_bomb(levels: int = 9) -> str:
    """The 'billion laughs' in YAML: ~1 KB that expands to 9**levels nodes."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        prev, name = chr(96 + i), chr(97 + i)
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("limits", [MANIFESTS, LIVE])
def test_alias_bomb_is_refused_before_it_is_built(limits: Limits) -> None:
    """A 1 KB alias bomb is refused in well under a second, naming the line and the expansion."""
    text = alias_bomb()
    assert len(text) < 1024
    started = time.perf_counter()
    with pytest.raises(YamlError, match="expands to more than") as info:
        list(load_all(text, limits))
    assert time.perf_counter() - started < 1.0
    assert info.value.document == 1
    assert info.value.line is not None


def test_aliases_below_the_limit_still_load() -> None:
    """Aliases are counted expanded, but a document within the limit is built as before (shared values)."""
    doc = load("base: &b {x: 1}\nuse: *b\n", Limits(max_nodes=9))
    assert doc == {"base": {"x": 1}, "use": {"x": 1}}
    with pytest.raises(YamlError, match="more than 8 nodes"):
        load("base: &b {x: 1}\nuse: *b\n", Limits(max_nodes=8))


def test_circular_alias_is_a_clean_error() -> None:
    """A node that contains itself is refused; nothing recursive is ever built."""
    with pytest.raises(YamlError, match="circular alias"):
        load("a: &a [1, *a]\n")
    with pytest.raises(YamlError, match="circular alias"):
        load("a: &m {b: *m}\n")


@pytest.mark.parametrize("text", ["[" * 300 + "]" * 300, "[" * 20000 + "]" * 20000, "{a: " * 150 + "1" + "}" * 150])
def test_deep_nesting_is_a_clean_error(text: str) -> None:
    """Deep nesting is refused with a YamlError, never a RecursionError."""
    with pytest.raises(YamlError, match="nest"):
        load(text)


def test_depth_through_aliases_counts() -> None:
    """An alias counts as deep as what it stands for."""
    inner = "[" * 60 + "]" * 60
    with pytest.raises(YamlError, match="nested deeper than 100"):
        load(
            f"a: &a {inner}\nb: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[*a]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n"
        )


def test_huge_integers_are_refused_not_a_traceback() -> None:
    """Integers past the limit are refused with the line, before Python's int-str conversion limit bites."""
    with pytest.raises(YamlError, match="an integer of 5000 characters") as info:
        load("x: 1\nn: " + "9" * 5000 + "\n")
    assert info.value.line == 2
    assert info.value.field == "n"


def test_duplicate_keys_are_refused_when_asked() -> None:
    """Manifests refuse a key named twice (naming it and its path); live files keep YAML's last-wins."""
    text = "metadata:\n  name: a\n  name: b\n"
    with pytest.raises(YamlError, match="duplicate key 'name'") as info:
        list(load_all(text, MANIFESTS))
    assert info.value.field == "metadata.name"
    assert info.value.line == 3
    assert load(text, LIVE) == {"metadata": {"name": "b"}}


def test_merge_keys_are_not_duplicates() -> None:
    """`<<` merges are YAML's own overriding, not a duplicate key."""
    docs = list(load_all("b: &x {c: 1, d: 2}\ne:\n  <<: *x\n  c: 3\n", MANIFESTS))
    assert docs == [{"b": {"c": 1, "d": 2}, "e": {"c": 3, "d": 2}}]


def test_size_limit() -> None:
    """A text over the character limit is refused without being parsed."""
    with pytest.raises(YamlError, match="at most 100 are read"):
        load("x: " + "a" * 200, Limits(max_chars=100))


def test_malformed_yaml_says_where_and_quotes_no_value() -> None:
    """A syntax error names document, line and column, not the text around it."""
    with pytest.raises(YamlError, match=r"malformed YAML: line 4, column \d+") as info:
        list(load_all("a: 1\n---\npassword: [S3cr3t\n"))
    assert info.value.document == 2
    assert "S3cr3t" not in str(info.value)


def test_impossible_dates_are_a_clean_error() -> None:
    """A timestamp that does not exist is refused as a YamlError, not a ValueError from the constructor."""
    with pytest.raises(YamlError, match="cannot be read as its type"):
        load("x: 2026-13-45\n")


def test_documents_and_speed_of_normal_yaml() -> None:
    """Several documents, empty ones included, load as before; the check costs little on a big document."""
    assert list(load_all("a: 1\n---\n---\nb: [1, 2]\n")) == [{"a": 1}, None, {"b": [1, 2]}]
    big = yaml.dump({f"k{i}": {"a": i, "b": [1, 2, "x"], "c": {"d": "t"}} for i in range(5000)})
    started = time.perf_counter()
    plain = yaml.load(big, Loader=yamlload.SAFE_LOADER)
    baseline = time.perf_counter() - started
    started = time.perf_counter()
    assert load(big) == plain
    assert time.perf_counter() - started < 3 * baseline + 0.2


@pytest.mark.parametrize(
    ("text", "kind"),
    [("a: {1: x}", "int"), ("on: 1", "bool"), ("x: {null: 1}", "null"), ("d: {2026-01-01: x}", "timestamp")],
)
def test_manifests_refuse_keys_that_are_not_strings(text: str, kind: str) -> None:
    """A key that YAML reads as a number, a boolean, null or a date is refused in manifests (it broke the
    version digest with a TypeError, and could never be a path segment); live files keep them (their parser
    checks them itself)."""
    with pytest.raises(YamlError, match=f"a key must be a string, not {kind}; quote it"):
        list(load_all(text, MANIFESTS))
    assert load(text, LIVE) is not None
    assert list(load_all("'1': x\n'on': y\n", MANIFESTS)) == [{"1": "x", "on": "y"}]


def test_lone_surrogates_are_refused_by_either_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """A "\\ud800" escape is refused: by libyaml as malformed, by the pure-Python parser in the check."""
    text = 'a: "\\ud800"\n'
    with pytest.raises(YamlError, match=r"malformed YAML|lone surrogate"):
        load(text)
    monkeypatch.setattr(yamlload, "SAFE_LOADER", yaml.SafeLoader)
    with pytest.raises(YamlError, match="lone surrogate") as info:
        load(text)
    assert info.value.field == "a"


def test_too_many_documents() -> None:
    """A text of more documents than the limit is refused at the first one past it."""
    with pytest.raises(YamlError, match="more than 3 documents") as info:
        list(load_all("---\na: 1\n" * 5, Limits(max_documents=3)))
    assert info.value.document == 4
    # At the bound, both ways of reading take the text; one past it, both refuse it at the same document.
    for text in ("a: 1\n---\nb: 2\n---\nc: 3\n", "---\na: [1]\n---\nb: 2\n---\nc: 3\n"):
        assert len(list(load_all(text, Limits(max_documents=3)))) == 3
        assert len(list(libyaml_all(text, Limits(max_documents=3), None))) == 3
        for read in (load_all, libyaml_all):
            with pytest.raises(YamlError, match="more than 2 documents") as info:
                list(read(text, Limits(max_documents=2)))
            assert info.value.document == 3


def test_builds_what_pyyaml_builds() -> None:
    """The fast construction gives what PyYAML's safe loader gives: typed scalars, quoted look-alikes, merge
    keys, aliases, sets and nested lists."""
    text = """
base: &base {pool: 20, ratio: 0.5, on_call: yes, empty: ~, since: 2026-01-01, name: "007"}
child:
  <<: *base
  pool: 30
  list: [1, "2", three, [four, {five: 5}], *base]
quoted: ["yes", 'null', "1.5", plain text, -3, +4, .inf, 0x1f]
set: !!set {a, b}
"""
    assert load(text, Limits()) == yaml.load(text, Loader=yamlload.SAFE_LOADER)


def test_keys_are_shared_across_documents() -> None:
    """The same key in many manifests is one string: a fleet of 100,000 targets does not keep it 100,000 times."""
    keys: dict[str, str] = {}
    first = next(load_all("".join(["a", "b", "c"]) + ": 1\n", MANIFESTS, keys))
    second = next(load_all("".join(["a", "b"]) + "c: 2\n", MANIFESTS, keys))
    assert next(iter(first)) is next(iter(second))


# -- the simple configuration file, read without libyaml --------------------------------------------------------

# What the line reading takes (keys and scalars of every implicit type), and what it must leave to libyaml.
KEYS = ["a", "name", "timeout", "y", "x.y", "a-b", "a/b", "_k", "N", "key001", "nope", "2x", "off_peak"]
ODD_KEYS = ["on", "yes", "1", "null", "true", "1.5", "0x1", "Off", "<<", "a b", "a:b", "-k", "k#", "'q'", "é"]
VALUES = ["v", "value-1", "1", "-1", "+1", "0x1F", "017", "1_000", "1:30", "1.5", "1e3", "1.0e3", ".inf", ".nan"]
VALUES += ["true", "True", "yes", "no", "on", "off", "y", "null", "~", "", "2026-01-01", "12:30:45", "a #c", "a#b"]
VALUES += ["2026-01-01T10:00:00Z", "2026-01-01 10:00:00", "http://x:80/a", "nginx:1.25", "a:b", "a  b", "-x"]
VALUES += ["--", "---", "...", "'q'", "''", '""', '"d"', '"x#y"', "'a # b'", "a,b", "x[y]", "(a)", "$x", "\\x"]
VALUES += ["0b101", "FALSE", "fAlse", "NULL", "nULL", "<x", "=x", "a :b", "-.5", "+.inf", "0.", "._"]
ODD_VALUES = ["2026-13-45", "a: b", "a:", "-", "- x", "'it''s'", '"a\\tb"', "[1, 2]", "{a: 1}", "&a x", "*a"]
ODD_VALUES += ["!!str 5", "|", ">", "%x", "@x", "?x", ":x", ",x", "=", "<<", "9" * 1200, "a\t", "é", "'unclosed"]
ODD_VALUES += ['"unclosed', "`x"]
ODD_LINES = ["", "   ", "# c", "  # c", "---", "...", "- item", "  - item", " odd: 1", "a: b: c", "\tx: 1"]


@st.composite
def config_texts(draw: st.DrawFn) -> str:
    """Line-based YAML near the simple shape: nested mappings of tricky keys and scalars, odd lines between."""

    def entries(depth: int, indent: int) -> list[str]:
        lines = []
        for _ in range(draw(st.integers(1, 4))):
            pad = " " * indent
            key = draw(st.sampled_from(ODD_KEYS if draw(st.integers(0, 19)) == 0 else KEYS))
            if depth < 3 and draw(st.integers(0, 4)) == 0:
                lines.append(f"{pad}{key}:" + draw(st.sampled_from(["", " ", "  # c"])))
                if draw(st.integers(0, 6)):
                    lines += entries(depth + 1, indent + draw(st.sampled_from([1, 2, 2, 4])))
            else:
                value = draw(st.sampled_from(ODD_VALUES if draw(st.integers(0, 19)) == 0 else VALUES))
                space = draw(st.sampled_from([" ", "  ", ""])) if value else ""
                tail = draw(st.sampled_from(["", "", "", " # comment", "  ", "#x"]))
                lines.append(f"{pad}{key}:{space}{value}{tail}")
            if draw(st.integers(0, 19)) == 0:
                lines.append(draw(st.sampled_from(ODD_LINES)))
        return lines

    head = draw(st.sampled_from(["", "", "", "---\n", "--- \n", "# top\n", "%YAML 1.1\n---\n"]))
    return head + "\n".join(entries(0, 0)) + draw(st.sampled_from(["\n", "", "\n\n"]))


def libyaml_all(text: str, limits: Limits, keys: dict[str, str] | None = None) -> Any:
    """load_all() through libyaml alone: what the line reading must agree with."""
    yamlload._bounded(text, limits)
    return yamlload._composed_all(text, limits, keys)


def by_libyaml(text: str) -> tuple[str, Any]:
    try:
        documents = libyaml_all(text, LIVE)
        first = next(documents, None)
        if next(documents, None) is not None:
            return "error", "more than one document"
        return "ok", first
    except YamlError as exc:
        return "error", str(exc)


def identical(a: Any, b: Any) -> bool:
    """Equal, with the same types and key order all the way down (1 == 1.0 == True would hide a difference)."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return list(a) == list(b) and all(identical(a[k], b[k]) for k in a)
    return a != a and b != b if type(a) is float and a != a else a == b


@settings(max_examples=3000, deadline=None)
@given(config_texts())
def test_simple_files_are_read_as_libyaml_reads_them(text: str) -> None:
    """Whatever the line-by-line reading accepts, libyaml builds identically (types and key order included);
    whatever it declines, `load` gives libyaml's document or error."""
    simple = lines.simple(text, LIVE)
    expected = by_libyaml(text)
    if simple is not lines.NOT_SIMPLE:
        assert expected[0] == "ok" and identical(simple, expected[1]), (text, simple, expected)
    try:
        got: tuple[str, Any] = ("ok", load(text))
    except YamlError as exc:
        got = ("error", str(exc))
    assert got[0] == expected[0] and (got[0] == "error" or identical(got[1], expected[1]))


@st.composite
def usual_texts(draw: st.DrawFn) -> str:
    """A document of the usual shape: distinct keys, nested once maybe, one-line scalars, now and then a key
    named twice."""
    lines_ = []
    for key in draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=6, unique=True)):
        if draw(st.integers(0, 4)) == 0:
            lines_.append(f"{key}:")
            inner = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=4, unique=True))
            lines_ += [f"  {k}: {draw(st.sampled_from(VALUES))}" for k in inner]
        else:
            lines_.append(f"{key}: {draw(st.sampled_from(VALUES))}")
    if draw(st.integers(0, 9)) == 0:
        lines_.append(lines_[0])
    return "\n".join(lines_) + "\n"


@st.composite
def manifest_texts(draw: st.DrawFn) -> str:
    """Several documents near the simple shape, between start markers (and maybe a comment before the first)."""
    bodies = [draw(st.one_of(config_texts(), usual_texts())) for _ in range(draw(st.integers(1, 4)))]
    head = draw(st.sampled_from(["", "", "---\n", "# files\n---\n", "\n---\n", "# c\n"]))
    separator = draw(st.sampled_from(["---\n", "--- \n", "\n---\n", "---\n# next\n"]))
    tail = draw(st.sampled_from(["", "", "---\n", "...\n"]))
    return head + separator.join(body if body.endswith("\n") else body + "\n" for body in bodies) + tail


def outcome(documents: Any) -> tuple[str, Any]:
    try:
        return "ok", list(documents)
    except YamlError as exc:
        return "error", (str(exc), exc.document, exc.line, exc.field)


@settings(max_examples=2000, deadline=None)
@given(manifest_texts(), st.sampled_from([MANIFESTS, LIVE]))
def test_manifest_files_are_read_as_libyaml_reads_them(text: str, limits: Limits) -> None:
    """A text of several documents gives what libyaml gives, documents (types and key order included) or the
    same error, duplicate keys and non-string keys of manifests included; the keys are shared as load_all says."""
    keys: dict[str, str] = {}
    got, expected = outcome(load_all(text, limits, keys)), outcome(libyaml_all(text, limits, {}))
    assert got[0] == expected[0], (text, got, expected)
    if got[0] == "ok":
        assert len(got[1]) == len(expected[1]) and all(map(identical, got[1], expected[1])), (text, got, expected)
        line_read = lines.documents(text, limits) is not None
        for document in got[1] if line_read else ():  # shared (libyaml's way shares the keys of plain maps)
            for key in document:
                assert type(key) is not str or keys[key] is key
    else:
        assert got == expected


def test_a_usual_manifest_file_takes_the_line_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """The manifests a fleet is made of (block mappings of plain keys, one document after another) are read
    line by line, libyaml never asked; a duplicate key sends the whole text to libyaml, which names it."""
    text = "kind: Target\nmetadata:\n  name: a\nspec:\n  desired:\n    port: 8080\n---\nkind: Target\nmetadata:\n  name: b\n"
    monkeypatch.setattr(yamlload, "_composed_all", lambda *a: pytest.fail("libyaml asked"))
    assert list(load_all(text, MANIFESTS)) == [
        {"kind": "Target", "metadata": {"name": "a"}, "spec": {"desired": {"port": 8080}}},
        {"kind": "Target", "metadata": {"name": "b"}},
    ]
    monkeypatch.undo()
    with pytest.raises(YamlError, match="duplicate key 'name'") as refused:
        list(load_all(text + "  name: c\n", MANIFESTS))
    assert refused.value.document == 2


def test_a_manifest_file_with_a_list_goes_to_libyaml_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    """A list anywhere (the usual reason a manifest is not of the simple shape) sends the whole text to libyaml
    before any document is read line by line: the text is not read twice."""
    calls: list[str] = []
    real = lines.simple
    monkeypatch.setattr(lines, "simple", lambda *a: calls.append(a[0]) or real(*a))
    text = "kind: Target\nmetadata:\n  name: a\n---\nkind: Target\nmetadata:\n  name: b\n  tags:\n  - x\n"
    assert list(load_all(text, MANIFESTS)) == [
        {"kind": "Target", "metadata": {"name": "a"}},
        {"kind": "Target", "metadata": {"name": "b", "tags": ["x"]}},
    ]
    assert calls == []


def test_common_configuration_takes_the_simple_reading() -> None:
    """A usual service configuration is read line by line (typed scalars, quoted strings, comments, a start
    marker, nesting), to the document libyaml builds; lists, anchors and block scalars go to libyaml."""
    text = """# service
---
server:
  host: 0.0.0.0
  port: 8080   # the listener
  timeout: 30s

  tls: off
database:
    url: "postgres://db:5432/app"
    pool_size: 20
    ratio: 0.75
    since: 2026-01-01
    password: 'p#ss: word'
log_level: INFO
image: nginx:1.25
empty:
"""
    simple = lines.simple(text, LIVE)
    assert simple is not lines.NOT_SIMPLE
    assert identical(simple, by_libyaml(text)[1])
    assert simple["server"] == {"host": "0.0.0.0", "port": 8080, "timeout": "30s", "tls": False}
    assert simple["empty"] is None and simple["database"]["password"] == "p#ss: word"
    for other in ["hosts:\n  - a\n", "a: &x 1\nb: *x\n", "a: |\n  text\n", "a: [1]\n", "a: 'x\n  y'\n", "a: b\n  c\n"]:
        assert lines.simple(other, LIVE) is lines.NOT_SIMPLE
        assert identical(load(other), yaml.load(other, Loader=yamlload.SAFE_LOADER))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: 1\nb: c: d\n", r"malformed YAML: line 2"),
        ("a: 1\n  b: 2\n", r"malformed YAML: line 2"),
        ("a:\n    b: 1\n  c: 2\n", r"malformed YAML: line 3"),
        ("x: 2026-13-45\n", "cannot be read as its type"),
        ("n: " + "9" * 5000 + "\n", "an integer of 5000 characters"),
    ],
)
def test_simple_looking_errors_are_libyamls(text: str, message: str) -> None:
    """A text that looks simple but is wrong is declined by the line reading, and libyaml says where."""
    assert lines.simple(text, LIVE) is lines.NOT_SIMPLE
    with pytest.raises(YamlError, match=message):
        load(text)


@pytest.mark.parametrize("length", [1024, 1025])
def test_a_long_key_is_read_as_libyaml_reads_it(length: int) -> None:
    """libyaml takes a key of up to 1,024 characters and refuses a longer one; the line reading declines it."""
    for text in ("k" * length + ": 1\n", "a:\n  " + "k" * length + ": 1\n"):
        expected = by_libyaml(text)
        assert expected[0] == ("ok" if length <= 1024 else "error")
        simple = lines.simple(text, LIVE)
        assert (simple is not lines.NOT_SIMPLE) == (length <= 1024)
        assert yamlload.scalar_spans(text) is not None or length > 1024
        if length > 1024:
            with pytest.raises(YamlError, match="mapping values are not allowed"):
                load(text)


def test_scalar_spans_decline_a_key_named_twice() -> None:
    """A mapping that names a key twice has no single place to edit it: the spans are None, so an editor
    composes the file (and refuses the edit, as it did before the spans)."""
    assert yamlload.scalar_spans("a: 1\nb: x\na: 2\n") is None
    assert yamlload.scalar_spans("a:\n  x: 1\nb:\n  x: 2\n") == {("a", "x"): (8, 9, None), ("b", "x"): (18, 19, None)}


def test_simple_reading_keeps_the_limits() -> None:
    """Depth, node and size bounds hold on the line reading too: past them, libyaml's way refuses."""
    deep = "".join(" " * i + f"k{i}:\n" for i in range(5)) + " " * 5 + "v: 1\n"
    assert lines.simple(deep, Limits(max_depth=6)) is not lines.NOT_SIMPLE
    with pytest.raises(YamlError, match="nested deeper than 5"):
        load(deep, Limits(max_depth=5))
    wide = "".join(f"k{i}: v\n" for i in range(10))
    with pytest.raises(YamlError, match="more than 20 nodes"):
        load(wide, Limits(max_nodes=20))
    with pytest.raises(YamlError, match="duplicate key"):
        load("a: 1\na: 2\n", MANIFESTS)
