"""A desired document kept as bytes, for the one copy of every target's manifest that a daemon holds.

100 keys of desired state as a dict of strings take ~10 KB (the dict's table, a str object per value); as
bytes ~2.5 KB. A daemon keeps every target's manifest for as long as it runs, and reads a document only when a
pass compares in full (its first pass, and after live or the manifest changed), so it keeps it packed and
builds a new dict on each read. marshal (~10 us to read 100 keys) holds what YAML gives besides dates and
times, which go by pickle; both are written and read by this process only. A document of COMPRESS_FROM bytes
or more is also deflated (zlib level 1: ~35 us to write 2 KB, ~5 us to read) when that saves a quarter or more:
configuration repeats its keys and much of its values (the 100-key documents of bench.daemon_scale shrink 5x,
2.3 KB to 0.4 KB), and a daemon keeps two documents per target (the desired one, and parity's live one). One that
is compared with (`like`: parity's live document against the desired one) keeps a 16-byte digest of its bytes
before deflate, so that a document that packs to its bytes is told without a deflate; the others keep none (a
replica holds every target's manifest: 300,000 digests would be ~17 MB).
"""

from __future__ import annotations

import hashlib
import marshal
import pickle
import zlib
from typing import Any

# Version 2 marks no object as shared (3 and later mark every object referenced twice, such as a manifest's keys,
# which a parse shares across documents): equal documents, keys in the same order, pack to the same bytes, so
# that a live document as desired can be kept as the desired one's bytes (engine/parity_kept.py). ~4% more
# bytes once deflated, for 100 keys.
MARSHAL_VERSION = 2
COMPRESS_FROM = 256  # bytes: below, deflate's own overhead eats what it saves
_PICKLED, _DEFLATED = 1, 2  # bits of a Packed's form


class Packed:
    """A dict of desired values, frozen as bytes; `unpack` gives a new dict each time (callers may change it)."""

    __slots__ = ("_data", "_digest", "_form")

    def __init__(self, data: bytes, *, form: int) -> None:
        self._data = data
        self._form = form
        self._digest: bytes | None = None  # of the bytes before deflate, with the form, once compared: see `like`

    @classmethod
    def of(cls, document: dict[str, Any]) -> Packed:
        return cls._deflated(*_plain(document))

    @classmethod
    def like(cls, document: dict[str, Any], known: Packed) -> Packed:
        """`document` packed, or `known` itself when the document packs to its bytes: told by a digest of the
        bytes before deflate (BLAKE2b, 128 bits: no document can be made to match another's), so that a live
        document as desired (the usual case, engine/parity_kept.py) costs ~5 us instead of a deflate (~15-55
        us, the more when the daemon's passes have cooled the caches). `known`'s digest is made on its first
        comparison, and kept."""
        data, form = _plain(document)
        if known._digest is None:
            known._digest = _digest(known._plain(), known._form & _PICKLED)
        if _digest(data, form) == known._digest:
            return known
        return cls._deflated(data, form)

    @classmethod
    def _deflated(cls, data: bytes, form: int) -> Packed:
        if len(data) >= COMPRESS_FROM:
            deflated = zlib.compress(data, 1)
            if len(deflated) * 4 <= len(data) * 3:
                data, form = deflated, form | _DEFLATED
        return cls(data, form=form)

    def _plain(self) -> bytes:
        return zlib.decompress(self._data) if self._form & _DEFLATED else self._data

    def unpack(self) -> dict[str, Any]:
        # Both only ever read bytes that this process wrote from a validated manifest.
        data = self._plain()
        if self._form & _PICKLED:
            document: dict[str, Any] = pickle.loads(data)  # noqa: S301
        else:
            document = marshal.loads(data)  # noqa: S302
        return document

    def may_hold(self, text: str) -> bool:
        """False when no string of the document can contain `text` (ASCII): its bytes do not hold it, and both
        marshal and pickle write a string's characters as its UTF-8 bytes. True may be wrong (the bytes of a
        length, say), so a caller that needs to know looks at the document."""
        return text.encode("ascii") in self._plain()

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        """The same bytes: types are kept (1, 1.0 and true differ, as they do in a comparison). Equal documents
        may pack differently (keys in another order, a string interned in one only): then they are taken as
        different, which costs a full look or a second copy, never a missed change."""
        return isinstance(other, Packed) and self._form == other._form and self._data == other._data

    def __hash__(self) -> int:
        return hash(self._data)

    def __repr__(self) -> str:
        return f"Packed({len(self._data)} bytes)"


def _plain(document: dict[str, Any]) -> tuple[bytes, int]:
    """The document's bytes before deflate, and their form."""
    try:
        data, form = marshal.dumps(document, MARSHAL_VERSION), 0
    except ValueError:  # a date or a time: only pickle holds those
        data, form = pickle.dumps(document, protocol=5), _PICKLED
    return data, form


def _digest(data: bytes, form: int) -> bytes:
    """A document's bytes before deflate, digested with their form."""
    return hashlib.blake2b(data, digest_size=16, person=bytes([form])).digest()
