"""Edit `.env` and INI files line by line: a changed value is rewritten on its own line in its own quoting,
with the line's `export`, spacing and trailing comment; a deleted key loses its lines; a new key is added
after its section's last key (INI) or at the end (.env). Every other line stays byte for byte.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from reconciler.adapters import formats
from reconciler.adapters.shape import Unshaped, edits
from reconciler.domain.paths import MISSING


def _lines(text: str) -> tuple[list[str], str]:
    """The file's lines with their endings, and the ending new lines get (the file's own)."""
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += newline  # a new line may follow it; the file's missing final newline is put back below
    return lines, newline


def _join(lines: list[str], text: str) -> str:
    """The lines as text; a file that did not end with a newline still does not."""
    out = "".join(lines)
    if text and not text.endswith(("\n", "\r")):
        out = out.removesuffix("\r\n") if out.endswith("\r\n") else out.removesuffix("\n")
    return out


# -- .env ------------------------------------------------------------------------------------------------------


def _env_split(line: str) -> tuple[str, str, str, str] | None:
    """A KEY=value line as (its key, everything before the value, the value's quote, everything after it)."""
    match = formats.ENV_KEY.match(line)
    if match is None:
        return None
    after = line[match.end() :]
    rest = after.lstrip(" \t")
    prefix = line[: len(line) - len(rest)]
    body = rest.rstrip("\r\n")
    if body[:1] == "'":
        end = body.find("'", 1) + 1
    elif body[:1] == '"':
        quoted = formats.ENV_DOUBLE.match(body)
        end = quoted.end() if quoted else 0
    else:
        end = len(formats.env_plain(body).rstrip())
    if end <= 0 and body[:1] in ("'", '"'):
        raise Unshaped("an unterminated quote")
    return match.group(1), prefix, body[:1] if body[:1] in ("'", '"') else "", rest[end:]


def edit_env(text: str, current: dict[str, Any], updated: dict[str, Any]) -> str:
    lines, newline = _lines(text)
    where: dict[str, list[int]] = {}
    for index, line in enumerate(lines):
        if line.strip() and not line.lstrip().startswith("#") and (parts := _env_split(line)) is not None:
            where.setdefault(parts[0], []).append(index)
    for change in edits(current, updated, into_lists=False):
        (key,) = change.path
        if change.value is MISSING:
            for index in where.get(key, []):
                lines[index] = ""
        elif change.new:
            lines.append(formats.render_env({key: change.value}).replace("\n", newline))
        else:
            index = where[key][-1]  # the last one is the one that counts
            parts = _env_split(lines[index])
            assert parts is not None
            _, prefix, quote, suffix = parts
            lines[index] = prefix + formats.env_token(change.value, quote) + suffix
    return _join(lines, text)


# -- INI ---------------------------------------------------------------------------------------------------------

_SECTION = re.compile(r"\[(?P<header>.+)\]")  # configparser's own
_OPTION = re.compile(r"(?P<option>.*?)\s*(?P<vi>[=:])\s*(?P<value>.*)$")  # configparser's own


class _Option(NamedTuple):
    first: int  # the key's line
    last: int  # its last continuation line
    value_at: int  # where the value starts on the key's line


class _Section:
    def __init__(self, header: int) -> None:
        self.header = header
        self.last = header  # its last line that holds a key or a continuation
        self.options: dict[str, _Option] = {}
        self.separator = " = "


def _scan_ini(lines: list[str]) -> dict[str, _Section]:
    """Where each section and key is, read the way configparser reads (comments end a continuation, blank
    lines do not)."""
    sections: dict[str, _Section] = {}
    section: _Section | None = None
    option: str | None = None
    level = 0
    for index, line in enumerate(lines):
        value = line.strip()
        if not value or value[0] in "#;":
            level = level if not value else 1 << 30
            continue
        indent = len(line) - len(line.lstrip())
        if section is not None and option is not None and indent > level:
            first, _, at = section.options[option]
            section.options[option] = _Option(first, index, at)
            section.last = index
            continue
        level = indent
        header = _SECTION.match(value)
        if header:
            section = sections[header["header"]] = _Section(index)
            option = None
            continue
        match = _OPTION.match(value)
        if section is None or match is None:
            raise Unshaped("not INI as configparser reads it")
        option = match["option"].rstrip()
        if not section.options:
            section.separator = value[len(match["option"]) : match.start("value")] or " = "
        section.options[option] = _Option(index, index, indent + match.start("value"))
        section.last = index
    return sections


def _ini_value(value: str, newline: str) -> str:
    return value.replace("\n", newline + "\t")


def edit_ini(text: str, current: dict[str, Any], updated: dict[str, Any]) -> str:
    lines, newline = _lines(text)
    sections = _scan_ini(lines)
    after: dict[int, list[str]] = {}  # lines to add after a line
    appended: list[str] = []
    for change in edits(current, updated, into_lists=False):
        name = change.path[0]
        if len(change.path) == 1:
            if change.value is MISSING:
                for index in range(sections[name].header, sections[name].last + 1):
                    lines[index] = ""
            elif change.new:
                blank = [newline] if (appended or lines) and (appended or lines)[-1].strip() else []
                body = [f"{k} = {_ini_value(v, newline)}{newline}" for k, v in change.value.items()]
                appended.extend([*blank, f"[{name}]{newline}", *body])
            else:
                raise Unshaped("a section replaced by a value")
            continue
        section, key = sections[name], change.path[1]
        if change.value is MISSING:
            option = section.options[key]
            for index in range(option.first, option.last + 1):
                lines[index] = ""
        elif change.new:
            line = f"{key}{section.separator}{_ini_value(change.value, newline)}{newline}"
            after.setdefault(section.last, []).append(line)
        else:
            option = section.options[key]
            for index in range(option.first + 1, option.last + 1):
                lines[index] = ""
            head = lines[option.first][: option.value_at]
            lines[option.first] = head + _ini_value(change.value, newline) + newline
    out = [line + "".join(after.get(index, [])) for index, line in enumerate(lines)]
    return _join(out + appended, text)
