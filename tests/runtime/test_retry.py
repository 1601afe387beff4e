from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from reconciler.errors import ConflictError, DiscoveryError
from reconciler.ports import Capabilities, Staged
from reconciler.runtime.retry import RetryingAdapter


class Flaky:
    """Fails its first `failures` calls of each kind with the given error."""

    capabilities = Capabilities(read=True, write=True)

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls: dict[str, int] = {}

    def _maybe_fail(self, what: str) -> None:
        self.calls[what] = self.calls.get(what, 0) + 1
        if self.calls[what] <= self.failures:
            raise self.error

    def discover(self, target: Any) -> str:
        self._maybe_fail("discover")
        return "observed"

    def normalize(self, target: Any, desired: dict[str, Any]) -> dict[str, Any]:
        return desired

    def stage(self, target: Any, changes: Any, *, dry_run: bool) -> Staged:
        self._maybe_fail("stage")
        return Staged("t", [], [], dry_run)

    def commit(self, staged: Staged) -> None:
        self._maybe_fail("commit")

    def discard(self, staged: Staged) -> None:
        return None


def wrap(inner: Flaky, retried: list[str]) -> RetryingAdapter:
    return RetryingAdapter("flaky", inner, attempts=3, initial_s=0.001, max_s=0.01, on_retry=retried.append)  # type: ignore[arg-type]


def test_temporary_errors_are_retried_up_to_the_limit() -> None:
    """A read that fails twice with a temporary error succeeds on the third try; one that keeps failing
    raises after three tries."""
    retried: list[str] = []
    assert wrap(Flaky(2, DiscoveryError("timeout")), retried).discover(None) == "observed"  # type: ignore[arg-type]
    assert retried == ["flaky", "flaky"]
    always = Flaky(10, DiscoveryError("refused"))
    with pytest.raises(DiscoveryError):
        wrap(always, []).discover(None)  # type: ignore[arg-type]
    assert always.calls["discover"] == 3


def test_permanent_errors_and_commits_are_never_retried() -> None:
    """A conflict is raised at once, and a failing commit is tried exactly once."""
    conflict = Flaky(1, ConflictError("someone else wrote"))
    with pytest.raises(ConflictError):
        wrap(conflict, []).stage(None, [], dry_run=False)  # type: ignore[arg-type]
    assert conflict.calls["stage"] == 1
    flaky_commit = Flaky(1, DiscoveryError("blip"))
    with pytest.raises(DiscoveryError):
        wrap(flaky_commit, []).commit(Staged("t", [], [], False))
    assert flaky_commit.calls["commit"] == 1


class FlakyBulk(Flaky):
    def fingerprints(self, targets: Any) -> dict[str, str]:
        self._maybe_fail("fingerprints")
        return dict.fromkeys(targets, "f")


def test_bulk_reads_are_retried_and_absent_without_the_inner_adapter() -> None:
    """The wrapper passes bulk reads through, retried like discover; over an adapter that cannot read in
    bulk it reads nothing, so each target is read on its own."""
    retried: list[str] = []
    assert wrap(FlakyBulk(1, DiscoveryError("timeout")), retried).fingerprints({"a": None}) == {"a": "f"}  # type: ignore[dict-item]
    assert retried == ["flaky"]
    plain = Flaky(0, DiscoveryError("unused"))
    assert wrap(plain, []).fingerprints({"a": None}) == {}  # type: ignore[dict-item]
    assert plain.calls == {}


class Hanging(Flaky):
    """Blocks every read until released, the way a read of a FIFO or a dead peer does."""

    def __init__(self) -> None:
        super().__init__(0, DiscoveryError("unused"))
        self.release = threading.Event()

    def discover(self, target: Any) -> str:
        self.release.wait(30)
        return "observed"


def test_a_hanging_read_fails_its_target_at_the_call_deadline() -> None:
    """A read that hangs fails with a DiscoveryError at RECONCILER_RETRY__CALL_TIMEOUT_S instead of holding its
    worker; a healthy adapter's reads are unaffected."""
    hanging = Hanging()
    adapter = RetryingAdapter("file", hanging, attempts=3, initial_s=0.001, max_s=0.01, call_timeout_s=0.2)  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises(DiscoveryError, match=r"discover did not return within 0\.2 s"):
        adapter.discover(None)  # type: ignore[arg-type]
    assert time.monotonic() - started < 2
    hanging.release.set()
    healthy = RetryingAdapter("ok", Flaky(0, DiscoveryError("x")), attempts=3, initial_s=0.001, max_s=0.01)  # type: ignore[arg-type]
    assert healthy.discover(None) == "observed"  # type: ignore[arg-type]


class Local(Flaky):
    """A local adapter whose reads say which target, which try and which thread they were made in."""

    capabilities = Capabilities(read=True, local=True)

    def __init__(
        self, failing: dict[str, int] | None = None, hang: threading.Event | None = None, delay: float = 0.0
    ) -> None:
        super().__init__(0, DiscoveryError("unused"))
        self.failing = dict(failing or {})  # target -> how many of its reads fail
        self.hang = hang  # holds every read of "b" until set
        self.delay = delay  # each read takes this long (slow storage)
        self.reads: list[tuple[str, str]] = []  # (target, thread name)

    def discover(self, target: Any) -> Any:
        if self.hang is not None and target.name == "b":
            self.hang.wait(30)
        time.sleep(self.delay)
        self.reads.append((target.name, threading.current_thread().name))
        if self.failing.get(target.name):
            self.failing[target.name] -= 1
            raise DiscoveryError(f"{target.name}: blip")
        return f"observed {target.name} #{len(self.reads)}"


def targets(*names: str) -> dict[str, Any]:
    return {name: SimpleNamespace(name=name) for name in names}


def test_a_local_adapters_reads_are_made_ahead_in_one_hand_off_and_each_taken_once() -> None:
    """Every target read at once, in one read thread's turn, before any pass; each pass of this thread takes
    its target's read (the parity hook told then, not before), once; another thread, a reloaded target (a new
    Target object) and a pass after the batch read again."""
    local, told = Local(), []
    adapter = RetryingAdapter(
        "file",
        local,
        attempts=3,
        initial_s=0.001,
        max_s=0.01,
        on_read=lambda t, o: told.append(o),  # type: ignore[arg-type]
    )
    batch = targets("a", "b", "c")
    with adapter.reading_ahead(batch):
        assert [name for name, _ in local.reads] == ["a", "b", "c"] and told == []
        assert len({thread for _, thread in local.reads}) == 1 and local.reads[0][1].startswith("read-file")
        assert adapter.discover(batch["b"]) == "observed b #2" and told == ["observed b #2"]
        assert adapter.discover(batch["b"]) == "observed b #4"  # taken once: a second pass reads again
        assert adapter.discover(SimpleNamespace(name="a")) == "observed a #5"  # not the target read ahead
        elsewhere: list[Any] = []
        other = threading.Thread(target=lambda: elsewhere.append(adapter.discover(batch["c"])))
        other.start()
        other.join(10)
        assert elsewhere == ["observed c #6"]  # another worker's pass is not this batch's
        assert adapter.discover(batch["c"]) == "observed c #3"
    assert adapter.discover(batch["a"]) == "observed a #7"  # the batch's reads went with it
    assert len(local.reads) == 7
    with adapter.reading_ahead(batch):
        assert adapter.discover(batch["a"]) == "observed a #8"
        adapter.commit(Staged("a", [], [], False))  # a write: what was read before it may be stale
        assert adapter.discover(batch["b"]) == "observed b #11"


def test_a_read_ahead_that_fails_leaves_each_read_to_its_pass() -> None:
    """A target whose read ahead failed is read by its pass, with its retries. A read that hangs past the
    deadline: the reads before it stand, its target's pass fails at once, the targets after it are read by
    their passes. Slow reads stop at half the deadline. An adapter that is not local, or a batch of one, reads
    nothing ahead."""
    retried: list[str] = []
    local = Local(failing={"b": 2})
    adapter = RetryingAdapter("file", local, attempts=3, initial_s=0.001, max_s=0.01, on_retry=retried.append)  # type: ignore[arg-type]
    batch = targets("a", "b")
    with adapter.reading_ahead(batch):
        assert [name for name, _ in local.reads] == ["a", "b"] and retried == []
        assert adapter.discover(batch["b"]) == "observed b #4"  # its own read, retried
        assert retried == ["file"]
        assert adapter.discover(batch["a"]) == "observed a #1"

    hang = threading.Event()
    stuck = RetryingAdapter("file", Local(hang=hang), attempts=3, initial_s=0.001, max_s=0.01, call_timeout_s=0.2)  # type: ignore[arg-type]
    started = time.monotonic()
    batch = targets("a", "b", "c")
    with stuck.reading_ahead(batch):
        assert time.monotonic() - started < 2  # the deadline, not the hang
        assert [name for name, _ in stuck.inner.reads] == ["a"]  # type: ignore[attr-defined]
        assert stuck.discover(batch["a"]) == "observed a #1"  # made before the hang: it stands
        with pytest.raises(DiscoveryError, match=r"discover did not return within 0\.2 s .*read ahead of its batch"):
            stuck.discover(batch["b"])  # at once, with no second read to hang as well
        assert stuck.discover(batch["c"]) == "observed c #2"  # never reached: read by its pass
        assert stuck._deadline.abandoned == 1  # the one hung read, not one more for its pass
    hang.set()

    slow = RetryingAdapter("file", Local(delay=0.2), attempts=1, initial_s=0.001, max_s=0.01, call_timeout_s=1.0)  # type: ignore[arg-type]
    batch = targets(*"abcdef")
    with slow.reading_ahead(batch):
        ahead = len(slow.inner.reads)  # type: ignore[attr-defined]
        assert 1 <= ahead <= 3  # reads stop at half the deadline, whatever the batch's size
        assert [slow.discover(batch[name]) for name in "abcdef"][-1] == "observed f #6"
    assert slow._deadline.abandoned == 0 and len(slow.inner.reads) == 6  # type: ignore[attr-defined]

    remote = Local()
    remote.capabilities = Capabilities(read=True)
    for adapter, batch in (
        (RetryingAdapter("etcd", remote, attempts=1, initial_s=0.001, max_s=0.01), targets("a", "b")),  # type: ignore[arg-type]
        (RetryingAdapter("file", Local(), attempts=1, initial_s=0.001, max_s=0.01), targets("a")),  # type: ignore[arg-type]
    ):
        with adapter.reading_ahead(batch):
            assert adapter.inner.reads == []  # type: ignore[attr-defined]
            adapter.discover(batch["a"])
            assert [name for name, _ in adapter.inner.reads] == ["a"]  # type: ignore[attr-defined]
