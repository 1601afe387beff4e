"""`--format html` of `plan`, `compare` and `report`: one self-contained page with the rows the JSON holds, the
UI's styles inline, nothing fetched from anywhere and no secret value."""

from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from reconciler.settings import Settings
from tests.runtime.test_ui import DESIRED_SECRET, LIVE_SECRET, _add_secret
from tests.test_cli import cli


class Page(HTMLParser):
    """Every element's attributes, the text, and whether the document closed every element it opened."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.open: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in ("meta", "br", "input", "link"):
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def rows(self, *names: str) -> set[tuple[str | None, ...]]:
        """The data-… attributes of every table row that carries a data-path."""
        return {tuple(a.get(f"data-{n}") for n in names) for tag, a in self.tags if tag == "tr" and "data-path" in a}


def _self_contained(text: str) -> Page:
    page = Page(text)
    assert page.open == [] and text.startswith("<!doctype html>")
    assert [t for t, _ in page.tags].count("style") == 1 and "--in-sync:" in text  # the UI's colours, inline
    for tag, attrs in page.tags:
        assert tag not in ("script", "link", "img", "iframe", "form"), tag
        for name in ("src", "href", "action"):
            assert not (attrs.get(name) or "").startswith(("http:", "https:", "//")), (tag, attrs)
    assert "http://" not in text and "https://" not in text and "@import" not in text
    assert DESIRED_SECRET not in text and LIVE_SECRET not in text
    return page


@pytest.fixture
def migrated(settings: Settings, example: Path) -> Settings:
    _add_secret(example)
    assert cli("db", "upgrade").exit_code == 0
    return settings


def test_plan_as_html_has_the_rows_of_the_json_and_the_same_exit_code(migrated: Settings) -> None:
    """Each target's drift is a row (target, key) as in --format json, coloured by class; the secret is masked;
    the exit code is the gate's, as for the other formats."""
    as_json = cli("plan", "--format", "json")
    as_html = cli("plan", "--format", "html")
    assert as_json.exit_code == as_html.exit_code == 2
    data = json.loads(as_json.stdout)
    page = _self_contained(as_html.stdout)
    expected = {(t["target"], d["path"]) for t in data["targets"] for d in t["drift"]}
    assert ("payments-api-prod", "/database/password") in expected
    assert page.rows("target", "path") == expected
    assert "••••••" in as_html.stdout and 'class="pill escalate"' in as_html.stdout
    assert "/explain?" not in as_html.stdout  # no links into a UI the reader of a file does not have


@pytest.mark.parametrize("baseline", [[], ["--baseline", "prod"]])
def test_compare_as_html_has_the_rows_of_the_json(migrated: Settings, baseline: list[str]) -> None:
    """Pairs (each difference a row) or the baseline matrix (each key a row), as --format json has them, with
    expected differences marked; no secret value."""
    as_json = cli("compare", *baseline, "--format", "json")
    as_html = cli("compare", *baseline, "--format", "html")
    assert as_json.exit_code == as_html.exit_code == 2
    data = json.loads(as_json.stdout)
    page = _self_contained(as_html.stdout)
    if baseline:
        assert page.rows("app", "path") == {(k["app"], k["path"]) for k in data["keys"]}
    else:
        expected = {
            (f"{p['a']['target']} {p['b']['target']}", d["path"]) for p in data["pairs"] for d in p["differences"]
        }
        assert page.rows("pair", "path") == expected
    assert 'class="expected"' in as_html.stdout


def test_report_as_html_has_every_key_of_the_json(migrated: Settings) -> None:
    """What runs where: every target's keys as rows (target, key), matching or differing, secrets masked."""
    cli("plan")
    as_json = cli("report", "--format", "json")
    as_html = cli("report", "--format", "html")
    assert as_json.exit_code == as_html.exit_code == 0
    data: dict[str, Any] = json.loads(as_json.stdout)
    page = _self_contained(as_html.stdout)
    assert page.rows("target", "path") == {(t["target"], k["path"]) for t in data["targets"] for k in t["keys"]}
    assert ("payments-api-prod", "/database/password") in page.rows("target", "path")
    assert 'class="mono differs"' in as_html.stdout and "payments-oncall" in as_html.stdout


@pytest.mark.parametrize(
    ("command", "choices"),
    [
        (["plan"], "table, json, markdown, html"),
        (["compare"], "table, json, markdown, html"),
        (["report"], "markdown, json, html"),
    ],
)
def test_a_wrong_format_exits_1_naming_the_choices(settings: Settings, command: list[str], choices: str) -> None:
    """--format pdf is a usage error (exit 1, not the gate's 2), and says which formats there are."""
    result = subprocess.run(
        [sys.executable, "-m", "reconciler", *command, "--format", "pdf"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1 and f"must be one of {choices}" in result.stderr, result.stderr
