from __future__ import annotations

import ctypes
import errno
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.adapters import atomic
from reconciler.adapters.file import FileAdapter
from reconciler.errors import ConflictError
from reconciler.observe import logging as logs
from reconciler.ports import Change
from reconciler.settings import FileSettings
from tests.adapters.test_file import make_target


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A live file `c.yaml` holding `old`, and a staged file beside it holding `new`."""
    (tmp_path / "c.yaml").write_bytes(b"old")
    (tmp_path / ".c.yaml.s1.reconciler-tmp").write_bytes(b"new")
    return tmp_path


@pytest.fixture
def no_exchange(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A system without renameat2, whose fallback has not been announced yet."""
    monkeypatch.setattr(atomic, "_renameat2", None)
    monkeypatch.setattr(atomic, "_warned", set())
    yield


def writes_before_exchanges(monkeypatch: pytest.MonkeyPatch, writes: dict[int, Callable[[], None]]) -> None:
    """Run `writes[n]` (another writer) right before the n-th exchange (from 1), then exchange for real."""
    real = atomic.exchange
    calls = [0]

    def exchange(a: Path, b: Path) -> bool:
        calls[0] += 1
        if calls[0] in writes:
            writes[calls[0]]()
        return real(a, b)

    monkeypatch.setattr(atomic, "exchange", exchange)


def rename_in(live: Path, data: bytes) -> Callable[[], None]:
    """A writer who replaces `live` by renaming a file of its own over it."""

    def write() -> None:
        theirs = live.with_name("theirs")
        theirs.write_bytes(data)
        os.rename(theirs, live)

    return write


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_exchange_swaps_two_files(folder: Path) -> None:
    """Both files survive an exchange, each under the other's name."""
    assert atomic.exchange(folder / ".c.yaml.s1.reconciler-tmp", folder / "c.yaml")
    assert (folder / "c.yaml").read_bytes() == b"new"
    assert (folder / ".c.yaml.s1.reconciler-tmp").read_bytes() == b"old"


def test_swap_in_when_nobody_else_writes(folder: Path) -> None:
    """The staged content goes live and the replaced original is removed."""
    assert atomic.swap_in(folder / ".c.yaml.s1.reconciler-tmp", folder / "c.yaml", b"old")
    assert (folder / "c.yaml").read_bytes() == b"new"
    assert names(folder) == ["c.yaml"]


def test_a_writer_before_the_swap_is_swapped_back(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write just before the exchange is found in what the exchange took out: it is swapped back live."""
    writes_before_exchanges(monkeypatch, {1: rename_in(folder / "c.yaml", b"theirs")})
    with pytest.raises(ConflictError, match=r"swapped back$"):
        atomic.swap_in(folder / ".c.yaml.s1.reconciler-tmp", folder / "c.yaml", b"old")
    assert (folder / "c.yaml").read_bytes() == b"theirs"
    assert names(folder) == ["c.yaml"]


@pytest.mark.parametrize("how", ["by rename", "in place"])
def test_a_second_writer_between_swap_and_swap_back_wins(
    folder: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """A writer who replaces (or rewrites in place) our content while it is briefly live, before the swap
    back, is the latest write: theirs ends up live, not the first writer's and not ours."""
    live = folder / "c.yaml"
    second = rename_in(live, b"second") if how == "by rename" else lambda: live.write_bytes(b"second")
    writes_before_exchanges(monkeypatch, {1: rename_in(live, b"first"), 2: second})
    with pytest.raises(ConflictError, match=r"swapped back$"):
        atomic.swap_in(folder / ".c.yaml.s1.reconciler-tmp", live, b"old")
    assert live.read_bytes() == b"second"
    assert names(folder) == ["c.yaml"]


def test_writers_that_never_stop_leave_the_latest_write_kept(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When other writers replace the file before every swap back, the content the last swap took out (the
    latest write) is kept aside under a name that recovery does not sweep, and the conflict says where."""
    live = folder / "c.yaml"
    writes_before_exchanges(monkeypatch, {n: rename_in(live, f"w{n}".encode()) for n in range(1, 20)})
    with pytest.raises(ConflictError, match=r"kept in .*\.c\.yaml\.s1\.reconciler-kept"):
        atomic.swap_in(folder / ".c.yaml.s1.reconciler-tmp", live, b"old")
    last = atomic._MAX_SWAPS + 1  # the first exchange, then one write before each swap back
    assert (folder / ".c.yaml.s1.reconciler-kept").read_bytes() == f"w{last}".encode()
    assert names(folder) == [".c.yaml.s1.reconciler-kept", "c.yaml"]


def test_a_missing_live_file_raises_before_anything_is_swapped(folder: Path) -> None:
    """An exchange with a name that is gone fails as an OSError, and the staged file is still there."""
    (folder / "c.yaml").unlink()
    with pytest.raises(FileNotFoundError):
        atomic.swap_in(folder / ".c.yaml.s1.reconciler-tmp", folder / "c.yaml", b"old")
    assert names(folder) == [".c.yaml.s1.reconciler-tmp"]


def test_a_filesystem_without_exchange_is_reported_unsupported(
    folder: Path, monkeypatch: pytest.MonkeyPatch, no_exchange: None
) -> None:
    """EINVAL (the filesystem cannot exchange) means: not supported, nothing touched."""

    def einval(*_args: object) -> int:
        ctypes.set_errno(errno.EINVAL)
        return -1

    monkeypatch.setattr(atomic, "_renameat2", einval)
    assert not atomic.swap_in(folder / ".c.yaml.s1.reconciler-tmp", folder / "c.yaml", b"old")
    assert (folder / "c.yaml").read_bytes() == b"old"
    assert names(folder) == [".c.yaml.s1.reconciler-tmp", "c.yaml"]


def test_without_exchange_commit_falls_back_and_says_so_once(
    tmp_path: Path, no_exchange: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without renameat2 the file adapter still commits (check, then rename) and still refuses a change made
    before its check; that the fallback is in force is logged once per process, not per commit."""
    logs.configure("info", "json")
    adapter = FileAdapter(FileSettings(roots=[tmp_path / "live"]))
    target = make_target(tmp_path, "c.yaml", "a: 1\n")
    live = tmp_path / "live" / "c.yaml"
    adapter.commit(adapter.stage(target, [Change(("a",), 1, 2)], dry_run=False))
    adapter.commit(adapter.stage(target, [Change(("a",), 2, 3)], dry_run=False))
    assert live.read_text() == "a: 3\n"
    staged = adapter.stage(target, [Change(("a",), 3, 4)], dry_run=False)
    live.write_text("a: 9\n")
    with pytest.raises(ConflictError):
        adapter.commit(staged)
    assert live.read_text() == "a: 9\n"
    assert names(live.parent) == ["c.yaml"]
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    fallbacks = [e for e in events if e["event"] == "file commits fall back to check-then-rename"]
    assert len(fallbacks) == 1 and "renameat2 is not available" in fallbacks[0]["why"]


def test_sweep_removes_only_old_staged_files_of_that_file(tmp_path: Path) -> None:
    """Sweep removes the target's own staged files changed before the cut-off, and nothing else: not
    another file's, not content kept aside, not a symlink, not a name with more in it, not a fresh one."""
    (tmp_path / "x.yaml").write_text("a: 1\n")
    left = [".x.yaml.abc.reconciler-tmp", ".x.yaml.k_9Qz0.reconciler-tmp"]
    kept = [
        ".y.yaml.abc.reconciler-tmp",
        ".x.yaml.abc.reconciler-kept",
        ".x.yaml.a.b.reconciler-tmp",
        ".x.yaml..reconciler-tmp",
        "x.yaml.abc.reconciler-tmp",
        "notes.txt",
    ]
    for name in left + kept:
        (tmp_path / name).write_text("x")
    (tmp_path / ".x.yaml.lnk.reconciler-tmp").symlink_to(tmp_path / "notes.txt")
    cutoff = time.time()
    time.sleep(0.05)  # file times come from a coarse clock: keep the fresh one clearly after the cut-off
    (tmp_path / ".x.yaml.fresh.reconciler-tmp").write_text("in progress")
    removed = atomic.sweep(tmp_path / "x.yaml", changed_before_s=cutoff)
    assert sorted(p.name for p in removed) == sorted(left)
    expected = [*kept, ".x.yaml.lnk.reconciler-tmp", ".x.yaml.fresh.reconciler-tmp", "x.yaml"]
    assert names(tmp_path) == sorted(expected)
