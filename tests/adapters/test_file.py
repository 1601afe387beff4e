from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.adapters.file import FileAdapter
from reconciler.desired.loader import load
from reconciler.domain.manifest import Target
from reconciler.domain.paths import MISSING
from reconciler.errors import ConfigurationError, ConflictError, DiscoveryError
from reconciler.ports import Change, ChangeResult
from reconciler.settings import FileSettings


def make_target(tmp_path: Path, live: str, text: str, fmt: str = "yaml", extra: str = "") -> Target:
    (tmp_path / "live").mkdir(exist_ok=True)
    (tmp_path / "live" / live).write_text(text)
    desired = tmp_path / "desired"
    desired.mkdir(exist_ok=True)
    (desired / "t.yaml").write_text(
        f"kind: Target\nmetadata: {{name: t}}\nspec:\n  source: {{adapter: file, path: ../live/{live}, format: {fmt}}}\n"
        f"  desired: {{}}\n{extra}"
    )
    return load(desired).targets["t"]


@pytest.fixture
def adapter(tmp_path: Path) -> FileAdapter:
    return FileAdapter(FileSettings(roots=[tmp_path / "live"]))


def test_discover_reads_relative_to_the_manifest(tmp_path: Path, adapter: FileAdapter) -> None:
    """A relative path is resolved against the manifest's folder; the fingerprint follows the bytes."""
    target = make_target(tmp_path, "c.yaml", "a: 1\n")
    first = adapter.discover(target)
    assert first.document == {"a": 1}
    assert first.location == str((tmp_path / "live" / "c.yaml").resolve())
    (tmp_path / "live" / "c.yaml").write_text("a: 1\n# comment\n")
    assert adapter.discover(target).fingerprint != first.fingerprint


def test_paths_outside_the_roots_are_refused(tmp_path: Path) -> None:
    """Reading a file outside the roots is refused, also through a symlink; no roots refuses everything."""
    target = make_target(tmp_path, "c.yaml", "a: 1\n")
    with pytest.raises(ConfigurationError, match="outside the file adapter's roots: none configured"):
        FileAdapter(FileSettings()).discover(target)
    (tmp_path / "secret.yaml").write_text("password: x\n")
    (tmp_path / "live" / "link.yaml").symlink_to(tmp_path / "secret.yaml")
    linked = make_target(tmp_path, "c2.yaml", "a: 1\n")
    object.__setattr__(linked.spec.source, "__pydantic_extra__", {"path": "../live/link.yaml", "format": "yaml"})
    with pytest.raises(ConfigurationError, match="outside the file adapter's roots"):
        FileAdapter(FileSettings(roots=[tmp_path / "live"])).discover(linked)


def test_a_live_file_that_does_not_parse(tmp_path: Path, adapter: FileAdapter) -> None:
    """A broken live file is a DiscoveryError naming the file and where it broke, when it is parsed."""
    target = make_target(tmp_path, "c.yaml", "a: [1\n")
    observed = adapter.discover(target)  # reading and fingerprinting need no parse
    with pytest.raises(DiscoveryError, match=r"c.yaml: does not parse as yaml: line 2"):
        _ = observed.document
    (tmp_path / "live" / "c.yaml").unlink()
    with pytest.raises(DiscoveryError, match="file does not exist"):
        adapter.discover(target)


def test_staged_write_is_atomic_and_keeps_the_mode(tmp_path: Path, adapter: FileAdapter) -> None:
    """Stage writes a temporary file beside the original; commit renames it; the mode survives."""
    target = make_target(tmp_path, "c.yaml", "a: 1\nb: x\n")
    live = tmp_path / "live" / "c.yaml"
    os.chmod(live, 0o640)
    staged = adapter.stage(
        target, [Change(("a",), 1, 2), Change(("b",), "x", MISSING), Change(("c", "d"), MISSING, True)], dry_run=False
    )
    assert staged.results == [ChangeResult.WRITE] * 3
    assert live.read_text() == "a: 1\nb: x\n"  # nothing changed before commit
    assert len(list(live.parent.glob(".c.yaml.*.reconciler-tmp"))) == 1
    adapter.commit(staged)
    assert adapter.discover(target).document == {"a": 2, "c": {"d": True}}
    assert stat.S_IMODE(live.stat().st_mode) == 0o640
    assert list(live.parent.glob("*.reconciler-tmp")) == []


def test_dry_run_writes_nothing_at_all(tmp_path: Path, adapter: FileAdapter) -> None:
    """Dry-run stages in memory only: no temporary file, and commit is never reached."""
    target = make_target(tmp_path, "c.yaml", "a: 1\n")
    staged = adapter.stage(target, [Change(("a",), 1, 2)], dry_run=True)
    assert staged.results == [ChangeResult.WRITE] and staged.messages == ["dry run: would write"]
    assert list((tmp_path / "live").iterdir()) == [tmp_path / "live" / "c.yaml"]


def test_compare_and_swap_per_change(tmp_path: Path, adapter: FileAdapter) -> None:
    """Live equal to after is a no-op; live equal to neither before nor after is a conflict, not written."""
    target = make_target(tmp_path, "c.yaml", "a: 2\nb: 7\n")
    staged = adapter.stage(target, [Change(("a",), 1, 2), Change(("b",), 1, 3)], dry_run=False)
    assert staged.results == [ChangeResult.NOOP, ChangeResult.CONFLICT]
    assert not staged.writes and staged.handle.temp is None


def test_commit_refuses_when_the_file_changed_after_staging(tmp_path: Path, adapter: FileAdapter) -> None:
    """Another writer between stage and commit makes commit a conflict; the other writer's content stays."""
    target = make_target(tmp_path, "c.yaml", "a: 1\n")
    staged = adapter.stage(target, [Change(("a",), 1, 2)], dry_run=False)
    (tmp_path / "live" / "c.yaml").write_text("a: 5\n")
    with pytest.raises(ConflictError, match="changed by another writer"):
        adapter.commit(staged)
    assert (tmp_path / "live" / "c.yaml").read_text() == "a: 5\n"
    assert list((tmp_path / "live").glob("*.reconciler-tmp")) == []


@pytest.mark.parametrize("how", ["by rename", "in place"])
def test_a_writer_between_the_check_and_the_swap_is_not_overwritten(
    tmp_path: Path, adapter: FileAdapter, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Another writer who changes the file after commit has checked it, before the file is replaced, gets a
    ConflictError for us, not a lost write: their content is live, and no staged file is left."""
    target = make_target(tmp_path, "c.yaml", "a: 1\n")
    live = tmp_path / "live" / "c.yaml"
    staged = adapter.stage(target, [Change(("a",), 1, 2)], dry_run=False)
    read_bytes = Path.read_bytes

    def checked_then_raced(self: Path) -> bytes:
        data = read_bytes(self)
        if self == live:  # commit's check of the live file: the other writer acts right after it
            monkeypatch.setattr(Path, "read_bytes", read_bytes)
            if how == "in place":
                live.write_text("a: 5\n")
            else:
                (tmp_path / "live" / "theirs").write_text("a: 5\n")
                os.rename(tmp_path / "live" / "theirs", live)
        return data

    monkeypatch.setattr(Path, "read_bytes", checked_then_raced)
    with pytest.raises(ConflictError, match="changed by another writer"):
        adapter.commit(staged)
    assert live.read_text() == "a: 5\n"
    assert sorted(p.name for p in live.parent.iterdir()) == ["c.yaml"]


@pytest.mark.parametrize(
    ("name", "fmt", "text", "expected"),
    [
        ("c.json", "json", '{"a": {"b": 1}}', {"a": {"b": 1}}),
        ("c.toml", "toml", "[a]\nb = 1\n", {"a": {"b": 1}}),
        ("c.ini", "ini", "[a]\nb = 1\n", {"a": {"b": "1"}}),
        ("c.env", "env", "B=1\n", {"B": "1"}),
    ],
)
def test_every_format_reads_and_writes(
    tmp_path: Path, adapter: FileAdapter, name: str, fmt: str, text: str, expected: dict[str, object]
) -> None:
    """Each format is discovered, then written through stage and commit, and reads back as written."""
    target = make_target(tmp_path, name, text, fmt)
    assert adapter.discover(target).document == expected
    path = ("a", "b") if fmt != "env" else ("B",)
    new = "2" if fmt in ("ini", "env") else 2
    old = "1" if fmt in ("ini", "env") else 1
    staged = adapter.stage(target, [Change(path, old, new)], dry_run=False)
    adapter.commit(staged)
    doc = adapter.discover(target).document
    assert (doc["a"]["b"] if fmt != "env" else doc["B"]) == new


def test_normalize_for_strings_only_formats(tmp_path: Path, adapter: FileAdapter) -> None:
    """Desired values for .env become strings; a nested key in .env is a clear manifest error."""
    target = make_target(tmp_path, "c.env", "A=1\n", "env")
    assert adapter.normalize(target, {"A": 30, "B": True}) == {"A": "30", "B": "true"}
    with pytest.raises(ConfigurationError, match=r"t.yaml: document 1 \(t\): spec.desired.A: a .env file holds no"):
        adapter.normalize(target, {"A": {"x": 1}})


def test_normalize_looks_at_no_file(tmp_path: Path, adapter: FileAdapter, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rendering desired values needs the format only: normalize resolves no path and stats no file (each pass
    calls it after its read, which found the file), and still refuses an unknown format."""
    target = make_target(tmp_path, "c.env", "A=1\n", "env")
    odd = make_target(tmp_path, "c.conf", "A=1\n", "conf")
    monkeypatch.setattr(os, "stat", lambda *a, **k: pytest.fail("normalize looked at the file"))
    monkeypatch.setattr(os.path, "realpath", lambda *a, **k: pytest.fail("normalize resolved the path"))
    assert adapter.normalize(target, {"A": 30}) == {"A": "30"}
    with pytest.raises(ConfigurationError, match=r"spec.source.format: unknown format 'conf'"):
        adapter.normalize(odd, {"A": 30})


def test_unknown_source_options_are_refused(tmp_path: Path, adapter: FileAdapter) -> None:
    """A misspelt option of the file adapter is named, not ignored."""
    target = make_target(tmp_path, "c.yaml", "a: 1\n")
    object.__setattr__(target.spec.source, "__pydantic_extra__", {"path": "../live/c.yaml", "fromat": "yaml"})
    with pytest.raises(ConfigurationError, match=r"spec\.source\.fromat: unknown option"):
        adapter.discover(target)


def test_a_repointed_symlink_is_followed_and_checked_again(tmp_path: Path, adapter: FileAdapter) -> None:
    """A ConfigMap volume swaps a symlink to publish a new version: the new file is read, and a link
    re-pointed outside the roots is refused, though the path was read before."""
    live = tmp_path / "live"
    (live / "v1").mkdir(parents=True, exist_ok=True)
    (live / "v2").mkdir()
    (live / "v1" / "c.yaml").write_text("a: 1\n")
    (live / "v2" / "c.yaml").write_text("a: 2\n")
    (live / "..data").symlink_to(live / "v1")
    target = make_target(tmp_path, "placeholder.yaml", "x: 0\n")
    object.__setattr__(target.spec.source, "__pydantic_extra__", {"path": "../live/..data/c.yaml", "format": "yaml"})
    assert adapter.discover(target).document == {"a": 1}
    assert adapter.discover(target).document == {"a": 1}  # the cached resolution
    swap = live / "..data.tmp"
    swap.symlink_to(live / "v2")
    os.replace(swap, live / "..data")
    assert adapter.discover(target).document == {"a": 2}
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "c.yaml").write_text("secret: 1\n")
    swap.symlink_to(tmp_path / "outside")
    os.replace(swap, live / "..data")
    with pytest.raises(ConfigurationError, match="outside the file adapter's roots"):
        adapter.discover(target)


def test_bulk_fingerprints_match_discover_and_leave_out_what_cannot_be_read(tmp_path: Path) -> None:
    """One bulk read gives each target the fingerprint discover gives it; a missing file or one outside the
    roots is left out, for that target's own pass to report."""
    (tmp_path / "live").mkdir()
    (tmp_path / "live" / "a.yaml").write_text("a: 1\n")
    (tmp_path / "live" / "b.json").write_text('{"b": [1, 2]}')
    (tmp_path / "outside.yaml").write_text("x: 1\n")
    desired = tmp_path / "desired"
    desired.mkdir()
    for name, path in [("a", "a.yaml"), ("b", "b.json"), ("gone", "gone.yaml"), ("out", "../outside.yaml")]:
        (desired / f"{name}.yaml").write_text(
            f"kind: Target\nmetadata: {{name: {name}}}\nspec:\n  source: {{adapter: file, path: ../live/{path}}}\n"
            "  desired: {}\n"
        )
    targets = load(desired).targets
    adapter = FileAdapter(FileSettings(roots=[tmp_path / "live"]))
    seen = adapter.fingerprints(targets)
    assert seen == {n: adapter.discover(targets[n]).fingerprint for n in ("a", "b")}
    (tmp_path / "live" / "a.yaml").write_text("a: 2\n")
    again = adapter.fingerprints(targets)
    assert again["a"] != seen["a"] and again["b"] == seen["b"]


def _within(seconds: float, call: Callable[[], object]) -> object:
    """Run `call` on a daemon thread and return what it returned or raised, failing if it has not finished
    within `seconds` (so that a regression hangs one test, not the suite)."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still blocked after {seconds} s"
    return outcome[0]


def test_a_fifo_at_a_live_path_is_refused_at_once(tmp_path: Path, adapter: FileAdapter) -> None:
    """A FIFO where a live file should be fails its target's read at once, naming the path, instead of
    blocking the worker until something writes to it; the bulk read leaves it out."""
    target = make_target(tmp_path, "c.yaml", "a: 1\n")
    fifo = tmp_path / "live" / "c.yaml"
    fifo.unlink()
    os.mkfifo(fifo)
    error = _within(5, lambda: adapter.discover(target))
    assert isinstance(error, DiscoveryError)
    assert str(fifo) in str(error) and "a FIFO, not a regular file" in str(error)
    assert _within(5, lambda: adapter.fingerprints({"t": target})) == {}


def test_a_directory_or_device_at_a_live_path_is_refused(tmp_path: Path, adapter: FileAdapter) -> None:
    """Directories and devices are not configuration files: each is refused by its kind."""
    target = make_target(tmp_path, "c.yaml", "a: 1\n")
    live = tmp_path / "live" / "c.yaml"
    live.unlink()
    live.mkdir()
    with pytest.raises(DiscoveryError, match="is a directory, not a regular file"):
        adapter.discover(target)
    live.rmdir()
    live.symlink_to("/dev/zero")
    device = FileAdapter(FileSettings(roots=[tmp_path / "live", Path("/dev")]))
    error = _within(5, lambda: device.discover(target))
    assert isinstance(error, DiscoveryError) and "a character device" in str(error)


def test_a_live_file_past_the_size_limit_is_refused(tmp_path: Path) -> None:
    """A live file bigger than RECONCILER_FILE__MAX_BYTES is refused, naming the file and the limit; one at
    the limit is read."""
    target = make_target(tmp_path, "c.yaml", "a: 1\n" + "#" * 95 + "\n")
    small = FileAdapter(FileSettings(roots=[tmp_path / "live"], max_bytes=100))
    with pytest.raises(DiscoveryError, match=r"c\.yaml: 101 bytes, more than RECONCILER_FILE__MAX_BYTES \(100\)"):
        small.discover(target)
    (tmp_path / "live" / "c.yaml").write_text("a: 1\n" + "#" * 94 + "\n")
    assert small.discover(target).document == {"a": 1}


@pytest.mark.parametrize(
    ("fmt", "text", "message"),
    [
        ("ini", "[db]\npassword S3cr3t\n", "line 2"),
        ("yaml", "1: S3cr3t\n", "a key of type int"),
        ("json", '{"password": "\\ud800S3cr3t"}', "/password: not valid Unicode"),
        ("json", '{"a": ' + "[" * 5000 + "]" * 5000 + "}", "nested more than"),
        ("toml", 'password = "S3cr3t' + "\n", "line 1"),
        ("json", '{"S3cr3t": ' + "9" * 5000 + "}", "an integer has more than"),
    ],
)
def test_hostile_live_documents_fail_cleanly_naming_the_file(
    tmp_path: Path, adapter: FileAdapter, fmt: str, text: str, message: str
) -> None:
    """A live document that does not parse, or parses into what cannot be held, is a DiscoveryError naming
    the file and the place, quoting nothing the file holds."""
    target = make_target(tmp_path, f"c.{fmt}", text, fmt)
    with pytest.raises(DiscoveryError) as caught:
        adapter.discover(target).document  # noqa: B018 - parsing is what raises
    assert str(tmp_path / "live" / f"c.{fmt}") in str(caught.value)
    assert message in str(caught.value)
    assert "S3cr3t" not in str(caught.value)
