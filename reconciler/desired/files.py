"""Manifest files, one at a time: a file's documents read, validated and digested, and kept while the file
stands, so that a desired-state edit costs the files it touched rather than the whole folder.

A file stands while its identity does and it is not racy (domain/filestat.py): a racy file's bytes are compared
again on the next look, until it has been seen older than that.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reconciler.desired import overlay, parallel
from reconciler.domain import filestat
from reconciler.domain.compact import compact
from reconciler.domain.filestat import Identity, identity
from reconciler.domain.manifest import Base, Origin, Target
from reconciler.domain.pacing import Pause
from reconciler.domain.policy import Policy
from reconciler.domain.state import KINDS
from reconciler.errors import Problem
from reconciler.yamlload import MANIFESTS

Model = Target | Policy | Base


@dataclass(frozen=True, slots=True)
class Document:
    """One document of a file: its model when valid, else why not."""

    index: int  # 1-based
    model: Model | None
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """What one manifest file holds, and the identity of the file it was read from."""

    file: Path
    documents: tuple[Document, ...]
    unreadable: tuple[Problem, ...]  # the file could not be read, or stopped being YAML part way
    digest: str | None  # SHA-256 of the canonical JSON of its documents; None when it holds none
    identity: Identity | None = None
    content: bytes = b""  # SHA-256 of its bytes
    racy: bool = False


@dataclass
class FileCache:
    """The files of a desired-state folder as last read, by path, and what the last good load merged from them;
    `parsed` counts the files parsed so far."""

    files: dict[Path, ParsedFile] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # each mapping key once, however many manifests name it
    merged: overlay.Merged = field(default_factory=overlay.Merged)  # the last good load's targets on their Bases
    parsed: int = 0
    parallel_min_bytes: int = parallel.MIN_BYTES  # of files to parse, for worker processes to parse them
    bodies: dict[bytes, parallel.Bodies] = field(default_factory=dict)  # a task's by get_all, by bytes' digest

    def get(self, file: Path) -> ParsedFile:
        """`file`'s documents: as last read while its identity stands (and it is not racy), else read again and
        parsed again unless its bytes are the ones last parsed."""
        last = self.files.get(file)
        if self._stands(file, last):
            assert last is not None
            return last
        try:
            data, st = _read(file, MANIFESTS.max_chars * 4)  # UTF-8 takes at most 4 bytes a character
        except (OSError, ValueError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.files.pop(file, None)
            return ParsedFile(file, (), (Problem(file=str(file), message=f"cannot be read: {detail}"),), None)
        content, seen, racy = hashlib.sha256(data).digest(), identity(st), filestat.racy(st, time.time_ns())
        if last is not None and last.content == content:
            found = replace(last, identity=seen, racy=racy)
        else:
            found = replace(
                parse(file, data, self.keys, self.bodies.pop(content, None)), identity=seen, content=content, racy=racy
            )
            self.parsed += 1
        self.files[file] = found
        return found

    def get_all(self, files: list[Path], pause: Pause | None = None) -> list[ParsedFile]:
        """Every file's documents, as get() gives them. When the files get() would parse hold enough YAML, worker
        processes parse them (desired/parallel.py), and each task's results are taken as get() reaches its
        files; get() uses a file's result when its bytes are the ones parsed (by their digest), and otherwise
        parses them itself (the file changed meanwhile, or the workers failed). `pause`: called after each file
        parsed here (domain/pacing.py)."""
        stale = [f for f in files if not self._stands(f, self.files.get(f))]  # the rest are kept as they are
        tasks = parallel.tasks_of(stale, self.parallel_min_bytes)
        task_of = {file: i for i, task in enumerate(tasks) for file in task}
        results = parallel.parse_tasks(tasks, read_manifest) if tasks else None
        fresh = set(stale)
        pulled = 0
        found: list[ParsedFile] = []
        try:
            for file in files:
                if file not in fresh:
                    found.append(self.files[file])
                    continue
                wanted = task_of.get(file, -1)
                while results is not None and pulled <= wanted:
                    parsed = next(results, None)
                    if parsed is None:  # the workers failed: get() parses the rest
                        results = None
                        break
                    self.bodies = {one[0]: one[1] for one in parsed if one is not None}
                    pulled += 1
                found.append(self.get(file))
                if pause is not None:
                    pause()
        finally:
            self.bodies = {}
            if results is not None:
                results.close()
        return found

    def _stands(self, file: Path, last: ParsedFile | None) -> bool:
        if last is None or last.racy:
            return False
        try:
            return identity(os.stat(file)) == last.identity
        except OSError:
            return False

    def keep(self, files: list[Path]) -> None:
        """Forget every file but `files` (those of the last look at the folder)."""
        wanted = set(files)
        self.files = {path: parsed for path, parsed in self.files.items() if path in wanted}

    def changed_in_place(self) -> bool:
        """Whether a racy file's bytes changed since they were read, which its identity may not show; those whose
        bytes did not change are racy no longer once they are old enough."""
        return any(last.racy and self.get(path).content != last.content for path, last in list(self.files.items()))


def parse(
    file: Path, data: bytes, keys: dict[str, str] | None = None, bodies: parallel.Bodies | None = None
) -> ParsedFile:
    """`file`'s documents from its bytes (their YAML already parsed when `bodies` is given), each validated, and
    their digest."""
    documents: list[Document] = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return ParsedFile(file, (), (Problem(file=str(file), message=f"cannot be read: {exc}"),), None)
    found, error, digest = parallel.bodies_of(text, keys) if bodies is None else bodies
    for index, body in found:  # each body goes once validated: a fleet's documents are never all held at once
        problems: list[Problem] = []
        model = validate(file, index, body, problems)
        if isinstance(model, Target):
            model.placed(Origin(file, index))
        if model is not None:
            compact(model)
        documents.append(Document(index, model, tuple(problems)))
    found.clear()
    unreadable = (
        () if error is None else (Problem(file=str(file), document=error[0], field=error[1], message=error[2]),)
    )
    return ParsedFile(file, tuple(documents), unreadable, digest if documents else None)


# Non-blocking, so that a FIFO (one that took a manifest's name since the folder was listed, or a secret
# reference's file) is refused, not waited on.
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def read_manifest(file: Path) -> bytes:
    """A manifest file's bytes (in a worker process of desired/parallel.py, too)."""
    return _read(file, MANIFESTS.max_chars * 4)[0]  # UTF-8 takes at most 4 bytes a character


def read_regular(file: Path, max_bytes: int) -> str:
    """The UTF-8 text of a regular file of at most `max_bytes`; ValueError for anything else (a FIFO, a device,
    a larger file), OSError when it cannot be opened, UnicodeDecodeError when it is not UTF-8."""
    return _read(file, max_bytes)[0].decode("utf-8")


def _read(file: Path, max_bytes: int) -> tuple[bytes, os.stat_result]:
    """The bytes of a regular file of at most `max_bytes`, and its status when it was opened."""
    fd = os.open(file, _READ_FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ValueError(f"larger than {max_bytes} bytes")
    return data, st


def name_of(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("metadata"), dict):
        raw = body["metadata"].get("name")
        return raw if isinstance(raw, str) else None
    return None


def validate(file: Path, index: int, body: Any, problems: list[Problem]) -> Model | None:
    """The model of one document, or None with its problems added to `problems`."""

    def problem(field: str | None, message: str) -> None:
        problems.append(Problem(file=str(file), document=index, name=name_of(body), field=field, message=message))

    if not isinstance(body, dict):
        problem(None, f"a document must be a mapping, not {type(body).__name__}")
        return None
    kind = body.get("kind")
    if kind is None:
        problem("kind", f"missing; expected one of {', '.join(KINDS)}")
        return None
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        problem("kind", f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
        return None
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        for err in exc.errors():
            problem(".".join(str(p) for p in err["loc"]) or None, _message(err))
        return None


def _message(err: Any) -> str:
    if err["type"] == "missing":
        return "required field is missing"
    if err["type"] == "extra_forbidden":
        return "unknown field"
    message: str = err["msg"]
    return message.removeprefix("Value error, ")
