"""How one target's documents are compared: ignored paths, secret paths, keyed lists.

Its own module so that the walker (reconciler.diff.walk), which may be compiled, and its callers share one
class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.domain.manifest import Target
from reconciler.domain.paths import KeyPath, PathGlob


@dataclass(frozen=True, slots=True)
class CompareOptions:
    """How one target is compared. Defaults to: nothing ignored, no secrets, lists as whole values."""

    ignore: tuple[PathGlob, ...] = ()
    secrets: tuple[PathGlob, ...] = ()
    list_keys: Mapping[KeyPath, str] = field(default_factory=dict)
    hmac_key: bytes = b""

    @classmethod
    def for_target(cls, target: Target, hmac_key: bytes) -> CompareOptions:
        return cls(
            ignore=tuple(target.spec.ignore),
            secrets=tuple(target.spec.secrets),
            list_keys=target.list_keys(),
            hmac_key=hmac_key,
        )
