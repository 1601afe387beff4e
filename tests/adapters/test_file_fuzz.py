"""Hostile live files of every format, read through the file adapter and through `reconciler plan`.

Seeded (derandomized) and bounded: about 30 s in all. Each mutated file either reads as a document that
the rest of reconciler can hold (compare, store as JSON) or fails with a DiscoveryError that names the file;
nothing else escapes, nothing takes 10 s, no traceback is printed, and plan exits 0, 1 or 2.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from reconciler.adapters.file import FileAdapter
from reconciler.cli import app
from reconciler.desired.loader import load
from reconciler.diff.compare import compare
from reconciler.domain.manifest import Target
from reconciler.domain.values import canonical_json
from reconciler.errors import DiscoveryError
from reconciler.settings import FileSettings

SECRET = "S3cr3tPlain"
SEEDS = {
    "yaml": f"db:\n  host: h\n  port: 5432\n  password: {SECRET}\nlist: [1, 2, {{a: b}}]\nflag: true\n",
    "json": f'{{"db": {{"host": "h", "port": 5432, "password": "{SECRET}"}}, "list": [1, 2, {{"a": "b"}}]}}',
    "toml": f'flag = true\n[db]\nhost = "h"\nport = 5432\npassword = "{SECRET}"\nlist = [1, 2]\n',
    "ini": f"[db]\nhost = h\nport = 5432\npassword = {SECRET}\n[other]\nx =\n",
    "env": f'HOST=h\nexport PORT=5432\nPASSWORD="{SECRET}"\nX= spaced value # note\n',
}
HOSTILE = [
    "[" * 3000,
    "{" * 3000,
    '{"a":' * 2000,
    "a = " + "[" * 2000,
    "9" * 5000,
    "0x" + "f" * 5000,
    "0b" + "1" * 20000,
    '"\\ud800"',
    "\\udc80",
    '"\\U0010ffff"',
    "1: a\n",
    "? [a, b]\n: c\n",
    "null: x\n",
    "2020-01-01: x\n",
    "2001-02-30",
    "!!python/object:os.system x",
    "!!binary aGVsbG8=",
    "!!set {a, b}",
    "&a [1]\nb: *a\n",
    f"password {SECRET}\n",
    "[section]\n",
    "[db]\n[db]\n",
    "=",
    "'",
    '"',
    "\\",
    "\t",
    "\r\n",
    "\x00",
    "\ufeff",
    "1e999",
    "-.inf",
    "NaN",
    "a.b.c = 1\n",
    "export \n",
    "#",
    " " * 5000,
    "x" * 20000,
]

mutation = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 400), st.sampled_from(HOSTILE).map(str.encode)),
    st.tuples(st.just("insert"), st.integers(0, 400), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("cut"), st.integers(0, 400), st.integers(1, 40)),
    st.tuples(st.just("truncate"), st.integers(0, 400), st.just(b"")),
)


def mutate(seed: bytes, steps: list[tuple[str, int, object]]) -> bytes:
    data = seed
    for op, where, arg in steps:
        at = min(where, len(data))
        if op == "insert":
            assert isinstance(arg, bytes)
            data = data[:at] + arg + data[at:]
        elif op == "cut":
            assert isinstance(arg, int)
            data = data[:at] + data[at + arg :]
        else:
            data = data[:at]
    return data


@contextlib.contextmanager
def mutated(root: Path, fmt: str, steps: list[tuple[str, int, object]]) -> Iterator[Path]:
    """The live file of format `fmt` mutated by `steps`, put back as it was afterwards."""
    path = root / "live" / f"c.{fmt}"
    path.write_bytes(mutate(SEEDS[fmt].encode(), steps))
    try:
        yield path
    finally:
        path.write_text(SEEDS[fmt])


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A desired folder with one file target per format, their live files, and a migrated history."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "live").mkdir()
    (root / "desired").mkdir()
    for fmt, text in SEEDS.items():
        (root / "live" / f"c.{fmt}").write_text(text)
        (root / "desired" / f"{fmt}.yaml").write_text(
            f"kind: Target\nmetadata: {{name: t-{fmt}}}\nspec:\n"
            f"  source: {{adapter: file, path: ../live/c.{fmt}, format: {fmt}}}\n"
            "  desired: {}\n  secrets: ['/**/password', '/PASSWORD']\n"
        )
    result = CliRunner().invoke(app, ["db", "upgrade"], env=_env(root))
    assert result.exit_code == 0, result.output
    yield root


def _env(root: Path) -> dict[str, str]:
    return {
        "RECONCILER_DESIRED_DIR": str(root / "desired"),
        "RECONCILER_FILE__ROOTS": json.dumps([str(root / "live")]),
        "RECONCILER_DATABASE_URL": f"sqlite:///{root / 'history.db'}",
        "RECONCILER_SECRETS__HMAC_KEY": "fuzz",
    }


def _target(root: Path, fmt: str) -> Target:
    return load(root / "desired").targets[f"t-{fmt}"]


@settings(
    max_examples=2000,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(fmt=st.sampled_from(sorted(SEEDS)), steps=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_live_files_read_cleanly_or_fail_naming_the_file(
    fleet: Path, fmt: str, steps: list[tuple[str, int, object]]
) -> None:
    """Any mutation of a live file reads as a document that can be compared and stored, or fails with a
    DiscoveryError naming the file (and, for a syntax error, quoting nothing of it); within 10 s."""
    adapter = FileAdapter(FileSettings(roots=[fleet / "live"]))
    started = time.monotonic()
    with mutated(fleet, fmt, steps) as path:
        _read_one(adapter, fleet, fmt, path)
    assert time.monotonic() - started < 10


def _read_one(adapter: FileAdapter, fleet: Path, fmt: str, path: Path) -> None:
    try:
        document = adapter.discover(_target(fleet, fmt)).document
    except DiscoveryError as exc:
        message = str(exc)
        assert str(path) in message
        if "line " in message:
            assert SECRET not in message
    else:
        assert isinstance(document, dict)
        canonical_json(document).encode("utf-8")  # storable in history as it is
        compare({"db": {"port": 1}}, document)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(fmt=st.sampled_from(sorted(SEEDS)), steps=st.lists(mutation, min_size=1, max_size=3))
def test_plan_over_a_mutated_live_file_exits_cleanly(
    fleet: Path, fmt: str, steps: list[tuple[str, int, object]]
) -> None:
    """`reconciler plan` over the fleet with one mutated file exits 0, 1 or 2 without a traceback, within 10 s;
    a target that fails names its file, and the other targets are still planned."""
    started = time.monotonic()
    with mutated(fleet, fmt, steps) as path:
        result = CliRunner().invoke(app, ["plan", "--format", "json"], env=_env(fleet))
    assert time.monotonic() - started < 10
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 1, 2), result.output
    assert "Traceback" not in result.output
    report = json.loads(result.stdout)
    by_target = {t["target"]: t for t in report["targets"]}
    assert set(by_target) == {f"t-{name}" for name in SEEDS}
    failed = by_target[f"t-{fmt}"]
    if failed["status"] == "failed":
        assert str(path) in failed["error"]
    for name, seed in SEEDS.items():
        if name != fmt:
            assert by_target[f"t-{name}"]["status"] != "failed"
            assert (fleet / "live" / f"c.{name}").read_text() == seed
