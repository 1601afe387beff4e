"""Load a folder of YAML manifests into a validated, versioned DesiredState.

Every problem names the file, the document and the field; all problems of a folder are reported at once,
and a folder with any problem yields no state at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reconciler.desired import overlay
from reconciler.desired import version as versioning
from reconciler.desired.files import FileCache, ParsedFile
from reconciler.domain.manifest import Base, Target
from reconciler.domain.policy import Policy
from reconciler.domain.state import DesiredState
from reconciler.errors import ConfigurationError, Problem

SUFFIXES = (".yaml", ".yml")
MAX_PROBLEMS = 1000  # listed in an error; the count says how many there are in all


@dataclass(frozen=True, slots=True)
class _Where:
    """Where a valid document came from, for problems found later."""

    file: Path
    index: int  # 1-based
    name: str

    def problem(self, field: str | None, message: str) -> Problem:
        return Problem(file=str(self.file), document=self.index, name=self.name, field=field, message=message)


@dataclass
class _Found:
    """The valid documents of a folder so far, by kind, and where each came from (for problems found later)."""

    targets: dict[str, Target] = field(default_factory=dict)
    bases: dict[str, Base] = field(default_factory=dict)
    policies: list[Policy] = field(default_factory=list)
    where: dict[int, _Where] = field(default_factory=dict)  # id(model) -> where
    seen: dict[tuple[str, str], _Where] = field(default_factory=dict)

    def add(self, file: Path, index: int, model: Target | Policy | Base | None, problems: list[Problem]) -> None:
        if model is None:
            return
        key = (model.kind, model.metadata.name)
        where = _Where(file, index, model.metadata.name)
        if key in self.seen:
            first = self.seen[key]
            message = f"{model.kind} {model.metadata.name!r} is already defined in {first.file} document {first.index}"
            problems.append(where.problem("metadata.name", message))
            return
        self.seen[key] = self.where[id(model)] = where
        if isinstance(model, Target):
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


def load(root: str | Path, previous: DesiredState | None = None, cache: FileCache | None = None) -> DesiredState:
    """Load and validate every manifest below `root`; raises ConfigurationError listing every problem. A target
    the same as in `previous` (the state this one replaces) is that very object, so that what is kept per
    target object (the assessor's memo, the adapters' caches) stands for it across the edit. `cache`: the files
    as the last load read them (kept by the caller between loads): only the files changed since are read."""
    root = Path(root).expanduser()
    if not root.exists():
        raise ConfigurationError(f"desired-state folder {root} does not exist")
    files = manifest_files(root)
    if not files:
        raise ConfigurationError(f"desired-state folder {root} holds no .yaml or .yml files")
    cache = FileCache() if cache is None else cache
    parsed = [cache.get(file) for file in files]
    cache.keep(files)
    problems = [problem for one in parsed for problem in one.unreadable]
    found = _Found()
    invalid: list[Problem] = []  # listed after every problem of reading, as when documents were all read first
    for one in parsed:
        for doc in one.documents:
            invalid.extend(doc.problems)
            found.add(one.file, doc.index, doc.model, invalid)
    problems.extend(invalid)
    where = found.where

    def report(owner: Target | Base, field: str, message: str) -> None:
        problems.append(where[id(owner)].problem(field, message))

    targets = overlay.resolve(found.targets, found.bases, report, cache.merged)
    defaults = {p.spec.default for p in found.policies if p.spec.default is not None}
    if len(defaults) > 1:
        problems.append(Problem(file=str(root), message=f"policies disagree on the default class: {sorted(defaults)}"))
    if problems:
        shown = problems[:MAX_PROBLEMS]
        if len(problems) > MAX_PROBLEMS:
            shown.append(Problem(file=str(root), message=f"and {len(problems) - MAX_PROBLEMS} more problems"))
        raise ConfigurationError(f"desired state in {root} is invalid ({len(problems)} problems)", shown)
    version = versioning.version_of(root, _digests(root, parsed))
    if previous is not None:
        targets = {name: _unchanged(previous.targets.get(name), target) for name, target in targets.items()}
    cache.merged.commit(targets)
    return DesiredState(root=root, version=version, targets=targets, policies=tuple(found.policies))


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
