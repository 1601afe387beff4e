"""Every exception reconciler raises, in one module so that no layer imports another just for an error.

ReconcilerError
├─ ConfigurationError   bad settings or manifests: a clear message, exit non-zero, nothing applied
├─ TemporaryError       retried with backoff (DiscoveryError, ApplyError, StoreUnavailable)
└─ PermanentError       recorded and counted, never retried (ConflictError, RollbackError)

Drift, escalations and "come back later" are data, not exceptions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class ReconcilerError(Exception):
    """Base of every error reconciler raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located as precisely as the input allows."""

    file: str
    message: str
    document: int | None = None  # 1-based index of the YAML document in the file
    name: str | None = None  # the document's metadata.name, when it has one
    field: str | None = None  # dotted path of the field, e.g. spec.source.path

    def __str__(self) -> str:
        where = self.file
        if self.document is not None:
            where += f": document {self.document}"
            if self.name:
                where += f" ({self.name})"
        if self.field:
            where += f": {self.field}"
        return f"{where}: {self.message}"


class ConfigurationError(ReconcilerError):
    """Settings or manifests are invalid; nothing is applied until they are fixed."""

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        self.problems = tuple(problems)
        if self.problems:
            message = message + "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)


class TemporaryError(ReconcilerError):
    """May succeed if tried again later; `delay_s` hints how much later (None: the queue decides)."""

    def __init__(self, message: str, *, delay_s: float | None = None) -> None:
        super().__init__(message)
        self.delay_s = delay_s


class DiscoveryError(TemporaryError):
    """Live state could not be read (unreachable, unreadable, or not parseable right now)."""


class ApplyError(TemporaryError):
    """A change could not be staged or committed."""


class StoreUnavailable(TemporaryError):
    """The history store cannot be reached."""


class PermanentError(ReconcilerError):
    """Trying again will not help; recorded and counted, never retried."""


class ConflictError(PermanentError):
    """Live state holds neither the expected before nor the after of a change."""


class AccessDenied(PermanentError):
    """A live system refused the credentials (wrong password, missing permission): retrying will not help
    until someone fixes them; the target's pass fails and the interval tries again."""


class RollbackError(PermanentError):
    """A rollback was refused or could not complete."""


class NotMigrated(ConfigurationError):
    """The history database is behind the code's schema."""
