"""Load a folder of YAML manifests into a validated, versioned DesiredState.

Every problem names the file, the document and the field; all problems of a folder are reported at once,
and a folder with any problem yields no state at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.desired import overlay
from reconciler.desired import version as versioning
from reconciler.desired.files import FileCache, Model, ParsedFile
from reconciler.domain.manifest import Base, Target
from reconciler.domain.pacing import Pause, paced
from reconciler.domain.policy import Policy
from reconciler.domain.state import Changes, DesiredState
from reconciler.errors import ConfigurationError, Problem

SUFFIXES = (".yaml", ".yml")
MAX_PROBLEMS = 1000  # listed in an error; the count says how many there are in all


@dataclass
class _Found:
    """The valid documents of a folder by kind and name, in the order they were met: the first of each name."""

    targets: dict[str, Target] = field(default_factory=dict)
    bases: dict[str, Base] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)

    def add(self, model: Model) -> Model | None:
        """Add `model`, unless a document of its kind and name came before it: then that one."""
        same: dict[str, Any] = (
            self.targets if isinstance(model, Target) else self.bases if isinstance(model, Base) else self.policies
        )
        first = same.setdefault(model.metadata.name, model)
        return None if first is model else first


class _Places:
    """Where each valid document came from, for the problems found across documents; worked out only when the
    first of them is (a load without problems, a fleet's every reload, never needs it)."""

    def __init__(self, parsed: list[ParsedFile]) -> None:
        self._parsed = parsed
        self._where: dict[int, tuple[Path, int]] = {}

    def where(self, model: Model) -> tuple[Path, int]:
        if not self._where:
            self._where = {
                id(d.model): (f.file, d.index) for f in self._parsed for d in f.documents if d.model is not None
            }
        return self._where[id(model)]

    def problem(self, model: Model, field: str, message: str) -> Problem:
        file, index = self.where(model)
        return Problem(file=str(file), document=index, name=model.metadata.name, field=field, message=message)

    def duplicate(self, model: Model, first: Model) -> Problem:
        file, index = self.where(first)
        message = f"{model.kind} {model.metadata.name!r} is already defined in {file} document {index}"
        return self.problem(model, "metadata.name", message)


def manifest_files(root: Path) -> list[Path]:
    """The manifest files below `root`, in a stable order; hidden folders (.git) are skipped."""
    if root.is_file():
        return [root]
    return [Path(entry.path) for entry in manifest_entries(root)]


def manifest_entries(root: Path, ordered: bool = True) -> list[os.DirEntry[str]]:
    """manifest_files' files as directory entries, in the same order (by path component, as paths sort), for
    the desired state's poll: it runs every 2 s over thousands of files, and a walk of strings with the stat a
    directory listing already holds costs a fraction of one of Path objects. Symbolic links to folders are not
    followed (as Path.rglob does not); hidden files and folders are skipped. Unordered, the listing's own order
    (what a signature kept as a set needs, without the sort's cost)."""
    found: list[os.DirEntry[str]] = []
    folders = [str(root)]
    while folders:
        try:
            listing = os.scandir(folders.pop())
        except OSError:  # removed meanwhile, or unreadable: as rglob, skipped
            continue
        with listing:
            for entry in listing:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    folders.append(entry.path)
                elif os.path.splitext(entry.name)[1] in SUFFIXES and entry.is_file():
                    found.append(entry)
    if ordered:
        found.sort(key=lambda entry: entry.path.split(os.sep))
    return found


def load(
    root: str | Path,
    previous: DesiredState | None = None,
    cache: FileCache | None = None,
    pause: Pause | None = None,
) -> DesiredState:
    """Load and validate every manifest below `root`; raises ConfigurationError listing every problem. A target
    the same as in `previous` (the state this one replaces) is that very object, so that what is kept per
    target object (the assessor's memo, the adapters' caches) stands for it across the edit. `cache`: the files
    as the last load read them (kept by the caller between loads): only the files changed since are read.
    `pause`: called every so often by the loops over every file and target (domain/pacing.py)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise ConfigurationError(f"desired-state folder {root} does not exist")
    files = manifest_files(root)
    if not files:
        raise ConfigurationError(f"desired-state folder {root} holds no .yaml or .yml files")
    cache = FileCache() if cache is None else cache
    parsed = cache.get_all(files, pause)
    cache.keep(files)
    problems = [problem for one in parsed for problem in one.unreadable]
    found, places = _Found(), _Places(parsed)
    invalid: list[Problem] = []  # listed after every problem of reading, as when documents were all read first
    for one in paced(parsed, pause, step=16):  # 16 files: ~1,600 documents
        for doc in one.documents:
            invalid.extend(doc.problems)
            if doc.model is not None and (first := found.add(doc.model)) is not None:
                invalid.append(places.duplicate(doc.model, first))
    problems.extend(invalid)

    def report(owner: Target | Base, field: str, message: str) -> None:
        problems.append(places.problem(owner, field, message))

    targets = overlay.resolve(found.targets, found.bases, report, cache.merged, pause)
    policies = tuple(found.policies.values())
    defaults = {p.spec.default for p in policies if p.spec.default is not None}
    if len(defaults) > 1:
        problems.append(Problem(file=str(root), message=f"policies disagree on the default class: {sorted(defaults)}"))
    if problems:
        shown = problems[:MAX_PROBLEMS]
        if len(problems) > MAX_PROBLEMS:
            shown.append(Problem(file=str(root), message=f"and {len(problems) - MAX_PROBLEMS} more problems"))
        raise ConfigurationError(f"desired state in {root} is invalid ({len(problems)} problems)", shown)
    version = versioning.version_of(root, _digests(root, parsed))
    changes = None
    if previous is not None:
        targets, changes = _kept(previous, targets, pause)
    cache.merged.commit(targets)
    return DesiredState(root=root, version=version, targets=targets, policies=policies, changes=changes)


def _kept(previous: DesiredState, targets: dict[str, Target], pause: Pause | None) -> tuple[dict[str, Target], Changes]:
    """`targets`, each one that says what it said in `previous` being that very object; and what changed."""
    last = previous.targets
    kept: dict[str, Target] = {}
    replaced: list[str] = []
    for name, target in paced(targets.items(), pause):
        old = last.get(name)
        now = target if old is target else _unchanged(old, target)
        if now is not old:
            replaced.append(name)
        kept[name] = now
    return kept, Changes.of(previous, kept, replaced)


def _digests(root: Path, parsed: list[ParsedFile]) -> list[tuple[str, str]]:
    """(path relative to `root`, digest) of every file that holds a document."""
    folder = root if root.is_dir() else root.parent
    return [(one.file.relative_to(folder).as_posix(), one.digest) for one in parsed if one.digest is not None]


def _unchanged(old: Target | None, new: Target) -> Target:
    """`old` when it says what `new` says, from the same place; else `new`."""
    if old is None:
        return new
    if old is new or (old.origin == new.origin and old.metadata == new.metadata and old.spec == new.spec):
        return old
    return new
