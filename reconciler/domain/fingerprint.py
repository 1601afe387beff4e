"""Fingerprints: fast content hashes that tell whether live state changed since the last pass.

They detect change; they protect nothing, so a fast non-cryptographic 128-bit hash (xxh3) is the right
tool: ten times faster than SHA-256 here, with collisions as unlikely as anyone needs for change detection.
"""

from __future__ import annotations

from collections.abc import Callable

import xxhash

# The C function itself, not a wrapper around it: this runs once per target per pass.
of_bytes: Callable[[bytes], str] = xxhash.xxh3_128_hexdigest
