"""Desired-state documents (Target, Policy) as validated models, and the state they form together."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, field_validator

from reconciler.domain.paths import KeyPath, PathGlob, from_pointer
from reconciler.domain.run import Mode

NAME_RE = r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$"

# Environments are ranked for waves and guards; an environment not listed ranks after all of these,
# because a name we do not know is treated as the most precious.
ENVIRONMENT_RANKS = {
    "dev": 0,
    "development": 0,
    "test": 1,
    "qa": 1,
    "staging": 2,
    "stage": 2,
    "preprod": 3,
    "prod": 4,
    "production": 4,
}


def environment_rank(environment: str) -> int:
    return ENVIRONMENT_RANKS.get(environment.lower(), len(ENVIRONMENT_RANKS))


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration_s(value: Any) -> float:
    """'500ms', '60s', '5m', '1h', '1d' or a number of seconds, as seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string such as '60s'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration such as '500ms', '60s', '5m' or '1h'")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


DurationS = Annotated[float, BeforeValidator(parse_duration_s)]


def _parse_glob(value: Any) -> PathGlob:
    if isinstance(value, PathGlob):
        return value
    if not isinstance(value, str):
        raise ValueError("a path glob must be a string such as '/database/**'")
    return PathGlob.parse(value)


Glob = Annotated[PathGlob, BeforeValidator(_parse_glob)]


class DriftClass(StrEnum):
    """What may be done about a drift."""

    ACCEPTABLE = "acceptable"  # intended: recorded, never changed
    REVERSIBLE = "reversible"  # may be fixed automatically in apply mode
    ESCALATE = "escalate"  # never changed without a person


class DriftOp(StrEnum):
    """How live differs from desired at one path."""

    ADD = "add"  # the key is only in live
    REMOVE = "remove"  # the key is only in desired
    CHANGE = "change"  # same type, other value
    TYPE_CHANGE = "type_change"  # other type


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class Metadata(_Strict):
    name: str = Field(pattern=NAME_RE, max_length=200)
    app: str | None = None
    environment: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)


class SourceSpec(BaseModel):
    """Where a target's live configuration is; fields beyond `adapter` belong to that adapter."""

    model_config = ConfigDict(extra="allow", frozen=True)

    adapter: str = Field(min_length=1)

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TargetSpec(_Strict):
    source: SourceSpec
    desired: dict[str, Any]
    ignore: list[Glob] = Field(default_factory=list)
    secrets: list[Glob] = Field(default_factory=list)
    list_keys: dict[str, str] = Field(default_factory=dict)
    prune: bool = False
    interval: DurationS | None = None
    mode: Mode | None = None

    @field_validator("list_keys")
    @classmethod
    def _pointers(cls, value: dict[str, str]) -> dict[str, str]:
        for pointer in value:
            from_pointer(pointer)
        return value


class Target(_Strict):
    kind: Literal["Target"]
    apiVersion: str | None = None
    metadata: Metadata
    spec: TargetSpec

    _origin: Origin | None = PrivateAttr(default=None)

    # Cached: read for every target on every pass, and attribute access on a pydantic model is not free.
    @cached_property
    def name(self) -> str:
        return self.metadata.name

    @cached_property
    def environment(self) -> str:
        return self.metadata.environment

    @property
    def origin(self) -> Origin | None:
        return self._origin

    def list_keys(self) -> dict[KeyPath, str]:
        return {from_pointer(p): k for p, k in self.spec.list_keys.items()}


class RuleMatch(_Strict):
    """Every field given must match; an empty match matches every drift."""

    targets: list[str] = Field(default_factory=list)  # name globs
    environment: list[str] = Field(default_factory=list)
    app: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    paths: list[Glob] = Field(default_factory=list)
    ops: list[DriftOp] = Field(default_factory=list)

    @field_validator("targets", "environment", "app", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Rule(_Strict):
    match: RuleMatch = Field(default_factory=RuleMatch)
    class_: DriftClass = Field(alias="class")
    reason: str = Field(min_length=1)


def _end_of(value: Any) -> Any:
    # A bare date means the exception holds through that whole day (UTC).
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime.combine(value + timedelta(days=1), time.min, tzinfo=UTC)
    return value


class PolicyException(_Strict):
    """Acceptable drift with a paper trail; it stops covering anything once it expires."""

    targets: list[str] = Field(min_length=1)  # name globs
    paths: list[Glob] = Field(min_length=1)
    reason: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    expires: Annotated[datetime, BeforeValidator(_end_of)]

    @field_validator("expires")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)


class PolicySpec(_Strict):
    default: DriftClass | None = None
    rules: list[Rule] = Field(default_factory=list)
    exceptions: list[PolicyException] = Field(default_factory=list)


class PolicyMetadata(_Strict):
    name: str = Field(pattern=NAME_RE, max_length=200)
    labels: dict[str, str] = Field(default_factory=dict)


class Policy(_Strict):
    kind: Literal["Policy"]
    apiVersion: str | None = None
    metadata: PolicyMetadata
    spec: PolicySpec = Field(default_factory=PolicySpec)


KINDS: dict[str, type[Target] | type[Policy]] = {"Target": Target, "Policy": Policy}


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a document came from."""

    file: Path
    document: int  # 1-based


@dataclass(frozen=True, slots=True)
class DesiredVersion:
    """The identity of one desired state: content digest, plus the git commit when there is one."""

    digest: str
    git_commit: str | None = None
    git_dirty: bool = False

    def __str__(self) -> str:
        short = self.digest[:12]
        if self.git_commit:
            return f"{short} (git {self.git_commit[:12]}{', dirty' if self.git_dirty else ''})"
        return short


@dataclass(frozen=True)
class DesiredState:
    """All targets and policies of a desired-state folder, validated and versioned."""

    root: Path
    version: DesiredVersion
    targets: dict[str, Target]
    policies: tuple[Policy, ...] = ()
    target_digests: dict[str, str] = field(default_factory=dict)

    def default_class(self) -> DriftClass:
        """The policies' default class; escalate when no policy names one (the safe choice)."""
        for policy in self.policies:
            if policy.spec.default is not None:
                return policy.spec.default
        return DriftClass.ESCALATE

    def rules(self) -> list[tuple[str, int, Rule]]:
        return [(p.metadata.name, i, r) for p in self.policies for i, r in enumerate(p.spec.rules)]

    def exceptions(self) -> list[tuple[str, int, PolicyException]]:
        return [(p.metadata.name, i, e) for p in self.policies for i, e in enumerate(p.spec.exceptions)]

    def ordered_targets(self, names: list[str] | None = None) -> list[Target]:
        """Targets in wave order. Sort key: environment rank, then environment, then name."""
        chosen = self.targets.values() if names is None else [self.targets[n] for n in names]
        return sorted(chosen, key=lambda t: (environment_rank(t.environment), t.environment, t.name))
