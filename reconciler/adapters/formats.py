"""Parse and render the configuration file formats the file adapter knows.

A format's values are either typed (YAML, JSON, TOML) or strings only (INI, .env); strings-only formats
get desired values rendered to strings before comparison, so that `30` in a manifest equals `30` in a file.

Live files are hostile input. A parse error says where (line and column) and what kind of mistake it is,
never what the file holds: a malformed line may be `password S3cr3t`, and errors reach logs, reports and
history. A document that parses is also checked before anything walks it: string keys only, nesting at
most MAX_DEPTH deep, integers that can be printed, strings that are valid Unicode.
"""

from __future__ import annotations

import configparser
import io
import json
import re
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tomli_w
import yaml

from reconciler import yamlload
from reconciler.domain.paths import to_pointer


class FormatError(ValueError):
    """The content does not parse as its format, or a value cannot be written in it."""


@dataclass(frozen=True)
class Format:
    name: str
    parse: Callable[[str], dict[str, Any]]
    render: Callable[[dict[str, Any]], str]
    strings_only: bool


MAX_DEPTH = 100  # nesting of maps and lists a live document may have; real configuration stays far below
MAX_INT_BITS = 14_000  # about 4,200 decimal digits: bigger integers cannot be printed (sys.int_info)
_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")


def _content_free(message: str) -> str:
    """A library's error message with every quoted part (where libraries quote the input) left out."""
    return _QUOTED.sub("'…'", message).replace("\n", " ").strip()


def _checked(parse: Callable[[str], dict[str, Any]]) -> Callable[[str], dict[str, Any]]:
    """`parse`, with the errors that parsers raise besides their own (a recursion limit, an integer past
    Python's digit limit, an impossible date) as FormatErrors, and the document checked (_check_tree)."""

    def run(text: str) -> dict[str, Any]:
        try:
            doc = parse(text)
        except FormatError:
            raise
        except RecursionError:
            raise FormatError(f"nested more than {MAX_DEPTH} levels deep") from None
        except (ValueError, OverflowError) as exc:
            if "digits" in str(exc):
                limit = sys.get_int_max_str_digits()
                raise FormatError(f"an integer has more than {limit} digits") from None
            raise FormatError("a value cannot be read as its type (an impossible date or number)") from None
        _check_tree(doc)
        return doc

    return run


def _check_tree(doc: Any) -> None:
    """Refuse what the rest of reconciler cannot hold: non-string keys (YAML `1: a`), nesting deeper than
    MAX_DEPTH, integers too big to print, strings with lone surrogates (JSON `"\\ud800"`), which cannot be
    stored. Errors name the place by its path (keys are validated before they appear in one)."""
    if type(doc) is str and not _valid_text(doc):
        raise FormatError("not valid Unicode (a lone surrogate escape)")
    stack: list[tuple[Any, tuple[str, ...]]] = [(doc, ())]
    while stack:
        value, path = stack.pop()
        if len(path) >= MAX_DEPTH:
            raise FormatError(f"{to_pointer(path[:MAX_DEPTH])}: nested more than {MAX_DEPTH} levels deep")
        if type(value) is dict:
            items: Any = value.items()
        elif type(value) is list:
            items = enumerate(value)
        else:
            continue
        for key, item in items:
            if type(key) is not str and not (type(key) is int and type(value) is list):
                where = to_pointer(path) or "the top level"
                raise FormatError(f"{where}: a key of type {type(key).__name__}, not a string; quote it")
            if type(key) is str and not _valid_text(key):
                raise FormatError(f"{to_pointer(path) or 'the top level'}: a key is not valid Unicode")
            kind = type(item)
            if kind is dict or kind is list:
                stack.append((item, (*path, str(key))))
            elif kind is str and not _valid_text(item):
                raise FormatError(f"{to_pointer((*path, str(key)))}: not valid Unicode (a lone surrogate escape)")
            elif kind is int and item.bit_length() > MAX_INT_BITS:
                raise FormatError(f"{to_pointer((*path, str(key)))}: an integer too big to hold")


def _valid_text(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _mapping(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FormatError(f"the top level of a {name} file must be a mapping, not {type(value).__name__}")
    return value


# libyaml's emitter when PyYAML has it (its wheels do): ~10x the pure-Python speed.
SAFE_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _parse_yaml(text: str) -> dict[str, Any]:
    # libyaml's path alone (_parse_live_yaml has tried the line reader). Bounded like manifests (yamlload): an
    # alias bomb or a circular alias in a live file is refused, not built.
    try:
        return _mapping(yamlload.load_composed(text, yamlload.LIVE), "YAML")
    except yamlload.YamlError as exc:
        raise FormatError(str(exc).removeprefix("malformed YAML: ")) from None


_parse_yaml_checked = _checked(_parse_yaml)


def _parse_live_yaml(text: str) -> dict[str, Any]:
    """A live YAML file's document, checked. The usual file, read line by line (yamlload.simple), holds nothing
    that _check_tree refuses (printable ASCII only, string keys, mappings nested within LIVE's max_depth,
    integers of at most LIVE's max_int_chars digits; tests/adapters/test_formats.py pins both bounds), so it
    skips that walk of every key and value: a ninth of a first pass over a 100-key file."""
    found = yamlload.simple(text, yamlload.LIVE)
    if found is not yamlload.NOT_SIMPLE:
        return found  # type: ignore[no-any-return]
    return _parse_yaml_checked(text)


def _render_yaml(doc: dict[str, Any]) -> str:
    return yaml.dump(doc, Dumper=SAFE_DUMPER, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _parse_json(text: str) -> dict[str, Any]:
    try:
        return _mapping(json.loads(text), "JSON")
    except json.JSONDecodeError as exc:
        raise FormatError(f"line {exc.lineno}, column {exc.colno}: {exc.msg}") from None


def parse_json_value(data: str | bytes) -> Any:
    """JSON that a live system answered (an HTTP body, a key's value), held to the bounds of a live file: any
    JSON value, checked like a document (depth, key types, integer size, lone surrogates); a FormatError
    gives position and kind, never content."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise FormatError("not UTF-8 text") from None
    return _checked(_json_any)(text)


def _json_any(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(f"line {exc.lineno}, column {exc.colno}: {exc.msg}") from None


def _render_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _parse_toml(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = _content_free(str(exc))
        at = _TOML_AT.search(message)
        if at is None:
            raise FormatError(message) from None
        raise FormatError(f"line {at['line']}, column {at['column']}: {message[: at.start()]}") from None


_TOML_AT = re.compile(r" \(at line (?P<line>\d+), column (?P<column>\d+)\)$")


def _render_toml(doc: dict[str, Any]) -> str:
    try:
        return tomli_w.dumps(doc)
    except TypeError as exc:  # None has no TOML form
        raise FormatError(f"cannot be written as TOML: {exc}") from None


def _ini_parser() -> configparser.RawConfigParser:
    # No DEFAULT section merging and no interpolation: what the file says is what we compare.
    parser = configparser.RawConfigParser(default_section="\x00none", interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep the keys' case
    return parser


def _parse_ini(text: str) -> dict[str, Any]:
    parser = _ini_parser()
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise FormatError(_ini_problem(exc)) from None
    return {section: dict(parser.items(section)) for section in parser.sections()}


def _ini_problem(exc: configparser.Error) -> str:
    """Where and what, from configparser's error, whose own message quotes the offending lines."""
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f"line {exc.lineno}: a key before any [section] header"
    if isinstance(exc, configparser.ParsingError):
        lines = sorted(number for number, _ in exc.errors)
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        return f"line {lines[0] if lines else '?'}: expected [section] or key = value{more}"
    if isinstance(exc, configparser.DuplicateSectionError):
        return f"line {exc.lineno}: a section declared twice"
    if isinstance(exc, configparser.DuplicateOptionError):
        return f"line {exc.lineno}: a key set twice in its section"
    return f"not valid INI ({type(exc).__name__})"


def _render_ini(doc: dict[str, Any]) -> str:
    parser = _ini_parser()
    for section, values in doc.items():
        if not isinstance(values, dict):
            raise FormatError(f"INI key {section!r} must be a section (a mapping), not {type(values).__name__}")
        parser.add_section(section)
        for key, value in values.items():
            if not isinstance(value, str):
                raise FormatError(f"INI value {section}.{key} must be a string")
            parser.set(section, key, value)
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


# Linear on any line: the key by a pattern that cannot backtrack far, the value by string methods. (A lazy
# `(.*?)\s*$` took 12 s on a 100 KB line of padding.)
ENV_KEY = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
ENV_DOUBLE = re.compile(r'"((?:[^"\\]++|\\.)*+)"', re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def _parse_env(text: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = ENV_KEY.match(line)
        if match is None:
            raise FormatError(f"line {number}: expected KEY=value")
        result[match.group(1)] = _env_value(line[match.end() :].strip(), number)
    return result


def _env_value(raw: str, number: int) -> str:
    """The value of a KEY=value line (`raw` is stripped): quoted, or plain up to a ` #` comment."""
    if raw[:1] == "'":
        end = raw.find("'", 1)
        body = raw[1:end]
    elif raw[:1] == '"':
        quoted = ENV_DOUBLE.match(raw)
        end = quoted.end() - 1 if quoted else -1
        body = quoted.group(1) if quoted else ""
    else:
        return env_plain(raw)
    if end < 0:
        raise FormatError(f"line {number}: unterminated {raw[0]} quote")
    rest = raw[end + 1 :].lstrip()
    if rest and not rest.startswith("#"):
        raise FormatError(f"line {number}: unexpected text after the closing quote")
    if raw[0] == "'":
        return body
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), body, flags=re.DOTALL)


def env_plain(raw: str) -> str:
    """An unquoted value: everything before the first `#` that follows whitespace (a comment)."""
    at = raw.find("#")
    while at > 0:
        if raw[at - 1].isspace():
            return raw[:at].rstrip()
        at = raw.find("#", at + 1)
    return raw


ENV_PLAIN = re.compile(r"^[A-Za-z0-9_./:@%+,-]*$")


def render_env(doc: dict[str, Any]) -> str:
    lines = []
    for key, value in doc.items():
        if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
            raise FormatError(f".env key {key!r} is not a valid variable name")
        if not isinstance(value, str):
            raise FormatError(f".env value {key} must be a string, not {type(value).__name__}")
        lines.append(f"{key}={env_token(value)}")
    return "\n".join(lines) + ("\n" if lines else "")


def env_token(value: str, style: str = "") -> str:
    """A .env value as written: plain where it can be (and `style` is plain), in single quotes where `style`
    asks for them and it can be, else in double quotes with escapes."""
    if style == "'" and "'" not in value and "\n" not in value and "\r" not in value:
        return f"'{value}'"
    if style != '"' and ENV_PLAIN.match(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("$", "\\$")
    return f'"{escaped}"'


FORMATS: dict[str, Format] = {
    "yaml": Format("yaml", _parse_live_yaml, _render_yaml, strings_only=False),
    "json": Format("json", _checked(_parse_json), _render_json, strings_only=False),
    "toml": Format("toml", _checked(_parse_toml), _render_toml, strings_only=False),
    "ini": Format("ini", _checked(_parse_ini), _render_ini, strings_only=True),
    "env": Format("env", _checked(_parse_env), render_env, strings_only=True),
}

_BY_SUFFIX = {
    ".yaml": "yaml",
    ".yml": "yaml",
    ".json": "json",
    ".toml": "toml",
    ".ini": "ini",
    ".cfg": "ini",
    ".conf": "ini",
    ".env": "env",
}


def guess(filename: str) -> str | None:
    """The format a file name implies (`.env` and `app.env` are env), or None."""
    lower = filename.lower()
    if lower == ".env" or lower.startswith(".env."):
        return "env"
    for suffix, name in _BY_SUFFIX.items():
        if lower.endswith(suffix):
            return name
    return None


def stringify(value: Any) -> Any:
    """Render desired scalars the way a strings-only format holds them; maps keep their shape."""
    if isinstance(value, dict):
        return {k: stringify(v) for k, v in value.items()}
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    return value if isinstance(value, str) else str(value)
