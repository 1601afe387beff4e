"""What an adapter saw in a live system: a fingerprint at once, the parsed document when asked for."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from reconciler.domain.paths import PathGlob

_NOTHING: Mapping[str, str] = MappingProxyType({})  # shared: most sources can change everything live


class Observed:
    """A snapshot of one target's live configuration.

    The fingerprint is known as soon as the bytes are read; the document is parsed on first use, so a pass
    that finds the fingerprint unchanged never pays for parsing.
    """

    __slots__ = ("_document", "_parse", "fingerprint", "layers", "location", "secrets", "unwritable")

    def __init__(
        self,
        fingerprint: str,
        location: str,
        document: dict[str, Any] | None = None,
        parse: Callable[[], dict[str, Any]] | None = None,
        unwritable: Mapping[str, str] | None = None,
        secrets: tuple[PathGlob, ...] = (),
    ) -> None:
        # No validation here: one is built per target per pass. Pass a document or a parse function.
        self.fingerprint = fingerprint  # changes whenever the live content changes
        self.location = location  # where it was read, for people (a file path, a URL)
        # JSON pointers the source cannot change live, with why (a setting that needs a restart): drift there
        # is escalated, never written.
        self.unwritable: Mapping[str, str] = _NOTHING if unwritable is None else unwritable
        # Paths the source itself holds secret (a SecureString parameter, every key of a Kubernetes Secret):
        # compared by keyed hash like a target's own `secrets`, whatever the manifest says.
        self.secrets = secrets
        # For a layered source: per JSON pointer of a leaf, every layer that sets it and its value, the
        # winning layer last. None for a single source.
        self.layers: dict[str, list[tuple[str, Any]]] | None = None
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

    def pending(self) -> Callable[[], dict[str, Any]] | None:
        """The parse still to come (None once parsed, or when built with its document): an adapter may arrange
        for it to be made elsewhere meanwhile (adapters/parsing.py)."""
        return self._parse if self._document is None else None

    def summary(self) -> Observed:
        """This snapshot without its document: what a memo keeps, so that 10,000 remembered targets do not
        hold 10,000 parsed documents."""
        light = Observed(self.fingerprint, self.location, unwritable=self.unwritable, secrets=self.secrets)
        light.layers = self.layers
        return light

    def without_secrets(self) -> dict[str, Any]:
        """The document without the values of the source's own secret paths: what may be shown side by side
        with another target's (parity) without a keyed hash to stand in for them."""
        if not self.secrets:
            return self.document
        return _drop(self.document, (), self.secrets)


def _drop(node: dict[str, Any], here: tuple[str, ...], secrets: tuple[PathGlob, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        path = (*here, key)
        if any(glob.matches(path) for glob in secrets):
            continue
        out[key] = _drop(value, path, secrets) if isinstance(value, dict) else value
    return out
