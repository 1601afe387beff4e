"""A batch's live files, read ahead, parsed by a worker process (adapters/parsing.py): each pass gets the document
it would have parsed itself, or parses the text itself when the worker cannot give it (the text does not parse,
the worker died or hangs); the worker starts for a batch large enough and ends when idle."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from reconciler.adapters import parsing
from reconciler.adapters.file import FileAdapter
from reconciler.desired.loader import load
from reconciler.domain.manifest import Target
from reconciler.domain.observed import Observed
from reconciler.errors import DiscoveryError
from reconciler.runtime.retry import RetryingAdapter
from reconciler.settings import FileSettings

TEXTS = {  # one of each format, with what YAML builds besides strings
    "yaml": "name: web\nport: 8080\nratio: 0.5\nenabled: true\nnothing:\nsince: 2024-05-01\nnested:\n  deep: [1, 2]\n",
    "json": '{"name": "web", "port": 8080, "nested": {"list": [1, "two", null]}}',
    "toml": 'name = "web"\nport = 8080\n[nested]\nflag = false\n',
    "ini": "[server]\nname = web\nport = 8080\n",
    "env": "NAME=web\nPORT=8080\n",
}


def fleet(
    tmp_path: Path, count: int, broken: dict[int, bytes] | None = None, yaml_text: str | None = None
) -> list[Target]:
    """`count` file targets, their formats in turn (all YAML holding `yaml_text`, if given); the live file of each
    index in `broken` holds those bytes."""
    live, desired = tmp_path / "live", tmp_path / "desired"
    live.mkdir(exist_ok=True)
    desired.mkdir(exist_ok=True)
    formats = list(TEXTS) if yaml_text is None else ["yaml"]
    documents = []
    for i in range(count):
        fmt = formats[i % len(formats)]
        text = TEXTS[fmt] if yaml_text is None else yaml_text
        (live / f"t{i:02}.{fmt}").write_bytes((broken or {}).get(i, text.encode()))
        documents.append(
            f"kind: Target\nmetadata: {{name: t{i:02}}}\n"
            f"spec:\n  source: {{adapter: file, path: ../live/t{i:02}.{fmt}, format: {fmt}}}\n  desired: {{}}\n"
        )
    (desired / "targets.yaml").write_text("---\n".join(documents))
    state = load(desired)
    return [state.targets[f"t{i:02}"] for i in range(count)]


def parsed_here(adapter: FileAdapter, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files the adapter parses in this process, as it parses them."""
    seen: list[str] = []
    real = adapter._parse

    def counting(path: Path, fmt: Any, data: bytes) -> dict[str, Any]:
        seen.append(path.name)
        return real(path, fmt, data)

    monkeypatch.setattr(adapter, "_parse", counting)
    return seen


def handed_out(adapter: FileAdapter, targets: list[Target], until: float = 30.0) -> list[Observed]:
    """The targets read, their texts handed to the worker: batches are read again until it has started (the
    batches before it is up are left to their passes)."""
    pool = adapter._parsing
    deadline = time.monotonic() + until
    while time.monotonic() < deadline:
        before = pool.texts
        reads = [adapter.discover(t) for t in targets]
        adapter.parse_ahead(reads)
        if pool.texts > before:
            return reads
        time.sleep(0.05)
    raise AssertionError("the parse worker did not start")


def pool_of(tmp_path: Path, **kwargs: Any) -> FileAdapter:
    adapter = FileAdapter(FileSettings(roots=[tmp_path / "live"]))
    adapter._parsing = parsing.ParsePool(**kwargs)
    return adapter


@pytest.fixture
def adapter(tmp_path: Path) -> Any:
    made = pool_of(tmp_path)
    yield made
    made._parsing.close()


def test_the_worker_gives_each_pass_the_document_it_would_have_parsed(
    tmp_path: Path, adapter: FileAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every format, every type YAML builds (int, float, bool, null, date, lists), the same as a pass's own parse:
    and the passes parse nothing themselves. A read that a pass already parsed is not handed out again."""
    targets = fleet(tmp_path, 20)
    expected = [FileAdapter(FileSettings(roots=[tmp_path / "live"], parse_workers=0)).discover(t) for t in targets]
    reads = handed_out(adapter, targets)
    here = parsed_here(adapter, monkeypatch)
    for read, want in zip(reads, expected, strict=True):
        assert read.document == want.document
        assert repr(read.document) == repr(want.document)  # the same types: 1 is not 1.0, a date not a string
    assert here == []
    assert adapter._parsing.started == 1
    handed = adapter._parsing.texts
    adapter.parse_ahead(reads)  # parsed already: nothing to hand out
    assert adapter._parsing.texts == handed


def test_a_text_the_worker_cannot_parse_fails_its_pass_with_the_error_it_would_give(
    tmp_path: Path, adapter: FileAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's failure is not reported: the pass parses the text again, and its error names the file."""
    targets = fleet(tmp_path, 10, broken={3: b"a: [1,\n", 5: b"\xff\xfe not utf-8"})
    reads = handed_out(adapter, targets)
    here = parsed_here(adapter, monkeypatch)
    with pytest.raises(DiscoveryError, match=r"t03\.ini: does not parse as ini"):
        reads[3].document  # noqa: B018
    with pytest.raises(DiscoveryError, match=r"t05\.yaml: is not UTF-8 text"):
        reads[5].document  # noqa: B018
    local = FileAdapter(FileSettings(roots=[tmp_path / "live"], parse_workers=0))
    for i, (read, target) in enumerate(zip(reads, targets, strict=True)):
        if i not in (3, 5):
            assert read.document == local.discover(target).document
    assert here == ["t03.ini", "t05.yaml"]


def test_a_worker_that_dies_or_hangs_leaves_the_parse_to_the_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A killed worker: the passes parse their texts at once, and the next batch starts another. A hung one: a pass
    waits wait_s for it, then it is ended and the passes parse."""
    adapter = pool_of(tmp_path, wait_s=0.5, retry_s=0)
    try:
        targets = fleet(tmp_path, 12)
        expected = [
            r.document for r in (FileAdapter(FileSettings(roots=[tmp_path / "live"])).discover(t) for t in targets)
        ]
        reads = handed_out(adapter, targets)
        adapter._parsing._process.kill()
        here = parsed_here(adapter, monkeypatch)
        assert [r.document for r in reads] == expected
        assert len(here) == len(targets)  # every text was parsed here (the worker may have answered none)
        assert adapter._parsing._process is None

        reads = handed_out(adapter, targets)
        assert adapter._parsing.started == 2
        os.kill(adapter._parsing._process.pid, signal.SIGSTOP)
        here.clear()
        # The worker may have answered some tasks before it stopped; the rest wait for wait_s once, then are
        # parsed here.
        started = time.monotonic()
        assert [r.document for r in reads] == expected
        assert time.monotonic() - started < 5
        assert adapter._parsing._process is None  # ended: a stopped process is killed all the same
    finally:
        adapter._parsing.close()


def test_after_a_worker_failed_the_passes_parse_for_retry_s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that cannot be kept up is not started again for every batch: for retry_s, none is."""
    adapter = pool_of(tmp_path, retry_s=60)
    try:
        targets = fleet(tmp_path, 10)
        reads = handed_out(adapter, targets)
        adapter._parsing._process.kill()
        assert all(r.document for r in reads)  # parsed here: the worker is found dead and ended
        here = parsed_here(adapter, monkeypatch)
        reads = [adapter.discover(t) for t in targets]
        adapter.parse_ahead(reads)
        assert adapter._parsing.started == 1 and adapter._parsing._process is None
        assert all(r.document for r in reads) and len(here) == len(targets)
    finally:
        adapter._parsing.close()


def test_a_worker_that_stops_reading_does_not_hold_the_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Texts beyond what the pipe holds, to a worker that reads nothing (stopped): the hand-off gives up after
    wait_s, the worker is ended, and the passes parse their texts."""
    adapter = pool_of(tmp_path, wait_s=0.5)
    try:
        big = "".join(f"key{k:04}: {'v' * 24}-{k}\n" for k in range(400))  # ~13 KB a file, ~160 KB in all
        targets = fleet(tmp_path, 12, yaml_text=big)
        for read in handed_out(adapter, targets):
            assert read.document  # every answer read: the worker waits for the next batch
        os.kill(adapter._parsing._process.pid, signal.SIGSTOP)
        here = parsed_here(adapter, monkeypatch)
        reads = [adapter.discover(t) for t in targets]
        started = time.monotonic()
        adapter.parse_ahead(reads)
        assert time.monotonic() - started < 5 and adapter._parsing._process is None
        assert all(r.document == {f"key{k:04}": f"{'v' * 24}-{k}" for k in range(400)} for r in reads)
        assert len(here) == len(reads)
    finally:
        adapter._parsing.close()


def test_the_worker_starts_for_a_batch_large_enough_and_ends_when_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = pool_of(tmp_path, idle_s=0.3)  # ended when idle is no failure: the next batch starts another
    try:
        targets = fleet(tmp_path, parsing.MIN_TEXTS)
        few = [adapter.discover(t) for t in targets[:-1]]
        adapter.parse_ahead(few)
        assert adapter._parsing.started == 0  # fewer than MIN_TEXTS: parsed by their passes
        handed_out(adapter, targets)
        process = adapter._parsing._process
        wait_for(lambda: adapter._parsing._process is None, 10)
        # Ended and reaped by the pool's own thread (its join), asked again until that thread has said so: a join
        # here would race it, and the one whose waitpid loses is told "still alive" (ECHILD reads as no code yet).
        wait_for(lambda: not process.is_alive(), 10)
        handed_out(adapter, targets)
        assert adapter._parsing.started == 2
    finally:
        adapter._parsing.close()
    off = FileAdapter(FileSettings(roots=[tmp_path / "live"], parse_workers=0))
    off.parse_ahead([off.discover(t) for t in targets])
    assert off._parsing.started == 0 and not off._parsing.enabled


def test_a_batch_read_ahead_by_the_daemons_adapter_is_parsed_by_the_worker(
    tmp_path: Path, adapter: FileAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retrying adapter's reads ahead (ports.ReadsAhead) hand their texts to the file adapter's worker."""
    targets = fleet(tmp_path, 16)
    wrapped = RetryingAdapter("file", adapter, attempts=1, initial_s=0.001, max_s=0.01)
    batch = {t.name: t for t in targets}
    deadline = time.monotonic() + 30
    while adapter._parsing.texts == 0 and time.monotonic() < deadline:  # the batches before the worker is up
        with wrapped.reading_ahead(batch):
            pass
        time.sleep(0.05)
    here = parsed_here(adapter, monkeypatch)
    with wrapped.reading_ahead(batch):
        documents = [wrapped.discover(t).document for t in targets]
    assert here == [] and documents[1]["nested"]["list"] == [1, "two", None]


def test_parse_workers_is_bounded() -> None:
    for bad in (-1, 9):
        with pytest.raises(ValidationError, match="parse_workers"):
            FileSettings(parse_workers=bad)


def wait_for(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
