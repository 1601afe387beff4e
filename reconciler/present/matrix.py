"""The parity matrix of one app: its keys by its environments, each cell the live value there, marked against a
baseline environment (by diff/parity.py's pairwise comparison, expected differences included) and against the
desired state (by the target's last pass). A secret's value never leaves this module: its cell is a mask, and
whether it equals the baseline's is decided by keyed hash."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.diff.parity import PairResult, ParityItem
from reconciler.domain.manifest import Target, environment_rank, reference_paths
from reconciler.domain.paths import MISSING, KeyPath, PathGlob, any_match, get_in, leaf_paths, to_pointer
from reconciler.domain.values import Redacted, render
from reconciler.present.report import short
from reconciler.present.web import ABSENT, MASK

SAME = ("baseline", "equal", "env-specific")  # what "only differing keys" leaves out (unless it drifts)


@dataclass(frozen=True, slots=True)
class Cell:
    text: str  # the value as shown: JSON, (absent) or the mask
    baseline: str  # "baseline", "equal", "differs", "expected", "unread", "env-specific"
    note: str = ""  # an expected difference's reason, owner and expiry
    drift: str = ""  # the class of the target's drift at this key from its last pass, if any


@dataclass
class Matrix:
    app: str
    environments: list[str]
    baseline: str
    targets: dict[str, str]  # environment -> target name
    rows: list[tuple[str, list[Cell]]] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # environment -> why its live state could not be read
    total_keys: int = 0


def secret_globs(target: Target) -> list[PathGlob]:
    """Where a target holds secrets: its `secrets` and the keys whose desired value is a `${...}` reference."""
    return [*target.spec.secrets, *(PathGlob.parse(to_pointer(p)) for p in reference_paths(target.spec.desired))]


def _covering(items: Mapping[str, ParityItem], path: KeyPath) -> ParityItem | None:
    """The pair's difference at `path` or at a key above it (a whole subtree only in one environment)."""
    for end in range(len(path), 0, -1):
        found = items.get(to_pointer(path[:end]))
        if found is not None:
            return found
    return None


def build(
    app: str,
    targets: Sequence[Target],
    documents: Mapping[str, Mapping[str, Any]],
    errors: Mapping[str, str],
    results: Sequence[PairResult],
    latest: Mapping[str, Mapping[str, Any]],
    *,
    baseline: str,
    only_differing: bool,
    hmac_key: bytes,
) -> Matrix:
    by_env: dict[str, Target] = {}
    for target in sorted(targets, key=lambda t: (environment_rank(t.environment), t.environment, t.name)):
        by_env.setdefault(target.environment, target)
    environments = list(by_env)
    if baseline not in by_env:
        baseline = environments[-1] if environments else ""
    matrix = Matrix(app, environments, baseline, {e: t.name for e, t in by_env.items()})
    matrix.errors = {e: errors[t.name] for e, t in by_env.items() if t.name in errors}
    pair_items = {
        (r.b if r.a.environment == baseline else r.a).environment: {i.pointer: i for i in r.items}
        for r in results
        if baseline in (r.a.environment, r.b.environment)
    }
    drift = {e: {d["path"]: d["class"] for d in latest.get(t.name, {}).get("drift", [])} for e, t in by_env.items()}
    keys: dict[KeyPath, None] = {}
    for target in by_env.values():
        for path in leaf_paths(documents.get(target.name, {})):
            if not any_match(target.spec.ignore, path):
                keys.setdefault(path, None)
    matrix.total_keys = len(keys)
    look = _Look(
        by_env, documents, pair_items, drift, baseline, hmac_key, {e: secret_globs(t) for e, t in by_env.items()}
    )
    for path in sorted(keys):
        cells = [look.cell(path, env) for env in environments]
        if only_differing and all(c.baseline in SAME and not c.drift for c in cells):
            continue
        matrix.rows.append((to_pointer(path), cells))
    return matrix


@dataclass(frozen=True, slots=True)
class _Look:
    """What a cell is built from."""

    by_env: Mapping[str, Target]
    documents: Mapping[str, Mapping[str, Any]]
    pair_items: Mapping[str, Mapping[str, ParityItem]]  # environment -> its pair with the baseline's items
    drift: Mapping[str, Mapping[str, str]]  # environment -> pointer -> class
    baseline: str
    hmac_key: bytes
    secrets: Mapping[str, list[PathGlob]]

    def cell(self, path: KeyPath, env: str) -> Cell:
        target, base = self.by_env[env], self.by_env[self.baseline]
        drifted = next((self.drift[env][p] for p in _prefixes(path) if p in self.drift[env]), "")
        if target.name not in self.documents:
            return Cell("?", "unread", drift=drifted)
        value = get_in(self.documents[target.name], path)
        secret = any_match(self.secrets[env], path) or any_match(self.secrets[self.baseline], path)
        if secret:
            text = ABSENT if value is MISSING else MASK
        else:
            text = ABSENT if value is MISSING else short(render(value), 60)
        if env == self.baseline:
            return Cell(text, "baseline", drift=drifted)
        if secret:
            base_doc = self.documents.get(base.name)
            if base_doc is None:
                return Cell(text, "unread", drift=drifted)
            same = Redacted.of(value, self.hmac_key) == Redacted.of(get_in(base_doc, path), self.hmac_key)
            return Cell(text, "equal" if same else "differs", drift=drifted)
        if any_match(target.spec.environment_specific, path) or any_match(base.spec.environment_specific, path):
            return Cell(text, "env-specific", drift=drifted)
        item = _covering(self.pair_items.get(env, {}), path)
        if item is None:
            return Cell(text, "equal", drift=drifted)
        return Cell(text, "expected" if item.expected else "differs", item.note, drift=drifted)


def _prefixes(path: KeyPath) -> Iterator[str]:
    for end in range(len(path), 0, -1):
        yield to_pointer(path[:end])
