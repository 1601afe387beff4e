"""What an adapter saw in a live system."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Observed:
    """A snapshot of one target's live configuration."""

    document: dict[str, Any]
    fingerprint: str  # changes whenever the live content changes
    location: str  # where it was read, for people (a file path, a URL)
