"""Every command line in README.md and docs/*.md is one the CLI accepts: parsed by the CLI (not run), so an
unknown command, option or missing argument fails here before a reader meets it."""

from __future__ import annotations

import re
import shlex
from typing import Any, NamedTuple

import pytest
import typer

from reconciler.cli import app
from tests.conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"```[a-z]*\n(.*?)```", re.S)
INLINE = re.compile(r"`(reconciler [^`]+)`")
SHELL_STOP = {">", ">>", "&&", "||", "|", ";", "2>", "2>&1"}


PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]*$")  # RUN_ID, T, ENV: a value the reader fills in


class Line(NamedTuple):
    text: str
    inline: bool  # a span in prose: names a command, may leave out what it needs ("see `reconciler explain`")


def command_lines(text: str) -> list[Line]:
    """`reconciler …` lines of fenced blocks (continuations joined, `$ ` prompts dropped) and inline spans."""
    found: list[Line] = []
    for block in FENCE.findall(text):
        joined = re.sub(r"\\\n\s*", " ", block)
        for raw in joined.splitlines():
            line = raw.strip().removeprefix("$ ")
            found += [Line(p.strip(), False) for p in re.split(r"&&|;", line) if p.strip().startswith("reconciler ")]
    found += [Line(span, True) for span in INLINE.findall(text)]
    return found


def words(line: str) -> list[str]:
    """A line's arguments after `reconciler`, to the first shell operator or comment; synopsis notation read as
    the reader would type it: `[--x]` as `--x`, `a|b` as `a`, `...` and `…` dropped."""
    line = line.split(" #", 1)[0]
    try:
        tokens = shlex.split(line)
    except ValueError:  # an unclosed quote in a synopsis with `…`
        tokens = line.replace('"', "").split()
    out: list[str] = []
    for given in tokens[1:]:
        if given in SHELL_STOP:
            break
        out += [word] if (word := _word(given)) else []
    return out


def _word(token: str) -> str:
    word = "X" if token == "…" else token.strip("[]").replace("...", "").replace("…", "")
    if PLACEHOLDER.match(word):
        return "1"
    if "|" in word and not word.startswith(("http", "-")) and "=" not in word:
        return word.split("|")[0]
    return word


def parse(args: list[str], inline: bool = False) -> None:
    """Resolve `args` to a command and parse its options and arguments as the CLI would, without running it."""
    command: Any = typer.main.get_command(app)
    name = "reconciler"
    while hasattr(command, "commands") and args and not args[0].startswith("-"):
        if args[0] not in command.commands:
            raise AssertionError(f"no command {args[0]!r} under {name}")
        name, command, args = args[0], command.commands[args[0]], args[1:]
    if hasattr(command, "commands"):
        assert not args or args == ["--help"], f"{name} takes a command, not {args}"
        return
    try:
        command.make_context(name, list(args), resilient_parsing=False)
    except Exception as exc:
        if not (inline and type(exc).__name__ == "MissingParameter"):
            raise


ALL = [(doc.name, line) for doc in DOCS for line in command_lines(doc.read_text())]


def test_the_docs_have_command_lines() -> None:
    """The scan finds the commands (a broken regex would pass every line vacuously)."""
    assert len(ALL) > 50 and {d for d, _ in ALL} >= {"README.md", "operations.md"}


@pytest.mark.parametrize(("doc", "line"), ALL, ids=[f"{d}:{i}" for i, (d, _) in enumerate(ALL)])
def test_every_documented_command_line_parses(doc: str, line: Line) -> None:
    """The line names a real command with options it has and, outside prose, the arguments it needs."""
    try:
        parse(words(line.text), line.inline)
    except Exception as exc:  # click's usage errors, and ours
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        pytest.fail(f"{doc}: `{line.text}`: {message}")


@pytest.mark.parametrize(
    "line",
    [
        "reconciler adopt TARGET PATH --reason r",
        "reconciler plan --desired d",
        "reconciler nosuch",
        "reconciler history --nope",
    ],
)
def test_a_wrong_command_line_fails(line: str) -> None:
    """What the docs once said and the CLI never took fails the parse."""
    with pytest.raises(Exception):
        parse(words(line))
