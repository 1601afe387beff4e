"""What an adapter saw in a live system: a fingerprint at once, the parsed document when asked for."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Observed:
    """A snapshot of one target's live configuration.

    The fingerprint is known as soon as the bytes are read; the document is parsed on first use, so a pass
    that finds the fingerprint unchanged never pays for parsing.
    """

    __slots__ = ("_document", "_parse", "fingerprint", "location")

    def __init__(
        self,
        fingerprint: str,
        location: str,
        document: dict[str, Any] | None = None,
        parse: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        # No validation here: one is built per target per pass. Pass a document or a parse function.
        self.fingerprint = fingerprint  # changes whenever the live content changes
        self.location = location  # where it was read, for people (a file path, a URL)
        self._document = document
        self._parse = parse

    @property
    def document(self) -> dict[str, Any]:
        """The parsed document; parse errors surface here, as the adapter's DiscoveryError."""
        if self._document is None:
            if self._parse is None:
                raise ValueError(f"{self.location}: an Observed was built with neither document nor parse")
            self._document = self._parse()
            self._parse = None
        return self._document
