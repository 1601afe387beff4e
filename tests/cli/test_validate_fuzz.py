"""Fuzzing `validate` with mutated desired-state folders: whatever the manifests hold, validate exits 0, 1 or 2,
prints no traceback, finishes within 10 s, and an error names the file it is about.

A seeded generator (not hypothesis): every case is reproducible from its seed, printed on failure. The run is
bounded by time (FUZZ_BUDGET_S) so that CI stays fast; FUZZ_CASES raises the count for a longer local run."""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from reconciler import yamlload
from reconciler.cli import app
from tests.conftest import EXAMPLES

BUDGET_S = float(os.environ.get("FUZZ_BUDGET_S", "20"))
CASES = int(os.environ.get("FUZZ_CASES", "1000"))
PER_CASE_S = 10.0
MARK = "__HOSTILE__"
SMALL = yamlload.Limits(max_nodes=5000)  # what the mutator itself reads back: never an expanded bomb


def _bomb(levels: int = 9) -> str:
    parts = ["&l0 [x, x, x, x, x, x, x, x, x]"]
    parts += [f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


# Single-line YAML (flow style), so that each fits wherever a value goes.
HOSTILE_VALUES = [
    ".inf",
    "-.inf",
    ".nan",
    "-1",
    "0",
    "1e400",
    "9" * 5000,
    "9" * 400,
    "99999999999999999999999d",
    "'\u0663s'",
    "9999-12-31",
    "0001-01-01",
    "20261215",
    "2026-02-30",
    "'2026-12-15T25:00'",
    "'/['",
    "'[!]'",
    "'/a/**/['",
    "[" * 300 + "]" * 300,
    "{a: " * 120 + "1" + "}" * 120,
    "&c [*c]",
    _bomb(),
    "{a: 1, a: 2}",
    "*nowhere",
    "!!python/object/apply:os.system [true]",
    "!!binary AAAA",
    "null",
    "~",
    "[]",
    "{}",
    "true",
    "''",
    "x" * 5000,
    '"\\ud800"',
    '"\\x00"',
    "0x" + "f" * 900,
    "{adapter: nope}",
    "{adapter: file, path: /etc/shadow}",
    "{adapter: file, path: x.yaml, colour: red}",
    "{adapter: postgres, password: nope}",
    "{adapter: redis-keys}",
    "{adapter: layered, layers: [{name: a, adapter: file}, {name: b, adapter: layered}], authoritative: q}",
    "{adapter: env, pid: -1}",
    "{adapter: http, url: 'http://u:p@h/'}",
    "[1, [2, [3]]]",
    "{1: a, null: b}",
    "{? [1, 2] : x}",
    "{2026-01-01: x}",
    "'${env:NOPE}'",
    "'${file:/etc/shadow}'",
    "'$${env:X}'",
    "-9" * 3,
]
HOSTILE_KEYS = ["1", "null", "true", "'[x]'", "kind", "metadata", "name", "adapter", "'\u0663'", "'a.b'", "'~1'"]
JUNK = ["\t", "\x00", "\ufeff", "\ud7ff", "%YAML 1.1\n", "--- |\n", "...\n", "&", "*", "!", "{", "[", ":", "'", '"']


@dataclass
class Case:
    file: str
    text: str | bytes


def _pristine(root: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((root / "desired").glob("*.yaml"))}


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*path, i))
    return found


def _tree_mutation(rng: random.Random, text: str) -> str:
    """Replace a value, add a key or drop one at a random place of a random document; hostile text is spliced
    in after the dump, so that it stays what it is (an alias, a tag, a 5,000-digit number)."""
    docs = [d for d in yamlload.load_all(text, SMALL) if d is not None]
    if not docs:
        return text + f"\nkind: Target\nmetadata: {MARK}\n".replace(MARK, rng.choice(HOSTILE_VALUES))
    doc = rng.choice(docs)
    path = rng.choice(_paths(doc)[1:] or [()])
    parent: Any = doc
    for step in path[:-1]:
        parent = parent[step]
    choice = rng.random()
    if not path or not isinstance(parent, dict | list):
        return text + "\n---\n" + f"kind: Target\nmetadata: {{name: z}}\nspec: {MARK}\n"
    if choice < 0.6:
        parent[path[-1]] = MARK
    elif choice < 0.8 and isinstance(parent, dict):
        parent[MARK + "k"] = rng.choice(["1", "x", "[1]"])
    elif isinstance(parent, dict):
        del parent[path[-1]]
    dumped = "---\n".join(yaml.safe_dump(d, sort_keys=False, default_flow_style=False, width=10**9) for d in docs)
    dumped = dumped.replace(f"{MARK}k", rng.choice(HOSTILE_KEYS))
    return dumped.replace(MARK, rng.choice(HOSTILE_VALUES))


def _text_mutation(rng: random.Random, text: str) -> str | bytes:
    """Damage the text: cut, duplicate or reorder lines, splice junk characters, break the encoding."""
    lines = text.splitlines(keepends=True) or [""]
    kind = rng.randrange(6)
    at = rng.randrange(len(lines))
    if kind == 0:
        del lines[at : at + rng.randint(1, 4)]
    elif kind == 1:
        lines.insert(at, lines[rng.randrange(len(lines))])
    elif kind == 2:
        line = lines[at]
        cut = rng.randrange(len(line) + 1)
        lines[at] = line[:cut] + rng.choice(JUNK) + line[cut:]
    elif kind == 3:
        return "".join(lines)[: rng.randrange(len(text) + 1)]
    elif kind == 4:
        return "".join(lines).encode() + rng.choice([b"\xff\xfe", b"\xc3", b"\xed\xa0\x80"])
    else:
        indent = len(lines[at]) - len(lines[at].lstrip(" "))
        lines.insert(at, " " * indent + f"{rng.choice(HOSTILE_KEYS)}: {rng.choice(HOSTILE_VALUES)}\n")
    return "".join(lines)


def mutate(seed: int, pristine: dict[str, str]) -> Case:
    rng = random.Random(seed)
    name = rng.choice(sorted(pristine))
    text: str | bytes = pristine[name]
    for _ in range(rng.randint(1, 3)):
        if isinstance(text, bytes):
            break
        try:
            text = _tree_mutation(rng, text) if rng.random() < 0.6 else _text_mutation(rng, text)
        except yamlload.YamlError:  # an earlier mutation broke the YAML (or made it big): damage it as text
            text = _text_mutation(rng, text)
    return Case(name, text)


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(EXAMPLES, tmp_path / "example")
    monkeypatch.setenv("RECONCILER_FILE__ROOTS", json.dumps([str(tmp_path / "example" / "live")]))
    monkeypatch.setenv("RECONCILER_ADAPTERS__CREDENTIALS", json.dumps({"db": "s3cr3t-fuzz-value"}))
    return tmp_path / "example"


def run_case(root: Path, pristine: dict[str, str], seed: int) -> None:
    for name, text in pristine.items():
        (root / "desired" / name).write_text(text)
    case = mutate(seed, pristine)
    target = root / "desired" / case.file
    target.write_bytes(case.text if isinstance(case.text, bytes) else case.text.encode("utf-8", "surrogatepass"))
    started = time.perf_counter()
    result = CliRunner().invoke(app, ["validate", str(root / "desired")])
    took = time.perf_counter() - started
    where = f"seed {seed} ({case.file}): exit {result.exit_code}, {took:.1f}s\n{result.output[-2000:]}"
    assert result.exception is None or isinstance(result.exception, SystemExit), (where, result.exc_info)
    assert result.exit_code in (0, 1, 2), where
    assert "Traceback" not in result.output, where
    assert took < PER_CASE_S, where
    assert "s3cr3t-fuzz-value" not in result.output, where
    if result.exit_code == 1:
        assert case.file in result.output, where


@pytest.mark.timeout(300)
def test_validate_survives_mutated_folders(folder: Path) -> None:
    """Hundreds of mutated folders (hostile values and keys, damaged text and encodings): no traceback, exit
    0/1/2, under 10 s each, the file named, no secret shown, and memory stays bounded."""
    pristine = _pristine(folder)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    deadline = time.monotonic() + BUDGET_S
    ran = 0
    for seed in range(CASES):
        if time.monotonic() > deadline:
            break
        run_case(folder, pristine, seed)
        ran += 1
    assert ran >= min(CASES, 50)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mb < 500, f"peak memory grew by {grown_mb:.0f} MB"
