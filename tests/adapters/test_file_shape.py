"""Live files keep their shape: a fix changes the values it fixes and nothing else, and a rollback puts back
the original bytes where nothing else changed meanwhile. Whole files are compared byte for byte."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.adapters.file import FileAdapter
from reconciler.domain.manifest import Target
from reconciler.domain.paths import MISSING
from reconciler.ports import Change
from reconciler.settings import FileSettings
from tests.adapters.test_file import make_target


@dataclass(frozen=True)
class Case:
    name: str
    before: str
    changes: list[Change]
    after: str


CASES = [
    Case(
        "c.yaml",
        "# payments service\n"
        "server:\n"
        "  port: 8080   # the public port\n"
        '  host: "0.0.0.0"\n'
        "  name: 'payments'\n"
        "database:\n"
        "  pool: 10\n"
        "  timeout: 30  # raised in INC-4711\n"
        "  hosts:\n"
        "    - db1\n"
        "    - db2\n"
        "\n"
        "features: {beta: true, gamma: false}\n"
        "log_level: INFO\n",
        [
            Change(("server", "port"), 8080, 9090),
            Change(("server", "host"), "0.0.0.0", "127.0.0.1"),
            Change(("server", "name"), "payments", "pay"),
            Change(("database", "timeout"), 30, MISSING),
            Change(("database", "hosts"), ["db1", "db2"], ["db1", "db3"]),
            Change(("features", "beta"), True, False),
            Change(("cache",), MISSING, {"ttl": 5}),
        ],
        "# payments service\n"
        "server:\n"
        "  port: 9090   # the public port\n"
        '  host: "127.0.0.1"\n'
        "  name: 'pay'\n"
        "database:\n"
        "  pool: 10\n"
        "  hosts:\n"
        "    - db1\n"
        "    - db3\n"
        "\n"
        "features: {beta: false, gamma: false}\n"
        "log_level: INFO\n"
        "cache:\n"
        "  ttl: 5\n",
    ),
    Case(
        "c.toml",
        "# payments\ntitle = 'payments'   # shown in the UI\n\n[server]\nport = 8080  # public\n"
        'host = "0.0.0.0"\n\n[database]\npool = 10\ntimeout = 30\n',
        [
            Change(("title",), "payments", "pay"),
            Change(("server", "port"), 8080, 9090),
            Change(("database", "timeout"), 30, MISSING),
            Change(("database", "ssl"), MISSING, True),
        ],
        "# payments\ntitle = 'pay'   # shown in the UI\n\n[server]\nport = 9090  # public\n"
        'host = "0.0.0.0"\n\n[database]\npool = 10\nssl = true\n',
    ),
    Case(
        ".env",
        "# payments\nexport DB_HOST=db1   # primary\nDB_USER='app'\nGREETING=\"hello world\"\nLOG_LEVEL=INFO\n",
        [
            Change(("DB_HOST",), "db1", "db2"),
            Change(("DB_USER",), "app", "payments"),
            Change(("GREETING",), "hello world", "hi there"),
            Change(("LOG_LEVEL",), "INFO", MISSING),
            Change(("NEW",), MISSING, "x"),
        ],
        "# payments\nexport DB_HOST=db2   # primary\nDB_USER='payments'\nGREETING=\"hi there\"\nNEW=x\n",
    ),
    Case(
        "c.ini",
        "; payments\n[server]\nport = 8080\nhost=0.0.0.0\n\n# the pool\n[database]\npool: 10\ntimeout: 30\n",
        [
            Change(("server", "port"), "8080", "9090"),
            Change(("server", "host"), "0.0.0.0", "127.0.0.1"),
            Change(("database", "timeout"), "30", MISSING),
            Change(("database", "ssl"), MISSING, "true"),
        ],
        "; payments\n[server]\nport = 9090\nhost=127.0.0.1\n\n# the pool\n[database]\npool: 10\nssl: true\n",
    ),
    Case(
        "c.json",
        '{\n    "server": {\n        "port": 8080,\n        "host": "0.0.0.0"\n    },\n    "log": "INFO"\n}\n',
        [Change(("server", "port"), 8080, 9090), Change(("log",), "INFO", MISSING)],
        '{\n    "server": {\n        "port": 9090,\n        "host": "0.0.0.0"\n    }\n}\n',
    ),
]


def reverse(changes: list[Change]) -> list[Change]:
    """What a rollback stages: each change's after back to its before, newest first."""
    return [Change(c.path, c.after, c.before) for c in reversed(changes)]


def write(adapter: FileAdapter, target: Target, changes: list[Change]) -> None:
    staged = adapter.stage(target, changes, dry_run=False)
    assert staged.writes
    adapter.commit(staged)


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    return request.param  # type: ignore[no-any-return]


def setup(tmp_path: Path, case: Case, undo: Path | None = None) -> tuple[FileAdapter, Target, Path]:
    target = make_target(tmp_path, case.name, case.before, fmt=FORMATS[case.name])
    return FileAdapter(FileSettings(roots=[tmp_path / "live"], undo_dir=undo)), target, tmp_path / "live" / case.name


FORMATS = {"c.yaml": "yaml", "c.toml": "toml", ".env": "env", "c.ini": "ini", "c.json": "json"}


def test_a_fix_changes_only_its_values_and_a_rollback_restores_the_bytes(tmp_path: Path, case: Case) -> None:
    """Fix: comments, order, quoting and spacing stay; only the fixed values differ. Rollback in the same
    process: the original file, byte for byte (a deleted key is back in its place)."""
    adapter, target, live = setup(tmp_path, case)
    write(adapter, target, case.changes)
    assert live.read_bytes() == case.after.encode()
    write(adapter, target, reverse(case.changes))
    assert live.read_bytes() == case.before.encode()


def test_a_rollback_from_another_process_restores_the_bytes(tmp_path: Path, case: Case) -> None:
    """With RECONCILER_FILE__UNDO_DIR, a rollback by another adapter (the CLI's process) restores the bytes."""
    undo = tmp_path / "undo"
    writer, target, live = setup(tmp_path, case, undo)
    write(writer, target, case.changes)
    records = list(undo.iterdir())
    assert len(records) == 1 and records[0].stat().st_mode & 0o777 == 0o600
    reader = FileAdapter(FileSettings(roots=[tmp_path / "live"], undo_dir=undo))
    write(reader, target, reverse(case.changes))
    assert live.read_bytes() == case.before.encode()


def test_value_changes_reverse_exactly_without_an_undo_record(tmp_path: Path, case: Case) -> None:
    """Changed values are edited in their own style, so undoing them restores the bytes even with no record."""
    values = [c for c in case.changes if c.before is not MISSING and c.after is not MISSING]
    adapter, target, live = setup(tmp_path, case)
    write(adapter, target, values)
    write(FileAdapter(FileSettings(roots=[tmp_path / "live"])), target, reverse(values))
    assert live.read_bytes() == case.before.encode()


def test_a_rollback_after_someone_else_edited_keeps_their_edit(tmp_path: Path) -> None:
    """When the file changed since the fix, rollback does not put old bytes back: it edits the values only,
    and the other writer's line stays."""
    case = CASES[0]
    adapter, target, live = setup(tmp_path, case)
    write(adapter, target, case.changes)
    edited = live.read_text().replace("log_level: INFO\n", "log_level: DEBUG  # bob, debugging\n")
    live.write_text(edited)
    write(adapter, target, reverse(case.changes))
    text = live.read_text()
    assert "log_level: DEBUG  # bob, debugging\n" in text
    assert "  port: 8080   # the public port\n" in text and "  name: 'payments'\n" in text
    assert "cache:" not in text and "  timeout: 30\n" in text


def test_writes_that_touch_a_secret_keep_no_undo_record(tmp_path: Path) -> None:
    """A change at or above a secret path leaves nothing on disk: the undo log holds no secret."""
    undo = tmp_path / "undo"
    text = "db:\n  user: app\n  password: hunter2\n"
    target = make_target(tmp_path, "c.yaml", text, extra='  secrets: ["/db/password"]\n')
    adapter = FileAdapter(FileSettings(roots=[tmp_path / "live"], undo_dir=undo))
    write(adapter, target, [Change(("db", "password"), "hunter2", "s3cret")])
    assert not undo.exists() or list(undo.iterdir()) == []
    write(adapter, target, [Change(("db", "user"), "app", "payments")])
    (record,) = undo.iterdir()
    assert "s3cret" not in record.read_text() and json.loads(record.read_text())["patch"]
    write(adapter, target, [Change(("db",), {"user": "payments", "password": "s3cret"}, {"user": "x"})])
    assert list(undo.iterdir()) == []


def test_yaml_anchors_go_through_round_trip_editing(tmp_path: Path) -> None:
    """A value under a merge key cannot be spliced; round-trip editing still keeps comments and order."""
    text = "base: &base\n  pool: 10  # default pool\n# prod\nprod:\n  <<: *base\n  timeout: 30\n"
    adapter, target, live = setup(tmp_path, Case("c.yaml", text, [], ""))
    write(adapter, target, [Change(("prod", "timeout"), 30, 60)])
    assert live.read_text() == "base: &base\n  pool: 10  # default pool\n# prod\nprod:\n  <<: *base\n  timeout: 60\n"


@pytest.mark.parametrize(
    ("name", "text", "change", "expected"),
    [
        (
            "c.yaml",
            "a: |\n  one\n  two\n\nb: 1\n",
            Change(("a",), "one\ntwo\n", "one\nthree\n"),
            "a: |\n  one\n  three\n\nb: 1\n",
        ),
        ("c.yaml", "a: 'x'\nb: 1", Change(("a",), "x", "it's"), "a: 'it''s'\nb: 1"),
        ("c.yaml", "a:\n- 1\n- 2\nb: 1\n", Change(("a",), [1, 2], [3]), "a:\n- 3\nb: 1\n"),
        (".env", "A=1\r\nB=2", Change(("B",), "2", "3"), "A=1\r\nB=3"),
        ("c.ini", "[s]\nk = one\n    two\nz = 1\n", Change(("s", "k"), "one\ntwo", "1"), "[s]\nk = 1\nz = 1\n"),
    ],
)
def test_edge_shapes(tmp_path: Path, name: str, text: str, change: Change, expected: str) -> None:
    """Block scalars keep their blank lines, quotes escape in their own style, a missing final newline and
    CRLF endings stay, an INI continuation is replaced with its value."""
    adapter, target, live = setup(tmp_path, Case(name, text, [], ""))
    write(adapter, target, [change])
    assert live.read_bytes() == expected.encode()
