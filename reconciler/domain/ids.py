"""Ids of runs and actions: version-4 UUIDs from the process's PRNG (seeded from os.urandom when the process
starts). They identify, they guard nothing; uuid4()'s read of os.urandom per id showed in profiles of passes
that make one per pass (runs) or one per drifted key (actions)."""

from __future__ import annotations

import random

_ids = random.Random()  # noqa: S311 - ids, not secrets


_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))  # the variant and version bits
_SET = (0x8000 << 48) | (4 << 76)  # RFC 4122 variant, version 4


def new_id() -> str:
    """What str(uuid.UUID(int=..., version=4)) gives, without building the UUID object."""
    h = f"{(_ids.getrandbits(128) & _CLEAR) | _SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
