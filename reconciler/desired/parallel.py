"""The YAML of a large desired-state load, parsed on every core.

A daemon's first load of 100,000 targets (and any load that finds most files changed, such as a git checkout of
another branch) spends most of its time parsing YAML, which holds the GIL: one core, while the others wait for
passes that cannot start before the load ends. Here the files to parse are split into tasks of about
TASK_BYTES, which worker processes (started for this load only, then gone) read and parse with yamlload's
limits, so hostile YAML is refused there exactly as it would be here. What comes back is plain data (pickled;
~13x cheaper to read than the YAML it came from), with the digest of the bytes it was parsed from and of its
documents; the caller validates it as it would its own parse, task by task in order, and at most WINDOW tasks
per worker are ahead of it, so a load never holds every document at once. Below MIN_BYTES, or on a machine with one
core, starting processes costs more than it saves and nothing is started. If the processes cannot be started
or die (out of memory, say), the caller parses in its own process.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from reconciler.desired.version import Digest
from reconciler.observe import logging as logs
from reconciler.yamlload import MANIFESTS, YamlError, load_all

log = logs.get_logger("reconciler.desired")

MIN_BYTES = 8 * 1024 * 1024  # of files to parse: about 2,500 manifests of 100 keys
TASK_BYTES = 1024 * 1024
MAX_WORKERS = 8
WINDOW = 2  # tasks per worker handed out ahead of the caller

# A text's non-empty documents, (index, body) with 1-based indexes; the YAML error that ended them, if one did:
# (its document's index, its field, its message); and the digest of those documents (version.Digest's), None
# when there are none.
Bodies = tuple[list[tuple[int, Any]], tuple[int | None, str | None, str] | None, str | None]
# One file as a worker read it: the SHA-256 of its bytes and their documents; None when it could not be read
# or decoded (the caller reads it again and says why).
Parsed = tuple[bytes, Bodies] | None


def bodies_of(text: str, keys: dict[str, str] | None = None) -> Bodies:
    """The documents of one manifest file's text, up to a YAML error if there is one, and their digest (in a
    worker, the canonical JSON that the digest encodes costs the other cores, not the loading one)."""
    found: list[tuple[int, Any]] = []
    digest = Digest()
    error: tuple[int | None, str | None, str] | None = None
    try:
        for index, body in enumerate(load_all(text, MANIFESTS, keys), start=1):
            if body is not None:  # None: an empty document between two '---'
                found.append((index, body))
                digest.add(body)
    except YamlError as exc:
        error = (exc.document, exc.field, str(exc))
    return found, error, digest.hexdigest() if found else None


def tasks_of(files: list[Path], min_bytes: int = MIN_BYTES) -> list[list[Path]]:
    """`files` in consecutive tasks of about TASK_BYTES; none when there is too little to parse for worker
    processes to pay, or only one core."""
    sizes = []
    for file in files:
        try:
            sizes.append(os.stat(file).st_size)
        except OSError:
            sizes.append(0)
    if len(os.sched_getaffinity(0)) < 2 or sum(sizes) < min_bytes:
        return []
    tasks: list[list[Path]] = [[]]
    size = 0
    for file, bytes_ in zip(files, sizes, strict=True):
        if size >= TASK_BYTES:
            tasks.append([])
            size = 0
        tasks[-1].append(file)
        size += bytes_
    return tasks


def parse_tasks(tasks: list[list[Path]], read: Callable[[Path], bytes]) -> Generator[list[Parsed], None, None]:
    """Each task's files parsed by worker processes, in the tasks' order; `read(path)` gives a file's bytes
    (it runs in the worker: a module-level function). When the workers fail, the results stop early (and the
    log says so): the caller parses the rest itself."""
    workers = min(len(os.sched_getaffinity(0)), MAX_WORKERS, len(tasks))
    pool: ProcessPoolExecutor | None = None
    try:
        # spawn, not fork: the daemon has threads (HTTP, watches), and a forked child would inherit their locks.
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        ahead: deque[Future[list[Parsed]]] = deque()
        for task in tasks:
            ahead.append(pool.submit(_parse_task, task, read))
            if len(ahead) >= WINDOW * workers:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()
    except Exception as exc:  # whatever it was, parsing in the caller gives the same result, or the same error
        # Its type only: a message could quote what a manifest holds.
        log.warning("manifests are parsed in this process: worker processes failed", error=type(exc).__name__)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _parse_task(files: list[Path], read: Callable[[Path], bytes]) -> list[Parsed]:
    """In a worker process: one task's files; mapping keys are shared within it, which pickle then sends once."""
    keys: dict[str, str] = {}
    found: list[Parsed] = []
    for file in files:
        try:
            data = read(file)
            found.append((hashlib.sha256(data).digest(), bodies_of(data.decode("utf-8"), keys)))
        except (OSError, ValueError):  # UnicodeDecodeError too: the caller reads the file again and says why
            found.append(None)
    return found
