"""The settings group of the daemon's continuous environment parity; part of the one tree in settings.py
(RECONCILER_PARITY__*)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ParitySettings(BaseModel):
    """Environment parity in the daemon: each app's environments compared with its baseline as live changes."""

    model_config = ConfigDict(allow_inf_nan=False)

    enabled: bool = Field(
        True,
        description="Keep each app's parity current in the daemon (metrics, notifications, /api/v1/parity). "
        "Defaults to true.",
    )
    baseline: str | None = Field(
        None,
        description="The environment every other one is compared with, unless a Policy's parity_baselines "
        "names one for the app. Defaults to none: each app's lowest-ranked environment.",
    )
