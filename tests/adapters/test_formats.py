from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings

from reconciler import yamlload
from reconciler.adapters import formats
from reconciler.yamlload import LIVE, lines
from tests.test_yamlload import alias_bomb, config_texts, identical

SAMPLES = {
    "yaml": {"a": {"b": 1, "c": [1, "x"], "d": None}, "e": True, "f": 1.5},
    "json": {"a": {"b": 1, "c": [1, "x"], "d": None}, "e": True, "f": 1.5},
    "toml": {"a": {"b": 1, "c": [1, 2]}, "e": True, "f": 1.5},
    "ini": {"main": {"Key": "value with spaces", "n": "30"}, "other": {"x": ""}},
    "env": {"A": "plain", "B": "has spaces", "C": 'quote " and \\ and $HOME', "D": "line\nbreak", "E": ""},
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_render_then_parse_round_trips(name: str) -> None:
    """What a format renders parses back to the same document."""
    fmt = formats.FORMATS[name]
    assert fmt.parse(fmt.render(SAMPLES[name])) == SAMPLES[name]


def test_env_parsing() -> None:
    """.env files: comments, export, both quotes, inline comments after unquoted values."""
    text = "# c\nexport A=1\nB='x # y'\nC=\"a\\nb\"\nD=val # note\n\nE=\n"
    assert formats.FORMATS["env"].parse(text) == {"A": "1", "B": "x # y", "C": "a\nb", "D": "val", "E": ""}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("yaml", "a: [1\n", "line"),
        ("yaml", "- 1\n", "must be a mapping"),
        ("json", "{", "line 1"),
        ("toml", "a = ", "Invalid"),
        ("ini", "no section\n", "section"),
        ("env", "NOT A LINE\n", "line 1: expected KEY=value"),
        ("env", "A='open\n", "unterminated"),
    ],
)
def test_parse_errors_say_where(name: str, text: str, message: str) -> None:
    """A file that does not parse gives a FormatError that says where."""
    with pytest.raises(formats.FormatError, match=message):
        formats.FORMATS[name].parse(text)


def test_format_guessing() -> None:
    """File names imply formats, including dotenv names."""
    assert formats.guess("config.YML") == "yaml"
    assert formats.guess(".env") == "env"
    assert formats.guess(".env.production") == "env"
    assert formats.guess("app.env") == "env"
    assert formats.guess("settings.cfg") == "ini"
    assert formats.guess("README") is None


def test_stringify_renders_like_strings_only_sources() -> None:
    """Desired values for strings-only formats are rendered the way such files hold them."""
    assert formats.stringify({"a": True, "b": 30, "c": 1.5, "d": None, "e": {"f": False}}) == {
        "a": "true",
        "b": "30",
        "c": "1.5",
        "d": "",
        "e": {"f": "false"},
    }


def test_yaml_alias_bomb_in_a_live_file_is_refused_fast() -> None:
    """A ~450-byte alias bomb in a live YAML file is a FormatError within a second, not minutes of work."""
    started = time.perf_counter()
    with pytest.raises(formats.FormatError, match="expands to more than"):
        formats.FORMATS["yaml"].parse(alias_bomb())
    assert time.perf_counter() - started < 1.0
    with pytest.raises(formats.FormatError, match="circular alias"):
        formats.FORMATS["yaml"].parse("a: &a [*a]\n")


SECRET = "S3cr3t-pl41ntext"
MALFORMED = [
    ("yaml", f"a: 1\npassword {SECRET}\n"),
    ("yaml", f"a:\n\tpassword: {SECRET}\n"),
    ("yaml", f"a: !{SECRET} x\n"),
    ("yaml", f"a: *{SECRET}\n"),
    ("yaml", f"a: [{SECRET}\n"),
    ("json", f'{{"password": {SECRET}}}'),
    ("json", f'{{"password": "{SECRET}"'),
    ("toml", f"password = {SECRET}\n"),
    ("toml", f'password = "{SECRET}\n'),
    ("toml", f"[a]\npassword = 1\n[a]\n{SECRET} = 2\n"),
    ("ini", f"[db]\npassword {SECRET}\n"),
    ("ini", f"password {SECRET}\n"),
    ("ini", f"[db]\npassword = {SECRET}\npassword = {SECRET}\n"),
    ("ini", f"[{SECRET}]\n[{SECRET}]\n"),
    ("env", f"password {SECRET}\n"),
    ("env", f"PASSWORD='{SECRET}\n"),
    ("env", f'PASSWORD="{SECRET}" {SECRET}\n'),
]


@pytest.mark.parametrize(("name", "text"), MALFORMED)
def test_parse_errors_quote_no_content(name: str, text: str) -> None:
    """A live file that does not parse is reported by line (and column), never by what the line holds."""
    with pytest.raises(formats.FormatError) as caught:
        formats.FORMATS[name].parse(text)
    message = str(caught.value)
    assert SECRET not in message
    assert "password" not in message
    assert "line" in message


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("yaml", "1: a\n", "the top level: a key of type int"),
        ("yaml", "a:\n  2020-01-01: x\n", "/a: a key of type date"),
        ("yaml", "a:\n  - {null: 1}\n", "/a/0: a key of type NoneType"),
        ("json", '{"a": "\\ud800"}', "/a: not valid Unicode"),
        ("json", '{"\\udc80": 1}', "the top level: a key is not valid Unicode"),
        ("json", '{"a": [' + "1" * 5000 + "]}", "an integer has more than"),
        ("yaml", "a: " + "1" * 5000, "an integer of 5000 characters"),
        ("yaml", "a: 0b" + "1" * 20000, "an integer of 20002 characters"),
        ("toml", "a = " + "1" * 5000, "an integer has more than"),
        ("json", "[" * 50_000 + "]" * 50_000, "nested more than"),
        ("json", '{"a": ' + "[" * 150 + "]" * 150 + "}", "nested more than 100 levels"),
        ("toml", "a = " + "[" * 5000 + "]" * 5000, "nested more than"),
        ("toml", "a = " + "{b = " * 3000 + "1" + "}" * 3000, "nested more than"),
        ("yaml", "a: 2001-02-30\n", "cannot be read as its type"),
    ],
)
def test_documents_the_rest_cannot_hold_are_refused(name: str, text: str, message: str) -> None:
    """Non-string keys, lone surrogates, giant integers, deep nesting and impossible dates are FormatErrors
    (nothing else escapes a parser), saying where when the place is known."""
    with pytest.raises(formats.FormatError, match=message):
        formats.FORMATS[name].parse(text)


def test_nesting_up_to_the_limit_parses() -> None:
    """Deep but reasonable nesting is fine: the limit is on the pathological, not the merely nested."""
    expected: list[object] = []
    for _ in range(90):
        expected = [expected]
    assert formats.FORMATS["json"].parse('{"a": ' + "[" * 91 + "]" * 91 + "}") == {"a": expected}


def test_env_parsing_is_linear_on_long_padded_lines() -> None:
    """A 100 KB .env line of padding parses in well under a second (the old pattern took 12 s)."""
    started = time.perf_counter()
    for text in ("A=x" + " " * 100_000 + "y\n", "A=" + " " * 100_000 + "#\n", "B" + " " * 100_000 + "=1\n"):
        formats.FORMATS["env"].parse(text)
    assert time.perf_counter() - started < 1.0


def test_env_escapes_inside_double_quotes() -> None:
    """An escaped backslash before an escaped quote is read as both, and ends no string early."""
    assert formats.FORMATS["env"].parse('A="x\\\\\\"y"  # note\n') == {"A": 'x\\"y'}
    assert formats.FORMATS["env"].parse("A=a#b c # d\n") == {"A": "a#b c"}


# -- a live YAML file read line by line skips the document check (formats._parse_live_yaml) ---------------------


def _read(parse: Any, text: str) -> tuple[str, Any]:
    try:
        return "ok", parse(text)
    except formats.FormatError as exc:
        return "error", str(exc)


@settings(max_examples=1500, deadline=None)
@given(config_texts())
def test_a_simple_file_holds_nothing_the_check_refuses(text: str) -> None:
    """Whatever the line reading accepts passes _check_tree, so skipping the check changes no result: the YAML
    format gives the document or the error that the checked libyaml path gives."""
    simple = lines.simple(text, LIVE)
    if simple is not lines.NOT_SIMPLE:
        formats._check_tree(simple)
    got, expected = _read(formats.FORMATS["yaml"].parse, text), _read(formats._parse_yaml_checked, text)
    assert got[0] == expected[0] and (got[0] == "error" or identical(got[1], expected[1])), (text, got, expected)


def test_the_line_readings_bounds_are_within_the_checks() -> None:
    """The bounds the skip relies on: the line reading nests no deeper, and reads no longer integer, than
    _check_tree lets through. At the depth bound both paths agree, one level past it both refuse."""
    assert LIVE.max_depth <= formats.MAX_DEPTH
    # The widest integer a literal of that length can be, in any base YAML 1.1 reads (hex is widest: 4 bits a
    # character), and read by the line reading itself.
    widest = "0x" + "f" * (LIVE.max_int_chars - 2)
    assert lines.simple(f"k: {widest}\n", LIVE) == {"k": int(widest, 16)}
    assert int(widest, 16).bit_length() <= formats.MAX_INT_BITS
    assert int("9" * LIVE.max_int_chars).bit_length() <= formats.MAX_INT_BITS

    def nested(levels: int) -> str:
        return "".join(" " * i + f"k{i}:\n" for i in range(levels)) + " " * levels + "v: 1\n"

    deepest = nested(LIVE.max_depth - 1)
    assert lines.simple(deepest, LIVE) is not lines.NOT_SIMPLE
    assert identical(formats.FORMATS["yaml"].parse(deepest), formats._parse_yaml_checked(deepest))
    too_deep = nested(LIVE.max_depth)
    assert lines.simple(too_deep, LIVE) is lines.NOT_SIMPLE
    with pytest.raises(formats.FormatError, match="nested"):
        formats.FORMATS["yaml"].parse(too_deep)


def test_a_file_the_line_reading_declines_is_scanned_by_it_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The YAML format tries the line reading, then libyaml alone: a file it declines is not line-read twice."""
    calls: list[str] = []
    real = yamlload.simple

    def counted(text: str, limits: object) -> object:
        calls.append(text)
        return real(text, limits)  # type: ignore[arg-type]

    monkeypatch.setattr(yamlload, "simple", counted)
    text = "a: 1\nb: [1, 2]\n"
    assert formats.FORMATS["yaml"].parse(text) == {"a": 1, "b": [1, 2]}
    assert calls == [text]
