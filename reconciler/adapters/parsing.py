"""Live files read ahead of their passes, parsed in a worker process while the passes run.

A daemon's first cycle (and any pass after most files changed: a desired-state edit, a deploy that rewrote
them) parses every live file, in the thread of its pass, under the interpreter lock: at 100 keys a file, about
an eighth of that cycle's CPU, on one core while the others idle. When a batch's reads are made ahead
(ports.ReadsAhead), the file adapter hands their texts to `ParsePool` (FileAdapter.parse_ahead): a worker
process parses them, a task of FIRST then of CHUNK texts at a time, while the batch's first passes run on what
it has already sent back. What comes back is plain data, pickled (~14 us to read 100 keys, against ~130 us to
parse their YAML in the pass). A pass takes its document from there, or, when the worker could not give it (the
text does not parse, the worker died or took longer than WAIT_S: then it is ended, and for RETRY_S no other is
started), parses the text itself, which gives the same document or the error that names the file: the worker
runs the very parse of formats.py, with its bounds, so hostile text is refused there as it would be here, and
nothing the worker saw goes into a message.

No thread of this process carries the texts or the documents: the thread that reads a batch ahead sends its
texts down one pipe, and the pass that needs a document reads the worker's answers from the other, up to its
own task's. concurrent.futures' pool hands both over through threads of its own, and each hop waited for the
interpreter lock that the passes hold: the passes waited ~7 ms a batch for their first documents, most of
what the worker saved them.

The worker is started by the first batch of MIN_TEXTS texts or more, takes batches once it says it is up (the
batches before are parsed by their passes, so no pass waits for a process to start), and ends after IDLE_S
without a batch: a steady state, whose few changed files are parsed by their passes, keeps no process.
`workers` 0 (RECONCILER_FILE__PARSE_WORKERS), or a machine with one core, starts none.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import select
import signal
import struct
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from reconciler.adapters import formats
from reconciler.domain.observed import Observed
from reconciler.observe import logging as logs

log = logs.get_logger("reconciler.adapters.parsing")

MIN_TEXTS = 8  # a batch with fewer texts to parse leaves them to its passes: the hand-off would cost more
FIRST = 4  # texts in a batch's first task, which its first pass waits for
CHUNK = 16  # texts in each later task: parsed while the passes before them run
IDLE_S = 60.0  # the worker ends after this long without a batch
WAIT_S = 30.0  # a pass waits this long for the worker's next answer; then the worker is ended, and passes parse
RETRY_S = 60.0  # after a worker failed, the passes parse for this long before another is started
_READY = "ready"


class _Task:
    """Some texts of a batch, as handed to the worker; `found` once it answered (a document, or None where it
    could not give one), () when it never will."""

    __slots__ = ("__weakref__", "found")

    def __init__(self) -> None:
        self.found: Sequence[Any] | None = None


class LiveText:
    """A live file's parse, as its Observed holds it until a pass asks for the document: taken from the worker
    when the text was handed to one, else (or when the worker could not give it) parsed here."""

    __slots__ = ("ahead", "data", "format", "parse_here")

    def __init__(self, data: bytes, format_name: str, parse_here: Callable[[], dict[str, Any]]) -> None:
        self.data = data
        self.format = format_name
        self.parse_here = parse_here
        self.ahead: tuple[ParsePool, _Task, int] | None = None  # the pool, the task, the text's place in it

    def __call__(self) -> dict[str, Any]:
        ahead, self.ahead = self.ahead, None
        found = None
        if ahead is not None:
            pool, task, index = ahead
            answered = pool.answer(task)
            found = answered[index] if index < len(answered) else None
        return self.parse_here() if not isinstance(found, dict) else found


class ParsePool:
    """One worker process that parses live texts by format (formats.FORMATS), started on demand and ended when
    idle (the module's docstring). Thread-safe: the daemon's workers share the file adapter."""

    def __init__(
        self, workers: int = 1, idle_s: float = IDLE_S, wait_s: float = WAIT_S, retry_s: float = RETRY_S
    ) -> None:
        # One process: it parses a text in a tenth of the time a pass takes, so a second would only wait. None
        # on one core: that core is the passes'.
        self.enabled = workers > 0 and len(os.sched_getaffinity(0)) > 1
        self.idle_s = idle_s
        self.wait_s = wait_s
        self.retry_s = retry_s
        self.started = 0  # worker processes started: for tests and figures
        self.texts = 0  # texts handed to a worker
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._process: Any = None  # multiprocessing's Process of the spawn context
        self._send: Connection | None = None
        self._receive: Connection | None = None
        self._ready = False
        self._pending: dict[int, weakref.ref[_Task]] = {}  # by sequence number, in the order handed out
        self._sequence = 0
        self._last = 0.0  # monotonic time of the last batch handed out
        self._retry_at = 0.0  # monotonic time before which no worker is started (one failed)

    def parse_ahead(self, reads: Sequence[Observed]) -> None:
        """The texts of `reads` not parsed yet (LiveText: the file adapter's) handed to the worker, each read
        then taking its document from there; too few are left to their passes."""
        texts = [p for read in reads if isinstance(p := read.pending(), LiveText) and p.ahead is None]
        if not self.enabled or len(texts) < MIN_TEXTS:
            return
        with self._lock:
            self._last = time.monotonic()  # a batch large enough: the worker is wanted, up yet or not
            try:
                if not self._up():
                    return
                self._collect()  # what the last batch left unread: the worker takes a batch only when idle
                if self._send is None:  # it ended meanwhile: these are parsed by their passes
                    return
                message: list[tuple[int, list[tuple[str, bytes]]]] = []
                places: list[tuple[_Task, int]] = []
                start = 0
                while start < len(texts):
                    some = texts[start : start + (FIRST if start == 0 else CHUNK)]
                    task, self._sequence = _Task(), self._sequence + 1
                    self._pending[self._sequence] = weakref.ref(task)
                    message.append((self._sequence, [(text.format, text.data) for text in some]))
                    places.extend((task, i) for i in range(len(some)))
                    start += len(some)
                self._post(message)
            except (OSError, EOFError, ValueError) as exc:  # the worker died: the passes parse
                timeout = isinstance(exc, TimeoutError)
                self._end(str(exc) if timeout else f"the parse worker failed: {type(exc).__name__}")
                return
            self.texts += len(texts)
        for text, (task, index) in zip(texts, places, strict=True):
            text.ahead = (self, task, index)

    def answer(self, task: _Task) -> Sequence[Any]:
        """`task`'s documents, read from the worker as far as its answer if need be; () if it will not come."""
        if task.found is None:
            with self._lock:
                while task.found is None and self._pending:
                    if not self._read_one():
                        break
        return task.found or ()

    def close(self) -> None:
        """End the worker now; a later batch starts a new one."""
        with self._lock:
            self._end(None)

    def _up(self) -> bool:
        """Whether the worker takes batches: started if need be (with the thread that ends it when idle), and
        taken once it said it is up; until then the passes parse (self._lock held)."""
        if self._process is None:
            if time.monotonic() < self._retry_at:  # one failed: not a process started for every batch
                return False
            context = multiprocessing.get_context("spawn")  # not fork: the daemon's threads hold locks
            to_worker, self._send = context.Pipe(duplex=False)
            os.set_blocking(self._send.fileno(), False)  # written within a deadline (_post)
            self._receive, from_worker = context.Pipe(duplex=False)
            self._process = context.Process(target=_serve, args=(to_worker, from_worker), daemon=True)
            self._process.start()
            to_worker.close()  # the worker's ends: each side sees the other's end as EOF
            from_worker.close()
            self._ready = False
            self.started += 1
            threading.Thread(target=self._end_when_idle, args=(self._process,), name="parse-idle", daemon=True).start()
        if not self._ready:
            assert self._receive is not None
            if not self._receive.poll(0):
                return False
            if self._receive.recv() != _READY:
                raise ValueError("the parse worker did not start")
            self._ready = True
        return True

    def _post(self, message: object) -> None:
        """`message` down the pipe, framed as Connection.send frames it, within wait_s (a TimeoutError past it):
        a worker that stopped reading (stopped, or swapped out) must not hold a daemon's worker thread, and with
        it the lane of every local batch, for good (self._lock held)."""
        assert self._send is not None
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        data = memoryview(struct.pack("!i", len(payload)) + payload)
        fd = self._send.fileno()
        until = time.monotonic() + self.wait_s
        while data:
            left = until - time.monotonic()
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                raise TimeoutError(f"the parse worker took no text within {self.wait_s:g} s")
            with contextlib.suppress(BlockingIOError):
                data = data[os.write(fd, data) :]

    def _collect(self) -> None:
        """Every answer still to come, read (self._lock held)."""
        while self._pending and self._read_one():
            pass

    def _read_one(self) -> bool:
        """The worker's next answer, given to its task if anyone still holds it; False when none came within
        wait_s or the worker died, which ends it (self._lock held)."""
        assert self._receive is not None
        try:
            if not self._receive.poll(self.wait_s):
                self._end(f"the parse worker did not answer within {self.wait_s:g} s")
                return False
            sequence, found = self._receive.recv()
        except (OSError, EOFError, ValueError) as exc:
            self._end(f"the parse worker failed: {type(exc).__name__}")
            return False
        ref = self._pending.pop(sequence, None)
        task = None if ref is None else ref()
        if task is not None:
            task.found = found
        return True

    def _end(self, why: str | None) -> None:
        """The worker ended, and every task still to be answered told it will not be (self._lock held)."""
        if why is not None:
            log.warning("live files are parsed by their passes", reason=why, retry_s=self.retry_s)
            self._retry_at = time.monotonic() + self.retry_s
        for ref in self._pending.values():
            task = ref()
            if task is not None:
                task.found = ()
        self._pending.clear()
        process, self._process = self._process, None
        for connection in (self._send, self._receive):
            if connection is not None:
                connection.close()
        self._send = self._receive = None
        self._idle.notify_all()
        if process is not None:
            process.kill()  # it holds nothing: its texts are read again by their passes
            process.join(5)

    def _end_when_idle(self, process: Any) -> None:
        with self._lock:
            while self._process is process:
                left = self._last + self.idle_s - time.monotonic()
                if left <= 0:
                    self._end(None)
                    return
                self._idle.wait(left)


def _serve(inbox: Connection, outbox: Connection) -> None:
    """The worker: batches from `inbox`, each task's documents to `outbox` as it is parsed, until the daemon's
    end of the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the daemon's to handle; it ends this worker
    outbox.send(_READY)
    while True:
        try:
            batch = inbox.recv()
        except EOFError:
            return
        for sequence, texts in batch:
            outbox.send((sequence, [_parsed(name, data) for name, data in texts]))


def _parsed(name: str, data: bytes) -> Any:
    """A text's document, or None where it does not parse: its pass parses it again and says why, naming the
    file (nothing the worker saw goes into a message)."""
    try:
        return formats.FORMATS[name].parse(data.decode("utf-8"))
    except Exception:  # any failure is the pass's to report
        return None
