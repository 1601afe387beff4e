"""The base of every settings group."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Group(BaseModel):
    """A group of settings. No number may be infinite or NaN: `inf` passes `gt=0` and would break every timer
    built from it."""

    model_config = ConfigDict(allow_inf_nan=False)
