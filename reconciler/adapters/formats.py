"""Parse and render the configuration file formats the file adapter knows.

A format's values are either typed (YAML, JSON, TOML) or strings only (INI, .env); strings-only formats
get desired values rendered to strings before comparison, so that `30` in a manifest equals `30` in a file.
"""

from __future__ import annotations

import configparser
import io
import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tomli_w
import yaml

from reconciler import yamlload


class FormatError(ValueError):
    """The content does not parse as its format, or a value cannot be written in it."""


@dataclass(frozen=True)
class Format:
    name: str
    parse: Callable[[str], dict[str, Any]]
    render: Callable[[dict[str, Any]], str]
    strings_only: bool


def _mapping(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FormatError(f"the top level of a {name} file must be a mapping, not {type(value).__name__}")
    return value


# libyaml's emitter when PyYAML has it (its wheels do): ~10x the pure-Python speed.
SAFE_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _parse_yaml(text: str) -> dict[str, Any]:
    # Bounded like manifests (yamlload): an alias bomb or a circular alias in a live file is refused, not built.
    try:
        return _mapping(yamlload.load(text, yamlload.LIVE), "YAML")
    except yamlload.YamlError as exc:
        raise FormatError(str(exc).removeprefix("malformed YAML: ")) from None


def _render_yaml(doc: dict[str, Any]) -> str:
    return yaml.dump(doc, Dumper=SAFE_DUMPER, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _parse_json(text: str) -> dict[str, Any]:
    try:
        return _mapping(json.loads(text), "JSON")
    except json.JSONDecodeError as exc:
        raise FormatError(f"line {exc.lineno}, column {exc.colno}: {exc.msg}") from None


def _render_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _parse_toml(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FormatError(str(exc)) from None


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
        raise FormatError(str(exc).replace("\n", " ")) from None
    return {section: dict(parser.items(section)) for section in parser.sections()}


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


_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*?)\s*$")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def _parse_env(text: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        if match is None:
            raise FormatError(f"line {number}: expected KEY=value")
        key, raw = match.groups()
        result[key] = _env_value(raw, number)
    return result


def _env_value(raw: str, number: int) -> str:
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        end = raw.find(quote, 1)
        while quote == '"' and end > 0 and raw[end - 1] == "\\" and not raw[1:end].endswith("\\\\"):
            end = raw.find(quote, end + 1)
        if end < 0:
            raise FormatError(f"line {number}: unterminated {quote} quote")
        rest = raw[end + 1 :].strip()
        if rest and not rest.startswith("#"):
            raise FormatError(f"line {number}: unexpected text after the closing quote")
        body = raw[1:end]
        if quote == "'":
            return body
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), body)
    return re.sub(r"\s+#.*$", "", raw)


_ENV_PLAIN = re.compile(r"^[A-Za-z0-9_./:@%+,-]*$")


def _render_env(doc: dict[str, Any]) -> str:
    lines = []
    for key, value in doc.items():
        if not _ENV_LINE.match(f"{key}=x"):
            raise FormatError(f".env key {key!r} is not a valid variable name")
        if not isinstance(value, str):
            raise FormatError(f".env value {key} must be a string, not {type(value).__name__}")
        if _ENV_PLAIN.match(value):
            lines.append(f"{key}={value}")
        else:
            escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("$", "\\$")
            lines.append(f'{key}="{escaped}"')
    return "\n".join(lines) + ("\n" if lines else "")


FORMATS: dict[str, Format] = {
    "yaml": Format("yaml", _parse_yaml, _render_yaml, strings_only=False),
    "json": Format("json", _parse_json, _render_json, strings_only=False),
    "toml": Format("toml", _parse_toml, _render_toml, strings_only=False),
    "ini": Format("ini", _parse_ini, _render_ini, strings_only=True),
    "env": Format("env", _parse_env, _render_env, strings_only=True),
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
