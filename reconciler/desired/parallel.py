"""The YAML of a large desired-state load, parsed on every core.

A daemon's first load of 100,000 targets (and any load that finds most files changed, such as a git checkout of
another branch) spends most of its time in libyaml, which holds the GIL: one core, while the others wait for
passes that cannot start before the load ends. Here the manifests' texts are split into tasks of about
TASK_CHARS and parsed by worker processes (started for this load only, then gone), each with yamlload's limits,
so hostile YAML is refused there exactly as it would be here. What comes back is plain data (pickled; ~13x
cheaper to read than the YAML it came from); the caller validates and digests it as it would its own parse.
Below MIN_CHARS, or on a machine with one core, starting processes costs more than it saves and nothing is
started. If the processes cannot be started or die (out of memory, say), the caller parses in its own process.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from reconciler.observe import logging as logs
from reconciler.yamlload import MANIFESTS, YamlError, load_all

log = logs.get_logger("reconciler.desired")

MIN_CHARS = 8 * 1024 * 1024  # of text to parse: about 8,000 manifests of 100 keys
TASK_CHARS = 2 * 1024 * 1024
MAX_WORKERS = 8

# A text's non-empty documents, (index, body) with 1-based indexes, and the YAML error that ended them, if one
# did: (its document's index, its field, its message).
Bodies = tuple[list[tuple[int, Any]], tuple[int | None, str | None, str] | None]


def bodies_of(text: str, keys: dict[str, str] | None = None) -> Bodies:
    """The documents of one manifest file's text, up to a YAML error if there is one."""
    found: list[tuple[int, Any]] = []
    try:
        for index, body in enumerate(load_all(text, MANIFESTS, keys), start=1):
            if body is not None:  # None: an empty document between two '---'
                found.append((index, body))
    except YamlError as exc:
        return found, (exc.document, exc.field, str(exc))
    return found, None


def parse_all(texts: Mapping[bytes, str], min_chars: int = MIN_CHARS) -> dict[bytes, Bodies]:
    """`bodies_of` every text (keyed by the digest of its bytes), parsed by worker processes; {} when there is
    too little to parse for it to pay, or when the workers fail (then the caller parses each text itself)."""
    workers = min(len(os.sched_getaffinity(0)), MAX_WORKERS)
    if workers < 2 or sum(map(len, texts.values())) < min_chars:
        return {}
    tasks: list[list[bytes]] = [[]]
    size = 0
    for key, text in texts.items():
        if size >= TASK_CHARS:
            tasks.append([])
            size = 0
        tasks[-1].append(key)
        size += len(text)
    # spawn, not fork: the daemon has threads (HTTP, watches), and a forked child would inherit their locks.
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=context) as pool:
            results = pool.map(_parse_task, [[texts[key] for key in task] for task in tasks])
            parsed: dict[bytes, Bodies] = {}
            for task, bodies in zip(tasks, results, strict=True):
                parsed.update(zip(task, bodies, strict=True))
            return parsed
    except Exception as exc:  # whatever it was, parsing here gives the same result, or the same error
        # Its type only: a message could quote what a manifest holds.
        log.warning("manifests are parsed in this process: worker processes failed", error=type(exc).__name__)
        return {}


def _parse_task(texts: list[str]) -> list[Bodies]:
    """In a worker process: one task's texts; mapping keys are shared within it, which pickle then sends once."""
    keys: dict[str, str] = {}
    return [bodies_of(text, keys) for text in texts]
