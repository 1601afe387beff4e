"""Policy documents: ordered rules, expiring exceptions, and expected differences between environments."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ModelWrapValidatorHandler, PrivateAttr, field_validator, model_validator

from reconciler.domain.manifest import NAME_RE, DriftClass, DriftOp, Glob, _Strict


class RuleMatch(_Strict):
    """Every field given must match; an empty match matches every drift."""

    targets: list[str] = Field(default_factory=list)  # name globs
    environment: list[str] = Field(default_factory=list)
    app: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    paths: list[Glob] = Field(default_factory=list)
    ops: list[DriftOp] = Field(default_factory=list)
    # Value predicates: both values numbers (not booleans) and live within this much of desired.
    within: float | None = Field(None, ge=0)  # absolute
    within_percent: float | None = Field(None, ge=0)  # of |desired|

    @field_validator("targets", "environment", "app", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Rule(_Strict):
    match: RuleMatch = Field(default_factory=RuleMatch)
    class_: DriftClass = Field(alias="class")
    reason: str = Field(min_length=1)


def _end_of(value: Any) -> datetime:
    """An expiry as an aware UTC datetime. A bare date means the entry holds through that whole day (UTC); a
    naive time is taken as UTC. Numbers are refused: pydantic would read 20261215 as seconds since 1970."""
    if isinstance(value, str):
        value = _iso(value.strip())
    if isinstance(value, datetime):
        try:
            return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
        except OverflowError:
            raise ValueError("is out of the range of dates (year 1 to 9999, in UTC)") from None
    if isinstance(value, date):
        if value == date.max:  # the day after it does not exist: hold to its last microsecond
            return datetime.max.replace(tzinfo=UTC)
        return datetime.combine(value + timedelta(days=1), time.min, tzinfo=UTC)
    raise ValueError(f"must be a date such as 2026-12-15 or a time such as 2026-12-15T18:00:00Z, not {_kind(value)}")


def _iso(text: str) -> date | datetime:
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError:
        shown = repr(text) if len(text) <= 40 else repr(text[:37] + "...")
        raise ValueError(f"{shown} is not a date such as 2026-12-15 or a time such as 2026-12-15T18:00:00Z") from None


def _kind(value: Any) -> str:
    return "a number" if isinstance(value, int | float) else type(value).__name__


Expiry = Annotated[datetime, BeforeValidator(_end_of)]


def written(value: Any) -> str:
    """An expiry as its author wrote it: a bare date stays a date (it holds through that day, inclusive), a
    time stays that time; only the quoting and surrounding spaces of the YAML are gone."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()


class _Expiring(_Strict):
    """A policy entry with an expiry, which it keeps both as the moment it ends (for comparing with now) and
    as written (for showing people: `expires: 2026-07-15` is shown as 2026-07-15, not as the midnight after
    it)."""

    expires: Expiry
    _expires_written: str = PrivateAttr(default="")

    @model_validator(mode="wrap")
    @classmethod
    def _keep_written(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        model = handler(data)
        if isinstance(data, dict) and "expires" in data:
            model._expires_written = written(data["expires"])
        return model

    @property
    def expires_text(self) -> str:
        """The expiry as written in the manifest (a date is inclusive: the entry holds through that day, UTC)."""
        return self._expires_written or written(self.expires)


class PolicyException(_Expiring):
    """Acceptable drift with a paper trail; it stops covering anything once it expires."""

    targets: list[str] = Field(min_length=1)  # name globs
    paths: list[Glob] = Field(min_length=1)
    reason: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    # Optional intent, for the people who find this exception later.
    ticket: str | None = None
    purpose: str | None = None
    stakeholders: list[str] = Field(default_factory=list)


class ExpectedDifference(_Expiring):
    """A difference between environments that is meant to be there, with a paper trail and an expiry."""

    apps: list[str] = Field(min_length=1)  # app name globs
    environments: list[str] = Field(default_factory=list)  # the pair must be among these (empty: any pair)
    paths: list[Glob] = Field(min_length=1)
    reason: str = Field(min_length=1)
    owner: str = Field(min_length=1)


class ParityBaseline(_Strict):
    """The environment that the daemon compares the other environments of these apps with."""

    apps: list[str] = Field(min_length=1)  # app name globs
    environment: str = Field(min_length=1)


class PolicySpec(_Strict):
    default: DriftClass | None = None
    rules: list[Rule] = Field(default_factory=list)
    exceptions: list[PolicyException] = Field(default_factory=list)
    expected_differences: list[ExpectedDifference] = Field(default_factory=list)
    parity_baselines: list[ParityBaseline] = Field(default_factory=list)  # first match wins, across policies


class PolicyMetadata(_Strict):
    name: str = Field(pattern=NAME_RE, max_length=200)
    labels: dict[str, str] = Field(default_factory=dict)


class Policy(_Strict):
    kind: Literal["Policy"]
    apiVersion: str | None = None
    metadata: PolicyMetadata
    spec: PolicySpec = Field(default_factory=PolicySpec)
