"""Load a folder of YAML manifests into a validated, versioned DesiredState.

Every problem names the file, the document and the field; all problems of a folder are reported at once,
and a folder with any problem yields no state at all.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reconciler.desired import overlay
from reconciler.desired import version as versioning
from reconciler.domain.manifest import Base, Origin, Target
from reconciler.domain.policy import Policy
from reconciler.domain.state import KINDS, DesiredState
from reconciler.errors import ConfigurationError, Problem
from reconciler.yamlload import MANIFESTS, YamlError, load_all

SUFFIXES = (".yaml", ".yml")
MAX_PROBLEMS = 1000  # listed in an error; the count says how many there are in all


@dataclass(frozen=True)
class RawDocument:
    file: Path
    index: int  # 1-based
    body: Any

    def located(self) -> RawDocument:
        """This document with only as much of its body as a problem found later names (its name)."""
        name = _name(self.body)
        return RawDocument(self.file, self.index, None if name is None else {"metadata": {"name": name}})


@dataclass
class _Found:
    """The valid documents of a folder so far, by kind, and where each came from (for problems found later)."""

    targets: dict[str, Target] = field(default_factory=dict)
    bases: dict[str, Base] = field(default_factory=dict)
    policies: list[Policy] = field(default_factory=list)
    where: dict[int, RawDocument] = field(default_factory=dict)  # id(model) -> where
    seen: dict[tuple[str, str], RawDocument] = field(default_factory=dict)

    def add(self, doc: RawDocument, model: Target | Policy | Base | None, problems: list[Problem]) -> None:
        if model is None:
            return
        key = (model.kind, model.metadata.name)
        if key in self.seen:
            first = self.seen[key]
            message = f"{model.kind} {model.metadata.name!r} is already defined in {first.file} document {first.index}"
            problems.append(_problem(doc, "metadata.name", message))
            return
        self.seen[key] = self.where[id(model)] = doc.located()
        if isinstance(model, Target):
            model._origin = Origin(doc.file, doc.index)
            self.targets[model.name] = model
        elif isinstance(model, Base):
            self.bases[model.metadata.name] = model
        else:
            self.policies.append(model)


def manifest_files(root: Path) -> list[Path]:
    """The manifest files below `root`, in a stable order; hidden folders (.git) are skipped."""
    if root.is_file():
        return [root]
    return sorted(
        p
        for p in root.rglob("*")
        if p.suffix in SUFFIXES and p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def load(root: str | Path, previous: DesiredState | None = None) -> DesiredState:
    """Load and validate every manifest below `root`; raises ConfigurationError listing every problem. A target
    the same as in `previous` (the state this one replaces) is that very object, so that what is kept per
    target object (the assessor's memo, the adapters' caches) stands for it across the edit."""
    root = Path(root).expanduser()
    if not root.exists():
        raise ConfigurationError(f"desired-state folder {root} does not exist")
    files = manifest_files(root)
    if not files:
        raise ConfigurationError(f"desired-state folder {root} holds no .yaml or .yml files")
    problems: list[Problem] = []
    found = _Found()
    digest = versioning.Digest()
    keys: dict[str, str] = {}  # each mapping key once, however many manifests name it
    invalid: list[Problem] = []  # listed after every problem of reading, as when documents were all read first
    for file in files:
        for doc in _read_documents(file, problems, keys):
            digest.add(doc.body)  # then the body goes: a fleet's documents are never all held at once
            found.add(doc, _validate(doc, invalid), invalid)
    problems.extend(invalid)
    targets, bases, policies, raw_by_model = found.targets, found.bases, found.policies, found.where

    def report(owner: Target | Base, field: str, message: str) -> None:
        problems.append(_problem(raw_by_model[id(owner)], field, message))

    targets = overlay.resolve(targets, bases, report)
    defaults = {p.spec.default for p in policies if p.spec.default is not None}
    if len(defaults) > 1:
        problems.append(Problem(file=str(root), message=f"policies disagree on the default class: {sorted(defaults)}"))
    if problems:
        shown = problems[:MAX_PROBLEMS]
        if len(problems) > MAX_PROBLEMS:
            shown.append(Problem(file=str(root), message=f"and {len(problems) - MAX_PROBLEMS} more problems"))
        raise ConfigurationError(f"desired state in {root} is invalid ({len(problems)} problems)", shown)
    version = versioning.version_of(root, digest)
    if previous is not None:
        targets = {name: _unchanged(previous.targets.get(name), target) for name, target in targets.items()}
    return DesiredState(root=root, version=version, targets=targets, policies=tuple(policies))


def _unchanged(old: Target | None, new: Target) -> Target:
    """`old` when it says what `new` says, from the same place; else `new`."""
    if old is not None and old.origin == new.origin and old.metadata == new.metadata and old.spec == new.spec:
        return old
    return new


def _read_documents(file: Path, problems: list[Problem], keys: dict[str, str] | None = None) -> Iterator[RawDocument]:
    try:
        text = read_regular(file, MANIFESTS.max_chars * 4)  # UTF-8 takes at most 4 bytes a character
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        problems.append(Problem(file=str(file), message=f"cannot be read: {detail}"))
        return
    index = 0
    try:
        for index, body in enumerate(load_all(text, MANIFESTS, keys), start=1):
            if body is not None:  # None: an empty document between two '---'
                yield RawDocument(file, index, body)
    except YamlError as exc:
        problems.append(Problem(file=str(file), document=exc.document, field=exc.field, message=str(exc)))


# Non-blocking, so that a FIFO (one that took a manifest's name since the folder was listed, or a secret
# reference's file) is refused, not waited on.
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def read_regular(file: Path, max_bytes: int) -> str:
    """The UTF-8 text of a regular file of at most `max_bytes`; ValueError for anything else (a FIFO, a device,
    a larger file), OSError when it cannot be opened, UnicodeDecodeError when it is not UTF-8."""
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
    return data.decode("utf-8")


def _name(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("metadata"), dict):
        raw = body["metadata"].get("name")
        return raw if isinstance(raw, str) else None
    return None


def _problem(doc: RawDocument, field: str | None, message: str) -> Problem:
    return Problem(file=str(doc.file), document=doc.index, name=_name(doc.body), field=field, message=message)


def _validate(doc: RawDocument, problems: list[Problem]) -> Target | Policy | Base | None:
    if not isinstance(doc.body, dict):
        problems.append(_problem(doc, None, f"a document must be a mapping, not {type(doc.body).__name__}"))
        return None
    kind = doc.body.get("kind")
    if kind is None:
        problems.append(_problem(doc, "kind", f"missing; expected one of {', '.join(KINDS)}"))
        return None
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        problems.append(_problem(doc, "kind", f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}"))
        return None
    try:
        return model.model_validate(doc.body)
    except ValidationError as exc:
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or None
            problems.append(_problem(doc, field, _message(err)))
        return None


def _message(err: Any) -> str:
    if err["type"] == "missing":
        return "required field is missing"
    if err["type"] == "extra_forbidden":
        return "unknown field"
    message: str = err["msg"]
    return message.removeprefix("Value error, ")
