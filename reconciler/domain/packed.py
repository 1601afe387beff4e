"""A desired document kept as bytes, for the one copy of every target's manifest that a daemon holds.

100 keys of desired state as a dict of strings take ~10 KB (the dict's table, a str object per value); as
bytes ~2.5 KB. A daemon keeps every target's manifest for as long as it runs, and reads a document only when a
pass compares in full (its first pass, and after live or the manifest changed), so it keeps it packed and
builds a new dict on each read. marshal (~10 us to read 100 keys) holds what YAML gives besides dates and
times, which go by pickle; both are written and read by this process only.
"""

from __future__ import annotations

import marshal
import pickle
from typing import Any


class Packed:
    """A dict of desired values, frozen as bytes; `unpack` gives a new dict each time (callers may change it)."""

    __slots__ = ("_data", "_pickled")

    def __init__(self, data: bytes, *, pickled: bool) -> None:
        self._data = data
        self._pickled = pickled

    @classmethod
    def of(cls, document: dict[str, Any]) -> Packed:
        try:
            return cls(marshal.dumps(document), pickled=False)
        except ValueError:  # a date or a time: only pickle holds those
            return cls(pickle.dumps(document, protocol=5), pickled=True)

    def unpack(self) -> dict[str, Any]:
        # Both only ever read bytes that this process wrote from a validated manifest.
        if self._pickled:
            document: dict[str, Any] = pickle.loads(self._data)  # noqa: S301
        else:
            document = marshal.loads(self._data)  # noqa: S302
        return document

    def may_hold(self, text: str) -> bool:
        """False when no string of the document can contain `text` (ASCII): its bytes do not hold it, and both
        marshal and pickle write a string's characters as its UTF-8 bytes. True may be wrong (the bytes of a
        length, say), so a caller that needs to know looks at the document."""
        return text.encode("ascii") in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        """The same bytes: types are kept (1, 1.0 and true differ, as they do in a comparison). Equal documents
        may pack differently (an alias shared in one, copied in the other): then they are taken as different,
        which costs a full look, never a missed change."""
        return isinstance(other, Packed) and self._pickled == other._pickled and self._data == other._data

    def __hash__(self) -> int:
        return hash(self._data)

    def __repr__(self) -> str:
        return f"Packed({len(self._data)} bytes)"
