"""What writes a rolling window (or one run) has spent, against which the blast-radius limits are checked."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple


class Spend(NamedTuple):
    """Writes and targets written so far, overall and in the wave asking; `counted` says whether the target
    asking has written already (it then adds writes, not a target)."""

    actions: int = 0
    targets: int = 0
    wave_actions: int = 0
    wave_targets: int = 0
    counted: bool = False


class Reservation(NamedTuple):
    """Writes one pass is about to make, entered in the window before it makes them."""

    at: datetime
    target: str
    wave: int
    actions: int
    owner: str | None
