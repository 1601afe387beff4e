"""The file adapter's bulk fingerprints keep a file's hash while its identity stands (RECONCILER_FILE__TRUST_STAT):
an unchanged file is stat()ed, not read; any change a stat can show is read, and so is a file changed within
RACY_NS of its last read, whose identity may not show a second write in the same tick of the clock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.adapters import regular
from reconciler.adapters.file import FileAdapter
from reconciler.desired.loader import load
from reconciler.domain import filestat
from reconciler.settings import FileSettings
from tests.adapters.test_file import make_target


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths the adapter opens and reads, in order."""
    seen: list[str] = []
    real = regular.read

    def counting(path: Path, max_bytes: int) -> tuple[bytes, os.stat_result]:
        seen.append(str(path))
        return real(path, max_bytes)

    monkeypatch.setattr(regular, "read", counting)
    return seen


def test_an_unchanged_file_is_not_read_again_and_any_change_is(
    tmp_path: Path, reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    target = make_target(tmp_path, "c.yaml", "a: 1\n")
    live = tmp_path / "live" / "c.yaml"
    adapter = FileAdapter(FileSettings(roots=[tmp_path / "live"]))
    first = adapter.fingerprints({"t": target})
    assert first == {"t": adapter.discover(target).fingerprint}
    reads.clear()
    # Just written: racy, so read again each time.
    assert adapter.fingerprints({"t": target}) == first and len(reads) == 1
    monkeypatch.setattr(filestat, "RACY_NS", 0)  # from here on the file is old enough
    adapter.fingerprints({"t": target})
    reads.clear()
    assert adapter.fingerprints({"t": target}) == first and adapter.fingerprints({"t": target}) == first
    assert reads == []
    live.write_text("a: 2\n")  # same size: the times (and the change time at least) move
    changed = adapter.fingerprints({"t": target})
    assert changed != first and reads == [str(live.resolve())]
    replacement = tmp_path / "live" / "new.yaml"
    replacement.write_text("a: 3\n")
    os.utime(replacement, ns=(live.stat().st_atime_ns, live.stat().st_mtime_ns))
    replacement.replace(live)  # another inode, same size and modification time
    assert adapter.fingerprints({"t": target}) not in (first, changed)


def test_a_second_write_in_the_same_clock_tick_is_seen(
    tmp_path: Path, reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a clock so coarse that two writes leave the identity alone, a file read within RACY_NS of its change
    is not trusted: the second write is read at the next look."""
    monkeypatch.setattr(filestat, "identity", lambda st: (st.st_dev, st.st_ino, st.st_size))  # a coarse clock
    target = make_target(tmp_path, "c.yaml", "a: 1\n")
    adapter = FileAdapter(FileSettings(roots=[tmp_path / "live"]))
    first = adapter.fingerprints({"t": target})
    (tmp_path / "live" / "c.yaml").write_text("a: 2\n")
    assert adapter.fingerprints({"t": target}) != first


def test_trust_stat_off_reads_every_time(tmp_path: Path, reads: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filestat, "RACY_NS", 0)
    target = make_target(tmp_path, "c.yaml", "a: 1\n")
    adapter = FileAdapter(FileSettings(roots=[tmp_path / "live"], trust_stat=False))
    for _ in range(3):
        adapter.fingerprints({"t": target})
    assert len(reads) == 3


def test_a_file_that_disappears_or_turns_into_a_fifo_is_left_to_its_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(filestat, "RACY_NS", 0)
    target = make_target(tmp_path, "c.yaml", "a: 1\n")
    live = tmp_path / "live" / "c.yaml"
    adapter = FileAdapter(FileSettings(roots=[tmp_path / "live"]))
    assert adapter.fingerprints({"t": target})
    live.unlink()
    assert adapter.fingerprints({"t": target}) == {}
    os.mkfifo(live)
    assert adapter.fingerprints({"t": target}) == {}


def test_a_trusted_file_costs_one_stat_and_a_repointed_symlink_is_located_again(
    tmp_path: Path, reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path is stat()ed as the target gives it, following its symlinks: a ConfigMap-style `..data` swap
    to another file in the roots is read; one to a file outside the roots is refused, as a first read is."""
    monkeypatch.setattr(filestat, "RACY_NS", 0)
    live = tmp_path / "live"
    live.mkdir()
    (live / "v1.yaml").write_text("a: 1\n")
    (live / "v2.yaml").write_text("a: 2\n")
    outside = tmp_path / "outside.yaml"
    outside.write_text("a: 3\n")
    (live / "c.yaml").symlink_to("v1.yaml")
    make_target(tmp_path, "v1.yaml", "a: 1\n")
    desired = tmp_path / "desired" / "t.yaml"
    desired.write_text(desired.read_text().replace("../live/v1.yaml", "../live/c.yaml"))
    target = load(tmp_path / "desired").targets["t"]
    adapter = FileAdapter(FileSettings(roots=[live]))
    first = adapter.fingerprints({"t": target})
    stats: list[str] = []
    real_stat = os.stat

    def counting(path: object, *args: object, **kwargs: object) -> os.stat_result:
        stats.append(str(path))
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    reads.clear()
    monkeypatch.setattr(os, "stat", counting)
    assert adapter.fingerprints({"t": target}) == first
    assert reads == [] and len(stats) == 1
    monkeypatch.setattr(os, "stat", real_stat)
    (live / "c.yaml").unlink()
    (live / "c.yaml").symlink_to("v2.yaml")
    second = adapter.fingerprints({"t": target})
    assert second["t"] != first["t"] and reads == [str(live / "v2.yaml")]
    (live / "c.yaml").unlink()
    (live / "c.yaml").symlink_to(outside)
    assert adapter.fingerprints({"t": target}) == {}  # outside the roots: its own pass reports it
    assert reads == [str(live / "v2.yaml")]


def test_a_pass_s_own_read_lets_the_next_bulk_read_trust_the_file(
    tmp_path: Path, reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """discover() keeps the hash of what it read as the bulk read does: the first bulk read after a target's
    first pass stat()s its file instead of reading it again; a change after that is read."""
    monkeypatch.setattr(filestat, "RACY_NS", 0)
    target = make_target(tmp_path, "c.yaml", "a: 1\n")
    adapter = FileAdapter(FileSettings(roots=[tmp_path / "live"]))
    observed = adapter.discover(target)
    assert len(reads) == 1
    assert adapter.fingerprints({"t": target}) == {"t": observed.fingerprint} and len(reads) == 1
    (tmp_path / "live" / "c.yaml").write_text("a: 2\n")
    assert adapter.fingerprints({"t": target}) != {"t": observed.fingerprint} and len(reads) == 2
