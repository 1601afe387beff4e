"""Desired-state documents: Target and Base, with the enums, globs and durations they are made of."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from reconciler.domain import durations
from reconciler.domain.empty import no_entries, no_items
from reconciler.domain.packed import Packed
from reconciler.domain.paths import KeyPath, PathGlob, from_pointer, open_class
from reconciler.domain.run import Mode
from reconciler.errors import ConfigurationError, Problem

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


def _bounded(min_s: float, max_s: float) -> BeforeValidator:
    return BeforeValidator(lambda value: durations.seconds(value, min_s=min_s, max_s=max_s))


# Bounded in validation, so that no later arithmetic (the scheduler's next delay, a probe's deadline) meets an
# infinity, a NaN or a number too large for a float.
IntervalS = Annotated[float, _bounded(1.0, 7 * 86400.0)]  # how often a target is passed: 1s to 7d
ProbeS = Annotated[float, _bounded(0.001, 3600.0)]  # health gate durations: 1ms to 1h


def parse_glob(value: Any) -> PathGlob:
    """A JSON-Pointer glob as people write it; ValueError saying what is wrong (no pointer, an open `[`)."""
    if isinstance(value, PathGlob):
        return value
    if not isinstance(value, str):
        raise ValueError("a path glob must be a string such as '/database/**'")
    glob = PathGlob.parse(value)
    if any(open_class(segment) for segment in glob.segments):
        shown = repr(value) if len(value) <= 60 else repr(value[:57] + "...")
        raise ValueError(f"{shown}: a '[' opens a character class that is never closed (write [[] for a literal '[')")
    return glob


Glob = Annotated[PathGlob, BeforeValidator(parse_glob)]


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


def _interned(value: str | None) -> str | None:
    """One string object for a value that many targets repeat (an app, an environment, an adapter's name): each
    document's parse makes its own, ~55 bytes a target each."""
    return sys.intern(value) if value is not None else None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class Metadata(_Strict):
    name: str = Field(pattern=NAME_RE, max_length=200)
    app: str | None = None
    environment: str = "default"
    labels: dict[str, str] = Field(default_factory=no_entries)

    _share = field_validator("app", "environment")(_interned)


class SourceSpec(BaseModel):
    """Where a target's live configuration is; fields beyond `adapter` belong to that adapter."""

    model_config = ConfigDict(extra="allow", frozen=True)

    adapter: str = Field(min_length=1)

    _share = field_validator("adapter")(_interned)

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class NormalizeAs(StrEnum):
    """How a normaliser reads a value, on both sides, before comparison."""

    BYTES = "bytes"  # "10mb", "10MiB", "10485760" → 10485760 (k, m, g, t are powers of 1024)
    DURATION = "duration"  # "1m", "60s", "60" → 60 (seconds)
    BOOL = "bool"  # "true", "True", "yes", "on", "1" → true; "false", "no", "off", "0" → false
    NUMBER = "number"  # "30" → 30, "1.5" → 1.5
    LOWER = "lower"  # "INFO" → "info"


class NormalizeRule(_Strict):
    paths: list[Glob] = Field(min_length=1)
    as_: NormalizeAs = Field(alias="as")


def _pointers(value: dict[str, str] | list[str]) -> dict[str, str] | list[str]:
    for pointer in value:
        from_pointer(pointer)
    return value


def _pack(value: Any) -> Packed:
    if isinstance(value, Packed):
        return value
    if not isinstance(value, dict):
        raise ValueError("Input should be a valid dictionary")
    if not set(map(type, value)) <= {str}:  # at C speed: a manifest's keys are all plain strings
        odd = next((k for k in value if not isinstance(k, str)), None)
        if odd is not None:
            raise ValueError(f"a key must be a string, not {type(odd).__name__}")
    return Packed.of(value)


# The desired document, validated as a map with string keys and kept packed (domain/packed.py says why); the
# `desired` property reads it.
DesiredDocument = Annotated[Packed, BeforeValidator(_pack)]
EMPTY = Packed.of({})


class Overlay(_Strict):
    """What a Target and a Base share: the desired document and how to compare it."""

    extends: str | None = Field(None, pattern=NAME_RE)  # a Base whose spec this one deep-merges onto
    packed: DesiredDocument = Field(EMPTY, alias="desired")
    unset: list[str] = Field(default_factory=no_items)  # JSON Pointers removed from the merged desired state
    ignore: list[Glob] = Field(default_factory=no_items)
    secrets: list[Glob] = Field(default_factory=no_items)
    list_keys: dict[str, str] = Field(default_factory=no_entries)
    normalize: list[NormalizeRule] = Field(default_factory=no_items)
    environment_specific: list[Glob] = Field(default_factory=no_items)  # left out of environment parity

    _check_pointers = field_validator("list_keys", "unset")(_pointers)

    @property
    def desired(self) -> dict[str, Any]:
        """The desired document, a new dict on every read."""
        return self.packed.unpack()

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy; `update` may name the desired document as `desired`, as a manifest does."""
        if update is not None and "desired" in update:
            update = {**{k: v for k, v in update.items() if k != "desired"}, "packed": _pack(update["desired"])}
        return super().model_copy(update=update, deep=deep)


class HttpProbe(_Strict):
    """After a write, GET `url` until it answers `status`, for at most `within`."""

    url: str = Field(pattern=r"^https?://")
    status: int = Field(200, ge=100, le=599)
    within: ProbeS = 10.0
    interval: ProbeS = 1.0
    timeout: ProbeS = 2.0


class PrometheusQuery(_Strict):
    """After a write, `query` must hold (a non-empty result, every value non-zero) at every evaluation for
    `for` seconds, evaluated every `interval`."""

    url: str = Field(pattern=r"^https?://")  # the Prometheus server, e.g. http://prometheus:9090
    query: str = Field(min_length=1)
    for_: ProbeS = Field(30.0, alias="for")
    interval: ProbeS = 5.0
    timeout: ProbeS = 5.0


class HealthSpec(_Strict):
    http: HttpProbe | None = None
    prometheus: PrometheusQuery | None = None

    @model_validator(mode="after")
    def _one_at_least(self) -> HealthSpec:
        if self.http is None and self.prometheus is None:
            raise ValueError("a health gate needs http or prometheus")
        return self


class TargetSpec(Overlay):
    source: SourceSpec
    health: HealthSpec | None = None  # checked after every write; a failure rolls the target's writes back
    wave: int | None = Field(None, ge=0)  # apply order; defaults to the environment's rank
    packed: DesiredDocument = Field(alias="desired")  # required, unless the target extends a base
    prune: bool = False
    interval: IntervalS | None = None
    mode: Mode | None = None

    @model_validator(mode="before")
    @classmethod
    def _desired_from_base(cls, data: Any) -> Any:
        if isinstance(data, dict) and "desired" not in data and data.get("extends"):
            return {**data, "desired": {}}
        return data


class BaseMetadata(_Strict):
    name: str = Field(pattern=NAME_RE, max_length=200)
    labels: dict[str, str] = Field(default_factory=no_entries)


class Base(_Strict):
    """Desired values and comparison settings that several targets share; never reconciled itself."""

    kind: Literal["Base"]
    apiVersion: str | None = None
    metadata: BaseMetadata
    spec: Overlay = Field(default_factory=Overlay)


class Target(_Strict):
    kind: Literal["Target"]
    apiVersion: str | None = None
    metadata: Metadata
    spec: TargetSpec

    def placed(self, origin: Origin) -> Self:
        """This target, said to come from `origin` (its loader says so once, right after validation). Kept in the
        instance's own dict beside the cached properties below, not as a pydantic private attribute, which costs
        a dict of its own (200 bytes a target); like them, it is not compared: `==` compares fields."""
        self.__dict__["_origin"] = origin
        return self

    def problem(self, field: str, message: str) -> ConfigurationError:
        """A ConfigurationError located at this target's manifest file, document and `field`."""
        origin = self.origin
        where = Problem(
            file=str(origin.file) if origin else "?",
            document=origin.document if origin else None,
            name=self.metadata.name,
            field=field,
            message=message,
        )
        return ConfigurationError(f"target {self.metadata.name}: {field}: {message}", [where])

    def with_spec(self, spec: TargetSpec) -> Target:
        """A copy with another spec. model_copy would carry over the cached properties below, computed
        from the old spec, so they are dropped here."""
        copied = self.model_copy(update={"spec": spec})
        for attribute, value in vars(type(self)).items():
            if isinstance(value, cached_property):
                copied.__dict__.pop(attribute, None)
        return copied

    # Cached: read for every target on every pass, and attribute access on a pydantic model is not free.
    @cached_property
    def name(self) -> str:
        return self.metadata.name

    @cached_property
    def environment(self) -> str:
        return self.metadata.environment

    @property
    def origin(self) -> Origin | None:
        origin: Origin | None = self.__dict__.get("_origin")
        return origin

    @cached_property
    def wave(self) -> int:
        """Where the target goes in apply order: its own wave, or its environment's rank."""
        return self.spec.wave if self.spec.wave is not None else environment_rank(self.environment)

    @cached_property
    def has_references(self) -> bool:
        """Whether any desired value may be a `${...}` reference (resolved at pass time). Most documents hold no
        `$` at all, which their packed bytes tell without building the document."""
        return self.spec.packed.may_hold("$") and _may_reference(self.spec.desired)

    def list_keys(self) -> dict[KeyPath, str]:
        return {from_pointer(p): k for p, k in self.spec.list_keys.items()}


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


def reference_paths(node: Any, path: KeyPath = ()) -> list[KeyPath]:
    """Paths whose desired value is a `${...}` reference (a secret, resolved only at pass time)."""
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in reference_paths(v, (*path, k))]
    if isinstance(node, str) and node.startswith("${") and node.endswith("}"):
        return [path]
    return []


def _may_reference(node: Any) -> bool:
    if isinstance(node, dict):
        return any(_may_reference(v) for v in node.values())
    if isinstance(node, list):
        return any(_may_reference(v) for v in node)
    return isinstance(node, str) and node.startswith("$")
