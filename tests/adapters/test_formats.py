from __future__ import annotations

import time

import pytest

from reconciler.adapters import formats
from tests.test_yamlload import alias_bomb

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
