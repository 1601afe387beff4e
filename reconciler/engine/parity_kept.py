"""What the daemon's parity keeps of a target's live document between its changes: the document packed as bytes
(reconciler.domain.packed: ~2.5 KB for 100 keys instead of ~15 KB as a dict of strings), with every value at
the target's own secret paths (its `secrets` globs and its `${...}` reference paths) replaced by a keyed hash,
so that no secret is held in plaintext for the life of the daemon.

Replacing those values changes no parity result: compare_pair leaves out both targets' secret and reference
paths, so the walk never looks at a value there. Maps are kept as maps (only their leaves are replaced), so that
a difference that takes in a whole map, where a secret path lies inside it, counts the same leaves; such a
difference then shows the keyed hash where `compare` would show the secret.

A live document that packs to the bytes of the target's desired one (no drift, the usual case) is kept as the
manifest's own Packed object: one copy of its bytes, not two (~0.4 KB a target of 100 keys).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from reconciler.domain.manifest import Target, reference_paths
from reconciler.domain.packed import Packed
from reconciler.domain.paths import KeyPath, PathGlob, any_match
from reconciler.domain.values import Redacted


class Kept(NamedTuple):
    """A target's last live document as parity keeps it, and the fingerprint it was read with."""

    fingerprint: str
    document: Packed


def keep(target: Target, fingerprint: str, document: dict[str, Any], hmac_key: bytes) -> tuple[Kept, dict[str, Any]]:
    """`document` (already without its source's secret paths) as parity keeps it, and the document it packed
    (its secrets hashed), for the comparisons of the moment."""
    globs = secret_globs(target)
    if globs:
        document = redact(document, globs, hmac_key)
    # Live as desired, the usual case: the manifest's bytes serve for both, and are not deflated again.
    return Kept(fingerprint, Packed.like(document, target.spec.packed)), document


def secret_globs(target: Target) -> tuple[PathGlob, ...]:
    """The paths of `target` whose live values are secrets: its `secrets` globs and its reference paths."""
    if not target.spec.secrets and not target.has_references:
        return ()
    references = [PathGlob.literal(p) for p in reference_paths(target.spec.desired)]
    return (*target.spec.secrets, *references)


def redact(document: dict[str, Any], globs: tuple[PathGlob, ...], hmac_key: bytes) -> dict[str, Any]:
    """A copy of `document` whose leaves at or below a path that `globs` match are keyed hashes; maps stay maps
    (an empty map holds no secret and stays empty)."""
    return _redact(document, (), globs, hmac_key, secret=False)


def _redact(
    node: dict[str, Any], here: KeyPath, globs: tuple[PathGlob, ...], key: bytes, *, secret: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in node.items():
        path = (*here, name)
        below = secret or any_match(globs, path)
        if type(value) is dict:
            out[name] = _redact(value, path, globs, key, secret=below)
        else:
            out[name] = Redacted.of(value, key) if below else value
    return out
