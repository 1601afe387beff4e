"""Values as the comparison sees them: strict equality, canonical JSON, and redacted secrets."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from reconciler.domain.paths import MISSING


def type_name(value: Any) -> str:
    """The type of a value in the words of the data formats (null, bool, int, float, str, list, map)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "map"
    return type(value).__name__


def strict_equal(a: Any, b: Any) -> bool:
    """Equal in value and type all the way down: 1, 1.0, True and "1" are four different values."""
    ta, tb = type(a), type(b)
    if ta is not tb:
        return False
    if ta is dict:
        return a.keys() == b.keys() and all(strict_equal(a[k], b[k]) for k in a)
    if ta is list or ta is tuple:
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b, strict=True))
    if ta is float and math.isnan(a) and math.isnan(b):  # NaN equals NaN for drift purposes
        return True
    return bool(a == b)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Redacted):
        return value.to_json()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# One encoder for every call: json.dumps with options builds a new one each time, which showed in profiles of
# passes with 100,000 drifted keys (two digests per action).
_encode_str = json.encoder.encode_basestring  # what the encoder uses for strings with ensure_ascii=False
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces; the basis of every digest."""
    kind = type(value)
    # Scalars, the bulk of every digest, without the encoder's per-call set-up; the same text it gives.
    if kind is str:
        return _encode_str(value)
    if kind is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    return _CANONICAL.encode(value)


def to_json(value: Any) -> str | None:
    """JSON for storage; MISSING becomes None (SQL NULL) so that null and missing stay apart."""
    if value is MISSING:
        return None
    return canonical_json(value)


def from_json(text: str | None) -> Any:
    """The inverse of to_json."""
    if text is None:
        return MISSING
    value = json.loads(text)
    if isinstance(value, dict) and set(value) == {Redacted.JSON_KEY}:
        return Redacted(value[Redacted.JSON_KEY])
    return value


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Redacted:
    """Stands in for a secret value: a short keyed hash that tells values apart without revealing them."""

    digest: str

    JSON_KEY = "$redacted"

    @classmethod
    def of(cls, value: Any, key: bytes) -> Redacted:
        if value is MISSING:
            return cls("missing")
        mac = hmac.new(key, canonical_json(value).encode(), hashlib.sha256).hexdigest()
        return cls("hmac-sha256:" + mac[:12])

    def to_json(self) -> dict[str, str]:
        return {self.JSON_KEY: self.digest}

    def __str__(self) -> str:
        return f"<redacted {self.digest}>"

    def __repr__(self) -> str:
        return str(self)


def holds(live: Any, value: Any, key: bytes | None = None) -> bool:
    """Whether a live value is `value`: equal in value and type, MISSING (a key that is not there) equal only to
    MISSING; a journaled secret (Redacted) is compared by keyed hash, which needs the `key`."""
    if isinstance(value, Redacted):
        return key is not None and live is not MISSING and Redacted.of(live, key) == value
    return strict_equal(live, value)


def render(value: Any) -> str:
    """A value as one line for people: JSON, with missing as '(missing)' and secrets redacted."""
    if value is MISSING:
        return "(missing)"
    if isinstance(value, Redacted):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=_json_default)
