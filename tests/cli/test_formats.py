"""`--format markdown` is Markdown in every command that offers it; JSON names what it is about; validate
finds the desired state the way every other command does."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from reconciler.cli import app
from reconciler.settings import Settings

runner = CliRunner()
PLAIN_TABLE_HEADER = re.compile(r"^[A-Z][A-Z ()]*[A-Z)] {2,}[A-Z]")


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def commands(group: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every command under `group` by its words (typer carries its own click, so this goes by shape)."""
    found: dict[tuple[str, ...], Any] = {}
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            found.update(commands(command, (*prefix, name)))
        else:
            found[(*prefix, name)] = command
    return found


def takes_markdown() -> set[tuple[str, ...]]:
    return {
        name
        for name, command in commands(typer.main.get_command(app)).items()
        if any("--format" in p.opts and "markdown" in (getattr(p, "help", "") or "") for p in command.params)
    }


def assert_markdown(text: str) -> None:
    """Markdown, not a plain-text report: no set-in lines (paragraph runs, or code blocks past four spaces),
    no space-aligned table header, and something only Markdown has."""
    lines = text.splitlines()
    assert not [line for line in lines if line.startswith((" ", "\t"))], text
    assert not [line for line in lines if PLAIN_TABLE_HEADER.match(line)], text
    assert any(line.startswith(("#", "|", "**", "- ")) for line in lines), text


def test_every_command_offering_markdown_prints_markdown(settings: Settings, example: Path) -> None:
    """Each command whose --format offers markdown (found by walking the CLI) prints Markdown."""
    assert cli("db", "upgrade").exit_code == 0
    applied = json.loads(cli("apply", "--format", "json").stdout)
    prod = example / "live" / "payments-api" / "prod" / "config.yaml"
    prod.write_text(prod.read_text().replace("log_level: INFO", "log_level: WARNING"))
    live = str(example / "live" / "payments-api")
    invocations: dict[tuple[str, ...], list[str]] = {
        ("plan",): ["plan"],
        ("apply",): ["apply"],
        ("rollback",): ["rollback", applied["run_id"], "--dry-run"],
        ("history",): ["history"],
        ("compare",): ["compare"],
        ("diff",): ["diff", f"{live}/prod/config.yaml", f"{live}/staging/config.yaml"],
        ("report",): ["report"],
    }
    assert takes_markdown() == set(invocations)
    extra = [["history", applied["run_id"]], ["history", "-t", "payments-api-prod", "-p", "/log_level"]]
    for args in [*invocations.values(), *extra]:
        result = cli(*args, "--format", "markdown")
        assert result.exit_code in (0, 1, 2), (args, result.output)
        assert_markdown(result.stdout)


@pytest.mark.parametrize("line", ["RUN   STARTED", "PATH  LIVE NOW  PUT BACK", "  no drift"])
def test_the_markdown_check_catches_plain_text(line: str) -> None:
    """The check above fails on a plain-text table header or a set-in line."""
    with pytest.raises(AssertionError):
        assert_markdown(f"**title**\n{line}\n")


def test_history_json_names_the_target_of_each_action(settings: Settings) -> None:
    """Each action in a run's JSON says which target it belongs to."""
    assert cli("db", "upgrade").exit_code == 0
    applied = json.loads(cli("apply", "--format", "json").stdout)
    detail = json.loads(cli("history", applied["run_id"], "--format", "json").stdout)
    targets = {a["path"]: a["target"] for a in detail["actions"]}
    assert targets == {"/FEATURE_FAST_PAY": "checkout-staging", "/log_level": "payments-api-prod"} | {
        "/debug_endpoints": "payments-api-prod"
    }


def test_validate_without_a_folder_uses_the_desired_dir(
    settings: Settings, example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """validate with no DIR checks RECONCILER_DESIRED_DIR; a missing one is an error naming it, exit 1."""
    ok = cli("validate")
    assert ok.exit_code == 0 and "ok: 3 targets, 1 policies" in ok.output and str(example / "desired") in ok.output
    monkeypatch.setenv("RECONCILER_DESIRED_DIR", str(example / "nowhere"))
    missing = cli("validate")
    assert missing.exit_code == 1 and str(example / "nowhere") in missing.output
