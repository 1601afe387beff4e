"""Retries around single adapter calls: temporary errors only, exponential backoff with jitter, capped.

discover, fingerprints and stage are retried (reads; a stage cleans up after itself when it fails). commit
is never retried here: a failed commit is the executor's to handle (conflict, rollback, the next pass).
Permanent errors (conflict, validation) are never retried. Whole passes are retried by the queue, not here.

Reads (discover, fingerprints) also have a deadline, retries included (runtime/deadline.py): a read that
hangs fails its own target's pass instead of holding the worker, and with it every target after it.
Stages and commits have none: abandoning a write half-way would leave it to finish unobserved.

A local adapter's reads of a batch's targets can be made ahead of their passes, in one go under one deadline
(`reading_ahead`): the hand-off of a read to the read thread and back cost a first pass of a 100-key file
target a fifth of its CPU, more than the read itself.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from reconciler.domain.manifest import Target
from reconciler.domain.observed import Observed
from reconciler.errors import DiscoveryError, ReconcilerError, TemporaryError
from reconciler.observe import logging as logs
from reconciler.ports import Adapter, BulkReader, Capabilities, Change, ParsesAhead, Staged, StagedSweeper, TargetCache
from reconciler.runtime.deadline import Deadline
from reconciler.settings import RetrySettings

T = TypeVar("T")
log = logs.get_logger("reconciler.retry")
CALL_TIMEOUT_S: float = RetrySettings.model_fields["call_timeout_s"].default


class RetryingAdapter:
    """Wraps an adapter so that its reads and stages are retried on temporary errors."""

    def __init__(
        self,
        name: str,
        inner: Adapter,
        *,
        attempts: int,
        initial_s: float,
        max_s: float,
        on_retry: Callable[[str], None] | None = None,
        call_timeout_s: float = CALL_TIMEOUT_S,
        on_read: Callable[[Target, Observed], None] | None = None,
    ) -> None:
        self.name = name
        self.inner = inner
        self.capabilities: Capabilities = inner.capabilities
        self._attempts = attempts
        self._initial_s = initial_s
        self._max_s = max_s
        self._on_retry = on_retry
        self._deadline = Deadline(name, call_timeout_s)
        self._on_read = on_read  # told of every successful read (the daemon's environment parity)
        self._ahead = threading.local()  # .found: this thread's reads made ahead, name -> (target, observed)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        # The first try runs bare: most calls succeed, and building tenacity's machinery for each one costs
        # more than a read of an unchanged target. Only a temporary error brings in the retries.
        try:
            return fn()
        except TemporaryError as exc:
            if self._attempts <= 1:
                raise
            first = exc

        def before_sleep(state: Any) -> None:
            error = state.outcome.exception() if state.outcome else None
            log.info(
                "adapter call retried", adapter=self.name, call=what, attempt=state.attempt_number, error=str(error)
            )
            if self._on_retry is not None:
                self._on_retry(self.name)

        log.info("adapter call retried", adapter=self.name, call=what, attempt=1, error=str(first))
        if self._on_retry is not None:
            self._on_retry(self.name)
        # Waits of initial_s, 2x, 4x ... capped at max_s, plus up to initial_s of jitter so retries spread out:
        # the first here, the rest by tenacity (which starts at 2x).
        time.sleep(min(self._initial_s + random.uniform(0, self._initial_s), self._max_s))  # noqa: S311 - jitter
        retrying = Retrying(
            retry=retry_if_exception_type(TemporaryError),
            stop=stop_after_attempt(self._attempts - 1),
            wait=wait_exponential_jitter(multiplier=2 * self._initial_s, max=self._max_s, jitter=self._initial_s),
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(fn)

    def discover(self, target: Target) -> Observed:
        # The read only: parsing stays lazy, so that an unchanged target is never parsed. A document that
        # does not parse fails the pass, and the queue's backoff tries the pass again.
        found: dict[str, tuple[Target, Observed | _Stuck]] | None = getattr(self._ahead, "found", None)
        ahead = found.pop(target.name, None) if found else None
        read = ahead[1] if ahead is not None and ahead[0] is target else None  # not for a reloaded manifest's
        if isinstance(read, _Stuck):
            read.check()  # raises while that read still hangs; else this pass reads on its own
            read = None
        if read is None:
            read = self._deadline.run("discover", lambda: self._call("discover", lambda: self.inner.discover(target)))
        if self._on_read is not None:
            self._on_read(target, read)
        return read

    @contextmanager
    def reading_ahead(self, targets: Mapping[str, Target]) -> Iterator[None]:
        """The ReadsAhead port, for a local adapter (Capabilities.local) and two targets or more: `targets` read
        now, one after the other, in one hand-off to the read thread under one deadline; each pass of this
        thread then takes its target's read (made up to one batch of passes earlier, as the bulk fingerprints
        are) instead of reading again. A read that failed is made again by its pass, with its retries, and so
        is every read after a write through this adapter (a commit drops the reads made before it). Reads stop
        at half the deadline (slow storage: the rest are read by their passes, each under its own deadline);
        when one read hangs past the deadline, the reads before it stand, and its target's pass fails at once
        while it still hangs rather than start a second read that would hang as well. An adapter that parses
        ahead (ports.ParsesAhead) is handed the reads, to be parsed meanwhile."""
        found = self._read_all(targets) if self.capabilities.local and len(targets) > 1 else {}
        if found and isinstance(self.inner, ParsesAhead):  # parsed by a worker process while the passes run
            try:
                self.inner.parse_ahead([read for _, read in found.values() if isinstance(read, Observed)])
            except Exception:  # a bug: each pass parses its own
                log.exception("parse ahead failed; the passes parse their reads", adapter=self.name)
        self._ahead.found = found
        try:
            yield
        finally:
            self._ahead.found = None  # what no pass took goes (a pass that stopped, a target held elsewhere)

    def _read_all(self, targets: Mapping[str, Target]) -> dict[str, tuple[Target, Observed | _Stuck]]:
        inner, timeout_s = self.inner, self._deadline.timeout_s
        found: dict[str, tuple[Target, Observed | _Stuck]] = {}  # as reads return: kept if the rest is abandoned
        reading: list[str | None] = [None]  # the target being read now, if any
        until = time.monotonic() + timeout_s / 2

        def read_each() -> None:
            for name, target in targets.items():
                if time.monotonic() > until:
                    break
                reading[0] = name
                try:
                    found[name] = (target, inner.discover(target))
                except Exception:  # noqa: S112 - its pass reads it again, and reports why (or the bug) there
                    continue
            reading[0] = None

        try:
            self._deadline.run(f"the read ahead of {len(targets)} targets", read_each)
        except ReconcilerError as exc:  # past its deadline, or too many reads abandoned already
            log.info("read ahead failed; targets are read one by one", adapter=self.name, error=str(exc))
            kept = dict(found)  # the abandoned read may still return, and add to `found`: not to this
            hung = reading[0]
            if hung is not None and hung not in kept:
                message = (
                    f"adapter {self.name}: discover did not return within {timeout_s:g} s "
                    "(RECONCILER_RETRY__CALL_TIMEOUT_S), read ahead of its batch; abandoned"
                )
                kept[hung] = (targets[hung], _Stuck(hung, reading, message))
            return kept
        except Exception:  # a bug, or no thread left to read with: the passes read on their own
            log.exception("read ahead crashed; targets are read one by one", adapter=self.name, targets=len(targets))
            return dict(found)
        return found

    def fingerprints(self, targets: Mapping[str, Target]) -> dict[str, str]:
        # Every wrapped adapter answers BulkReader; one that cannot read in bulk fingerprints nothing, and
        # each target is then read on its own.
        inner = self.inner
        if not isinstance(inner, BulkReader):
            return {}
        return self._deadline.run(
            "fingerprints", lambda: self._call("fingerprints", lambda: inner.fingerprints(targets))
        )

    def normalize(self, target: Target, desired: dict[str, Any]) -> dict[str, Any]:
        return self.inner.normalize(target, desired)

    def stage(self, target: Target, changes: Sequence[Change], *, dry_run: bool) -> Staged:
        return self._call("stage", lambda: self.inner.stage(target, changes, dry_run=dry_run))

    def commit(self, staged: Staged) -> None:
        found = getattr(self._ahead, "found", None)
        if found:  # a write may change what a later pass of the batch reads (two targets of one file)
            found.clear()
        self.inner.commit(staged)

    def discard(self, staged: Staged) -> None:
        self.inner.discard(staged)

    def forget(self, names: Collection[str]) -> None:
        if isinstance(self.inner, TargetCache):
            self.inner.forget(names)

    def sweep_staged(self, target: Target) -> list[str]:
        # Recovery's clean-up, once per interrupted run: not retried, and nothing to do for most adapters.
        inner = self.inner
        return inner.sweep_staged(target) if isinstance(inner, StagedSweeper) else []


class _Stuck:
    """A target whose read ahead hung past the deadline: while it still hangs, its pass fails at once. A second
    read of it would hang as well, and each hung read holds one of the adapter's few abandoned reads."""

    __slots__ = ("message", "name", "reading")

    def __init__(self, name: str, reading: list[str | None], message: str) -> None:
        self.name = name
        self.reading = reading  # the read ahead's: names the target it is reading, until it returns
        self.message = message

    def check(self) -> None:
        """Raises while the read still hangs."""
        if self.reading[0] == self.name:
            raise DiscoveryError(self.message)
